"""One benchmark run (:func:`bench`): load the tiers, choose the gate on rows it is not judged
on, time every system interleaved, and record the result.

The systems: each tier alone; a sweep of cascades at a few escalation levels (descriptive); the
chosen cascade, its thresholds chosen for ``max_drop`` by :func:`tango.tuning.fit_gate` on rows
it is not judged on (a calibration file, the tiers' held-out rows, a held-out fraction, or 2-fold
cross-fitting); the TangoBERT rule on the same tiers (temperature 1, max-probability 0.85: method,
not runtime); and, with ``peers``, the TangoBERT reference and the last tier through Hugging Face
``pipeline``. Beside the timings, :func:`tango.deferral.deferral_study` ranks tier 1's confidence
signals (and a learned rule fitted on the calibration rows) by how well they find the rows that
disagree with the last tier: AUROC and the deferral curve, on the scored rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tango.bench.results import (
    _breakdown,
    _ceilings,
    _reliability,
    _settings_record,
    _speedups,
    _system_results,
)
from tango.bench.rows import _data_record, _gate_record, _gates, _load, _plan, _score
from tango.bench.systems import _runtime, _systems
from tango.bench.timing import REPEATS, Log, Timing, interleave
from tango.cascade import Cascade
from tango.data import LabelledData
from tango.deferral import deferral_study, words
from tango.hardware import machine, set_torch_threads
from tango.tiers import Tier
from tango.tuning import align_labels

THREADS = 2  # intra-op threads of every system; recorded with the results
MAX_DROP = 0.5  # accuracy points below the last tier alone the chosen thresholds may lose
CONFIDENCE_LEVEL = 0.9  # max_drop holds on new rows with this probability
BOUND_ON = ("population", "rows")  # the drop certified: the mean (default), or on the rows judged
SWEEP_ESCALATION = (0.1, 0.2, 0.3, 0.5)  # target fraction escalated at each boundary
HELD_OUT = "held-out"  # calibration_data: the rows the tiers' training held out


@dataclass(frozen=True)
class BenchSettings:
    """How a benchmark reads its rows, chooses its gate and times its systems: one field per
    `tango bench` option (a ``[bench.NAME]`` table of a config file names the same keys).

    ``labels`` name the file's label ids in order (default: the tiers'); the ``*_column`` fields
    pick the file's columns; ``limit`` keeps its first N rows; a seeded ``calibration_fraction``
    of them chooses the thresholds (else a calibration file, else 2-fold cross-fitting).
    ``bound_on="population"`` (as ``tango calibrate``) certifies ``max_drop`` on average over new
    rows; ``"rows"`` on the rows each gate is judged on, their own sampling noise included
    (stricter). ``sweep`` lists the escalation levels of the descriptive sweep (empty: none).
    """

    labels: list[str] | None = None
    text_column: str | None = None
    pair_column: str | None = None
    label_column: str | None = None
    calibration_fraction: float | None = None
    max_drop: float = MAX_DROP
    confidence_level: float | None = CONFIDENCE_LEVEL
    bound_on: str = "population"
    repeats: int = REPEATS
    threads: int = THREADS
    limit: int | None = None
    seed: int = 0
    peers: bool = True
    sweep: Sequence[float] = SWEEP_ESCALATION

    def __post_init__(self) -> None:
        if self.bound_on not in BOUND_ON:
            raise ValueError(f"bound_on must be one of {BOUND_ON}, got {self.bound_on!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    @property
    def columns(self) -> dict[str, str | None]:
        return {"text_column": self.text_column, "text_pair_column": self.pair_column,
                "label_column": self.label_column}  # fmt: skip


def bench(
    tiers: Sequence[Tier | str],
    data: str | Path | LabelledData,
    settings: BenchSettings | None = None,
    *,
    calibration_data: str | Path | LabelledData | None = None,
    extra_systems: dict[str, tuple[Callable[[list], Any], dict[str, Any]]] | None = None,
    out: str | Path | None = None,
    name: str = "results",
    command: str | None = None,
    log: Log | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Measure the tiers, their cascades and the peers on the same rows; write ``out`` if given.

    ``tiers`` are cheapest first (names or loaded tiers; names load with ``settings.threads``).
    ``data`` is a labelled CSV/TSV/JSONL file or rows in memory. The chosen thresholds come from
    ``calibration_data`` (a file, rows, or ``"held-out"``: the rows the tiers' training held out,
    whole sentences where it grouped them), else from ``settings.calibration_fraction``, else
    from 2-fold cross-fitting on the scored rows. ``options`` are a shorthand for
    :class:`BenchSettings` fields (``bench(tiers, data, repeats=1)``). ``extra_systems`` maps a
    name to ``(run(texts) -> labels or object with .labels, settings)`` timed in the same
    rounds. Returns the result that :mod:`tango.bench.report` writes.
    """
    from tango.bench.report import write_results

    settings = replace(settings or BenchSettings(), **options)
    say = log or (lambda message: None)
    if calibration_data is not None and settings.calibration_fraction is not None:
        raise ValueError("give calibration_data (--calibration-data) or calibration_fraction, not both")
    loaded, classes = _load_tiers(tiers, settings.threads, say)
    if isinstance(calibration_data, str) and calibration_data == HELD_OUT:
        calibration_data = _held_out(loaded, classes, say)
    rows = _bench_rows(data, settings, classes)
    plan = _plan(len(rows), calibration_data is not None, settings.calibration_fraction, settings.seed)
    scored = rows.subset(plan.scored)
    y = align_labels(scored, classes)
    say(f"{len(scored)} rows scored from {rows.source or 'memory'} ({plan.mode} thresholds); scoring pass")
    logits, costs, padding = _score(loaded, scored.texts)  # padding: each tier alone, every scored row
    target = {k: getattr(settings, k) for k in ("max_drop", "confidence_level", "bound_on", "seed")}
    gates, parts, calibration_logits = _gates(
        plan, loaded, logits, y, costs, calibration_data, rows, settings.columns, classes, **target
    )
    systems = _systems(
        loaded, scored.texts, logits, gates, parts, settings.peers, settings.sweep, extra_systems or {}
    )
    for k, efficiency in enumerate(padding):
        systems[f"tier{k + 1}"].settings["padding_efficiency"] = efficiency
    say(f"timing {len(systems)} systems: warm-up + {settings.repeats} rounds, round-robin")
    timings = interleave({n: s.run for n, s in systems.items()}, settings.repeats, say)
    result = _record(settings, command, loaded, classes, gates, systems, timings, y, logits)
    result["data"] = _data_record(rows, plan, calibration_data, settings.limit, settings.seed)
    result["deferral"] = deferral_study(
        calibration_logits, (logits[0], logits[-1], y, words(scored.texts)), gates[0].temperatures[0]
    )
    if out is not None:
        paths = write_results(result, out, name=name, reliability=_reliability(logits[0], y, gates, parts))
        say("wrote " + ", ".join(str(p) for p in paths))
    return result


def _bench_rows(data: str | Path | LabelledData, settings: BenchSettings, classes: list[str]) -> LabelledData:
    """The labelled rows the benchmark reads (a file, or rows in memory), cut to ``settings.limit``."""
    rows = _load(data, settings.columns, settings.labels or classes)
    if settings.limit is not None:
        rows = rows.subset(np.arange(min(settings.limit, len(rows))))
    return rows


def _load_tiers(tiers: Sequence[Tier | str], threads: int, say: Log) -> tuple[list[Tier], list[str]]:
    """The tiers, loaded with the benchmark's threads, and the classes the cascade answers with."""
    set_torch_threads(threads)  # the benchmark's threads, for every PyTorch system it times
    say(f"loading {len(tiers)} tiers with {threads} threads")
    loaded = [t if isinstance(t, Tier) else Tier.from_pretrained(t, threads=threads) for t in tiers]
    if len(loaded) < 2:
        raise ValueError(f"a cascade needs two or more tiers, got {len(loaded)}")
    return loaded, list(Cascade([*loaded])._validated()[0][0].labels)


def _held_out(tiers: list[Tier], classes: list[str], say: Log) -> LabelledData:
    """The rows the tiers' training held out (``tango train --calibration-rows``; with
    ``--group-column containment`` the held-out full sentences, new text), checked against
    every tier's training as ``tango calibrate`` does."""
    from tango.splits import calibration_rows_for

    rows, _ = calibration_rows_for([t.path for t in tiers], classes)
    say(f"thresholds from {rows.source}")
    return rows


def _record(
    settings: BenchSettings,
    command: str | None,
    tiers: list[Tier],
    classes: list[str],
    gates: list,
    systems: dict,
    timings: dict[str, Timing],
    y: np.ndarray,
    logits: list[np.ndarray],
) -> dict[str, Any]:
    """The results record of one run (data and deferral are added by the caller)."""
    results = _system_results(systems, timings, y)
    _speedups(results, len(tiers))
    ceilings = (
        _ceilings(results, logits, y, gates[0].temperatures[0], settings.max_drop) if len(tiers) == 2 else []
    )
    return {
        "command": command,
        "machine": machine(settings.threads),
        "settings": _settings_record(settings),
        "tiers": [
            {"tier": k + 1, "source": t.source, "path": str(t.path), "runtime": _runtime(t)}
            for k, t in enumerate(tiers)
        ],
        "labels": classes,
        "gates": [_gate_record(g) for g in gates],
        "systems": results,
        "breakdown": _breakdown(timings["chosen"], len(tiers)),
        "ceilings": ceilings,
    }
