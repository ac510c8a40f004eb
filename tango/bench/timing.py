"""Timing systems interleaved round-robin: the one timing helper of every tango benchmark."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REPEATS = 5  # timed rounds after the warm-up round

Log = Callable[[str], None]


# --- the one timing helper ----------------------------------------------------------------------
@dataclass
class Timing:
    """Seconds of each timed run of one system (warm-up excluded) and its last result."""

    seconds: list[float]
    result: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)


def interleave(
    systems: dict[str, Callable[[], Any]], repeats: int = REPEATS, log: Log | None = None
) -> dict[str, Timing]:
    """Time named systems round-robin: a warm-up round, then ``repeats`` timed rounds.

    Round ``r`` runs every system once, starting with system ``r mod len(systems)``, so no system
    always runs first (or always right after the same neighbour). Returns each system's timed
    seconds, in round order, and its last result.

    >>> timings = interleave({"a": lambda: 1, "b": lambda: 2}, repeats=3)
    >>> len(timings["a"].seconds), timings["b"].result
    (3, 2)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not systems:
        raise ValueError("give at least one system to time")
    names = list(systems)
    results = {name: systems[name]() for name in names}  # warm-up round, not timed
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        if log:
            log(f"round {r + 1}/{repeats} over {len(names)} systems")
        start_at = r % len(names)
        for name in names[start_at:] + names[:start_at]:
            start = time.perf_counter()
            results[name] = systems[name]()
            seconds[name].append(time.perf_counter() - start)
    return {name: Timing(seconds[name], results[name]) for name in names}
