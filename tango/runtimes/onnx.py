"""ONNX Runtime: the one place a session is built, and the runtime that runs ``model.onnx``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tango.hardware import default_threads
from tango.modeldir import read_export_record


def make_session(model_path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """The one place an ONNX Runtime session is built: threads, providers, graph optimisation."""
    import onnxruntime as ort

    providers = providers or ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ValueError(
            f"ONNX Runtime providers {missing} are not available here; "
            f"available: {ort.get_available_providers()}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


class OnnxRuntime:
    """Runs ``model.onnx`` (fp32 or int8) with ONNX Runtime on the CPU."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        self.session = make_session(model_path, threads)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.description = f"onnxruntime ({_onnx_precision(model_path)})"

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: batch[name] for name in self.input_names}
        return self.session.run(None, feed)[0].astype(np.float32)


def _onnx_precision(model_path: Path) -> str:
    record = read_export_record(model_path.parent)
    if not record.get("int8"):
        return "fp32"
    if not record.get("activation_scales"):
        import warnings

        warnings.warn(
            f"{model_path.parent} is an int8 export with one activation scale per batch (its "
            "tango_export.json records no activation_scales): "
            "a row's answer depends on the rows batched with it. Re-export it with "
            "`tango export SOURCE --out DIR --int8` for per-token scales",
            stacklevel=3,
        )
        return "int8, per-batch scales"
    return "int8"
