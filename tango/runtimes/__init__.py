"""Runtimes: what runs a tier's model on padded batches, and the one choice among them.

- :mod:`tango.runtimes.onnx` (ONNX Runtime), :mod:`tango.runtimes.torch` (PyTorch),
  :mod:`tango.runtimes.openvino` (OpenVINO, an optional extra);
- :mod:`tango.runtimes.choice`: ``auto`` resolved from the directory's probe record.

:func:`make_runtime` is the one place a tier's runtime is built. Runtimes import only leaves
(:mod:`tango.modeldir`, :mod:`tango.hardware`), never tiers, export or probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tango.modeldir import IR_FILE, ONNX_FILE
from tango.runtimes.choice import choose, recorded_options
from tango.runtimes.onnx import OnnxRuntime, make_session
from tango.runtimes.torch import TorchRuntime

__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "OnnxRuntime",
    "Runtime",
    "TorchRuntime",
    "make_runtime",
    "make_session",
    "runtime_settings",
]

RUNTIMES = ("auto", "onnx", "openvino", "torch")
# bf16 = weights cast once at load; bf16-autocast = fp32 weights cast per batch (PyTorch only)
PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast")


class Runtime(Protocol):
    """What a tier needs from a runtime: padded int64 batches in, float logits (B, K) out."""

    input_names: tuple[str, ...]

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


def make_runtime(
    path: Path,
    runtime: str,
    precision: str,
    threads: int | None,
    device: str,
    options: dict[str, Any] | None = None,
) -> Runtime:
    """The runtime for a tier directory, ``auto`` resolved by :func:`tango.runtimes.choice.choose`.

    ``options`` are the runtime's own (OpenVINO's ``snippets``); None = what the probe record
    measured fastest at the chosen runtime and precision, else the runtime's defaults."""
    from tango.hardware import check_threads

    check_threads(threads)
    if device == "cpu":
        runtime, precision = choose(path, runtime, precision)
    elif runtime == "auto":  # a CPU probe says nothing about other devices: today's rule
        runtime = "onnx" if (path / ONNX_FILE).exists() else "torch"
    if options and runtime != "openvino":
        raise ValueError(f"runtime options {sorted(options)} are OpenVINO's; runtime {runtime} takes none")
    if runtime == "onnx":
        return OnnxRuntime(path / ONNX_FILE, threads)
    if runtime == "openvino":
        from tango.runtimes.openvino import OpenVinoRuntime

        if not (path / IR_FILE).exists():
            raise ValueError(
                f"{path} has no {IR_FILE}; make one with `tango export {path} --out DIR "
                "--format openvino`, or use runtime='torch'"
            )
        precision = "fp32" if precision == "auto" else precision
        if options is None:
            options = recorded_options(path, runtime, precision) if device == "cpu" else {}
        return OpenVinoRuntime(path, threads, precision, **options)
    return TorchRuntime(path, threads, precision, device)


def runtime_settings(runtime: Any) -> tuple[str, str, dict[str, Any]]:
    """(runtime, precision, options) that rebuild ``runtime`` exactly with :func:`make_runtime`.

    What a tier runs on travels as these three (to Ray actors, into run manifests): never guessed
    from a class name, so a bf16-autocast PyTorch tier stays autocast and an OpenVINO tier keeps
    its precision and snippets setting.
    """
    from tango.runtimes.openvino import OpenVinoRuntime

    if isinstance(runtime, TorchRuntime):
        return "torch", runtime.precision, {}
    if isinstance(runtime, OnnxRuntime):
        return "onnx", "auto", {}  # the file decides the precision
    if isinstance(runtime, OpenVinoRuntime):
        return "openvino", runtime.precision, {"snippets": runtime.snippets}
    return "auto", "auto", {}  # a tier with a runtime of its own (linear): loading decides
