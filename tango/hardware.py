"""The machine tango runs on: threads to use, PyTorch's thread pool, bf16 support."""

from __future__ import annotations

import os


def default_threads() -> int:
    """``$TANGO_THREADS``, else the cores this process may use."""
    if os.environ.get("TANGO_THREADS"):
        return int(os.environ["TANGO_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_torch_threads(threads: int | None = None) -> None:
    """The one place tango sets PyTorch's intra-op thread count, which is process-wide.

    PyTorch has a single intra-op pool per process, so this cannot be a per-tier setting. It runs
    only when asked for: ``threads``, else ``$TANGO_THREADS``; with neither, PyTorch's own default
    (its cores) is left alone. ``TorchRuntime`` calls it at load with the tier's ``threads``; an
    ONNX Runtime session keeps its threads to itself (:func:`make_session`) and needs no call.
    """
    import torch

    if threads is None and os.environ.get("TANGO_THREADS"):
        threads = int(os.environ["TANGO_THREADS"])
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def bf16_supported() -> bool:
    """True where PyTorch has fast bf16 matrix units on this CPU (AMX or AVX-512 bf16)."""
    import torch

    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(amx or avx512_bf16)
