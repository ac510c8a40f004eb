"""The Ray actors of the pipeline: tier 1 scores every row, later tiers only the unsure ones
(or, fused, one actor runs the whole cascade).

Each actor loads its own tiers from the :class:`~tango.engines.ray.plan.CascadeSpec` the driver
ships (and checks them against the driver's answers); the tier-2 actor formats every row with
the local engine's writer, so both engines write the same columns and values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tango.engines.ray.plan import ID, CascadeSpec
from tango.writers import RowWriter


def _texts(batch: dict[str, np.ndarray]) -> list:
    texts = [str(t) for t in batch["text"]]
    if "text_pair" in batch:
        return list(zip(texts, (str(t) for t in batch["text_pair"]), strict=True))
    return texts


def _actor_setup() -> None:
    """Tokenizers must not spawn threads of their own beside the runtime's."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


class Tier1Scorer:
    """Ray actor: tier 1 scores every row; its answer rides along for the tier-2 stage."""

    def __init__(self, spec: CascadeSpec, threads: int) -> None:
        _actor_setup()
        self.cascade = spec.stage(0, 1, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.cascade.predict_detailed(_texts(batch))
        batch["_probabilities"] = result.probabilities
        batch["_confidence"] = result.confidence
        batch["_tier"] = result.tier
        return batch


class RowFormatter:
    """Output rows as an Arrow table built column by column, with the local writer's columns and
    values (:class:`tango.writers.RowWriter`: id, label, confidence and each probability rounded
    to 6 places, tier numbered from 1), never through JSON text per row."""

    def __init__(self, labels: list[str], probabilities: bool, line_ids: bool) -> None:
        self.labels = np.asarray(labels)
        self.line_ids = line_ids
        self.writer = RowWriter(Path("rows.jsonl"), self.labels, probabilities)
        self.schema = self._columns(  # one dummy row fixes the column names and types
            np.asarray([1 if line_ids else "x"], dtype=object),
            np.asarray([1]),
            np.full((1, len(self.labels)), 1 / len(self.labels)),
            np.asarray([0.5]),
            np.asarray([0]),
        ).schema

    def table(self, ids: np.ndarray, lines: np.ndarray, probabilities: np.ndarray, confidence: np.ndarray,
              tier: np.ndarray) -> Any:  # fmt: skip
        """One batch's output rows, typed as every batch's (a shard's blocks must agree)."""
        return self._columns(ids, lines, probabilities, confidence, tier).cast(self.schema)

    def _columns(self, ids: np.ndarray, lines: np.ndarray, probabilities: np.ndarray, confidence: np.ndarray,
                 tier: np.ndarray) -> Any:  # fmt: skip
        import pyarrow as pa

        columns: dict[str, Any] = {
            "id": pa.array(np.asarray(lines, dtype=np.int64))
            if self.line_ids
            else pa.array([str(i) for i in ids]),
            "label": pa.array(self.labels[probabilities.argmax(axis=1)].astype(str)),
            "confidence": pa.array(_rounded(confidence)),
            "tier": pa.array(np.asarray(tier, dtype=np.int64) + 1),
        }
        if self.writer.probabilities:
            for k, name in enumerate(self.writer.names):
                columns[f"p_{name}"] = pa.array(_rounded(probabilities[:, k]))
        assert list(columns) == self.writer.columns, "the Ray rows must have the local writer's columns"
        return pa.table(columns)


class Tier2Scorer:
    """Ray actor: later tiers score the rows tier 1 left unsure; every row leaves formatted.

    One output row per input row (no filter + union): confident rows pass through with tier 1's
    answer. Rows are formatted as the local engine's writer formats them (:class:`RowFormatter`).
    """

    def __init__(self, spec: CascadeSpec, threads: int, probabilities: bool, line_ids: bool) -> None:
        _actor_setup()
        self.spec = spec
        self.later = spec.stage(1, len(spec.tiers), threads) if len(spec.tiers) > 1 else None
        self.rows = RowFormatter(spec.labels, probabilities, line_ids)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        width = len(self.spec.labels)
        probabilities = np.array(batch["_probabilities"], dtype=np.float64).reshape(-1, width)
        confidence = np.array(batch["_confidence"], dtype=np.float64)
        tier = np.array(batch["_tier"], dtype=np.int64)
        if not len(confidence):
            return self.rows.schema.empty_table()
        if self.later is not None:
            unsure = np.flatnonzero(confidence < self.spec.thresholds[0])
            if len(unsure):
                texts = _texts(batch)
                result = self.later.predict_detailed([texts[i] for i in unsure])
                probabilities[unsure] = result.probabilities
                confidence[unsure] = result.confidence
                tier[unsure] = result.tier + 1  # tiers of the later cascade come after tier 1
        return self.rows.table(batch[ID], batch["line"], probabilities, confidence, tier)


class CascadeScorer:
    """Ray actor of a fused run (``fuse_tiers``): the whole cascade on each batch, as the local
    engine scores a chunk.

    No rows travel between pools, and the actor's threads serve every tier in turn (no pool idles
    while the other works): on small nodes this is the faster shape; a pool per tier lets a
    cluster size tier 2's pool on its own.
    """

    def __init__(self, spec: CascadeSpec, threads: int, probabilities: bool, line_ids: bool) -> None:
        _actor_setup()
        self.cascade = spec.stage(0, len(spec.tiers), threads)
        self.rows = RowFormatter(spec.labels, probabilities, line_ids)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        if not len(batch[ID]):
            return self.rows.schema.empty_table()
        result = self.cascade.predict_detailed(_texts(batch))
        return self.rows.table(batch[ID], batch["line"], result.probabilities, result.confidence, result.tier)


def _rounded(values: np.ndarray) -> list[float]:
    """Python's round to 6 places, as the local writer rounds (numpy's can differ in the last bit)."""
    return [round(float(v), 6) for v in values]
