"""`tango export`'s work: a tier to ONNX or OpenVINO, self-checked, then its runtimes probed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tango.jobs.models import Log


def export(
    model: str,
    out_dir: str,
    *,
    export_format: str = "onnx",
    int8: bool = False,
    optimize: bool = False,
    calibration_data: str | None = None,
    probe: bool = True,
    first_token: bool = True,
    verbose: bool = False,
    log: Log = print,
    **check: Any,
) -> None:
    """Export ``model`` to ONNX (:func:`tango.export.export_tier`) or OpenVINO
    (:func:`tango.openvino.export_openvino`; ``first_token``: its last layer on the first token
    alone), report its self-check, then (``probe``) measure its runtimes so ``--runtime auto``
    picks the fastest. ``check``: check_data, check_rows, min_agreement, name."""
    from tango.modeldir import RUNTIMES_FILE

    (Path(out_dir) / RUNTIMES_FILE).unlink(missing_ok=True)  # it measured other files
    if export_format == "openvino":
        from tango.openvino import export_openvino

        result = export_openvino(
            model,
            out_dir,
            int8=int8,
            calibration_data=calibration_data,
            first_token=first_token,
            verbose=verbose,
            **check,
        )
    else:
        from tango.export import export_tier

        result = export_tier(model, out_dir, int8=int8, optimize=optimize, **check)
    accuracy = (
        ""
        if result.onnx_accuracy is None
        else f", accuracy {result.torch_accuracy:.4f} -> {result.onnx_accuracy:.4f}"
    )
    log(
        f"{out_dir}: {result.agreement:.2%} of {result.rows} predictions equal, max |logit "
        f"diff| {result.max_abs_diff:.2g}{accuracy} (saved in tango_export.json)"
    )
    if probe:
        from tango.probe import format_record, probe_tier

        log(format_record(probe_tier(out_dir, data=check.get("check_data"))))
