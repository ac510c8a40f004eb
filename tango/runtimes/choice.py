"""The runtime a tier loads with: ``auto`` resolved from the directory's probe record.

:func:`choose` is what ``Tier.from_pretrained`` asks for ``runtime="auto"`` / ``precision="auto"``:
the fastest recorded runtime whose agreement passed (>= 0.995), else the directory's default (ONNX
if ``model.onnx``, OpenVINO if an IR, else PyTorch); :func:`recorded_options` gives the runtime's
options that were measured fastest at that precision (OpenVINO's ``snippets``). A record counts
only on the machine it was measured on (CPU model and bf16 support) and for the model files it
measured (their sizes): speeds do not travel, and a re-export invalidates it. ``tango probe``
(:mod:`tango.probe`) writes the record.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from pathlib import Path
from typing import Any

from tango.modeldir import ONNX_FILE, RUNTIMES_FILE, has_ir, model_files


def default_runtime(path: Path) -> str:
    """The rule without a record: ONNX if ``model.onnx``, OpenVINO if an IR, else PyTorch."""
    if (path / ONNX_FILE).exists():
        return "onnx"
    return "openvino" if has_ir(path) else "torch"


# --- the choice -----------------------------------------------------------------------------------


def choose(path: Path, runtime: str, precision: str) -> tuple[str, str]:
    """Replace ``auto`` in (runtime, precision) by the record's choice or the default rule.

    An explicit precision narrows ``runtime="auto"`` to entries measured at that precision
    (ONNX entries always qualify: there the file decides the precision, as before).
    """
    from tango.hardware import bf16_supported

    record = read_record(path)
    passed = passed_runtimes(record) if record else []
    if runtime == "auto":
        fits = [m for m in passed if precision == "auto" or m["precision"] in (precision, "auto")]
        if fits:
            best = max(fits, key=lambda m: m["rows_per_s"])
            return best["runtime"], best["precision"] if precision == "auto" else precision
        runtime = default_runtime(path)
    if precision != "auto":
        return runtime, precision
    if runtime == "onnx":
        return runtime, "auto"
    mine = [m for m in passed if m["runtime"] == runtime]
    if mine:
        return runtime, max(mine, key=lambda m: m["rows_per_s"])["precision"]
    if runtime == "torch" and not (record and any(m["runtime"] == "torch" for m in record["runtimes"])):
        return runtime, "bf16-autocast" if bf16_supported() else "fp32"
    return runtime, "fp32"


def recorded_options(path: Path, runtime: str, precision: str) -> dict[str, Any]:
    """The runtime options of the fastest passing record at (runtime, precision); none without one."""
    record = read_record(path)
    passed = passed_runtimes(record) if record else []
    mine = [m for m in passed if (m["runtime"], m["precision"]) == (runtime, precision)]
    return dict(max(mine, key=lambda m: m["rows_per_s"]).get("options") or {}) if mine else {}


def passed_runtimes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's entries that kept predictions and can still run here."""
    from tango.runtimes.openvino import available

    usable = {"torch", "onnx"} | ({"openvino"} if available() else set())
    return [m for m in record["runtimes"] if m["passed"] and m["rows_per_s"] and m["runtime"] in usable]


def read_record(path: Path) -> dict[str, Any] | None:
    """The directory's probe record, if it was made on this machine for these model files."""
    file = path / RUNTIMES_FILE
    if not file.exists():
        return None
    record = json.loads(file.read_text())
    if record.get("machine", {}).get("cpu") != machine()["cpu"] or record.get("files") != model_files(path):
        return None
    return record


@functools.lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    """What makes speeds comparable: the CPU model, its cores, bf16 support."""
    from tango.hardware import bf16_supported, cpu_name

    return {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "bf16": bf16_supported(),
        "platform": platform.platform(),
    }
