"""`tango train`: fine-tune a tier (or fit a linear one) from a labelled file (multi-exit models:
`tango early-exit train`)."""

from __future__ import annotations

from typing import Any

import click

from tango.cli.base import cli, columns_of, refuse_early_exit_model, refuse_unused, terminal, user_errors
from tango.cli.options import fit_options, training_rows_options


@cli.command()
@click.argument("model")
@training_rows_options
@click.option("--layers", type=int, default=None, help="Keep only the first K encoder layers.")
@click.option(
    "--teacher",
    default=None,
    help="Fine-tuned tier to distil from (soft targets): a PyTorch tier, or an exported form "
    "(OpenVINO, ONNX) that scores on its own runtime.",
)
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
@fit_options
@user_errors
def train(model: str, labels: str | None, **options: Any) -> None:
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
      tango train minilm --teacher mpnet-base-sst2 --train sst2/train.tsv --unlabelled imdb/train.jsonl \\
          --split-sentences --out DIR

    A multi-exit model trains with `tango early-exit train`.
    """
    from tango.data import parse_label_names
    from tango.jobs import train as train_job

    refuse_early_exit_model(model, "train", f"tango early-exit train {model} ...")
    if model == "linear":
        refuse_unused(
            TRANSFORMER_ONLY,
            "a linear tier",
            "they configure transformer fine-tuning; drop them, or name an encoder (e.g. minilm) as MODEL",
        )
    columns = columns_of(options)
    train_job(model, columns=columns, label_names=parse_label_names(labels), **terminal(), **options)


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
    "checkpoint_every",
    "bf16",
    "resume",
)
