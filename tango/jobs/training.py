"""`tango train`'s and `tango early-exit train`'s work: the rows (calibration rows held out, dev
rows), then a transformer tier, a linear tier or a multi-exit model trained on them and registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tango.data import LabelledData
from tango.jobs.models import Log, _stderr

EARLY_EXIT_LR = 5e-5  # peak learning rate of multi-exit training when none is given
ROW_OPTIONS = (
    "dev_path",
    "dev_fraction",
    "columns",
    "label_names",
    "calibration_rows",
    "calibration_seed",
    "group_column",
    "train_rows",
)
EXIT_OPTIONS = ("exits", "pooling", "device")
# the loop's settings of a multi-exit training, and their defaults (`tango early-exit train`'s)
FIT_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 32,
    "lr": None,
    "max_length": 64,
    "seed": 0,
    "max_steps": None,
    "checkpoint_every": 500,
    "bf16": None,
    "resume": True,
}


def train(
    model: str,
    train_path: str,
    out_dir: str,
    *,
    name: str | None = None,
    bf16: bool | None = None,
    log: Log = print,
    warn: Log = _stderr,
    **options: Any,
) -> None:
    """Train ``model`` on ``train_path`` into ``out_dir`` and register it: ``linear`` fits a
    TF-IDF + logistic-regression tier, else a fine-tuned tier (a multi-exit model:
    :func:`train_exits`). ``options``: the rows (``ROW_OPTIONS``: dev_path or dev_fraction,
    columns, label_names, calibration_rows, calibration_seed, group_column, train_rows), and the rest
    :func:`tango.training.train_classifier`'s. Calibration rows are held out of the file first
    (``group_column``: whole groups, a column or ``containment``) and recorded in
    ``tango_train.json`` for `tango calibrate`."""
    rows = _rows(train_path, options)
    if model == "linear":
        log(_train_linear(rows.train, rows.dev, out_dir, name))
    else:
        log(_train_tier(model, rows.train, rows.dev, out_dir, name, bf16, options))
    _record_rows(rows, train_path, out_dir, (log, warn), "`tango calibrate` uses them")


def train_exits(
    model: str,
    train_path: str,
    out_dir: str,
    *,
    mode: str = "joint",
    name: str | None = None,
    log: Log = print,
    warn: Log = _stderr,
    **options: Any,
) -> None:
    """Train a multi-exit model from the encoder ``model`` on ``train_path`` into ``out_dir``
    with the loss scheme ``mode`` (joint, weighted, sweet, two-stage;
    :func:`tango.early_exit.train_early_exit`) and register it. ``options``: the rows
    (``ROW_OPTIONS``, held out and recorded as :func:`train`'s), the exits (``EXIT_OPTIONS``:
    exits, pooling, device) and the loop's settings (epochs, batch_size, lr, max_length, seed,
    max_steps, bf16, resume)."""
    rows = _rows(train_path, options)
    log(_train_exits(model, rows.train, rows.dev, out_dir, name, mode, options))
    _record_rows(rows, train_path, out_dir, (log, warn), "kept out of training")


def _rows(train_path: str, options: dict[str, Any]) -> Any:
    """The rows of one training (:func:`tango.splits.training_rows`), from the ``ROW_OPTIONS``
    taken out of ``options``."""
    from tango.splits import training_rows

    row_options = {key: options.pop(key) for key in ROW_OPTIONS if key in options}
    return training_rows(train_path, seed=options.get("seed", 0), **row_options)


def _record_rows(rows: Any, train_path: str, out_dir: str, report: tuple[Log, Log], note: str) -> None:
    """Record in ``out_dir`` which rows of ``train_path`` the training held out, and report them
    (``report``: log, warn) with ``note``."""
    from tango.splits import overlap_warning, record_training_file, text_overlap

    log, warn = report
    record_training_file(out_dir, train_path, rows.held)
    if held := rows.held:
        grouped = f" ({held.group_count} whole groups by {held.groups})" if held.groups else ""
        count = held.held or held.rows
        log(f"held out {count} calibration rows of {held.of}{grouped} (seed {held.seed}); {note}")
        if warning := overlap_warning(text_overlap(rows.calibration, rows.train), train_path):
            warn(warning)


def _train_tier(
    model: str,
    data: LabelledData,
    dev: LabelledData | None,
    out_dir: str,
    name: str | None,
    bf16: bool | None,
    options: dict[str, Any],
) -> str:
    """A fine-tuned transformer tier (:func:`tango.training.train_classifier`); registers itself."""
    from tango.training import train_classifier

    result = train_classifier(
        model, data, out_dir, dev=dev, name=name, bf16="auto" if bf16 is None else bf16, **options
    )
    accuracy = "-" if result.dev_accuracy is None else f"{result.dev_accuracy:.4f}"
    return (
        f"saved {result.out_dir}: {result.steps} steps in {result.train_seconds:.0f}s "
        f"({result.examples_per_second:.0f} examples/s), dev accuracy {accuracy}"
    )


def _train_linear(data: LabelledData, dev: LabelledData | None, out_dir: str, name: str | None) -> str:
    """A TF-IDF + logistic-regression tier (:func:`tango.linear.train_linear`); registers itself."""
    from tango.linear import train_linear

    record = train_linear(data, out_dir, dev=dev, name=name).record
    accuracy = record["dev_accuracy"]
    return (
        f"saved {out_dir}: linear tier fitted on {record['train_rows']} rows in "
        f"{record['train_seconds']:.1f}s, dev accuracy {'-' if accuracy is None else f'{accuracy:.4f}'}"
    )


def _train_exits(
    model: str,
    data: LabelledData,
    dev: LabelledData | None,
    out_dir: str,
    name: str | None,
    mode: str,
    options: dict[str, Any],
) -> str:
    """A multi-exit model trained with the loss scheme ``mode``, registered like a tier."""
    from tango.early_exit import train_early_exit
    from tango.registry import register, resolve

    def labelled(part: LabelledData) -> tuple[list, list[str]]:
        return part.texts, [part.label_names[i] for i in part.labels]

    unknown = set(options) - set(FIT_DEFAULTS) - set(EXIT_OPTIONS)
    if unknown:
        raise TypeError(
            f"a multi-exit training takes no {sorted(unknown)}; it takes {[*FIT_DEFAULTS, *EXIT_OPTIONS]}"
        )
    settings = {**FIT_DEFAULTS, **options}
    bf16, lr = settings.pop("bf16"), settings.pop("lr")
    record = train_early_exit(
        resolve(model),
        *labelled(data),
        out_dir,
        mode=mode,
        lr=lr or EARLY_EXIT_LR,
        precision="auto" if bf16 is None else ("bf16" if bf16 else "fp32"),
        dev=labelled(dev) if dev is not None else None,
        label_names=data.label_names,
        show_progress_bar=True,
        **settings,
    )
    metrics = {"dev_accuracy": record["dev_accuracy"]}
    register(name or Path(out_dir).name, out_dir, role="early-exit", mode=mode, metrics=metrics)
    accuracy = ", ".join(f"layer {k} {v:.4f}" for k, v in (record["dev_accuracy"] or {}).items())
    return (
        f"saved {out_dir}: exits {record['exits']}, {record['steps']} steps "
        f"in {record['train_seconds']:.0f}s; dev accuracy: {accuracy or '-'}"
    )
