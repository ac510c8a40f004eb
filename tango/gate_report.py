"""The evidence of a gate fit, and what is done with it: per-tier calibration
(:class:`TierCalibration`), the record :meth:`tango.cascade.Cascade.fit` keeps in
``calibration_`` and ``cascade.json`` (:class:`CalibrationReport`), the table ``tango calibrate``
prints (:func:`format_report`), and the refusal to evaluate on the rows a cascade was fitted on
(:func:`check_held_out`, by the row hashes the report stores). Fitting is :mod:`tango.tuning`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from tango.calibration import TemperatureScaler, expected_calibration_error, negative_log_likelihood
from tango.confidence import softmax
from tango.data import LabelledData
from tango.threshold_curve import ThresholdCurve


@dataclass
class TierCalibration:
    """What calibration found for one tier on the dev rows."""

    temperature: float
    accuracy: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    seconds_per_row: float  # tokenize + infer, measured on the dev rows


@dataclass
class CalibrationReport:
    """The evidence behind a cascade's temperatures and threshold."""

    rows: int
    tiers: list[TierCalibration]
    target: dict[str, float]
    threshold: float | None  # two tiers: the one threshold (also in `thresholds`)
    dev_rows: list[str]  # short hashes of the dev rows, to refuse evaluating on them later
    expected: dict[str, float] = field(default_factory=dict)  # the curve at the chosen threshold
    guarantee: dict[str, Any] | None = None
    temperature_rows: int = 0  # rows the temperatures were fitted on
    threshold_rows: int = 0  # rows that chose the thresholds (disjoint from the above if certified)
    thresholds: list[float] = field(default_factory=list)  # one per tier boundary
    choice: dict[str, Any] | None = None  # max_drop: the chosen setting's drop, bound, cost
    # What the rows' "labels" were: "labels" (given), "last tier" (unlabelled rows: the last
    # tier's answers, so accuracies are agreement with it and the drop is disagreement with it),
    # or "labels + last tier" (labelled rows and unlabelled ones in one prediction-powered bound)
    reference: str = "labels"
    unlabelled_rows: int = 0  # "labels + last tier": unlabelled rows beside the labelled ones

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> CalibrationReport:
        """The report from its dict (``cascade.json``'s ``calibration``)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["tiers"] = [TierCalibration(**t) for t in record["tiers"]]
        return cls(**values)


def row_hashes(texts: list) -> list[str]:
    """Short hashes of rows, stored with a calibration so test rows can be checked against it."""
    return sorted({hashlib.sha1(repr(t).encode()).hexdigest()[:12] for t in texts})


def curve_at(curve: ThresholdCurve, threshold: float) -> dict[str, float]:
    """The two-tier curve's operating point at ``threshold``: what the report calls expected."""
    i = int(np.searchsorted(curve.threshold, threshold))
    i = min(i, len(curve.threshold) - 1)
    point = {
        "escalated": curve.escalated[i],
        "speedup": curve.speedup[i],
        "agreement_with_tier2": curve.agreement_with_tier2[i],
    }
    if curve.accuracy is not None:
        point.update(
            accuracy=curve.accuracy[i],
            tier1_accuracy=curve.tier1_accuracy,
            tier2_accuracy=curve.tier2_accuracy,
        )
    return {k: float(v) for k, v in point.items()}


def tier_report(
    logits: np.ndarray, labels: np.ndarray, scaler: TemperatureScaler, cost: float
) -> TierCalibration:
    before, after = softmax(logits), scaler.predict_proba(logits)
    return TierCalibration(
        temperature=float(scaler.temperature_),
        accuracy=float((logits.argmax(1) == labels).mean()),
        ece_before=expected_calibration_error(before, labels),
        ece_after=expected_calibration_error(after, labels),
        nll_before=negative_log_likelihood(before, labels),
        nll_after=negative_log_likelihood(after, labels),
        seconds_per_row=cost,
    )


MAX_SHARED_ROWS = 0.01  # a few duplicates between real splits are normal; more is leakage


def check_held_out(calibration: dict[str, Any] | None, test: LabelledData) -> None:
    """Refuse to evaluate on the rows the cascade was calibrated on."""
    dev = set((calibration or {}).get("dev_rows", []))
    shared = sum(h in dev for h in row_hashes(test.texts))
    if shared > MAX_SHARED_ROWS * len(test):
        raise ValueError(
            f"{shared} of the {len(test)} test rows are rows this cascade was "
            "calibrated on; accuracy there says nothing about new data. Evaluate on a "
            "held-out file, or calibrate with --dev-fraction to split one file into "
            "dev and test"
        )


def format_report(report: CalibrationReport) -> str:
    """The calibration report as a small table (what `tango calibrate` prints)."""
    unlabelled = report.reference == "last tier"
    lines = [
        f"calibrated on {report.rows} {'unlabelled ' if unlabelled else ''}rows"
        + (
            f" (temperatures on {report.temperature_rows}, thresholds on the other {report.threshold_rows})"
            if report.temperature_rows != report.rows
            else ""
        )
        + (
            f", beside {report.unlabelled_rows} unlabelled rows in a prediction-powered bound"
            if report.unlabelled_rows
            else ""
        ),
        "tier  temperature  accuracy  ECE before -> after  NLL before -> after  ms/row"
        + ("   (against the last tier's answers: accuracy = agreement)" if unlabelled else ""),
    ]
    for k, t in enumerate(report.tiers):
        lines.append(
            f"{k + 1:>4}  {t.temperature:11.3f}  {t.accuracy:8.2%}  {t.ece_before:10.4f} -> "
            f"{t.ece_after:.4f}  {t.nll_before:10.4f} -> {t.nll_after:.4f}  "
            f"{1000 * t.seconds_per_row:6.2f}"
        )
    if report.threshold is not None:
        expected = ", ".join(f"{k} {v:.4g}" for k, v in report.expected.items())
        lines.append(f"threshold {report.threshold:.6g} for target {report.target}: {expected}")
    if c := report.choice:
        what = "disagreement with the last tier" if unlabelled else "drop"
        head = (
            f"thresholds {', '.join(f'{t:.6g}' for t in c['thresholds'])}: {what} {c['drop']:.2f} points on "
        )
        if c["drop_bound"] is None:
            lines.append(f"{head}these rows (in-sample: no margin for new rows); speedup {c['speedup']:.2f}x")
        else:
            reached = ", ".join(f"{r:.1%}" for r in c["reached"])
            batch = f"a batch of {c['new_rows']} new rows" if c.get("new_rows") else "new rows"
            lines.append(
                f"{head}these rows, at most {c['drop_bound']:.2f} on {batch} with probability "
                f"{c['confidence_level']}; rows reaching tiers 1..{len(c['reached'])}: {reached}; "
                f"speedup {c['speedup']:.2f}x"
            )
    if report.guarantee:
        g = report.guarantee
        lines.append(
            f"guarantee: disagreement <= {g['eps']} with prob >= {1 - g['delta']:.2f} "
            f"(bound {g['risk_bound']:.4f}, empirical {g['empirical_risk']:.4f})"
        )
    return "\n".join(lines)
