"""OpenVINO's runtime: an IR (fp32 or int8) on the CPU, many batches on several streams.

``openvino`` is an optional extra (``pip install tango[openvino]``), imported on first use. The
export to an IR lives in :mod:`tango.openvino`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tango.modeldir import IR_FILE, has_ir, read_export_record

__all__ = ["IR_FILE", "OpenVinoRuntime", "available", "bf16_supported", "core", "has_ir", "require"]

OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # tango precision -> INFERENCE_PRECISION_HINT
INSTALL_HINT = "pip install tango[openvino]"
CACHE_ENV = "TANGO_OPENVINO_CACHE"  # a directory for compiled models, or "off"


def compiled_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled models (its ``CACHE_DIR``), or None for no cache.

    Compiling an IR for the CPU is most of a tier's load, and every process that loads a tier
    pays it: the CLI, each Ray actor, a server's workers (docs/models.md). OpenVINO keys each
    blob by the model, some of its settings and its own version; the path adds the CPU model,
    so a home directory shared by different machines never hands one a blob compiled for
    another, and each compile's settings (:func:`_settings_key`). ``$TANGO_OPENVINO_CACHE`` names
    another directory, or ``off``; default ``$TANGO_HOME/openvino/<cpu>``.
    """
    from tango.hardware import cpu_name
    from tango.registry import tango_home

    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    cpu = hashlib.blake2b(cpu_name().encode(), digest_size=6).hexdigest()
    return Path(chosen).expanduser() / cpu if chosen else tango_home() / "openvino" / cpu


def require(module: str) -> Any:
    """Import ``openvino`` or ``nncf``; they are an optional extra, so say how to get them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ValueError(f"the OpenVINO runtime needs the {module!r} package: {INSTALL_HINT}") from error


def available() -> bool:
    """True where the ``openvino`` package imports."""
    try:
        require("openvino")
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One ``openvino.Core`` per process, made on first use: it holds the plugins, and reading
    them twice is slow (a cache, not state a constructor sets)."""
    return require("openvino").Core()


def _has_property(name: str) -> bool:
    """Whether the CPU plugin takes this property (pinning, for one, is not on every platform)."""
    return name in core().get_property("CPU", "SUPPORTED_PROPERTIES")


def bf16_supported() -> bool:
    """True where OpenVINO's CPU plugin can run bf16 (AMX or AVX-512 bf16)."""
    return available() and "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _settings_key(config: dict[str, Any]) -> str:
    """A folder name per compile settings. OpenVINO's cache key leaves some settings out (a
    blob compiled with snippets was imported for a compile without them), so each set of
    settings gets a cache folder of its own."""
    text = repr(sorted((str(name), str(value)) for name, value in config.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class OpenVinoRuntime:
    """Runs an OpenVINO IR (fp32 or int8) on the CPU: many batches on several streams, a few on one.

    :meth:`run_batches` runs a long sequence of batches on OpenVINO's throughput streams
    (``PERFORMANCE_HINT=THROUGHPUT``: two streams of one thread each on 2 cores), one batch in
    flight per stream; on 2 cores that scores SST-2 dev faster than one stream of two threads,
    with the same answers (benchmarks/results/openvino_configs.md). :meth:`run` runs one batch
    on all the threads (``LATENCY``, one stream), and :class:`tango.tiers.Tier` uses it when
    there are too few batches to keep every stream busy: a cascade's last tier gets a few
    batches of its hardest, longest rows, and on one thread each the longest batch would finish
    last while the other stream waits. ``threads`` are the threads in all, either way, so nothing
    is oversubscribed. ``streams=1`` never starts the throughput streams.
    ``precision`` is the inference precision hint: ``fp32`` (the default, since OpenVINO would
    otherwise pick bf16 on CPUs that have it and change outputs unasked) or ``bf16``.
    Threads are pinned to cores (OpenVINO's default) only when they are as many as the CPUs the
    process may use: a process running fewer threads shares the machine with others (a Ray node's
    actors, the tier actors of a split pool), and OpenVINO pins each one's threads from the first
    core, so two one-thread processes ran on one core at half speed each; unpinned, each ran
    at full speed (benchmarks/results/processes.md).
    Compiled models are cached (:func:`compiled_cache_dir`): a tier loads several times faster
    the second time, in any process, with the same answers.
    ``snippets=False`` turns off the CPU plugin's generated kernels for fused subgraphs
    (``SNIPPETS_MODE=DISABLE``), in transformers chiefly the fused attention: on this project's
    2-core machine, with batches of short sentences, the plain MatMul/Softmax kernels are faster
    (benchmarks/results/openvino_configs.md). Which is faster depends on the machine and the
    lengths, so ``tango probe`` measures both and ``Tier.from_pretrained`` follows its record.
    """

    def __init__(
        self,
        model_dir: Path,
        threads: int | None = None,
        precision: str = "fp32",
        streams: int | None = None,
        snippets: bool = True,
    ) -> None:
        from tango.hardware import default_threads, usable_cpus

        if precision not in OV_PRECISIONS:
            raise ValueError(
                f"the OpenVINO runtime takes precision fp32 or bf16, got {precision!r} "
                "(bf16-autocast is PyTorch's)"
            )
        if streams is not None and streams < 1:
            raise ValueError(f"streams must be >= 1 or None (OpenVINO's choice), got {streams}")
        self.model_file = str(model_dir / IR_FILE)
        threads = threads or default_threads()
        self.config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": OV_PRECISIONS[precision],
        }
        if threads < usable_cpus() and _has_property("ENABLE_CPU_PINNING"):
            self.config["ENABLE_CPU_PINNING"] = False
        if not snippets:
            self.config["SNIPPETS_MODE"] = "DISABLE"
        self.cache = compiled_cache_dir()
        self.snippets = snippets
        self.latency = self._compile("LATENCY", 1)
        self.compiled = self.latency if streams == 1 else self._compile("THROUGHPUT", streams)
        self.streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.input_names = tuple(port.any_name for port in self.compiled.inputs)
        weights = "int8" if read_export_record(model_dir).get("int8") else "fp32"
        self.precision = precision
        streams_used = f", {self.streams} streams" if self.streams > 1 else ""
        snippets_off = "" if snippets else ", snippets off"
        self.description = f"openvino ({weights} IR, {precision} inference{streams_used}{snippets_off})"
        self._requests = threading.local()  # run()'s request, one per thread

    def _compile(self, hint: str, streams: int | None) -> Any:
        config = {**self.config, "PERFORMANCE_HINT": hint}
        if streams is not None:
            config["NUM_STREAMS"] = streams
        if self.cache is not None:
            config["CACHE_DIR"] = str(self.cache / _settings_key(config))
        return core().compile_model(self.model_file, "CPU", config)

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """One batch's logits (N, K), on all the threads.

        Each calling thread keeps its own request (threads may share a runtime, as they may share
        a tier): a request made anew per call cost tier 2 about 5% on a cascade's few escalated
        batches."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.latency.create_infer_request()
        request.infer({name: batch[name] for name in self.input_names})
        return _logits(request)

    def run_batches(self, batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Each batch's logits, in order, with up to ``streams`` batches in flight.

        Batches are drawn from the iterable only as a request frees up, so a generator of padded
        batches never holds more than ``streams`` of them."""
        ov = require("openvino")
        queue = ov.AsyncInferQueue(self.compiled, self.streams)
        outputs: dict[int, np.ndarray] = {}

        def finished(request: Any, index: int) -> None:
            outputs[index] = _logits(request)

        queue.set_callback(finished)
        count = 0
        for count, batch in enumerate(batches, 1):
            queue.start_async({name: batch[name] for name in self.input_names}, count - 1)
        queue.wait_all()
        missing = [k for k in range(count) if k not in outputs]
        if missing:  # a request that failed never reached the callback's copy
            raise RuntimeError(f"OpenVINO returned no logits for batches {missing} of {count}")
        return [outputs[k] for k in range(count)]


def _logits(request: Any) -> np.ndarray:
    """A finished request's logits, copied: the request's buffer is reused by its next batch."""
    return np.array(request.get_output_tensor(0).data, dtype=np.float32)


# --- export ---------------------------------------------------------------------------------------
