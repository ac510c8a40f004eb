"""`tango run`: score a file with a cascade, on this machine or on Ray (early-exit models:
`tango early-exit run`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from tango.cli.base import (
    build_cascade,
    check_local_run,
    cli,
    refuse_early_exit_model,
    refuse_unused,
    score_and_report,
    tier_names,
    user_errors,
)
from tango.cli.options import cascade_options, scoring_options, stacked


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
            "--fuse-tiers",
            is_flag=True,
            help="Ray: one pool of actors that each run the whole cascade on their batches (sized by "
            "--tier1-*), as the local engine does, instead of a pool per tier. Faster on small nodes; "
            "a pool per tier sizes tier 2 on its own.",
        ),
        click.option(
            "--output-format",
            type=click.Choice(["jsonl", "csv", "parquet"]),
            default="jsonl",
            show_default=True,
            help="Ray: format of the output shards.",
        ),
    ]
    return stacked(*options, *_stage_options())(func)


def _stage_options() -> list[Callable[..., Any]]:
    """Each Ray pool's size, CPUs per actor, batch and fewest actors (--tier1-*, --tier2-*)."""
    options = []
    for stage, name in (("tier1", "tier-1"), ("tier2", "tier-2")):
        options += [
            click.option(
                f"--{stage}-actors",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help=f"Ray: the most {name} actors (the pool autoscales from --{stage}-min-actors).",
            ),
            click.option(
                f"--{stage}-min-actors",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help=f"Ray: {name} actors started at once and kept (on a small cluster Ray Data may "
                f"never grow a pool: set it to --{stage}-actors there).",
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
                default=1024,
                show_default=True,
                help=f"Ray: rows per batch handed to a {name} actor (tier 2 sees all, scores the unsure).",
            ),
        ]
    return options


@cli.command()
@cascade_options
@ray_options
@scoring_options
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
      tango run --engine ray --address auto --cascade DIR -i 'data/*.csv' -o scored/ --merge scored.jsonl

    An early-exit model scores files with `tango early-exit run`.
    """
    refuse_early_exit_model(
        cascade_dir, "run --cascade", f"tango early-exit run {cascade_dir} -i INPUT -o OUTPUT"
    )
    _refuse_other_engines_options(options["engine"], options["fuse_tiers"])
    if options["engine"] == "local":
        check_local_run(input_path, output_path, options)
    elif input_path == "-":
        raise click.UsageError("--engine ray reads files (paths, globs, URIs), not stdin")
    names = tier_names(tiers, tier1, tier2, tier3)
    if not cascade_dir and not threshold:
        click.echo(
            "note: no calibrated threshold; using 0.9. Run `tango calibrate` to choose one from evidence.",
            err=True,
        )
    tier_settings = (runtime, threads, batch_size, allow_external_tiers)
    model = build_cascade(cascade_dir, names, threshold, confidence, *tier_settings)
    score_and_report(model, input_path, output_path, quiet, options)


def _refuse_other_engines_options(engine: str, fuse_tiers: bool) -> None:
    """Options of the other engine (or of the other Ray pool shape) are refused, never ignored."""
    from tango.jobs.scoring import RAY_ONLY, STAGE_OPTIONS

    if engine == "ray":
        refuse_unused(
            ("chunk_size", "threads"),
            "--engine ray",
            "Ray Data batches by --tier1-batch/--tier2-batch, threads follow --tier1-cpus/--tier2-cpus",
        )
        if fuse_tiers:
            refuse_unused(
                STAGE_OPTIONS["tier2"], "--fuse-tiers", "one pool sized by --tier1-* runs every tier"
            )
    else:
        refuse_unused(RAY_ONLY, "the local engine", "they size and place a Ray run (--engine ray)")
