"""`tango early-exit train|calibrate|run`: in-model early exit's own commands (docs/early-exit.md).

A multi-exit model is trained, its exits calibrated and files scored with it here; the cascade
commands (`tango train`, `tango calibrate`, `tango run`) refuse one and name the command here. Each
is a thin shell over :mod:`tango.jobs` (``train_exits``, ``calibrate_exits``, ``load_early_exit``
with ``score``) and takes the option blocks of :mod:`tango.cli.options` the cascade verbs take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tango.cli.base import (
    check_local_run,
    cli,
    columns_of,
    score_and_report,
    terminal,
    user_errors,
)
from tango.cli.options import (
    batch_option,
    data_options,
    fit_options,
    scoring_options,
    threads_option,
    training_rows_options,
)

MODES = ("joint", "weighted", "sweet", "two-stage")  # tango.early_exit.training's loss schemes

device_option = click.option(
    "--device", default="cpu", show_default=True, help="Where the model runs: cpu, cuda or cuda:N."
)


@cli.group("early-exit")
def early_exit() -> None:
    """In-model early exit: train a multi-exit model, calibrate its exits, score files with it.

    \b
    Examples:
      tango early-exit train minilm --mode sweet --exits 1,2,4,6 --train sst2/train.tsv --out DIR
      tango early-exit calibrate DIR --dev held-out.tsv --max-drop 0.5
      tango early-exit run DIR -i reviews.csv -o scored.csv
    """


@early_exit.command("train")
@click.argument("model")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="joint",
    show_default=True,
    help="Loss scheme: joint (every exit's loss summed), weighted (deep exits weigh more, PABEE), "
    "sweet (each exit trains only its own segment), two-stage (backbone and last exit first, "
    "then the other exits; DeeBERT).",
)
@click.option(
    "--exits",
    default="all",
    show_default=True,
    help="Exit layers, 1-based, comma-separated (e.g. 1,2,4,6), or 'all'; the last layer always is one.",
)
@click.option(
    "--pooling",
    type=click.Choice(["mean", "cls"]),
    default="mean",
    show_default=True,
    help="What each exit head reads: the mean of the tokens, or the CLS token.",
)
@device_option
@training_rows_options
@fit_options
@user_errors
def train(model: str, labels: str | None, **options: Any) -> None:
    """Train a multi-exit model from MODEL, an encoder (a directory or registered name, e.g.
    minilm), on a labelled file; it is registered by name like a tier (see docs/early-exit.md).

    \b
    Examples:
      tango early-exit train minilm --train sst2/train.tsv --dev sst2/dev.tsv --labels sst2 --out DIR
      tango early-exit train minilm --mode sweet --exits 1,2,4,6 --train sst2/train.tsv --out DIR
      tango early-exit train mpnet --mode two-stage --exits 2,4,6,8,10,12 --pooling cls \\
          --train sst2/train.tsv --max-steps 600 --device cuda --out DIR
    """
    from tango.data import parse_label_names
    from tango.jobs import train_exits

    if model == "linear":
        raise click.UsageError(
            "a linear tier has no layers to exit from: name an encoder (e.g. minilm) as MODEL"
        )
    columns = columns_of(options)
    train_exits(model, columns=columns, label_names=parse_label_names(labels), **terminal(), **options)


@early_exit.command("calibrate")
@click.argument("model")
@click.option(
    "--dev",
    "dev_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled file (CSV, TSV or JSONL) the model was not trained on: one temperature per exit "
    "is fitted on its rows.",
)
@data_options
@click.option(
    "--max-drop",
    type=float,
    default=None,
    help="Also certify the threshold: the fewest layers run whose drop against the last exit is "
    "bounded by this many points at 90% confidence (paired bound, as a cascade's gate; none passes: "
    "every row runs to the last exit). Default: keep the model's threshold.",
)
@device_option
@user_errors
def calibrate(model: str, dev_path: str, max_drop: float | None, device: str, **options: Any) -> None:
    """Fit one temperature per exit of the early-exit model MODEL (a directory or registered
    name) on labelled rows, and with --max-drop its threshold; saved into MODEL's early_exit.json,
    the evidence (reliability diagrams, the exit curve, report.json) into MODEL/calibration/.

    \b
    Examples:
      tango early-exit calibrate runs/sst2-ee --dev held-out.tsv
      tango early-exit calibrate minilm-l6-sst2-ee-sweet --dev held-out.tsv --max-drop 1
    """
    from tango.jobs import calibrate_exits, early_exit_dir

    directory = early_exit_dir(model)
    if directory is None:
        raise click.UsageError(
            f"{model} is not an early-exit model (no early_exit.json in it, nor the registered name of "
            f"one); a cascade calibrates with `tango calibrate {model}`"
        )
    calibrate_exits(str(directory), dev_path, columns_of(options), max_drop, device, log=click.echo)


@early_exit.command("run")
@click.argument("model")
@scoring_options
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="The policy's knob: maxprob exits at this confidence, entropy at this normalised entropy "
    "or less (default: the model's calibrated one).",
)
@click.option(
    "--policy",
    type=click.Choice(["maxprob", "entropy", "patience"]),
    default=None,
    help="Exit rule (default: the model's saved one, maxprob).",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=None,
    help="With --policy patience: agreeing exits in a row needed to stop.",
)
@device_option
@threads_option
@batch_option
@user_errors
def run(model: str, input_path: str, output_path: str, quiet: bool, **options: Any) -> None:
    """Score a file with the early-exit model MODEL (a directory or registered name): every input
    row lands in OUTPUT, with the layer it left at, or in the errors file. Runs on this machine.

    \b
    Examples:
      tango early-exit run minilm-l6-sst2-ee-joint -i reviews.csv -o scored.csv
      tango early-exit run runs/sst2-ee --policy patience --patience 2 -i dev.tsv -o scored.jsonl
      tango early-exit run minilm-l6-sst2-ee-sweet --device cuda -i reviews.csv -o scored.csv --probabilities
    """
    from tango.cascadedir import MANIFEST
    from tango.jobs import load_early_exit

    if (Path(model).expanduser() / MANIFEST).is_file():
        raise click.UsageError(
            f"{model} is a cascade ({MANIFEST}), not an early-exit model: score with "
            f"`tango run --cascade {model} -i INPUT -o OUTPUT`"
        )
    check_local_run(input_path, output_path, options)
    knobs = [
        options.pop(key) for key in ("threshold", "policy", "patience", "device", "threads", "batch_size")
    ]
    score_and_report(load_early_exit(model, *knobs), input_path, output_path, quiet, options)
