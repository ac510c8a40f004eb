"""Batches that waste no compute on padding.

Rows are sorted by token length, cut into batches by a row budget and a token budget
(rows x longest row), each batch is padded only to its own longest row, and results are put
back in input order by the caller using the index arrays returned here.

Inference cuts the sorted rows where padding costs least (:func:`plan_least_padding`); training
keeps fixed-size batches (:func:`plan_batches`), whose sizes its step counts assume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Encodings:
    """Token ids of N rows, unpadded. ``cut`` marks the rows cut to the model's limit."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None = None
    cut: np.ndarray | None = None  # (N,) bool; None: no row was cut
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = np.fromiter(
            (len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids)
        )
        if self.cut is None:
            self.cut = np.zeros(len(self.input_ids), dtype=bool)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def truncated(self) -> int:
        """How many rows were cut to the model's limit."""
        return int(np.count_nonzero(self.cut))

    def take(self, rows: np.ndarray) -> Encodings:
        """The encodings of a subset of rows (used when tiers share a tokenizer)."""
        types = self.token_type_ids
        return Encodings(
            input_ids=[self.input_ids[i] for i in rows],
            token_type_ids=None if types is None else [types[i] for i in rows],
            cut=np.asarray(self.cut)[np.asarray(rows, dtype=np.int64)],
        )


def tokenize(tokenizer: Any, rows: list[str] | list[tuple[str, str]], max_length: int) -> Encodings:
    """Token ids of texts (or text pairs), truncated to ``max_length``, unpadded."""
    if not rows:
        return Encodings(input_ids=[], token_type_ids=None)
    if isinstance(rows[0], str):
        encoded = tokenizer(list(rows), truncation=True, max_length=max_length)
    else:
        firsts, seconds = zip(*rows, strict=True)
        encoded = tokenizer(list(firsts), list(seconds), truncation=True, max_length=max_length)
    cut = np.fromiter((bool(e.overflowing) for e in encoded.encodings or []), dtype=bool, count=len(rows))
    return Encodings(encoded["input_ids"], encoded.get("token_type_ids"), cut)


def plan_batches(
    lengths: np.ndarray, batch_size: int = 32, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Row indices of each batch: rows sorted by length, at most ``batch_size`` rows and at most
    ``max_tokens`` padded tokens (rows x longest row) per batch; a single over-budget row still
    gets a batch of its own."""
    _check_budgets(batch_size, max_tokens)
    order = np.argsort(lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        rows = end - start
        longest = int(lengths[order[end - 1]])  # ascending order: the newest row is the longest
        over_tokens = max_tokens is not None and rows * longest > max_tokens and rows > 1
        if rows > batch_size or over_tokens:
            batches.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


# What running one more batch costs, in padded tokens: the fixed per-call work of a runtime. On
# MPNet-base (OpenVINO int8, 2 cores) 50 and 200 cut a cascade's escalated SST-2 dev rows into
# batches that ran equally fast (benchmarks/results/escalated_batches.md, docs/architecture.md).
BATCH_COST_TOKENS = 128


def plan_least_padding(
    lengths: np.ndarray,
    batch_size: int = 32,
    max_tokens: int | None = None,
    batch_cost: float = BATCH_COST_TOKENS,
) -> list[np.ndarray]:
    """Row indices of each batch, rows sorted by length, cut where the computed tokens are fewest.

    Among all ways to cut the sorted rows into batches of at most ``batch_size`` rows and
    ``max_tokens`` padded tokens (a single row may exceed it), this takes the one with the least
    ``sum(batch_cost + rows x longest row)``, by dynamic programming over the cut points. On many
    rows of similar lengths that is :func:`plan_batches`' full batches; on a few rows of spread
    lengths (the rows a cascade escalates) the greedy plan pads each short row to the batch's
    longest, and this one cuts where the lengths jump instead. Ties go to fewer batches.
    """
    _check_budgets(batch_size, max_tokens)
    order = np.argsort(lengths, kind="stable")
    longest = np.asarray(lengths, dtype=np.float64)[order]
    count = len(order)
    best = np.zeros(count + 1)  # best[i]: least cost of the first i sorted rows
    cut = np.zeros(count + 1, dtype=np.int64)  # where the last batch of that plan starts
    for end in range(1, count + 1):
        starts = np.arange(max(0, end - batch_size), end)
        rows = end - starts
        costs = best[starts] + batch_cost + rows * longest[end - 1]
        if max_tokens is not None:
            costs[(rows > 1) & (rows * longest[end - 1] > max_tokens)] = np.inf
        pick = int(np.argmin(costs))  # the first minimum: the longest batch
        best[end], cut[end] = costs[pick], starts[pick]
    batches: list[np.ndarray] = []
    end = count
    while end > 0:
        batches.append(order[cut[end] : end])
        end = int(cut[end])
    return batches[::-1]


def _check_budgets(batch_size: int, max_tokens: int | None) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")


def pad_batch(encodings: Encodings, rows: np.ndarray, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Padded int64 arrays (B, T) for the given rows, T = their longest length."""
    longest = int(encodings.lengths[rows].max())
    input_ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), longest), dtype=np.int64)
    token_type_ids = np.zeros((len(rows), longest), dtype=np.int64)
    for out_row, row in enumerate(rows):
        ids = encodings.input_ids[row]
        input_ids[out_row, : len(ids)] = ids
        attention_mask[out_row, : len(ids)] = 1
        if encodings.token_type_ids is not None:
            token_type_ids[out_row, : len(ids)] = encodings.token_type_ids[row]
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if encodings.token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch


def pad_tensors(encodings: Encodings, rows: Any, pad_id: int | None, device: Any = "cpu") -> dict[str, Any]:
    """:func:`pad_batch` as torch tensors on ``device``: what training and torch inference feed
    a model. ``pad_id`` None (a tokenizer without a pad token) pads with 0."""
    import torch  # lazily: the ONNX and OpenVINO runtimes batch without torch

    batch = pad_batch(encodings, np.asarray(rows), pad_id or 0)
    return {name: torch.from_numpy(values).to(device) for name, values in batch.items()}


def padding_efficiency(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Real tokens / computed tokens over a batch plan (1.0 = no padding at all)."""
    real = int(sum(lengths[b].sum() for b in batches))
    computed = sum(padded_tokens(lengths, b) for b in batches)
    return real / computed if computed else 1.0


def padded_tokens(lengths: np.ndarray, rows: np.ndarray) -> int:
    """The tokens a batch of these rows computes: rows x its longest row (0 for no rows)."""
    return len(rows) * int(lengths[rows].max()) if len(rows) else 0


def longest_first(batches: list[np.ndarray], lengths: np.ndarray) -> list[np.ndarray]:
    """The batches ordered by padded tokens (rows x longest row), most first: the order to hand
    them to parallel streams in. Each free stream takes the next batch, so the costliest batches
    start while all the streams are busy and the last to start are the cheapest (the longest-
    processing-time rule); in length order, the longest batch would start last and the other
    streams would wait for it. Ties keep their order."""
    cost = [padded_tokens(lengths, rows) for rows in batches]
    return [batches[k] for k in sorted(range(len(batches)), key=lambda k: -cost[k])]
