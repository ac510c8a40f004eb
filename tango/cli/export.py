"""`tango export` and `tango probe`: a tier to ONNX or OpenVINO, self-checked, and its runtimes measured."""

from __future__ import annotations

import os

import click

from tango.cli.base import (
    cli,
    user_errors,
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
