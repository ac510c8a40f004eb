"""The option blocks the commands share, each declared once: a labelled file's columns, tiers by
name, the runtime, a cascade, the rows and settings of a training, the files of a scoring run.

A block is one decorator (:func:`stacked`); a command lists the blocks it takes, and --help
shows their options in the order given here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


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

# Tiers by name: --tier1/--tier2/--tier3 or --tiers a,b,c (read by base.tier_names).
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

threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: all cores)."
)

# Rows scored at a time (a cascade: per tier; an early-exit model: its batch).
batch_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Rows per batch (in a cascade, per tier).",
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
    threads_option,
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
    batch_option,
)

# What a training reads and writes: the files, the rows held out for calibration, the labels.
training_rows_options = stacked(
    click.option(
        "--train",
        "train_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Labelled training file (CSV, TSV or JSON lines).",
    ),
    click.option(
        "--dev",
        "dev_path",
        type=click.Path(exists=True, dir_okay=False),
        help="Labelled dev file, scored after training.",
    ),
    click.option(
        "--dev-fraction",
        type=float,
        default=None,
        help="Without --dev: hold out this seeded fraction of --train as the dev set.",
    ),
    click.option(
        "--out",
        "out_dir",
        required=True,
        type=click.Path(file_okay=False),
        help="Directory for the trained model (also holds the resumable checkpoint).",
    ),
    click.option("--name", default=None, help="Registry name (default: the --out directory's name)."),
    data_options,
    click.option(
        "--labels",
        default=None,
        help="Label names in id order, comma-separated, or a known data set's (sst2, "
        "ag_news, snli, mrpc, qnli, imdb).",
    ),
    click.option(
        "--calibration-rows",
        type=click.IntRange(min=0),
        default=None,
        help="Rows of --train kept out of training for calibration (seeded by --calibration-seed, "
        "recorded). Default: min(3000, a fifth of the file); none under 2,000 rows.",
    ),
    click.option(
        "--calibration-seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed of the held-out rows; keep it equal across the tiers of one cascade.",
    ),
    click.option(
        "--group-column",
        default=None,
        help="Hold out whole groups: rows sharing this column's value, or `containment` (a phrase "
        "goes with the longest row it lies inside, e.g. SST-2's sentences). Recorded.",
    ),
    click.option(
        "--train-rows",
        type=click.IntRange(min=1),
        default=None,
        help="Train on a sample of this many of the rows left once the calibration and dev rows "
        "are out (seeded by --seed, recorded): a budget for long rows on a CPU.",
    ),
)

# How a transformer trains: the loop's settings (tango.training.fit).
fit_options = stacked(
    click.option("--epochs", type=int, default=1, show_default=True, help="Passes over --train."),
    click.option("--batch-size", type=int, default=32, show_default=True, help="Rows per step."),
    click.option(
        "--lr",
        type=float,
        default=None,
        help="Peak learning rate (default: a tier 5e-5 under 50M parameters, else 3e-5; a "
        "multi-exit model 5e-5).",
    ),
    click.option("--max-length", type=int, default=64, show_default=True, help="Tokens per row."),
    click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed for batch order, dropout, the new heads and the dev split.",
    ),
    click.option("--max-steps", type=int, default=None, help="Stop after this many steps."),
    click.option(
        "--checkpoint-every",
        type=click.IntRange(min=1),
        default=500,
        show_default=True,
        help="Steps between resumable checkpoints: fewer for long steps (e.g. 512-token rows on a "
        "CPU), so a stopped run loses little.",
    ),
    click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: where the CPU has it)."),
    click.option(
        "--resume/--no-resume",
        default=True,
        show_default=True,
        help="Continue from OUT/checkpoint if a run with the same settings was cut off.",
    ),
)

# The files of a scoring run on this machine (tango.jobs.score) and how it treats its rows.
scoring_options = stacked(
    click.option(
        "--input", "-i", "input_path", required=True, help="CSV, TSV or JSONL file to score, or - for stdin."
    ),
    click.option(
        "--output",
        "-o",
        "output_path",
        required=True,
        type=click.Path(),
        help="Where to write the scores: .jsonl or .csv (tango run --engine ray: a directory of shards).",
    ),
    click.option(
        "--text-column",
        default=None,
        help="Column with the text (default: guessed as tango train guesses it: the pairs "
        "sentence1/sentence2, premise/hypothesis, question/sentence, then sentence, text, review, content).",
    ),
    click.option("--pair-column", default=None, help="Second text column, for sentence-pair tasks."),
    click.option(
        "--id-column",
        default=None,
        help="Column copied to the output as id (default: the input's id column, else the line number).",
    ),
    click.option(
        "--format",
        "input_format",
        type=click.Choice(["csv", "tsv", "jsonl"]),
        default=None,
        help="Input format (default: from the extension; needed for stdin).",
    ),
    click.option(
        "--on-error",
        type=click.Choice(["write", "skip", "fail"]),
        default="write",
        show_default=True,
        help="Bad rows: write them to the errors file, skip them (reported on stderr), or stop.",
    ),
    click.option(
        "--errors",
        "errors_path",
        type=click.Path(),
        default=None,
        help="Where bad rows go (default: OUTPUT.errors.jsonl; tango run --engine ray, whose -o is a "
        "directory of shards: a directory of JSON-lines files, default OUTPUT.errors).",
    ),
    click.option("--probabilities", is_flag=True, help="Also write every class probability."),
    click.option(
        "--chunk-size",
        type=click.IntRange(min=1),
        default=None,
        help="Rows read, scored and committed at a time (default 1024; with --resume, the "
        "interrupted run's).",
    ),
    click.option(
        "--resume",
        is_flag=True,
        help="Finish an interrupted run where it stopped (refused if the input, models or options differ).",
    ),
    click.option(
        "--overwrite", is_flag=True, help="Replace an existing output (never the input, never while in use)."
    ),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary."),
)
