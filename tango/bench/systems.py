"""What a benchmark times: each tier alone, the sweep, the chosen cascade, the TangoBERT rule,
the peers (Hugging Face pipelines) and the caller's extra systems, each with how its result reads."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango.bench.rows import _Gate
from tango.cascade import Cascade, CascadeResult
from tango.confidence import confidence, softmax
from tango.tiers import Tier

RULE_THRESHOLD = 0.85  # TangoBERT's hard-coded max-probability threshold, temperature 1
PIPELINE_BATCH = 32  # the peers' pipeline batch size


# --- what is measured -----------------------------------------------------------------------------
@dataclass
class _System:
    """A timed callable, and how its last result reads as labels, escalation and extras."""

    kind: str  # tier, sweep, chosen, rule, peer, extra
    run: Callable[[], Any]
    read: Callable[[Any], tuple[np.ndarray, list[float] | None]]  # -> (label ids (N,), escalated)
    settings: dict[str, Any] = field(default_factory=dict)


def _systems(
    tiers: list[Tier],
    texts: list,
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
    systems.update(_sweep_systems(tiers, texts, logits, gates[0].temperatures, sweep))
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


def _sweep_systems(
    tiers: list[Tier],
    texts: list,
    logits: list[np.ndarray],
    temperatures: list[float],
    sweep: Sequence[float],
) -> dict[str, _System]:
    """The sweep: temperatures of the (first) chosen gate; thresholds at quantiles of each tier's
    confidence on these rows. Descriptive: the rows set their own thresholds."""
    n, systems = len(texts), {}
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
