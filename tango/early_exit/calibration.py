"""Calibrating an early-exit model: one temperature per exit, and a certified exit threshold.

:func:`calibrate_early_exit` is what ``tango early-exit calibrate`` and
:meth:`tango.early_exit.EarlyExitClassifier.fit` run; :func:`fit_exits` does it from exits' logits
already computed (benchmarks reuse one pass over many draws). The maxprob policy is simulated from
every exit's logits, and the threshold is certified as a cascade's gate is (:mod:`tango.tuning`'s
row split, :mod:`tango.bounds`' paired bound, fixed-sequence testing from the most cautious down).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tango.calibration import TemperatureScaler, reliability_diagram
from tango.confidence import softmax
from tango.data import LabelledData
from tango.gate_report import row_hashes, tier_report
from tango.thresholds import certified_prefix
from tango.tuning import DEFAULT_CONFIDENCE_LEVEL, TEMPERATURE_FRACTION, align_labels, temperature_split


@dataclass
class ExitCurve:
    """Operating points of a maxprob exit policy, simulated from every exit's logits."""

    threshold: list[float]
    accuracy: list[float]
    mean_exit_layer: list[float]
    lost: list[int]  # rows the last exit gets right and the early answer wrong
    gained: list[int]  # and the other way round


def calibrate_early_exit(
    model: Any,
    dev: LabelledData,
    *,
    max_drop: float | None = None,
    report_dir: str | Path | None = None,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
) -> dict[str, Any]:
    """Fit one temperature per exit of an ``EarlyExitClassifier``; optionally choose its threshold.

    The maxprob policy is simulated from all exits' logits (a row leaves at the first exit whose
    calibrated confidence reaches the threshold), so the whole curve costs one pass. With
    ``max_drop``, the threshold is certified as a cascade's is (:func:`fit_exits`: temperatures and
    candidates from 30% of the rows, the walk on the rest): thresholds are tested from the
    most cautious down, each by the paired upper bound on its drop against the last exit
    (:func:`tango.bounds.drop_upper_bound` at ``confidence_level``), the walk stops at the first
    that fails, and the passed one with the least compute is stored in ``model.threshold`` (none
    passed: every row runs to the last exit).
    """
    labels = align_labels(dev, list(model.classes_))
    logits = model.exit_logits(dev.texts)  # (E, N, K)
    layers = list(model.exits_)
    fitted = fit_exits(logits, labels, layers, max_drop=max_drop, confidence_level=confidence_level)
    scalers = fitted.pop("scalers")
    model.temperatures = [s.temperature_ for s in scalers]
    report: dict[str, Any] = {"rows": len(dev), **fitted, "dev_rows": row_hashes(dev.texts)}
    if max_drop is not None:
        model.threshold = report["threshold"]
    if report_dir:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        for layer, z, scaler in zip(layers, logits, scalers, strict=True):
            reliability_diagram(
                softmax(z),
                scaler.predict_proba(z),
                labels,
                out / f"reliability_exit{layer}.png",
                title=f"exit at layer {layer}",
            )
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def fit_exits(
    logits: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[int],
    *,
    max_drop: float | None = None,
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL,
    temperature_fraction: float = TEMPERATURE_FRACTION,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`calibrate_early_exit` on exits' logits already computed ((E, N, K) against labels):
    the fitted ``scalers``, each exit's report, the policy's curve and, with ``max_drop``, the
    certified ``threshold`` and its ``drop_bound`` (benchmarks reuse one pass over many draws).

    Certifying, the rows split as a cascade's do (:class:`Target`): the temperatures and the
    candidate thresholds come from a seeded ``temperature_fraction`` of them, the walk and the
    curve from the rest, so no row that shaped a candidate certifies it. Without ``max_drop``
    every row fits the temperatures."""
    if max_drop is not None and max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    fraction = None if max_drop is None else temperature_fraction
    fit_rows, walk_rows = temperature_split(len(labels), fraction, seed)
    scalers = [TemperatureScaler().fit(z[fit_rows], labels[fit_rows]) for z in logits]
    exits = [
        dict(layer=layer, **asdict(tier_report(z, labels, s, 0.0)))
        for layer, z, s in zip(layers, logits, scalers, strict=True)
    ]
    confidences = exit_confidences(scalers, logits)
    correct = logits.argmax(axis=2) == labels
    grid = _exit_grid(confidences[:, fit_rows])
    curve = _exit_curve(confidences[:, walk_rows], correct[:, walk_rows], np.asarray(layers), grid)
    fitted: dict[str, Any] = {"scalers": scalers, "exits": exits, "curve": asdict(curve)}
    if max_drop is not None:
        threshold, bound = _certified_exit_threshold(curve, len(walk_rows), max_drop, confidence_level)
        target = {"max_drop": max_drop, "confidence_level": confidence_level}
        rows = {"temperature_rows": len(fit_rows), "threshold_rows": len(walk_rows), "seed": seed}
        fitted.update(threshold=threshold, drop_bound=bound, target=target, **rows)
    return fitted


def first_exits(confidences: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) index of the exit each row leaves at under maxprob: the first whose calibrated
    confidence ((E, N)) reaches ``threshold``; the last exit takes every row still inside."""
    leaves = confidences >= threshold
    leaves[-1] = True
    return leaves.argmax(axis=0)


def exit_confidences(scalers: Sequence[TemperatureScaler], logits: np.ndarray) -> np.ndarray:
    """(E, N) calibrated top probability of every exit, from (E, N, K) logits."""
    return np.stack([s.predict_proba(z).max(axis=1) for s, z in zip(scalers, logits, strict=True)])


def _exit_grid(confidences: np.ndarray) -> np.ndarray:
    """The candidate thresholds: a fine even grid and the quantiles of these (E, N) confidences,
    up to ``MAX_EXIT_THRESHOLD``. Above it a row leaves only where its confidence rounds to 1,
    which the model's float32 softmax does far sooner than this float64 simulation (under a sharp
    temperature), so the curve would not say what the model does; "no row leaves early" is
    ``NEVER_EARLY``."""
    grid = np.concatenate([np.linspace(0.5, 1.0, 101), np.quantile(confidences, np.linspace(0, 1, 101))])
    return np.unique(np.minimum(grid, MAX_EXIT_THRESHOLD))


MAX_EXIT_THRESHOLD = 1 - 1e-6  # float32 tells confidences 6e-8 apart near 1; float64, 1e-16


def _exit_curve(
    confidences: np.ndarray, correct: np.ndarray, layers: np.ndarray, thresholds: np.ndarray | None = None
) -> ExitCurve:
    """Accuracy and mean exit layer at ``thresholds`` (default: :func:`_exit_grid` of these
    confidences). (E, N) inputs."""
    thresholds = _exit_grid(confidences) if thresholds is None else thresholds
    curve = ExitCurve([], [], [], [], [])
    rows = np.arange(confidences.shape[1])
    for t in thresholds:
        first = first_exits(confidences, t)
        early = correct[first, rows]
        curve.threshold.append(float(t))
        curve.accuracy.append(float(early.mean()))
        curve.mean_exit_layer.append(float(layers[first].mean()))
        curve.lost.append(int((correct[-1] & ~early).sum()))
        curve.gained.append(int((~correct[-1] & early).sum()))
    return curve


# above every confidence: no row leaves before the last exit
NEVER_EARLY = 2.0


def _certified_exit_threshold(
    curve: ExitCurve, n: int, max_drop: float, confidence_level: float
) -> tuple[float, float | None]:
    """The certified threshold of least compute and its drop bound (points), by fixed-sequence
    testing from the most cautious threshold down; ``NEVER_EARLY`` when the first fails."""
    from tango.bounds import drop_upper_bound

    bounds = drop_upper_bound(curve.lost, curve.gained, n, confidence_level)
    order = np.argsort(curve.threshold)[::-1]  # most cautious first
    passed = order[: certified_prefix(bounds[order], max_drop)]
    if not len(passed):
        return NEVER_EARLY, None
    best = int(min(passed, key=lambda i: curve.mean_exit_layer[i]))
    return curve.threshold[best], float(bounds[best])


def format_exit_report(report: dict[str, Any], max_drop: float | None) -> str:
    """An early-exit calibration (:func:`calibrate_early_exit`) as a small table."""
    lines = ["exit layer  temperature  accuracy  ECE before -> after"]
    for e in report["exits"]:
        lines.append(
            f"{e['layer']:>10}  {e['temperature']:11.3f}  {e['accuracy']:8.2%}  "
            f"{e['ece_before']:.4f} -> {e['ece_after']:.4f}"
        )
    if "threshold" in report:
        level = report["target"]["confidence_level"]
        if report.get("drop_bound") is None:
            lines.append(
                f"no threshold certified within {max_drop} points at {level:.0%}: "
                "every row runs to the last exit"
            )
        else:
            lines.append(
                f"threshold {report['threshold']:.4f}: drop against the last exit <= "
                f"{report['drop_bound']:.2f} points at {level:.0%} confidence (target {max_drop})"
            )
    return "\n".join(lines)
