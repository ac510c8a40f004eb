"""`tango bench`: your tiers and their cascade, measured on your labelled rows.

Every system scores the same rows end to end (tokenization and routing included) with the same
threads, and the systems are timed interleaved: one warm-up round, then ``repeats`` rounds that
each run every system once, the start rotating by one per round, so a slow spell of the machine
falls on all systems alike. Each row of the result gives the median seconds and the min-max.

The systems: each tier alone; a sweep of cascades at a few escalation levels (descriptive); the
chosen cascade, its thresholds chosen for ``max_drop`` by :func:`tango.tuning.fit_gate` on rows
it is not judged on (a calibration file, a held-out fraction, or 2-fold cross-fitting); the
TangoBERT rule on the same tiers (temperature 1, max-probability 0.85: method, not runtime);
and, with ``peers``, the TangoBERT reference and the last tier through Hugging Face ``pipeline``.
Beside the timings, :func:`tango.deferral.deferral_study` ranks tier 1's confidence signals (and
a learned rule fitted on the calibration rows) by how well they find the rows that disagree with
the last tier: AUROC and the deferral curve, on the scored rows.
:mod:`tango.benchreport` writes ``results.json``, ``results.md``, ``results.png`` and
``report.html``.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango.cascade import Cascade, CascadeResult
from tango.confidence import confidence, softmax
from tango.data import LabelledData, load_labelled, split_rows
from tango.deferral import deferral_study, words
from tango.hardware import machine, set_torch_threads
from tango.tiers import Tier
from tango.tuning import Target, align_labels, fit_gate

THREADS = 2  # intra-op threads of every system; recorded with the results
REPEATS = 5  # timed rounds after the warm-up round
MAX_DROP = 0.5  # accuracy points below the last tier alone the chosen thresholds may lose
CONFIDENCE_LEVEL = 0.9  # max_drop holds on new rows with this probability
BOUND_ON = ("population", "rows")  # the drop certified: the mean (default), or on the rows judged
RULE_THRESHOLD = 0.85  # TangoBERT's hard-coded max-probability threshold, temperature 1
SWEEP_ESCALATION = (0.1, 0.2, 0.3, 0.5)  # target fraction escalated at each boundary
PIPELINE_BATCH = 32  # the peers' pipeline batch size

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


# --- what is measured -----------------------------------------------------------------------------
@dataclass
class _System:
    """A timed callable, and how its last result reads as labels, escalation and extras."""

    kind: str  # tier, sweep, chosen, rule, peer, extra
    run: Callable[[], Any]
    read: Callable[[Any], tuple[np.ndarray, list[float] | None]]  # -> (label ids (N,), escalated)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Plan:
    """The rows scored and the rows that choose the thresholds, as indices into the data file."""

    scored: np.ndarray
    mode: str  # "file", "fraction" or "cross-fitted"
    calibration: np.ndarray | None = None  # "fraction": rows of the file; "file": None
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # positions in scored


def bench(
    tiers: Sequence[Tier | str],
    data: str | Path | LabelledData,
    *,
    labels: list[str] | None = None,
    text_column: str | None = None,
    pair_column: str | None = None,
    label_column: str | None = None,
    calibration_data: str | Path | LabelledData | None = None,
    calibration_fraction: float | None = None,
    max_drop: float = MAX_DROP,
    confidence_level: float | None = CONFIDENCE_LEVEL,
    bound_on: str = "population",
    repeats: int = REPEATS,
    threads: int = THREADS,
    limit: int | None = None,
    seed: int = 0,
    peers: bool = True,
    sweep: Sequence[float] = SWEEP_ESCALATION,
    extra_systems: dict[str, tuple[Callable[[list], Any], dict[str, Any]]] | None = None,
    out: str | Path | None = None,
    name: str = "results",
    command: str | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Measure the tiers, their cascades and the peers on the same rows; write ``out`` if given.

    ``tiers`` are cheapest first (names or loaded tiers; names load with ``threads``). ``data``
    is a labelled CSV/TSV/JSONL file or rows in memory; ``limit`` keeps its first N rows. The
    chosen thresholds come from ``calibration_data``, else from a seeded ``calibration_fraction``
    of the rows (the rest are scored), else from 2-fold cross-fitting on the scored rows.
    ``sweep`` lists the escalation levels of the descriptive sweep (empty: none, a shorter run).
    ``bound_on="population"`` (default, as ``tango calibrate``) certifies ``max_drop`` on average
    over new rows; ``"rows"`` on the rows each gate is judged on, their own sampling noise
    included (``new_rows`` of :func:`tango.thresholds.certify`): stricter, it escalates more.
    ``extra_systems`` maps a name to ``(run(texts) -> labels or object with .labels, settings)``
    timed in the same rounds. Returns the result that :mod:`tango.benchreport` writes.
    """
    from tango.benchreport import write_results

    say = log or (lambda message: None)
    if calibration_data is not None and calibration_fraction is not None:
        raise ValueError("give calibration_data (--calibration-data) or calibration_fraction, not both")
    if bound_on not in BOUND_ON:
        raise ValueError(f"bound_on must be one of {BOUND_ON}, got {bound_on!r}")
    set_torch_threads(threads)  # the benchmark's threads, for every PyTorch system it times
    say(f"loading {len(tiers)} tiers with {threads} threads")
    loaded = [t if isinstance(t, Tier) else Tier.from_pretrained(t, threads=threads) for t in tiers]
    if len(loaded) < 2:
        raise ValueError(f"a cascade needs two or more tiers, got {len(loaded)}")
    classes = list(Cascade([*loaded])._validated()[0][0].labels)
    columns = {"text_column": text_column, "text_pair_column": pair_column, "label_column": label_column}
    rows = _load(data, columns, labels or classes)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        rows = rows.subset(np.arange(min(limit, len(rows))))
    plan = _plan(len(rows), calibration_data is not None, calibration_fraction, seed)
    scored = rows.subset(plan.scored)
    y = align_labels(scored, classes)
    say(f"{len(scored)} rows scored from {rows.source or 'memory'} ({plan.mode} thresholds); scoring pass")
    logits, costs, padding = _score(loaded, scored.texts)  # padding: each tier alone, every scored row

    gates, parts, calibration_logits = _gates(
        plan,
        loaded,
        logits,
        y,
        costs,
        calibration_data,
        rows,
        columns,
        classes,
        max_drop=max_drop,
        confidence_level=confidence_level,
        bound_on=bound_on,
        seed=seed,
    )
    systems = _systems(loaded, scored.texts, y, logits, gates, parts, peers, sweep, extra_systems or {})
    for k, efficiency in enumerate(padding):
        systems[f"tier{k + 1}"].settings["padding_efficiency"] = efficiency
    say(f"timing {len(systems)} systems: warm-up + {repeats} rounds, round-robin")
    timings = interleave({n: s.run for n, s in systems.items()}, repeats, say)

    results = _system_results(systems, timings, y)
    _speedups(results, len(loaded))
    ceilings = _ceilings(results, logits, y, gates[0].temperatures[0], max_drop) if len(loaded) == 2 else []
    result = {
        "command": command,
        "machine": machine(threads),
        "settings": _settings_record(repeats, threads, max_drop, confidence_level, bound_on, sweep, peers),
        "data": _data_record(rows, plan, calibration_data, limit, seed),
        "tiers": [
            {"tier": k + 1, "source": t.source, "path": str(t.path), "runtime": _runtime(t)}
            for k, t in enumerate(loaded)
        ],
        "labels": classes,
        "gates": [_gate_record(g) for g in gates],
        "systems": results,
        "breakdown": _breakdown(timings["chosen"], len(loaded)),
        "ceilings": ceilings,
        "deferral": deferral_study(
            calibration_logits,
            (logits[0], logits[-1], y, words(scored.texts)),
            gates[0].temperatures[0],
        ),
    }
    if out is not None:
        reliability = _reliability(logits[0], y, gates, parts)
        paths = write_results(result, out, name=name, reliability=reliability)
        say("wrote " + ", ".join(str(p) for p in paths))
    return result


def _settings_record(
    repeats: int,
    threads: int,
    max_drop: float,
    level: float | None,
    bound_on: str,
    sweep: Sequence[float],
    peers: bool,
) -> dict[str, Any]:
    """How the run was measured, as the results record it."""
    return {
        "repeats": repeats,
        "warm_up_rounds": 1,
        "order": "round-robin, start rotated by one each round",
        "threads": threads,
        "max_drop": max_drop,
        "confidence_level": level,
        "bound_on": bound_on,
        "rule_threshold": RULE_THRESHOLD,
        "sweep_escalation": list(sweep),
        "peers": peers,
    }


def _gate_record(gate: _Gate) -> dict[str, Any]:
    return {
        "temperatures": gate.temperatures,
        "thresholds": gate.thresholds,
        "choice": gate.choice,
        "tier_accuracy": gate.accuracy,
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


def _load(data: str | Path | LabelledData, columns: dict[str, str | None], names: list[str]) -> LabelledData:
    if isinstance(data, LabelledData):
        return data
    return load_labelled(data, label_names=names, **columns)


def _plan(n: int, calibration_file: bool, fraction: float | None, seed: int) -> _Plan:
    everything = np.arange(n)
    if calibration_file:
        return _Plan(everything, "file")
    if fraction is not None:
        scored, calibration = split_rows(n, fraction, seed)
        if len(scored) < 2:
            raise ValueError(
                f"a calibration fraction of {fraction} leaves {len(scored)} of {n} rows to score"
            )
        return _Plan(scored, "fraction", calibration=calibration)
    if n < 4:
        raise ValueError(f"cross-fitting needs at least 4 rows, got {n}; pass --calibration-data")
    first, second = split_rows(n, 0.5, seed)
    return _Plan(everything, "cross-fitted", folds=[(first, second), (second, first)])


def _score(tiers: list[Tier], texts: list) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Every tier's logits on the rows (untimed by the rounds), its seconds per row and its
    padding efficiency."""
    logits, costs, padding = [], [], []
    for tier in tiers:
        start = time.perf_counter()
        encodings = tier.tokenize(texts)
        batches = tier.plan(encodings)
        logits.append(tier.infer(encodings, batches=batches))
        costs.append((time.perf_counter() - start) / max(len(texts), 1))
        padding.append(tier.padding_efficiency(encodings, batches))
    return logits, costs, padding


@dataclass
class _Gate:
    temperatures: list[float]
    thresholds: list[float]
    choice: dict[str, Any] | None
    on: str  # which rows chose it
    accuracy: list[float]  # each tier's on the rows that chose it (compare with the scored rows')


def _gates(
    plan: _Plan,
    tiers: list[Tier],
    logits: list[np.ndarray],
    y: np.ndarray,
    costs: list[float],
    calibration_data: str | Path | LabelledData | None,
    rows: LabelledData,
    columns: dict[str, str | None],
    classes: list[str],
    **target: Any,
) -> tuple[list[_Gate], list[np.ndarray], tuple | None]:
    """The chosen gate(s), the positions (in the scored rows) each one scores, and the calibration
    rows' (first logits, last logits, lengths) where they are other rows (for the learned rule)."""
    max_drop, level, seed = target["max_drop"], target["confidence_level"], target["seed"]

    def fit(z: list[np.ndarray], labels: np.ndarray, c: list[float], on: str, judged: int) -> _Gate:
        new_rows = judged if target["bound_on"] == "rows" and level is not None else None
        goal = Target(max_drop=max_drop, confidence_level=level, seed=seed, new_rows=new_rows)
        gate = fit_gate(z, labels, c, goal)
        accuracy = [float((logit.argmax(1) == labels).mean()) for logit in z]
        return _Gate(
            [float(s.temperature_) for s in gate.scalers], gate.thresholds, gate.choice, on, accuracy
        )

    everything = np.arange(len(y))
    if plan.mode == "cross-fitted":
        gates = [
            fit(
                [z[chooser] for z in logits],
                y[chooser],
                costs,
                f"fold {k + 1}: {len(chooser)} rows",
                len(scored),
            )
            for k, (chooser, scored) in enumerate(plan.folds)
        ]
        return gates, [scored for _, scored in plan.folds], None
    if plan.mode == "fraction":
        calibration = rows.subset(plan.calibration)  # type: ignore[arg-type]
    else:
        calibration = _load(calibration_data, columns, classes)  # type: ignore[arg-type]
    z, c, _ = _score(tiers, calibration.texts)
    labels = align_labels(calibration, classes)
    fitted = (z[0], z[-1], words(calibration.texts))
    return [fit(z, labels, c, f"{len(calibration)} calibration rows", len(y))], [everything], fitted


def _systems(
    tiers: list[Tier],
    texts: list,
    y: np.ndarray,
    logits: list[np.ndarray],
    gates: list[_Gate],
    parts: list[np.ndarray],
    peers: bool,
    sweep: Sequence[float],
    extra: dict[str, tuple[Callable[[list], Any], dict[str, Any]]],
) -> dict[str, _System]:
    """Every system, each a callable over the same rows."""
    n = len(texts)
    systems: dict[str, _System] = {}
    for k, tier in enumerate(tiers):
        systems[f"tier{k + 1}"] = _System(
            "tier",
            functools.partial(tier.logits, texts),
            lambda z: (z.argmax(axis=1), None),
            {"source": tier.source, "runtime": _runtime(tier)},
        )
    # The sweep: temperatures of the (first) chosen gate; thresholds at quantiles of each tier's
    # confidence on these rows. Descriptive: the rows set their own thresholds.
    temperatures = gates[0].temperatures
    for fraction in sweep:
        thresholds = [
            float(np.quantile(confidence(softmax(z, temperatures[k]), "maxprob"), fraction))
            for k, z in enumerate(logits[:-1])
        ]
        cascade = Cascade([*tiers], thresholds=thresholds, temperatures=temperatures)
        systems[f"sweep@{fraction:.0%}"] = _cascade_system(
            "sweep",
            [(cascade, texts)],
            [np.arange(n)],
            n,
            {
                "thresholds": thresholds,
                "temperatures": temperatures,
                "threshold_source": "quantile on these rows",
            },
        )
    chosen = [Cascade([*tiers], thresholds=g.thresholds, temperatures=g.temperatures) for g in gates]
    systems["chosen"] = _cascade_system(
        "chosen",
        [(c, [texts[i] for i in part]) for c, part in zip(chosen, parts, strict=True)],
        parts,
        n,
        {"gates": [{"on": g.on, "thresholds": g.thresholds, "temperatures": g.temperatures} for g in gates]},
    )
    rule = Cascade([*tiers], thresholds=RULE_THRESHOLD)  # temperature 1, maxprob
    systems["tangobert-rule"] = _cascade_system(
        "rule", [(rule, texts)], [np.arange(n)], n, {"threshold": RULE_THRESHOLD, "temperature": 1.0}
    )
    if peers:
        systems.update(_peer_systems(tiers[0], tiers[-1], len(tiers), texts))
    for name, (run, settings) in extra.items():
        systems[name] = _System(
            "extra",
            functools.partial(run, texts),
            functools.partial(_read_extra, classes=tiers[0].labels, n_tiers=len(tiers)),
            settings,
        )
    return systems


def _cascade_system(
    kind: str, runs: list[tuple[Cascade, list]], parts: list[np.ndarray], n: int, settings: dict[str, Any]
) -> _System:
    """A cascade system: one or more (cascade, rows) runs whose answers fill the scored rows."""

    def run() -> list[CascadeResult]:
        return [cascade.predict_detailed(rows) for cascade, rows in runs]

    def read(results: list[CascadeResult]) -> tuple[np.ndarray, list[float]]:
        predicted = np.zeros(n, dtype=np.int64)
        reached = np.zeros(len(results[0].stats.escalated))
        for part, result in zip(parts, results, strict=True):
            predicted[part] = result.probabilities.argmax(axis=1)
            reached += np.asarray(result.stats.escalated) * len(part)
        return predicted, [float(f) for f in reached / n]

    return _System(kind, run, read, settings)


def _peer_systems(first: Tier, last: Tier, n_tiers: int, texts: list) -> dict[str, _System]:
    """TangoBERT as published (two fp32 pipelines, threshold 0.85) and the last tier via pipeline."""
    import torch
    from transformers import pipeline

    pipes = [
        pipeline(
            "text-classification",
            model=str(_torch_dir(t)),
            device=-1,
            batch_size=PIPELINE_BATCH,
            dtype=torch.float32,
        )
        for t in (first, last)
    ]
    inputs = [t if isinstance(t, str) else {"text": t[0], "text_pair": t[1]} for t in texts]

    def scores(pipe: Any, rows: list) -> list[dict]:
        return pipe(rows, truncation=True) if rows else []

    def reference() -> tuple[list[str], float]:
        answers = scores(pipes[0], inputs)
        labels = [o["label"] for o in answers]
        unsure = [i for i, o in enumerate(answers) if o["score"] < RULE_THRESHOLD]
        for i, o in zip(unsure, scores(pipes[1], [inputs[i] for i in unsure]), strict=True):
            labels[i] = o["label"]
        return labels, len(unsure) / max(len(inputs), 1)

    settings = {"runtime": "transformers pipeline, pytorch fp32", "batch_size": PIPELINE_BATCH}
    return {
        "tangobert-reference": _System(
            "peer",
            reference,
            lambda out: (_label_ids(out[0], first.labels), [out[1]]),
            {**settings, "threshold": RULE_THRESHOLD, "confidence": "uncalibrated maxprob"},
        ),
        f"tier{n_tiers}-pipeline": _System(
            "peer",
            lambda: scores(pipes[1], inputs),
            lambda out: (_label_ids([o["label"] for o in out], first.labels), None),
            settings,
        ),
    }


def _torch_dir(tier: Tier) -> Path:
    """The PyTorch weights behind a tier (an export keeps its source in tango_export.json)."""
    from tango.modeldir import read_export_record

    if not (tier.path / "config.json").exists():
        raise ValueError(f"{tier.path} is not a transformer directory; the peers need one (--no-peers)")
    source = read_export_record(tier.path).get("source")
    if (tier.path / "model.safetensors").exists() or not source:
        return tier.path
    return Path(source)


def _runtime(tier: Tier) -> str:
    return str(getattr(tier.runtime, "description", "?"))


def _read_extra(out: Any, classes: list[str], n_tiers: int) -> tuple[np.ndarray, list[float] | None]:
    """An extra system's labels (names, or an object with ``.labels``) and, where it says which
    tier answered each row (a cascade's ``.tier``), the share of rows that reached each later tier."""
    tier = getattr(out, "tier", None)
    escalated = None if tier is None else [float((np.asarray(tier) >= k).mean()) for k in range(1, n_tiers)]
    return _label_ids(getattr(out, "labels", out), classes), escalated


def _label_ids(names: Any, classes: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    return np.asarray([index.get(str(name), -1) for name in names], dtype=np.int64)


def _extras(result: Any) -> dict[str, Any]:
    """Early exit's layers: the mean, and each row's (so the claim can be checked from the file)."""
    exit_layer = getattr(result, "exit_layer", None)
    if exit_layer is None:
        return {}
    layers = np.asarray(exit_layer)
    return {"mean_exit_layer": float(layers.mean()) if len(layers) else 0.0, "exit_layers": layers.tolist()}


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
    order = np.argsort(confidence(softmax(first, temperature), "maxprob"), kind="stable")
    first_right = (first.argmax(axis=1) == y)[order].astype(np.int64)
    last_right = (last.argmax(axis=1) == y)[order].astype(np.int64)
    return int(first_right.sum()) + np.concatenate([[0], np.cumsum(last_right - first_right)])


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


def _data_record(
    rows: LabelledData,
    plan: _Plan,
    calibration_data: str | Path | LabelledData | None,
    limit: int | None,
    seed: int,
) -> dict[str, Any]:
    """Which rows were scored and which chose the thresholds: indices into the data file."""
    calibration: dict[str, Any] = {"mode": plan.mode, "seed": seed}
    if plan.mode == "fraction":
        calibration["indices"] = plan.calibration.tolist()  # type: ignore[union-attr]
    elif plan.mode == "file":
        source = calibration_data.source if isinstance(calibration_data, LabelledData) else calibration_data
        calibration["source"] = str(source)
    else:
        calibration["folds"] = [
            {"chooses": plan.scored[a].tolist(), "scores": plan.scored[b].tolist()} for a, b in plan.folds
        ]
    return {
        "source": rows.source,
        "rows_read": len(rows),
        "limit": limit,
        "scored": len(plan.scored),
        "scored_indices": plan.scored.tolist(),
        "calibration": calibration,
    }
