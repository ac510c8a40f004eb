"""`tango train`: fine-tune a tier (or fit a linear one, or a multi-exit model) from a labelled file."""

from __future__ import annotations

from typing import Any

import click

from tango.cli.base import (
    cli,
    data_options,
    refuse_unused,
    terminal,
    user_errors,
)


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
