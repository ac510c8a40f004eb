"""`tango run`: score a file with a cascade or an early-exit model, on this machine or on Ray."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from tango.cli.base import (
    ModelOptions,
    build_model,
    cascade_options,
    cli,
    refuse_unused,
    stacked,
    tier_names,
    user_errors,
)


def ray_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`tango run --engine ray` options (tango.engines.ray); they reach `run` as **ray_args."""
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
    type=click.Path(),
    default=None,
    help="Where bad rows go (default: OUTPUT.errors.jsonl; with --engine ray, whose -o is a directory "
    "of shards, a directory of JSON-lines files, default OUTPUT.errors).",
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
    model_options = ModelOptions(
        threshold, confidence, runtime, threads, batch_size, policy, patience, device, allow_external_tiers
    )
    model = build_model(early_exit, cascade_dir, names, model_options)
    summary = score(model, input_path, output_path, progress=not quiet, **options)
    if not quiet:
        click.echo(summary.report(), err=True)


RAY_ONLY = ("address", "merge", "output_format", "read_cpus")
RAY_ONLY += tuple(f"{stage}_{part}" for stage in ("tier1", "tier2") for part in ("actors", "cpus", "batch"))


def _refuse_other_engines_options(engine: str) -> None:
    """Options of the other engine are refused, never ignored."""
    if engine == "ray":
        refuse_unused(
            ("chunk_size", "threads", "early_exit"),
            "--engine ray",
            "Ray Data batches by --tier1-batch/--tier2-batch, threads follow --tier1-cpus/--tier2-cpus, "
            "and early-exit models run locally",
        )
    else:
        refuse_unused(RAY_ONLY, "the local engine", "they size and place a Ray run (--engine ray)")
        errors = click.get_current_context().params.get("errors_path")
        if errors and os.path.isdir(errors):  # --errors is a directory only with --engine ray
            raise click.BadParameter(
                f"{errors!r} is a directory: the local engine writes one file", param_hint="--errors"
            )
