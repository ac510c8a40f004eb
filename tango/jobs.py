"""The jobs behind the `tango` commands: each loads what a command names, runs it, and reports.

The CLI (:mod:`tango.cli`) parses options and refuses the combinations that make no sense; the
work itself is here, callable from Python: :func:`load_cascade` / :func:`load_early_exit`
(``tango run``'s model), :func:`score` (either engine), :func:`train` (a transformer tier, a
linear tier or a multi-exit model, with its calibration and dev rows), :func:`calibrate` /
:func:`calibrate_exits` and :func:`export`. Reports go through ``log`` (results) and ``warn``
(notes a person should see, on stderr in the CLI).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tango.data import LabelledData, load_labelled, split_rows

Log = Callable[[str], None]

EARLY_EXIT_LR = 5e-5  # peak learning rate of multi-exit training when none is given


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# --- tango run ----------------------------------------------------------------------------------
def load_cascade(
    cascade_dir: str | Path | None,
    names: list[str],
    thresholds: tuple[float, ...] = (),
    confidence: str | None = None,
    allow_external_tiers: bool = False,
    **tier_options: Any,
) -> Any:
    """A saved cascade (``cascade_dir``), else one of the tiers ``names``, cheapest first.

    ``thresholds``: none (the cascade's calibrated ones, else 0.9), one for every boundary, or one
    per boundary. ``tier_options`` (runtime, threads, batch_size) go to every tier. A saved
    cascade loads only the tiers inside its directory unless ``allow_external_tiers``.
    """
    from tango.cascade import Cascade
    from tango.tiers import load_tiers

    chosen: Any = list(thresholds) if thresholds else None
    if chosen and len(chosen) == 1:
        chosen = chosen[0]
    if cascade_dir:
        cascade = Cascade.from_pretrained(
            cascade_dir, thresholds=chosen, allow_external_tiers=allow_external_tiers, **tier_options
        )
        if confidence:
            cascade.confidence = confidence
        return cascade
    tiers = load_tiers(names, **tier_options)  # aliases all from the hub or all local
    return Cascade(tiers, thresholds=chosen, confidence=confidence or "maxprob")


def load_early_exit(
    name: str,
    threshold: float | None = None,
    policy: str | None = None,
    patience: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch_size: int = 32,
) -> Any:
    """The early-exit model ``name`` (a directory or registered name); bf16 where the hardware has it."""
    from tango.early_exit import EarlyExitClassifier
    from tango.hardware import set_torch_threads
    from tango.registry import resolve

    if threads:
        set_torch_threads(threads)
    return EarlyExitClassifier.from_pretrained(
        resolve(name),
        device=device,
        policy=policy,
        threshold=threshold,
        patience=patience,
        precision="auto",
        batch_size=batch_size,
    )


def score(
    model: Any,
    input_path: str,
    output_path: str,
    *,
    engine: str = "local",
    text_column: str | None = None,
    pair_column: str | None = None,
    id_column: str | None = None,
    input_format: str | None = None,
    on_error: str = "write",
    errors_path: str | None = None,
    probabilities: bool = False,
    chunk_size: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **ray_options: Any,
) -> Any:
    """Score ``input_path`` into ``output_path`` with the local engine
    (:func:`tango.engines.local.score_file`) or, ``engine="ray"``, on Ray Data
    (:func:`tango.engines.ray.score`; ``ray_options`` are its address, merge, output_format and
    each stage's ``tierN_actors``/``_cpus``/``_batch``)."""
    common = dict(text_column=text_column, text_pair_column=pair_column, id_column=id_column)
    common.update(format=input_format, on_error=on_error, probabilities=probabilities)
    common.update(resume=resume, overwrite=overwrite, progress=progress)
    if engine == "ray":
        from tango.engines.ray import Stage
        from tango.engines.ray import score as score_on_ray

        for stage in ("tier1", "tier2"):
            sizes = (ray_options.pop(f"{stage}_{part}") for part in ("actors", "cpus", "batch"))
            ray_options[stage] = Stage(*sizes)
        return score_on_ray(model, input_path, output_path, errors_dir=errors_path, **common, **ray_options)
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    from tango.engines.local import score_file

    common["text_column"] = text_column or "text"
    return score_file(
        model, input_path, output_path, errors_path=errors_path, chunk_size=chunk_size, **common
    )


# --- tango train --------------------------------------------------------------------------------
def train(
    model: str,
    train_path: str,
    out_dir: str,
    *,
    dev_path: str | None = None,
    dev_fraction: float | None = None,
    name: str | None = None,
    columns: dict[str, str | None] | None = None,
    label_names: list[str] | None = None,
    calibration_rows: int | None = None,
    calibration_seed: int = 0,
    group_column: str | None = None,
    early_exit: str | None = None,
    exits: str = "all",
    pooling: str = "mean",
    device: str = "cpu",
    bf16: bool | None = None,
    log: Log = print,
    warn: Log = _stderr,
    **options: Any,
) -> None:
    """Train ``model`` on ``train_path`` into ``out_dir`` and register it: ``linear`` fits a
    TF-IDF + logistic-regression tier, ``early_exit`` (a loss scheme) a multi-exit model, else a
    fine-tuned tier (``options``: :func:`tango.training.train_classifier`'s). Calibration rows are
    held out of the file first (``group_column``: whole groups, a column or ``containment``) and
    recorded in ``tango_train.json`` for `tango calibrate`."""
    from tango.splits import overlap_warning, record_training_file, text_overlap, training_rows

    rows = training_rows(
        train_path,
        dev_path=dev_path,
        dev_fraction=dev_fraction,
        seed=options.get("seed", 0),
        columns=columns,
        label_names=label_names,
        calibration_rows=calibration_rows,
        calibration_seed=calibration_seed,
        group_column=group_column,
    )
    if model == "linear":
        log(_train_linear(rows.train, rows.dev, out_dir, name))
    elif early_exit:
        log(
            _train_exits(
                model, rows.train, rows.dev, out_dir, name, early_exit, exits, pooling, device, bf16, options
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
    exits: str,
    pooling: str,
    device: str,
    bf16: bool | None,
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
        exits=exits,
        mode=mode,
        pooling=pooling,
        device=device,
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        lr=options["lr"] or EARLY_EXIT_LR,
        max_length=options["max_length"],
        seed=options["seed"],
        dev=labelled(dev) if dev is not None else None,
        label_names=data.label_names,
        max_steps=options["max_steps"],
        resume=options["resume"],
        precision="auto" if bf16 is None else ("bf16" if bf16 else "fp32"),
        show_progress_bar=True,
    )
    metrics = {"dev_accuracy": record["dev_accuracy"]}
    register(name or Path(out_dir).name, out_dir, role="early-exit", mode=mode, metrics=metrics)
    accuracy = ", ".join(f"layer {k} {v:.4f}" for k, v in (record["dev_accuracy"] or {}).items())
    return (
        f"saved {out_dir}: exits {record['exits']}, {record['steps']} steps "
        f"in {record['train_seconds']:.0f}s; dev accuracy: {accuracy or '-'}"
    )


# --- tango calibrate ----------------------------------------------------------------------------
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


def calibrate(
    cascade: Any,
    cascade_out: str,
    *,
    dev_path: str | None = None,
    test_path: str | None = None,
    dev_fraction: float | None = None,
    seed: int = 0,
    columns: dict[str, str | None] | None = None,
    in_sample: bool = False,
    unlabelled: list[str] | None = None,
    combine: bool = False,
    log: Log = print,
    warn: Log = _stderr,
    **targets: Any,
) -> None:
    """Fit ``cascade``'s temperatures and thresholds, save it in ``cascade_out`` (evidence in its
    ``calibration/``), and report; ``dev_fraction`` keeps the rest of the rows as a test set.
    ``targets``: :meth:`tango.cascade.Cascade.fit`'s (max_drop, min_speedup, ...; default max_drop 0.5).
    ``unlabelled`` files fit the gate without labels (on disagreement with the last tier); labelled
    rows given too (``dev_path``) are then scored by the calibrated cascade, as a check. With
    ``combine``, the unlabelled rows join the labelled ones in one bound on the drop itself."""
    from tango.tuning import CalibrationReport, format_report

    columns = columns or {}
    if unlabelled and not combine:
        return _calibrate_unlabelled(
            cascade, cascade_out, unlabelled, dev_path, columns, in_sample, log, targets
        )
    dev = calibration_rows(cascade, dev_path, columns, warn)
    classes = list(cascade.classes_)
    test = load_labelled(test_path, **columns, label_names=classes) if test_path else None
    if dev_fraction is not None:
        test_rows, dev_rows = split_rows(len(dev), dev_fraction, seed)
        dev, test = dev.subset(dev_rows), dev.subset(test_rows)
    targets = _fit_targets(targets, in_sample)
    labels = [dev.label_names[i] for i in dev.labels]  # names: fit matches them to the cascade's labels
    if combine:
        targets["unlabelled"] = read_unlabelled(unlabelled or [], columns)
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
    from tango.tuning import CalibrationReport, format_report

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


def last_tier_accuracy(cascade: Any, data: LabelledData) -> float:
    """The last tier's own accuracy on labelled rows (what the drop is measured against)."""
    from tango.tuning import align_labels

    last = cascade._validated()[0][-1]
    return float(
        (last.predict_proba(data.texts).argmax(axis=1) == align_labels(data, list(cascade.classes_))).mean()
    )


def early_exit_dir(name: str) -> Path | None:
    """``name`` as an early-exit model: a directory holding ``early_exit.json``, or the registered
    name of one (``tango train --early-exit --name``); None when it is neither (a cascade)."""
    from tango.registry import registered_dir

    path = Path(name).expanduser()
    if not path.exists():
        path = registered_dir(name) or path
    return path if (path / "early_exit.json").is_file() else None


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
    from tango.tuning import calibrate_early_exit, format_exit_report

    model = EarlyExitClassifier.from_pretrained(model_dir, device=device)
    dev = load_labelled(dev_path, **(columns or {}), label_names=list(model.classes_))
    report = calibrate_early_exit(model, dev, max_drop=max_drop, report_dir=Path(model_dir) / "calibration")
    model.save_pretrained(model_dir)
    log(format_exit_report(report, max_drop))
    log(f"saved to {model_dir}")


# --- tango export -------------------------------------------------------------------------------
def export(
    model: str,
    out_dir: str,
    *,
    export_format: str = "onnx",
    int8: bool = False,
    optimize: bool = False,
    calibration_data: str | None = None,
    probe: bool = True,
    first_token: bool = True,
    verbose: bool = False,
    log: Log = print,
    **check: Any,
) -> None:
    """Export ``model`` to ONNX (:func:`tango.export.export_tier`) or OpenVINO
    (:func:`tango.openvino.export_openvino`; ``first_token``: its last layer on the first token
    alone), report its self-check, then (``probe``) measure its runtimes so ``--runtime auto``
    picks the fastest. ``check``: check_data, check_rows, min_agreement, name."""
    from tango.modeldir import RUNTIMES_FILE

    (Path(out_dir) / RUNTIMES_FILE).unlink(missing_ok=True)  # it measured other files
    if export_format == "openvino":
        from tango.openvino import export_openvino

        result = export_openvino(
            model,
            out_dir,
            int8=int8,
            calibration_data=calibration_data,
            first_token=first_token,
            verbose=verbose,
            **check,
        )
    else:
        from tango.export import export_tier

        result = export_tier(model, out_dir, int8=int8, optimize=optimize, **check)
    accuracy = (
        ""
        if result.onnx_accuracy is None
        else f", accuracy {result.torch_accuracy:.4f} -> {result.onnx_accuracy:.4f}"
    )
    log(
        f"{out_dir}: {result.agreement:.2%} of {result.rows} predictions equal, max |logit "
        f"diff| {result.max_abs_diff:.2g}{accuracy} (saved in tango_export.json)"
    )
    if probe:
        from tango.probe import format_record, probe_tier

        log(format_record(probe_tier(out_dir, data=check.get("check_data"))))


def evaluate(cascade: Any, test: Any) -> dict[str, float]:
    """Accuracy, escalation and wall-clock of the cascade on held-out labelled rows."""
    import time

    from tango.tuning import align_labels, check_held_out

    check_held_out(getattr(cascade, "calibration_", None), test)
    labels = align_labels(test, list(cascade.classes_))
    start = time.perf_counter()
    result = cascade.predict_detailed(test.texts)
    seconds = time.perf_counter() - start
    return {
        "rows": len(test),
        "accuracy": float((result.probabilities.argmax(1) == labels).mean()),
        "escalated": result.stats.escalated[0] if result.stats.escalated else 0.0,
        "rows_per_s": len(test) / seconds if seconds else 0.0,
    }
