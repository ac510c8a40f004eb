"""`tango calibrate`: a cascade's temperatures and thresholds from rows like the traffic."""

from __future__ import annotations

import click

from tango.cli.base import (
    build_cascade,
    cli,
    refuse_early_exit_model,
    refuse_unused,
    terminal,
    tier_names,
    user_errors,
)
from tango.cli.options import confidence_option, data_options, runtime_options, tier_options


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
@click.option(
    "--combine",
    is_flag=True,
    help="With --unlabelled: certify --max-drop on labelled rows (--dev, or the held-out rows) and "
    "the unlabelled ones together, a bound on the drop itself (prediction-powered inference) "
    "instead of on disagreement with the last tier.",
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
@user_errors
def calibrate(
    cascade_out: str,
    dev_path: str,
    test_path: str | None,
    dev_fraction: float | None,
    seed: int,
    unlabelled: tuple[str, ...],
    combine: bool,
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
) -> None:
    """Fit temperatures and choose the thresholds of the cascade in CASCADE_OUT from labelled rows.

    Writes the temperatures and threshold into CASCADE_OUT/cascade.json and the evidence
    (reliability diagrams, speed/accuracy curve, report.json) into CASCADE_OUT/calibration/.

    \b
    Examples:
      tango calibrate cascades/sst2 --tier1 distil --tier2 large --dev sst2/dev.tsv --dev-fraction 0.5
      tango calibrate cascades/sst2 --tiers linear-sst2,distil,large --max-drop 0.5   # held-out rows
      tango calibrate cascades/sst2 --dev dev.tsv --min-speedup 3
      tango calibrate cascades/sst2 --dev dev.tsv --guarantee 0.02 --delta 0.1
      tango calibrate cascades/sst2 --unlabelled traffic.jsonl --max-drop 0.5 --dev dev.tsv
      tango calibrate cascades/sst2 --unlabelled traffic.jsonl --combine --dev labelled.tsv

    An early-exit model's exits calibrate with `tango early-exit calibrate`.
    """
    from tango.jobs import CalibrationRows
    from tango.jobs import calibrate as calibrate_job

    refuse_early_exit_model(cascade_out, "calibrate", f"tango early-exit calibrate {cascade_out} --dev FILE")
    columns = {"text_column": text_column, "text_pair_column": pair_column, "label_column": label_column}
    if not dev_path and any(columns.values()):
        raise click.UsageError("--text-column/--pair-column/--label-column describe --dev; give --dev FILE")
    if test_path and dev_fraction is not None:
        raise click.UsageError("give --test or --dev-fraction, not both")
    if combine and not unlabelled:
        raise click.UsageError("--combine joins --unlabelled FILE to the labelled rows: give --unlabelled")
    if unlabelled and not combine:
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
    rows = CalibrationRows(dev_path, test_path, dev_fraction, seed, columns, tuple(unlabelled), combine)
    calibrate_job(cascade, cascade_out, rows, **terminal(), **targets)
