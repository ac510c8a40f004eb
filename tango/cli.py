"""The `tango` command line: a thin click shell over the Python API.

Each command parses its options, calls one API function and prints or writes the result.
Set ``TANGO_DEBUG=1`` to see full tracebacks instead of one-line errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's ValueError/TypeError/FileNotFoundError into one-line click errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
            if os.environ.get("TANGO_DEBUG"):
                raise
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            raise click.ClickException(str(message)) from error

    return wrapper


@click.group()
@click.version_option(package_name="tango")
def cli() -> None:
    """tango: cheap transformer text classification on CPUs (cascades and early exit)."""


# --- commands are added below, one small function each -----------------------------------------


def cascade_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that build a cascade: a saved one (--cascade) or tiers by name (--tier1/2/3)."""
    options = [
        click.option("--cascade", "cascade_dir", type=click.Path(exists=True, file_okay=False),
                     help="A saved (calibrated) cascade directory."),
        click.option("--tier1", help="Tier-1 model: a directory, an alias (configs/aliases.toml) or a hub id."),
        click.option("--tier2", help="Tier-2 model, same forms as --tier1."),
        click.option("--tier3", help="Optional third tier, same forms as --tier1."),
        click.option("--threshold", type=float, multiple=True,
                     help="Escalate rows whose confidence is below this (once per tier boundary). "
                          "Default: the cascade's calibrated threshold, else 0.9."),
        click.option("--confidence", type=click.Choice(["maxprob", "margin", "entropy"]),
                     default=None, help="How confidence is read off the probabilities (default maxprob)."),
        click.option("--runtime", type=click.Choice(["auto", "onnx", "torch"]), default="auto",
                     show_default=True, help="Runtime for every tier; auto = ONNX if model.onnx exists."),
        click.option("--threads", type=int, default=None, help="Intra-op threads (default: all cores)."),
        click.option("--batch-size", type=int, default=32, show_default=True, help="Rows per batch, per tier."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_cascade(cascade_dir: str | None, tier1: str | None, tier2: str | None, tier3: str | None,
                  threshold: tuple[float, ...], confidence: str | None, runtime: str,
                  threads: int | None, batch_size: int) -> Any:
    """The Cascade the options describe (shared by run, calibrate and bench)."""
    from tango.cascade import Cascade
    from tango.tiers import Tier

    tier_options = {"runtime": runtime, "threads": threads, "batch_size": batch_size}
    thresholds = list(threshold) if threshold else None
    if thresholds and len(thresholds) == 1:
        thresholds = thresholds[0]
    if cascade_dir:
        if tier1 or tier2 or tier3:
            raise click.UsageError("give either --cascade or --tier1/--tier2, not both")
        cascade = Cascade.from_pretrained(cascade_dir, thresholds=thresholds, **tier_options)
        if confidence:
            cascade.confidence = confidence
        return cascade
    names = [name for name in (tier1, tier2, tier3) if name]
    if not tier1 or not tier2:
        raise click.UsageError("give --cascade DIR, or at least --tier1 and --tier2")
    if thresholds is None:
        click.echo("note: no calibrated threshold; using 0.9. Run `tango calibrate` to choose one "
                   "from evidence.", err=True)
    tiers = [Tier.from_pretrained(name, **tier_options) for name in names]
    return Cascade(tiers, thresholds=thresholds, confidence=confidence or "maxprob")


@cli.command()
@cascade_options
@click.option("--input", "-i", "input_path", required=True,
              help="CSV, TSV or JSONL file to score, or - for stdin.")
@click.option("--output", "-o", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the scores: .jsonl or .csv.")
@click.option("--text-column", default=None,
              help="Column with the text (default: the first of text, sentence, review, content).")
@click.option("--pair-column", default=None, help="Second text column, for sentence-pair tasks.")
@click.option("--id-column", default=None, help="Column copied to the output as id (default: line number).")
@click.option("--format", "input_format", type=click.Choice(["csv", "tsv", "jsonl"]), default=None,
              help="Input format (default: from the extension; needed for stdin).")
@click.option("--on-error", type=click.Choice(["write", "skip", "fail"]), default="write", show_default=True,
              help="Bad rows: write them to the errors file, skip them (reported on stderr), or stop.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False), default=None,
              help="Errors file (default: OUTPUT.errors.jsonl).")
@click.option("--probabilities", is_flag=True, help="Also write every class probability.")
@click.option("--chunk-size", type=int, default=1024, show_default=True,
              help="Rows read, scored and committed at a time.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run where it stopped.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@user_errors
def run(cascade_dir: str | None, tier1: str | None, tier2: str | None, tier3: str | None,
        threshold: tuple[float, ...], confidence: str | None, runtime: str, threads: int | None,
        batch_size: int, input_path: str, output_path: str, text_column: str | None,
        pair_column: str | None, id_column: str | None, input_format: str | None, on_error: str,
        errors_path: str | None, probabilities: bool, chunk_size: int, resume: bool,
        overwrite: bool, quiet: bool) -> None:
    """Score a file with a cascade: every input row lands in OUTPUT or the errors file.

    \b
    Examples:
      tango run --tier1 distil --tier2 large -i reviews.csv -o scored.jsonl
      tango run --cascade ~/.cache/tango/cascades/sst2 -i reviews.csv -o scored.csv --probabilities
      cat reviews.jsonl | tango run --cascade DIR -i - --format jsonl -o scored.jsonl
    """
    from tango.scoring import guess_text_column, score_file

    cascade = build_cascade(cascade_dir, tier1, tier2, tier3, threshold, confidence, runtime,
                            threads, batch_size)
    summary = score_file(
        cascade, input_path, output_path,
        text_column=text_column or guess_text_column(input_path, input_format),
        text_pair_column=pair_column, id_column=id_column, format=input_format,
        errors_path=errors_path, on_error=on_error, chunk_size=chunk_size,
        probabilities=probabilities, resume=resume, overwrite=overwrite, progress=not quiet,
    )
    if not quiet:
        click.echo(summary.report(), err=True)
