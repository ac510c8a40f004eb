"""Which rows a benchmark scores and which choose its gate: a calibration file, a held-out
fraction, or 2-fold cross-fitting, so that no gate is judged on the rows that chose it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango.data import LabelledData, load_labelled, split_rows
from tango.deferral import words
from tango.tiers import Tier
from tango.tuning import Target, align_labels, fit_gate


@dataclass
class _Plan:
    """The rows scored and the rows that choose the thresholds, as indices into the data file."""

    scored: np.ndarray
    mode: str  # "file", "fraction" or "cross-fitted"
    calibration: np.ndarray | None = None  # "fraction": rows of the file; "file": None
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # positions in scored


def _load(data: str | Path | LabelledData, columns: dict[str, str | None], names: list[str]) -> LabelledData:
    if isinstance(data, LabelledData):
        return data
    return load_labelled(data, label_names=names, **columns)


def _plan(n: int, calibration_file: bool, fraction: float | None, seed: int) -> _Plan:
    everything = np.arange(n)
    if calibration_file:
        return _Plan(everything, "file")
    if fraction is not None:
        scored, calibration = split_rows(n, fraction, seed)
        if len(scored) < 2:
            raise ValueError(
                f"a calibration fraction of {fraction} leaves {len(scored)} of {n} rows to score"
            )
        return _Plan(scored, "fraction", calibration=calibration)
    if n < 4:
        raise ValueError(f"cross-fitting needs at least 4 rows, got {n}; pass --calibration-data")
    first, second = split_rows(n, 0.5, seed)
    return _Plan(everything, "cross-fitted", folds=[(first, second), (second, first)])


def _data_record(
    rows: LabelledData,
    plan: _Plan,
    calibration_data: str | Path | LabelledData | None,
    limit: int | None,
    seed: int,
) -> dict[str, Any]:
    """Which rows were scored and which chose the thresholds: indices into the data file."""
    calibration: dict[str, Any] = {"mode": plan.mode, "seed": seed}
    if plan.mode == "fraction":
        calibration["indices"] = plan.calibration.tolist()  # type: ignore[union-attr]
    elif plan.mode == "file":
        source = calibration_data.source if isinstance(calibration_data, LabelledData) else calibration_data
        calibration["source"] = str(source)
    else:
        calibration["folds"] = [
            {"chooses": plan.scored[a].tolist(), "scores": plan.scored[b].tolist()} for a, b in plan.folds
        ]
    return {
        "source": rows.source,
        "rows_read": len(rows),
        "limit": limit,
        "scored": len(plan.scored),
        "scored_indices": plan.scored.tolist(),
        "calibration": calibration,
    }


@dataclass
class _Gate:
    temperatures: list[float]
    thresholds: list[float]
    choice: dict[str, Any] | None
    on: str  # which rows chose it
    accuracy: list[float]  # each tier's on the rows that chose it (compare with the scored rows')


def _gates(
    plan: _Plan,
    tiers: list[Tier],
    logits: list[np.ndarray],
    y: np.ndarray,
    costs: list[float],
    calibration_data: str | Path | LabelledData | None,
    rows: LabelledData,
    columns: dict[str, str | None],
    classes: list[str],
    **target: Any,
) -> tuple[list[_Gate], list[np.ndarray], tuple | None]:
    """The chosen gate(s), the positions (in the scored rows) each one scores, and the calibration
    rows' (first logits, last logits, lengths) where they are other rows (for the learned rule)."""
    max_drop, level, seed = target["max_drop"], target["confidence_level"], target["seed"]

    def fit(z: list[np.ndarray], labels: np.ndarray, c: list[float], on: str, judged: int) -> _Gate:
        new_rows = judged if target["bound_on"] == "rows" and level is not None else None
        goal = Target(max_drop=max_drop, confidence_level=level, seed=seed, new_rows=new_rows)
        gate = fit_gate(z, labels, c, goal)
        accuracy = [float((logit.argmax(1) == labels).mean()) for logit in z]
        return _Gate(
            [float(s.temperature_) for s in gate.scalers], gate.thresholds, gate.choice, on, accuracy
        )

    everything = np.arange(len(y))
    if plan.mode == "cross-fitted":
        gates = [
            fit(
                [z[chooser] for z in logits],
                y[chooser],
                costs,
                f"fold {k + 1}: {len(chooser)} rows",
                len(scored),
            )
            for k, (chooser, scored) in enumerate(plan.folds)
        ]
        return gates, [scored for _, scored in plan.folds], None
    if plan.mode == "fraction":
        calibration = rows.subset(plan.calibration)  # type: ignore[arg-type]
    else:
        calibration = _load(calibration_data, columns, classes)  # type: ignore[arg-type]
    z, c, _ = _score(tiers, calibration.texts)
    labels = align_labels(calibration, classes)
    fitted = (z[0], z[-1], words(calibration.texts))
    return [fit(z, labels, c, f"{len(calibration)} calibration rows", len(y))], [everything], fitted


def _gate_record(gate: _Gate) -> dict[str, Any]:
    return {
        "temperatures": gate.temperatures,
        "thresholds": gate.thresholds,
        "choice": gate.choice,
        "tier_accuracy": gate.accuracy,
    }


def _score(tiers: list[Tier], texts: list) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Every tier's logits on the rows (untimed by the rounds), its seconds per row and its
    padding efficiency."""
    logits, costs, padding = [], [], []
    for tier in tiers:
        start = time.perf_counter()
        encodings = tier.tokenize(texts)
        batches = tier.plan(encodings)
        logits.append(tier.infer(encodings, batches=batches))
        costs.append((time.perf_counter() - start) / max(len(texts), 1))
        padding.append(tier.padding_efficiency(encodings, batches))
    return logits, costs, padding
