"""`tango train`'s work: the rows (calibration rows held out, dev rows), then a transformer tier, a
linear tier or a multi-exit model trained on them and registered."""

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
)
EXIT_OPTIONS = ("exits", "pooling", "device")


def train(
    model: str,
    train_path: str,
    out_dir: str,
    *,
    name: str | None = None,
    early_exit: str | None = None,
    bf16: bool | None = None,
    log: Log = print,
    warn: Log = _stderr,
    **options: Any,
) -> None:
    """Train ``model`` on ``train_path`` into ``out_dir`` and register it: ``linear`` fits a
    TF-IDF + logistic-regression tier, ``early_exit`` (a loss scheme) a multi-exit model, else a
    fine-tuned tier. ``options``: the rows (``ROW_OPTIONS``: dev_path or dev_fraction, columns,
    label_names, calibration_rows, calibration_seed, group_column), a multi-exit model's
    ``EXIT_OPTIONS`` (exits, pooling, device), and the rest :func:`tango.training.train_classifier`'s.
    Calibration rows are held out of the file first (``group_column``: whole groups, a column or
    ``containment``) and recorded in ``tango_train.json`` for `tango calibrate`."""
    from tango.splits import overlap_warning, record_training_file, text_overlap, training_rows

    row_options = {key: options.pop(key) for key in ROW_OPTIONS if key in options}
    exit_options = {key: options.pop(key) for key in EXIT_OPTIONS if key in options}
    rows = training_rows(train_path, seed=options.get("seed", 0), **row_options)
    if model == "linear":
        log(_train_linear(rows.train, rows.dev, out_dir, name))
    elif early_exit:
        log(
            _train_exits(
                model,
                rows.train,
                rows.dev,
                out_dir,
                name,
                early_exit,
                {**exit_options, "bf16": bf16, **options},
            )
        )
    else:
        log(_train_tier(model, rows.train, rows.dev, out_dir, name, bf16, options))
    record_training_file(out_dir, train_path, rows.held)
    if held := rows.held:
        grouped = f" ({held.group_count} whole groups by {held.groups})" if held.groups else ""
        log(
            f"held out {held.held or held.rows} calibration rows of {held.of}{grouped} (seed {held.seed}); "
            "`tango calibrate` uses them"
        )
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

    record = train_early_exit(
        resolve(model),
        *labelled(data),
        out_dir,
        exits=options.get("exits", "all"),
        mode=mode,
        pooling=options.get("pooling", "mean"),
        device=options.get("device", "cpu"),
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        lr=options["lr"] or EARLY_EXIT_LR,
        max_length=options["max_length"],
        seed=options["seed"],
        dev=labelled(dev) if dev is not None else None,
        label_names=data.label_names,
        max_steps=options["max_steps"],
        resume=options["resume"],
        precision="auto" if options["bf16"] is None else ("bf16" if options["bf16"] else "fp32"),
        show_progress_bar=True,
    )
    metrics = {"dev_accuracy": record["dev_accuracy"]}
    register(name or Path(out_dir).name, out_dir, role="early-exit", mode=mode, metrics=metrics)
    accuracy = ", ".join(f"layer {k} {v:.4f}" for k, v in (record["dev_accuracy"] or {}).items())
    return (
        f"saved {out_dir}: exits {record['exits']}, {record['steps']} steps "
        f"in {record['train_seconds']:.0f}s; dev accuracy: {accuracy or '-'}"
    )
