"""A benchmark's numbers from its timings: per-system accuracy and speed, speedups, the ceilings
any threshold could reach, the time breakdown of the chosen cascade, reliability data."""

from __future__ import annotations

from typing import Any

import numpy as np

from tango.bench.rows import _Gate
from tango.bench.systems import RULE_THRESHOLD, _extras, _System
from tango.bench.timing import Timing
from tango.cascade import CascadeResult
from tango.confidence import confidence, softmax


def _settings_record(settings) -> dict[str, Any]:
    """How the run was measured, as the results record it (``settings``: a BenchSettings)."""
    return {
        "repeats": settings.repeats,
        "warm_up_rounds": 1,
        "order": "round-robin, start rotated by one each round",
        "threads": settings.threads,
        "max_drop": settings.max_drop,
        "confidence_level": settings.confidence_level,
        "bound_on": settings.bound_on,
        "rule_threshold": RULE_THRESHOLD,
        "sweep_escalation": list(settings.sweep),
        "peers": settings.peers,
    }


def _system_results(systems: dict[str, _System], timings: dict[str, Timing], y: np.ndarray) -> list[dict]:
    """One record per system: its accuracy on the scored rows and its timed rounds."""
    n = len(y)
    results = []
    for system_name, system in systems.items():
        timing = timings[system_name]
        predicted, escalated = system.read(timing.result)
        results.append(
            {
                "system": system_name,
                "kind": system.kind,
                "settings": system.settings,
                "accuracy": float((np.asarray(predicted) == y).mean()),
                "escalated": escalated,
                "seconds": timing.seconds,
                "seconds_median": timing.median,
                "rows_per_s": n / timing.median,
                "rows_per_s_min": n / timing.max,
                "rows_per_s_max": n / timing.min,
                **_extras(timing.result),
            }
        )
    return results


def _speedups(results: list[dict[str, Any]], n_tiers: int) -> None:
    """Speedup over the last tier alone, measured and bound ``c_last / (c1 + f2 c2 + ...)``."""
    by = {r["system"]: r for r in results}
    costs = [by[f"tier{k + 1}"]["seconds_median"] for k in range(n_tiers)]
    last = by[f"tier{n_tiers}"]["rows_per_s"]
    for r in results:
        r["speedup"] = r["rows_per_s"] / last
        if r["kind"] in ("sweep", "chosen", "rule") and r["escalated"] is not None:
            cost = costs[0] + sum(f * c for f, c in zip(r["escalated"], costs[1:], strict=True))
            r["analytic_speedup"] = costs[-1] / cost


def escalation_curve(
    first: np.ndarray, last: np.ndarray, y: np.ndarray, temperature: float = 1.0
) -> np.ndarray:
    """Rows right, out of n, when the k least confident rows take the last tier's answer, k = 0..n.

    Confidence is tier 1's max-probability at ``temperature``: every threshold on it escalates
    some such k rows, so the curve is the most accuracy any threshold can buy for each share of
    rows sent on (ties broken by row order)."""
    from tango.deferral import rows_right

    return rows_right(first, last, y, -confidence(softmax(first, temperature), "maxprob"))


def _ceilings(
    results: list[dict[str, Any]],
    logits: list[np.ndarray],
    y: np.ndarray,
    temperature: float,
    max_drop: float,
) -> list[dict[str, Any]]:
    """The fastest two-tier cascade of these tiers that reaches each target accuracy on these rows.

    For each target: the fewest rows escalated (by :func:`escalation_curve`, so chosen with the
    scored rows' labels: a ceiling, not a system) and the speed the tiers' measured costs give
    it. No threshold on tier 1's confidence does better here, so a target whose ceiling misses
    it cannot be met by choosing thresholds; it needs faster or better tiers."""
    by = {r["system"]: r for r in results}
    n = len(y)
    right = escalation_curve(logits[0], logits[-1], y, temperature)
    cost_first, cost_last = by["tier1"]["seconds_median"], by["tier2"]["seconds_median"]
    targets = [("tier2", by["tier2"]["accuracy"] - max_drop / 100, f"within {max_drop} pt of tier 2")]
    if "tangobert-reference" in by:
        targets.append(
            ("tangobert-reference", by["tangobert-reference"]["accuracy"], "the TangoBERT reference's")
        )
    ceilings = []
    for versus, accuracy, target in targets:
        needed = int(np.ceil(accuracy * n - 1e-6))  # rows right; accuracies are counts over n
        reach = np.flatnonzero(right >= needed)
        record: dict[str, Any] = {"target": target, "accuracy": float(accuracy), "versus": versus}
        if len(reach):
            escalated = float(reach[0] / n)
            rows_per_s = n / (cost_first + escalated * cost_last)
            record.update(
                {
                    "escalated": escalated,
                    "reached_accuracy": float(right[reach[0]] / n),
                    "rows_per_s": rows_per_s,
                    "ratio": rows_per_s / by[versus]["rows_per_s"],
                }
            )
        ceilings.append(record)
    return ceilings


def _breakdown(timing: Timing, n_tiers: int) -> dict[str, Any]:
    """The chosen cascade's last timed run: tokenize, each tier's inference, and the rest (routing)."""
    results: list[CascadeResult] = timing.result
    wall = timing.seconds[-1]
    tokenize = sum(t.tokenize_s for r in results for t in r.stats.tiers)
    infer = [sum(r.stats.tiers[k].infer_s for r in results) for k in range(n_tiers)]
    return {
        "seconds": wall,
        "tokenize_s": tokenize,
        **{f"tier{k + 1}_s": s for k, s in enumerate(infer)},
        "route_s": max(wall - tokenize - sum(infer), 0.0),
        "tiers": [[vars(t) for t in r.stats.tiers] for r in results],
    }


def _reliability(
    z: np.ndarray, y: np.ndarray, gates: list[_Gate], parts: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tier 1 on the scored rows before and after temperature scaling (each part by its own gate)."""
    after = np.zeros_like(z, dtype=np.float64)
    for gate, part in zip(gates, parts, strict=True):
        after[part] = softmax(z[part], gate.temperatures[0])
    return softmax(z), after, y
