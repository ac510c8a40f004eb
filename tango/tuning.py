"""Fitting a cascade to labelled dev data: temperatures, the threshold curve, the threshold.

``fit_cascade`` (what :meth:`tango.cascade.Cascade.fit` runs) scores every dev row with every
tier once (tokenization included, so the per-row costs it measures are the ones a run pays),
fits one temperature per tier, sweeps the tier-1 threshold over every distinct confidence value,
and reports the thresholds that meet the user's target. The numerical pieces live in
:mod:`tango.calibration` (temperatures), :mod:`tango.threshold_curve` (two tiers),
:mod:`tango.thresholds` (N tiers) and :mod:`tango.bounds`; the report in :mod:`tango.gate_report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tango.calibration import TemperatureScaler, reliability_diagram
from tango.confidence import confidence, softmax
from tango.data import LabelledData, split_rows
from tango.gate_report import CalibrationReport, curve_at, row_hashes, tier_report
from tango.labels import align_labels as _align
from tango.labels import label_ids
from tango.texts import Texts, as_texts
from tango.threshold_curve import ThresholdCurve, guarantee_threshold, select_threshold, sweep_thresholds
from tango.thresholds import ThresholdChoice, best_in_sample, certify
from tango.tiers import Tier

DEFAULT_CONFIDENCE_LEVEL = 0.9  # max_drop holds on new rows with this probability
TEMPERATURE_FRACTION = 0.3  # of the calibration rows, when thresholds are certified on the rest
GOALS = ("max_drop", "min_speedup", "max_escalation", "guarantee")


@dataclass(frozen=True)
class Target:
    """What a cascade's gate is fitted for (the ``target`` hyper-parameter of :class:`Cascade`).

    At most one goal: ``max_drop`` (accuracy points below the last tier alone; any number of
    tiers; met at ``confidence_level`` on new rows, ``None`` = on the calibration rows only),
    ``min_speedup``, ``max_escalation`` or ``guarantee`` = EPS with risk ``delta`` (two tiers).
    No goal: only temperatures are fitted. Certified goals fit temperatures on a seeded
    ``temperature_fraction`` of the rows and choose thresholds on the rest; ``new_rows`` = M
    bounds the drop a batch of M new rows shows (see :func:`tango.bounds.drop_upper_bound`).

    >>> Target(max_drop=0.5)  # doctest: +SKIP
    >>> Target(max_drop=0.5).but(min_speedup=3)  # the goal replaced: Target(min_speedup=3)
    """

    max_drop: float | None = None
    min_speedup: float | None = None
    max_escalation: float | None = None
    guarantee: float | None = None
    delta: float = 0.1
    confidence_level: float | None = DEFAULT_CONFIDENCE_LEVEL
    temperature_fraction: float = TEMPERATURE_FRACTION
    seed: int = 0
    new_rows: int | None = None

    def __post_init__(self) -> None:
        given = sorted(self.goals)
        if len(given) > 1:
            raise ValueError(f"give one target, got {given}")
        negative = sorted(k for k in ("max_drop", "max_escalation") if (getattr(self, k) or 0) < 0)
        if negative:
            raise ValueError(f"{negative[0]} must be >= 0, got {getattr(self, negative[0])}")
        if self.new_rows is not None and not self.certifies_drop:
            raise ValueError("new_rows applies to a certified max_drop (max_drop with a confidence_level)")

    @property
    def goals(self) -> dict[str, float]:
        """The goal given (at most one), by name."""
        return {k: getattr(self, k) for k in GOALS if getattr(self, k) is not None}

    @property
    def certifies_drop(self) -> bool:
        return self.max_drop is not None and self.confidence_level is not None

    @property
    def certified(self) -> bool:
        """Whether thresholds are chosen on rows the temperatures were not fitted on."""
        return self.certifies_drop or self.guarantee is not None

    def but(self, **changes: Any) -> Target:
        """This target with ``changes``; a goal given replaces the goal held."""
        from dataclasses import replace

        if set(changes) & set(GOALS):
            changes = {**{k: None for k in GOALS}, **changes}
        return replace(self, **changes)

    def check_tiers(self, tiers: int) -> None:
        if tiers > 2 and set(self.goals) - {"max_drop"}:
            raise ValueError(f"with {tiers} tiers the target must be max_drop, got {sorted(self.goals)}")


def score_tiers(tiers: list[Tier], texts: list) -> tuple[list[np.ndarray], list[float]]:
    """Every tier's logits on every row, and each tier's measured seconds per row."""
    logits, costs = [], []
    for tier in tiers:
        start = time.perf_counter()
        logits.append(tier.infer(tier.tokenize(texts), progress=True))
        costs.append((time.perf_counter() - start) / max(len(texts), 1))
    return logits, costs


def fit_cascade(
    tiers: list[Tier],
    kind: str,
    texts: Texts,
    labels: Sequence[str] | Sequence[int] | np.ndarray | None,
    target: Target,
    *,
    report_dir: str | Path | None = None,
    unlabelled: Texts | None = None,
) -> CalibrationReport:
    """Fit temperatures and choose the thresholds of tiers for ``target``: what
    :meth:`Cascade.fit` does (and ``tango calibrate`` through it). Changes nothing it is given.

    ``labels`` None fits on unlabelled rows: the last tier's answers stand in for labels, and
    a drop is certified on disagreement with it. With no goal in ``target`` only temperatures
    are fitted (the report's ``thresholds`` is empty). ``report_dir`` receives reliability
    diagrams, the curve (JSON + PNG) and ``report.json``.

    ``max_drop`` is met at ``confidence_level`` (default 0.9) on new rows, not only on these:
    see :func:`tango.thresholds.certify`; ``confidence_level=None`` takes the fastest thresholds
    within target on these rows, which misses the target on new rows about half the time.
    ``unlabelled`` rows like the traffic, given beside labelled ones, tighten a certified
    ``max_drop``'s bound while keeping it on the drop itself (prediction-powered inference:
    :func:`tango.bounds.ppi_drop_upper_bound`).
    """
    target.check_tiers(len(tiers))
    rows = as_texts(texts)
    label_free = labels is None
    if unlabelled is not None and label_free:
        raise ValueError("unlabelled rows combine with labelled ones: give labels, or pass the "
                         "unlabelled rows as texts with labels=None for the label-free gate")  # fmt: skip
    if label_free and len(tiers) < 2:
        raise ValueError("unlabelled rows calibrate against the last tier: give two tiers or more")
    y = None if label_free else label_ids(labels, list(tiers[0].labels))
    if y is not None and len(rows) != len(y):
        raise ValueError(f"{len(rows)} texts but {len(y)} labels: give one label per text")
    logits, costs = score_tiers(tiers, rows)
    side_rows = None if unlabelled is None else as_texts(unlabelled)
    side = None if side_rows is None else score_tiers(tiers, side_rows)[0]
    if label_free:
        y = logits[-1].argmax(axis=1)  # the last tier's answers stand in for the labels
    gate = fit_gate(logits, y, costs, target, kind=kind, fit_last=not label_free, unlabelled_logits=side)
    report = CalibrationReport(
        rows=len(rows),
        tiers=[tier_report(z, y, s, c) for z, s, c in zip(logits, gate.scalers, costs, strict=True)],
        target=target.goals,
        threshold=gate.thresholds[0] if gate.curve is not None else None,
        dev_rows=row_hashes(rows),
        expected=curve_at(gate.curve, gate.thresholds[0]) if gate.curve is not None else {},
        guarantee=gate.guarantee,
        temperature_rows=len(gate.fit_rows),
        threshold_rows=len(gate.choose_rows),
        thresholds=gate.thresholds,
        choice=gate.choice,
        reference="last tier" if label_free else "labels" if side is None else "labels + last tier",
        unlabelled_rows=0 if side_rows is None else len(side_rows),
    )
    if report_dir:
        _write_evidence(Path(report_dir), report, logits, gate, y, [t.path.name for t in tiers])
    return report


def _write_evidence(
    out: Path,
    report: CalibrationReport,
    logits: list[np.ndarray],
    gate: GateFit,
    labels: np.ndarray,
    names: list[str],
) -> None:
    """Reliability diagrams per tier, the threshold curve (two tiers) and report.json."""
    out.mkdir(parents=True, exist_ok=True)
    for k, (z, scaler) in enumerate(zip(logits, gate.scalers, strict=True)):
        reliability_diagram(
            softmax(z),
            scaler.predict_proba(z),
            labels,
            out / f"reliability_tier{k + 1}.png",
            title=f"tier {k + 1}: {names[k]}",
        )
    if gate.curve is not None:
        (out / "curve.json").write_text(json.dumps(gate.curve.to_dict()))
        gate.curve.plot(out / "curve.png")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))


@dataclass
class GateFit:
    """Temperatures and thresholds fitted from every tier's logits on labelled rows."""

    scalers: list[TemperatureScaler]
    thresholds: list[float]  # empty when no target was given
    fit_rows: np.ndarray  # rows the temperatures were fitted on
    choose_rows: np.ndarray  # rows that chose the thresholds (disjoint when certified)
    choice: dict[str, Any] | None = None  # max_drop's ThresholdChoice
    guarantee: dict[str, Any] | None = None  # guarantee's GuaranteeResult
    curve: ThresholdCurve | None = None  # two tiers: the sweep on the threshold rows


def fit_gate(
    logits: list[np.ndarray],
    labels: np.ndarray,
    costs: list[float],
    target: Target,
    *,
    kind: str = "maxprob",
    fit_last: bool = True,
    unlabelled_logits: list[np.ndarray] | None = None,
) -> GateFit:
    """The gate from precomputed logits: what ``fit_cascade`` does after running the tiers.

    Separate so that studies (many resplits of one scored set) reuse one scoring pass.
    ``fit_last=False`` is the label-free gate: ``labels`` are the last tier's answers, its
    temperature stays 1 and a certified drop is bounded as the disagreement it is (exactly).
    ``unlabelled_logits`` (every tier's, on unlabelled rows like the traffic) join the labelled
    threshold rows in a prediction-powered bound on the drop (a certified ``max_drop`` only:
    :func:`tango.bounds.ppi_drop_upper_bound`); temperatures stay fitted on labelled rows.
    """
    if unlabelled_logits is not None and not target.certifies_drop:
        raise ValueError("unlabelled rows combine with labelled ones for a certified max_drop only")
    fraction = target.temperature_fraction if target.certified else None
    fit_rows, choose_rows = temperature_split(len(labels), fraction, target.seed)
    scalers = [TemperatureScaler().fit(z[fit_rows], labels[fit_rows]) for z in logits[:-1]]
    last = logits[-1]
    scalers.append(TemperatureScaler().fit(last[fit_rows], labels[fit_rows]) if fit_last else _unit(last))
    gate = GateFit(scalers, [], fit_rows, choose_rows)
    targets = target.goals
    if not targets:
        return gate
    rows = _GateRows(kind, logits, scalers, labels)
    confs, preds, chosen_labels = (
        rows.confidences(choose_rows),
        rows.predictions(choose_rows),
        labels[choose_rows],
    )
    if "max_drop" in targets:
        choice = _max_drop_choice(target, rows, fit_rows, choose_rows, costs, unlabelled_logits, not fit_last)
        gate.choice = choice.to_dict()
        gate.thresholds = choice.thresholds
    elif "guarantee" in targets:
        result = guarantee_threshold(confs[0], preds[0] != preds[1], targets["guarantee"], target.delta)
        gate.guarantee = result.to_dict()
        gate.thresholds = [result.threshold]
    if len(logits) == 2:
        gate.curve = sweep_thresholds(confs[0], preds[0], preds[1], chosen_labels, costs[0], costs[1])
        if not gate.thresholds:  # min_speedup or max_escalation
            gate.thresholds = [select_threshold(gate.curve, **targets)]
    gate.thresholds = [float(t) for t in gate.thresholds]
    return gate


def _max_drop_choice(
    target: Target,
    rows: _GateRows,
    fit_rows: np.ndarray,
    choose_rows: np.ndarray,
    costs: list[float],
    unlabelled_logits: list[np.ndarray] | None,
    label_free: bool = False,
) -> ThresholdChoice:
    """``max_drop``'s thresholds, chosen on the threshold rows: in-sample without a confidence
    level, else certified, the candidates' order fixed on the temperature rows (and the unlabelled
    rows, if any, in a combined bound)."""
    confs, preds = rows.confidences(choose_rows), rows.predictions(choose_rows)
    labels = rows.labels[choose_rows]
    if target.confidence_level is None:
        return best_in_sample(confs, preds, labels, costs, target.max_drop)
    order = (rows.confidences(fit_rows), rows.predictions(fit_rows), rows.labels[fit_rows])
    extra = None
    if unlabelled_logits is not None:
        every = np.arange(len(unlabelled_logits[0]))
        side = _GateRows(rows.kind, unlabelled_logits, rows.scalers, np.zeros(0))
        extra = (side.confidences(every), side.predictions(every))
    return certify(
        confs,
        preds,
        labels,
        costs,
        target.max_drop,
        order_rows=order,
        confidence_level=target.confidence_level,
        new_rows=target.new_rows,
        unlabelled=extra,
        label_free=label_free,
    )


def _unit(logits: np.ndarray) -> TemperatureScaler:
    """A scaler left at temperature 1 (nothing to fit it to), for logits of this many classes."""
    scaler = TemperatureScaler()
    scaler.temperature_, scaler.n_classes_ = 1.0, logits.shape[1]
    return scaler


def temperature_split(n: int, fit_fraction: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that fit temperatures and rows that choose thresholds (the same rows if no fraction):
    a cascade's gate and an early-exit model's calibration split them alike."""
    everything = np.arange(n)
    if fit_fraction is None:
        return everything, everything
    if not 0 < fit_fraction < 1:
        raise ValueError(f"temperature_fraction must lie in (0, 1), got {fit_fraction}")
    if not 1 <= round(n * fit_fraction) < n:
        raise ValueError(f"{n} rows cannot be split into temperature and threshold rows")
    choose_rows, fit_rows = split_rows(n, fit_fraction, seed)  # the project's one seeded split
    return fit_rows, choose_rows


@dataclass
class _GateRows:
    """What the gate sees on every calibration row: calibrated confidences and predictions."""

    kind: str
    logits: list[np.ndarray]
    scalers: list[TemperatureScaler]
    labels: np.ndarray

    def confidences(self, rows: np.ndarray) -> list[np.ndarray]:
        return [
            confidence(s.predict_proba(z[rows]), self.kind)
            for z, s in zip(self.logits[:-1], self.scalers[:-1], strict=True)
        ]

    def predictions(self, rows: np.ndarray) -> list[np.ndarray]:
        return [z[rows].argmax(axis=1) for z in self.logits]


def align_labels(data: LabelledData, classes: list[str]) -> np.ndarray:
    """The data's labels as indices into the cascade's classes (:func:`tango.labels.align_labels`)."""
    return _align(data.labels, data.label_names, classes)
