"""`tango bench`: your tiers and their cascade, measured on your labelled rows."""

from __future__ import annotations

from pathlib import Path

import click

from tango.cli.base import cli, command_line, tier_names, user_errors
from tango.cli.options import data_options


def read_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--config FILE:NAME``: the ``[bench.NAME]`` table of a TOML file becomes the command's
    defaults (options given on the command line still win). Paths in it are relative to the
    file's ``data_root`` (itself relative to the file), tiers are registered names or paths."""
    if value is None:
        return None
    from tango.bench.config import bench_table

    params = {p.name for p in ctx.command.params} - {"config"}
    try:
        table = bench_table(value, params)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="--config") from None
    ctx.default_map = {**(ctx.default_map or {}), **table}
    return value


@cli.command()
@click.option(
    "--config",
    default=None,
    is_eager=True,
    expose_value=True,
    callback=read_config,
    help="FILE:NAME - take the options from the [bench.NAME] table of a TOML config "
    "(configs/sst2.toml); options given here override it.",
)
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
    default=None,
    help="Labelled rows that choose the thresholds (same columns as --data), or 'held-out': the "
    "rows the tiers' training held out (tango train --calibration-rows). Default: 2-fold "
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
    config: str | None,
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
      tango bench --tiers distil,large --data sst2/dev.tsv --calibration-data held-out
      tango bench --config configs/sst2.toml:new-text --repeats 3
    """

    from tango.bench import HELD_OUT, BenchSettings
    from tango.bench import bench as run_bench
    from tango.data import parse_label_names

    if calibration_path not in (None, HELD_OUT) and not Path(calibration_path).is_file():
        raise click.BadParameter(
            f"no file {calibration_path!r} (or give 'held-out')", param_hint="--calibration-data"
        )
    settings = BenchSettings(
        labels=parse_label_names(labels),
        text_column=text_column,
        pair_column=pair_column,
        label_column=label_column,
        calibration_fraction=calibration_fraction,
        max_drop=max_drop,
        confidence_level=confidence_level,
        bound_on=bound_on,
        repeats=repeats,
        threads=threads,
        limit=limit,
        seed=seed,
        peers=peers,
    )
    run_bench(
        tier_names(tiers),
        data_path,
        settings,
        calibration_data=calibration_path,
        out=out_dir,
        command=command_line(),
        log=lambda message: click.echo(message, err=True),
    )
    click.echo((Path(out_dir) / "results.md").read_text(), nl=False)
