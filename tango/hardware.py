"""The machine tango runs on: threads to use, PyTorch's thread pool, bf16 support."""

from __future__ import annotations

import os


def check_threads(threads: object, where: str = "threads") -> int | None:
    """``threads`` as given (None = the default), refused unless a whole number >= 1."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{where} must be a whole number >= 1 (or None for all cores), got {threads!r}")
    return threads


def _env_threads() -> int | None:
    value = os.environ.get("TANGO_THREADS")
    if not value:
        return None
    try:
        return check_threads(int(value), "$TANGO_THREADS")
    except ValueError:
        raise ValueError(f"$TANGO_THREADS must be a whole number >= 1, got {value!r}") from None


def default_threads() -> int:
    """``$TANGO_THREADS``, else the cores this process may use."""
    if (threads := _env_threads()) is not None:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_torch_threads(threads: int | None = None) -> None:
    """The one place tango sets PyTorch's intra-op thread count, which is process-wide.

    PyTorch has a single intra-op pool per process, so this cannot be a per-tier setting. It runs
    only when asked for: ``threads``, else ``$TANGO_THREADS``; with neither, PyTorch's own default
    (its cores) is left alone. ``TorchRuntime`` calls it at load with the tier's ``threads``; an
    ONNX Runtime session keeps its threads to itself (:func:`make_session`) and needs no call.
    """
    import torch

    threads = check_threads(threads)
    if threads is None:
        threads = _env_threads()
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def bf16_supported() -> bool:
    """True where PyTorch has fast bf16 matrix units on this CPU (AMX or AVX-512 bf16)."""
    import torch

    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(amx or avx512_bf16)
