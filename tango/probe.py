"""Choosing a tier's runtime once: measure what the tier can run on, record it, follow the record.

:func:`probe_tier` runs every runtime and precision a tier directory supports (PyTorch fp32, bf16
cast once, bf16 autocast; ONNX Runtime on ``model.onnx``; OpenVINO fp32 and bf16 on an IR, each
with and without the CPU plugin's snippets) over the same rows: rows per second, tokenization
included, after a warm-up, and the share of predictions equal to PyTorch fp32's. It writes
``tango_runtimes.json`` into the directory.

:func:`choose` is what ``Tier.from_pretrained`` asks for ``runtime="auto"`` / ``precision="auto"``:
the fastest recorded runtime whose agreement passed (>= 0.995), else the directory's default (ONNX
if ``model.onnx``, OpenVINO if an IR, else PyTorch); :func:`recorded_options` gives the runtime's
options that were measured fastest at that precision (OpenVINO's ``snippets``). A record counts
only on the machine it was measured on (CPU model and bf16 support) and for the model files it
measured (their sizes): speeds do not travel, and a re-export invalidates it.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango.export import CHECK_SENTENCES, MIN_AGREEMENT
from tango.modeldir import (
    RUNTIMES_FILE,
    has_ir,
    has_torch_weights,
    model_files,
    read_export_record,
    training_file,
)
from tango.runtimes.choice import (
    choose,
    default_runtime,
    machine,
    passed_runtimes,
    read_record,
    recorded_options,
)

__all__ = [
    "RECORD_FILE",
    "choose",
    "default_runtime",
    "format_record",
    "passed_runtimes",
    "probe_tier",
    "read_record",
    "recorded_options",
]

RECORD_FILE = RUNTIMES_FILE
PROBE_ROWS = 1000
WARMUP_ROWS = 64


@dataclass
class Measure:
    """One runtime/precision of a tier on the probe's rows."""

    runtime: str
    precision: str  # what to pass to Tier.from_pretrained; "auto" for ONNX (the file decides)
    description: str
    rows_per_s: float | None
    agreement: float | None  # share of predictions equal to PyTorch fp32's
    passed: bool
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the runtime's own options (OpenVINO's)


# --- what a directory can run ---------------------------------------------------------------------


def candidates(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(runtime, precision, runtime options) this directory can run on this machine.

    OpenVINO is measured with and without snippets (its generated fused kernels): which is faster
    depends on the machine and the rows' lengths (``tango.openvino.OpenVinoRuntime``)."""
    from tango.hardware import bf16_supported
    from tango.modeldir import ONNX_FILE
    from tango.runtimes import openvino

    found: list[tuple[str, str]] = []
    if has_torch_weights(path):
        found.append(("torch", "fp32"))
        if bf16_supported():
            found += [("torch", "bf16"), ("torch", "bf16-autocast")]
    if (path / ONNX_FILE).exists():
        found.append(("onnx", "auto"))
    runs = [(runtime, precision, {}) for runtime, precision in found]
    if has_ir(path):
        precisions = ["fp32", "bf16"] if openvino.bf16_supported() else ["fp32"]
        runs += [("openvino", p, options) for p in precisions for options in ({}, {"snippets": False})]
    return runs


# --- the measurement ------------------------------------------------------------------------------


def probe_tier(
    tier: str | Path,
    data: str | Path | None = None,
    rows: int = PROBE_ROWS,
    threads: int | None = None,
    batch_size: int = 32,
    min_agreement: float = MIN_AGREEMENT,
) -> dict[str, Any]:
    """Measure every runtime/precision of ``tier`` on ``rows`` rows and write ``tango_runtimes.json``.

    Rows come from ``data`` (a labelled file), else the tier's training file, else the built-in
    sentences repeated (the record says which). Returns the record; its ``chosen`` entry is what
    ``runtime="auto"`` will now load.
    """
    from tango.hardware import default_threads
    from tango.registry import resolve
    from tango.tiers import Tier

    path = resolve(tier)
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    threads = threads or default_threads()
    reference_dir = _reference_dir(path)
    reference = Tier.from_pretrained(reference_dir, runtime="torch", precision="fp32", threads=threads)
    texts, description = probe_texts(path, data, rows, reference.labels)
    expected = reference.logits(texts).argmax(1)
    del reference
    measures = [
        _measure(path, runtime, precision, options, texts, expected, threads, batch_size, min_agreement)
        for runtime, precision, options in candidates(path)
    ]
    record = {
        "tier": str(path),
        "rows": len(texts),
        "data": description,
        "threads": threads,
        "batch_size": batch_size,
        "min_agreement": min_agreement,
        "reference": f"pytorch fp32 of {reference_dir}",
        "machine": machine(),
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": model_files(path),
        "runtimes": [asdict(m) for m in measures],
    }
    tmp = path / f".{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path / RECORD_FILE)
    runtime, precision = choose(path, "auto", "auto")
    options = recorded_options(path, runtime, precision)
    record["chosen"] = {"runtime": runtime, "precision": precision, "options": options}
    (path / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record


def _measure(
    path: Path,
    runtime: str,
    precision: str,
    options: dict[str, Any],
    texts: list,
    expected: np.ndarray,
    threads: int,
    batch_size: int,
    min_agreement: float,
) -> Measure:
    """Load, warm up, then time tokenization + inference over all rows (one pass)."""
    from tango.tiers import Tier

    try:
        tier = Tier.from_pretrained(
            path,
            runtime=runtime,
            precision=precision,
            threads=threads,
            batch_size=batch_size,
            runtime_options=options,  # exactly these, not an earlier record's
        )
        tier.logits(texts[:WARMUP_ROWS])  # first-call costs: allocations, kernel choice
        start = time.perf_counter()
        predicted = tier.logits(texts).argmax(1)
        seconds = time.perf_counter() - start
    except Exception as error:  # a runtime that cannot run here is recorded, never chosen
        return Measure(
            runtime, precision, runtime, None, None, False, f"{type(error).__name__}: {error}", options
        )
    agreement = float((predicted == expected).mean())
    return Measure(
        runtime,
        precision,
        getattr(tier.runtime, "description", runtime),
        round(len(texts) / seconds, 1),
        agreement,
        agreement >= min_agreement,
        options=options,
    )


def _reference_dir(path: Path) -> Path:
    """Where PyTorch fp32 weights for this tier are: the directory, or its export's source."""
    if has_torch_weights(path):
        return path
    source = read_export_record(path).get("source")
    if source and has_torch_weights(Path(source)):
        return Path(source)
    raise ValueError(
        f"{path} has no PyTorch weights and its tango_export.json names no source that has them, "
        "so agreement with PyTorch fp32 cannot be measured; probe the directory `tango export` "
        "wrote, on the machine that has its source"
    )


def probe_texts(path: Path, data: str | Path | None, rows: int, labels: list[str]) -> tuple[list, str]:
    """``rows`` rows of ``data``, else of the tier's training file, else built-in sentences."""
    from tango.data import load_labelled

    file = data or training_file(path)
    if file is not None:
        texts: list = list(load_labelled(file, label_names=labels).texts[:rows])
        short = f"; the file has only {len(texts)}" if len(texts) < rows else ""
        return texts, f"{file} (first {len(texts)} rows{short})"
    texts = (CHECK_SENTENCES * (rows // len(CHECK_SENTENCES) + 1))[:rows]
    return texts, (
        f"built-in sentences ({len(CHECK_SENTENCES)}, repeated to {rows} rows): no data file "
        "was given and the tier's training file was not found"
    )


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch
    import transformers

    import tango.openvino as openvino

    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if openvino.available():
        versions["openvino"] = openvino.require("openvino").get_version()
    try:
        from importlib.metadata import version

        versions["tango"] = version("tango")
    except Exception:  # running from a checkout without an install
        pass
    return versions


def format_record(record: dict[str, Any]) -> str:
    """The probe's table: one line per runtime, the chosen one marked."""
    lines = [f"runtimes on {record['rows']} rows of {record['data']}; threads: {record['threads']}"]
    chosen = record["chosen"]
    pick = (chosen["runtime"], chosen["precision"], chosen.get("options") or {})
    for m in record["runtimes"]:
        mark = "*" if (m["runtime"], m["precision"], m.get("options") or {}) == pick else " "
        if m["error"]:
            lines.append(f" {mark} {m['runtime']:<9} {m['precision']:<14} failed: {m['error']}")
            continue
        verdict = "" if m["passed"] else f" (below {record['min_agreement']:.1%}: never chosen)"
        lines.append(
            f" {mark} {m['runtime']:<9} {m['precision']:<14} {m['rows_per_s']:>9.1f} rows/s  "
            f"agreement {m['agreement']:.2%}{verdict}  {m['description']}"
        )
    options = "".join(f", {k}={v}" for k, v in (chosen.get("options") or {}).items())
    lines.append(
        f"--runtime auto now loads {chosen['runtime']} ({chosen['precision']}{options}); "
        "saved in tango_runtimes.json"
    )
    return "\n".join(lines)
