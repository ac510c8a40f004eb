"""`tango calibrate`'s work: a cascade's gate fitted on labelled rows (the held-out ones by
default), on unlabelled rows like the traffic, or on both; an early-exit model's exits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tango.data import LabelledData, load_labelled, split_rows
from tango.jobs.models import Log, _stderr
from tango.jobs.scoring import evaluate, last_tier_accuracy


def calibration_rows(
    cascade: Any, dev_path: str | None, columns: dict[str, str | None], warn: Log = _stderr
) -> LabelledData:
    """``dev_path``'s rows, else the rows tier 1's training held out (checked against every tier)."""
    from tango.splits import calibration_rows_for, overlap_warning

    classes = list(cascade.classes_)
    if dev_path:
        return load_labelled(dev_path, **columns, label_names=classes)
    dev, overlap = calibration_rows_for([tier.path for tier in cascade._validated()[0]], classes)
    warn(f"calibrating on {dev.source}")
    if warning := overlap_warning(overlap, dev.source.split(":")[0]):
        warn(warning)
    return dev


@dataclass(frozen=True)
class CalibrationRows:
    """The rows `tango calibrate` fits on: ``dev_path`` (default: the rows tier 1's training held
    out), a seeded ``dev_fraction`` of them kept as a test set or a ``test_path``; ``unlabelled``
    files like the traffic (alone: the label-free gate; with ``combine``: joined to the labelled
    rows in one bound on the drop). ``columns`` name the files' columns."""

    dev_path: str | None = None
    test_path: str | None = None
    dev_fraction: float | None = None
    seed: int = 0
    columns: dict[str, str | None] | None = None
    unlabelled: tuple[str, ...] = ()
    combine: bool = False


def calibrate(
    cascade: Any,
    cascade_out: str,
    rows: CalibrationRows | None = None,
    *,
    in_sample: bool = False,
    log: Log = print,
    warn: Log = _stderr,
    **targets: Any,
) -> None:
    """Fit ``cascade``'s temperatures and thresholds on ``rows``, save it in ``cascade_out``
    (evidence in its ``calibration/``), and report. ``targets``: :meth:`tango.cascade.Cascade.fit`'s
    (max_drop, min_speedup, ...; default max_drop 0.5); ``in_sample``: no margin for new rows.
    Unlabelled rows alone fit the gate without labels (on disagreement with the last tier);
    labelled rows given too are then scored by the calibrated cascade, as a check."""
    from tango.gate_report import CalibrationReport, format_report

    rows = rows or CalibrationRows()
    columns = rows.columns or {}
    if rows.unlabelled and not rows.combine:
        files = list(rows.unlabelled)
        return _calibrate_unlabelled(
            cascade, cascade_out, files, rows.dev_path, columns, in_sample, log, targets
        )
    dev = calibration_rows(cascade, rows.dev_path, columns, warn)
    classes = list(cascade.classes_)
    test = load_labelled(rows.test_path, **columns, label_names=classes) if rows.test_path else None
    if rows.dev_fraction is not None:
        test_rows, dev_rows = split_rows(len(dev), rows.dev_fraction, rows.seed)
        dev, test = dev.subset(dev_rows), dev.subset(test_rows)
    targets = _fit_targets(targets, in_sample)
    labels = [dev.label_names[i] for i in dev.labels]  # names: fit matches them to the cascade's labels
    if rows.combine:
        targets["unlabelled"] = read_unlabelled(list(rows.unlabelled), columns)
    cascade.fit(dev.texts, labels, report_dir=Path(cascade_out) / "calibration", **targets)
    cascade.save_pretrained(cascade_out)
    log(format_report(CalibrationReport.from_dict(cascade.calibration_)))
    if test is not None:
        result = evaluate(cascade, test)
        log(
            f"held-out test ({result['rows']} rows): accuracy {result['accuracy']:.2%}, "
            f"escalated {result['escalated']:.1%}, {result['rows_per_s']:.0f} rows/s"
        )
    log(f"saved to {cascade_out}")


def _fit_targets(targets: dict[str, Any], in_sample: bool) -> dict[str, Any]:
    """``Cascade.fit``'s target options for `tango calibrate`: max_drop 0.5 when none is given,
    and no confidence level for ``in_sample``."""
    targets = dict(targets)
    if not any(
        targets.get(k) is not None for k in ("max_drop", "min_speedup", "max_escalation", "guarantee")
    ):
        targets["max_drop"] = 0.5
    if in_sample:
        targets["confidence_level"] = None
    return targets


def _calibrate_unlabelled(
    cascade: Any,
    cascade_out: str,
    files: list[str],
    dev_path: str | None,
    columns: dict[str, str | None],
    in_sample: bool,
    log: Log,
    targets: dict[str, Any],
) -> None:
    """The label-free gate: fitted on unlabelled rows, certified on disagreement with the last tier;
    with labelled rows beside them, their accuracy under the calibrated cascade is shown too."""
    from tango.gate_report import CalibrationReport, format_report

    texts = read_unlabelled(files, columns)
    targets = _fit_targets(targets, in_sample)
    cascade.fit(texts, None, report_dir=Path(cascade_out) / "calibration", **targets)
    cascade.save_pretrained(cascade_out)
    log(format_report(CalibrationReport.from_dict(cascade.calibration_)))
    if dev_path:
        labelled = load_labelled(dev_path, **columns, label_names=list(cascade.classes_))
        last = last_tier_accuracy(cascade, labelled)
        result = evaluate(cascade, labelled)
        log(
            f"labelled check ({result['rows']} rows of {dev_path}): the cascade {result['accuracy']:.2%}, "
            f"the last tier alone {last:.2%} ({100 * (result['accuracy'] - last):+.2f} points), "
            f"escalated {result['escalated']:.1%}"
        )
    log(f"saved to {cascade_out}")


def read_unlabelled(files: list[str], columns: dict[str, str | None]) -> list:
    """Every text of the unlabelled ``files``, in order (their text columns as ``columns`` says)."""
    from tango.data import load_texts

    return [
        t
        for path in files
        for t in load_texts(path, columns.get("text_column"), columns.get("text_pair_column"))
    ]


def calibrate_exits(
    model_dir: str,
    dev_path: str,
    columns: dict[str, str | None] | None = None,
    max_drop: float | None = None,
    device: str = "cpu",
    log: Log = print,
) -> None:
    """An early-exit model's calibration: one temperature per exit (and, with ``max_drop``, a
    threshold), saved in ``model_dir`` with the evidence in its ``calibration/``."""
    from tango.early_exit import EarlyExitClassifier
    from tango.early_exit.calibration import calibrate_early_exit, format_exit_report

    model = EarlyExitClassifier.from_pretrained(model_dir, device=device)
    dev = load_labelled(dev_path, **(columns or {}), label_names=list(model.classes_))
    report = calibrate_early_exit(model, dev, max_drop=max_drop, report_dir=Path(model_dir) / "calibration")
    model.save_pretrained(model_dir)
    log(format_exit_report(report, max_drop))
    log(f"saved to {model_dir}")
