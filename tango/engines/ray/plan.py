"""The plan of a Ray run, checked on the driver before any actor starts.

Each stage's pool size and CPUs (:class:`Stage`), the refusal of a plan the cluster cannot
schedule (it would hang, not fail), and the cascade as plain data (:class:`CascadeSpec`, one
:class:`TierSpec` per tier) that actors rebuild their tiers from and must reproduce the driver's
answers with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tango.cascade import Cascade

OUTPUT_FORMATS = ("jsonl", "csv", "parquet")
DEFAULT_READ_CPUS = 0.25  # per read or write task: parsing a file is light beside a model
ID = "id"  # the id column every stage carries; Ray's checkpoint keys on it
# Ray kills an idle worker process beyond one per CPU after 1 s, and a run's small read and write
# tasks come seconds apart: each then starts a new Python process (about 1 s of CPU) beside the
# actors. Kept for a minute, the processes are reused (docs/distributed.md, "The passes of a
# run"). tango sets it on a Ray it starts itself; on a cluster of your own, start each node with
# the environment variable RAY_idle_worker_killing_time_threshold_ms=60000.
KEEP_IDLE_WORKERS = {"idle_worker_killing_time_threshold_ms": 60_000}


@dataclass
class Stage:
    """One pipeline stage's resources: the most actors in its pool, CPUs per actor, rows per batch,
    and the fewest actors.

    The pool autoscales from ``min_actors`` (default one) to ``actors``. Ray Data grows a pool only
    within the CPUs its resource manager allots the operator, about half a small cluster's, so on
    a cluster of a few CPUs a pool may never grow: there, ``min_actors=actors`` starts them all
    (measured: with two 1-CPU nodes, a fused pool of up to two actors kept one, docs/distributed.md).
    Size the tier-2 pool from the escalation
    rate: it scores ``escalated x rows`` rows with a model that costs several times tier 1's per
    row (docs/distributed.md). The defaults (0.25 CPU per actor and per read task) fit a 2-CPU
    cluster, resume included (its checkpoint filter needs one CPU beside them).
    """

    actors: int = 1
    cpus: float = 0.25  # a reservation for scheduling; the runtime runs round(cpus) threads, >= 1
    batch_size: int = 1024  # the local engine's chunk: bigger batches sort into less padding
    min_actors: int = 1  # started at once and kept for the whole run

    def __post_init__(self) -> None:
        if self.actors < 1 or self.cpus <= 0 or self.batch_size < 1:
            raise ValueError(f"a stage needs actors >= 1, cpus > 0 and batch_size >= 1, got {self}")
        if not 1 <= self.min_actors <= self.actors:
            raise ValueError(f"a stage needs 1 <= min_actors <= actors, got {self}")

    @property
    def threads(self) -> int:
        """Runtime threads per actor: its CPUs, at least one (ONNX Runtime ignores OMP_NUM_THREADS)."""
        return max(1, round(self.cpus))


# Ray Data's checkpoint filter, which a resumed checkpointed run adds, is a task of one CPU.
CHECKPOINT_FILTER_CPUS = 1.0


def check_resources(
    cluster_cpus: float,
    tier1: Stage,
    tier2: Stage,
    read_cpus: float,
    resuming: bool,
    node_cpus: list[float] | None = None,
    fused: bool = False,
) -> None:
    """Refuse a plan the cluster cannot schedule, before anything runs (it would hang, not fail).

    Each pool keeps its ``min_actors`` for the whole run, a read or write task needs
    ``read_cpus`` beside them, and a resumed run also needs Ray Data's checkpoint filter (one
    CPU); all of it must fit in the cluster's CPUs at once and, since an actor or a task runs on
    one node, be placeable on the nodes' CPUs (``node_cpus``: two 1-CPU nodes cannot hold two
    0.75-CPU actors and a 0.5-CPU task, though they have 2 CPUs). ``fused``: one pool of
    whole-cascade actors sized by ``tier1``, no tier-2 pool.
    """
    pools = {"cascade actor (fused)": tier1} if fused else {"tier-1 actor": tier1, "tier-2 actor": tier2}
    parts = [(name, stage.cpus) for name, stage in pools.items() for _ in range(stage.min_actors)]
    parts.append(("read/write task", read_cpus))
    if resuming:
        parts.append(("checkpoint filter (resume)", CHECKPOINT_FILTER_CPUS))
    needed = sum(cpus for _, cpus in parts)
    shown = " + ".join(f"{cpus:g} ({name})" for name, cpus in parts)
    advice = (
        "Lower --tier1-cpus/--tier2-cpus/--read-cpus (a fraction such as 0.25 is fine: each actor "
        "still runs one thread, and an actor runs round(cpus) threads), or add CPUs"
    )
    if needed > cluster_cpus + 1e-9:
        raise ValueError(
            f"this plan needs {needed:g} CPUs at once ({shown}) but the Ray cluster has "
            f"{cluster_cpus:g}: it would wait forever. {advice}"
        )
    if node_cpus and not _placeable(sorted((cpus for _, cpus in parts), reverse=True), list(node_cpus)):
        nodes = ", ".join(f"{cpus:g}" for cpus in node_cpus)
        raise ValueError(
            f"this plan needs {shown} CPUs, each part on one node, but the Ray nodes have {nodes} "
            f"CPUs: no placement fits, it would wait forever. {advice}"
        )


def _placeable(parts: list[float], free: list[float]) -> bool:
    """Whether the parts (largest first) can each go on one node without overfilling it."""
    if not parts:
        return True
    tried: set[float] = set()
    for k, room in enumerate(free):
        if parts[0] <= room + 1e-9 and round(room, 9) not in tried:
            tried.add(round(room, 9))
            if _placeable(parts[1:], free[:k] + [room - parts[0]] + free[k + 1 :]):
                return True
    return False


# --- what an actor needs to rebuild its part of the cascade --------------------------------------

SAMPLE_TOLERANCE = {"fp32": 1e-4, "low": 2e-2}  # max |probability difference| at start-up


@dataclass
class TierSpec:
    """A tier by path, runtime, precision and runtime options, small enough to ship to actors that
    load it themselves; ``sample``/``expected`` are the driver's answer on a sample batch, which
    the actor must reproduce before it scores anything."""

    path: str
    runtime: str
    precision: str
    runtime_options: dict[str, Any]
    batch_size: int
    max_tokens: int | None
    max_length: int | None
    sample: list[Any] = field(default_factory=list)
    expected: list[list[float]] = field(default_factory=list)

    @classmethod
    def of(cls, tier: Any) -> TierSpec:
        from tango.export import CHECK_SENTENCES
        from tango.runtimes import runtime_settings

        runtime, precision, options = runtime_settings(tier.runtime)
        sample: list[Any] = list(CHECK_SENTENCES[:8])
        if tier.inputs == "pairs":
            sample = list(zip(CHECK_SENTENCES[:8], CHECK_SENTENCES[8:16], strict=True))
        expected = tier.predict_proba(sample).tolist()
        return cls(
            str(tier.path), runtime, precision, options, tier.batch_size, tier.max_tokens, tier.max_length,
            sample, expected,
        )  # fmt: skip

    def load(self, threads: int) -> Any:
        from tango.tiers import Tier

        tier = Tier.from_pretrained(
            self.path,
            runtime=self.runtime,
            precision=self.precision,
            threads=threads,
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            runtime_options=self.runtime_options or None,
        )
        tier.max_length = self.max_length or tier.max_length
        self.check(tier)
        return tier

    def check(self, tier: Any) -> None:
        """The loaded tier must answer the sample as the driver's did, or the engines would drift."""
        if not self.sample:
            return
        got = tier.predict_proba(self.sample)
        difference = float(np.abs(got - np.asarray(self.expected)).max())
        limit = SAMPLE_TOLERANCE["fp32" if self.precision in ("fp32", "auto") else "low"]
        if difference > limit:
            raise ValueError(
                f"tier {self.path} on a Ray worker ({getattr(tier.runtime, 'description', '?')}) answers a "
                f"sample batch {difference:.2g} away from the driver's (allowed {limit:g}): the engines "
                "would drift. Check that the workers have the same tango, runtime and model files"
            )


@dataclass
class CascadeSpec:
    """A validated cascade as plain data; each stage's actors load only the tiers they run."""

    tiers: list[TierSpec]
    thresholds: list[float]
    temperatures: list[float]
    confidence: str
    labels: list[str]

    @classmethod
    def of(cls, cascade: Cascade) -> CascadeSpec:
        if not isinstance(cascade, Cascade):
            raise ValueError("the Ray engine scores cascades; early-exit models run on the local engine")
        tiers, thresholds, temperatures = cascade._validated()
        specs = [TierSpec.of(tier) for tier in tiers]
        return cls(specs, list(thresholds), list(temperatures), cascade.confidence, list(tiers[0].labels))

    def stage(self, first: int, last: int, threads: int) -> Cascade:
        """Tiers ``first..last-1`` as a cascade of their own, with their thresholds."""
        return Cascade(
            [spec.load(threads) for spec in self.tiers[first:last]],
            thresholds=self.thresholds[first : last - 1],
            confidence=self.confidence,
            temperatures=self.temperatures[first:last],
        )
