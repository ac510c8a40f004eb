"""The machine tango runs on: threads to use, PyTorch's thread pool, bf16 support, and the
record of the machine and library versions that every benchmark and probe result carries."""

from __future__ import annotations

import numbers
import os
import platform
import time
from pathlib import Path
from typing import Any

# the widest vector unit first (this project's machines: AVX2 only, AVX-512, AVX-512 with AMX),
# then the int8/bf16 extensions
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def check_threads(threads: object, where: str = "threads") -> int | None:
    """``threads`` as given (None = the default), refused unless a whole number >= 1."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"{where} must be a whole number >= 1 (or None for all cores), got {threads!r}")
    return int(threads)


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
    return usable_cpus()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
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


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.exists() else []


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """Every feature flag the CPU reports (``/proc/cpuinfo``; empty where there is none)."""
    return set(next((line.split(":", 1)[1].split() for line in _cpuinfo() if line.startswith("flags")), []))


def isa_flags() -> list[str]:
    """The vector and matrix extensions that decide tango's kernels (AVX2, AVX-512 VNNI/bf16, AMX)."""
    flags = cpu_flags()
    return [flag for flag in ISA_FLAGS if flag in flags]


def machine(threads: int) -> dict[str, Any]:
    """What ran a measurement: CPU model, cores, ISA flags, threads, library versions, date.

    The one record of the machine: benchmarks, studies and reports all write this.
    """
    import numpy as np
    import onnxruntime
    import torch
    import transformers

    from tango._version import __version__

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "isa": isa_flags(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "tango": __version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
