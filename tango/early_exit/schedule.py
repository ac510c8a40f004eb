"""Breadth-first early exit: each segment runs on every row still inside, in full batches.

A call gets N right-padded rows (the estimator passes a whole input, or a large chunk of it).
They are sorted by length and cut into batches of ``batch_size`` (:func:`tango.batching.plan_batches`),
each padded to its own longest row and embedded. Then, for each exit in turn:

1. every batch runs the segment's layers and the exit head, and the policy says which rows are
   done; nothing in this loop waits on the device;
2. one host transfer brings back the decisions of all batches (the segment's only host sync);
3. the logits of the rows that leave are kept, at their input positions;
4. a batch where no row, or under ``compact_share`` of its rows, has finished goes on whole:
   its hidden states, layer mask and policy state are reused, and its finished rows are carried
   along and ignored. The survivors of the other batches are gathered and merged, in length
   order, into full batches padded to their own longest row.

So a row never waits for rows of its batch that left (beyond the ``compact_share`` allowance),
and a deep segment never runs on a batch of one straggler while other batches hold more. The
layer mask is built once per batch formed (not per segment or layer), and MPNet's relative
position bias once per call and sliced per batch. Each row's result is the one it gets alone in
a batch of one: rows never interact inside a layer, only padding differs (float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tango.batching import plan_batches
from tango.early_exit.model import MultiExitModel, pool
from tango.early_exit.policy import ExitPolicy

COMPACT_SHARE = 0.125  # a batch is compacted (and re-batched) once this share of its rows left


@dataclass
class _Batch:
    """Rows travelling together through one segment."""

    rows: np.ndarray  # (b,) positions in the call's input
    lengths: np.ndarray  # (b,) real tokens per row
    h: torch.Tensor  # (b, t, C) hidden states entering the next segment
    pad: torch.Tensor  # (b, t) padding mask, 1 = real token
    state: torch.Tensor  # (b, S) the policy's per-row state (patience history)
    layer_mask: torch.Tensor | None  # what the layers take; built once per batch, None = no padding
    alive: np.ndarray  # (b,) False = left at an earlier exit, carried along and ignored


@torch.inference_mode()
def early_exit(
    model: MultiExitModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    policy: ExitPolicy,
    token_type_ids: torch.Tensor | None = None,
    batch_size: int | None = None,
    compact_share: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's logits at its exit, (N, K) fp32, and its exit index into ``model.exits``, (N,).

    The right-padded rows (N, T) run breadth-first: each segment on every row still inside, in
    length-sorted batches of ``batch_size`` (None = all N in one batch); finished rows leave
    between segments and the others are re-batched into full batches (:func:`run_breadth_first`,
    whose knob ``compact_share`` is). Each row's result is the one it gets alone in a batch of one
    (up to float rounding of padded matmuls). The model runs its segments; this module schedules
    them, so the model never imports its scheduler.
    """
    return run_breadth_first(
        model,
        input_ids,
        attention_mask,
        policy,
        token_type_ids,
        batch_size=batch_size or max(1, input_ids.shape[0]),
        compact_share=COMPACT_SHARE if compact_share is None else compact_share,
    )


def run_breadth_first(
    model: MultiExitModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    policy: ExitPolicy,
    token_type_ids: torch.Tensor | None,
    batch_size: int,
    compact_share: float = COMPACT_SHARE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's logits at its exit, (N, K) fp32, and its exit index, (N,), on the input's device.

    ``compact_share`` 0 compacts a batch as soon as one row leaves; 1 never compacts (only
    batches whose rows have all left are dropped).
    """
    assert not model.training, "call .eval() first: dropout would make the exits random"
    assert batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"
    num_rows, device = input_ids.shape[0], input_ids.device
    lengths = _right_padded_lengths(attention_mask)  # (N,) on the host: one sync per call
    exit_index = np.full(num_rows, -1, dtype=np.int64)
    left_rows: list[np.ndarray] = []
    left_logits: list[torch.Tensor] = []
    bias = model.position_bias(int(lengths.max(initial=1)), device)  # (1, H, T, T) or None
    state = policy.start(num_rows, device)  # (N, S)
    batches = _first_batches(model, input_ids, attention_mask, token_type_ids, lengths, state, batch_size)

    last = len(model.exits) - 1
    for i, (head, (start, stop)) in enumerate(zip(model.heads, model.segments(), strict=True)):
        logits, done = [], []
        for b in batches:
            width = b.h.shape[1]
            b.h = model.run_layers(b.h, b.layer_mask, _square(bias, width), start, stop)
            logits.append(head(pool(b.h, b.pad, model.pooling)).float())  # (b, K)
            if i < last:
                leaving, b.state = policy.step(i, logits[-1], b.state)  # (b,) bool
                done.append(leaving)
        if i < last:  # the segment's one host sync: every batch's decisions at once
            flags = np.split(torch.cat(done).cpu().numpy(), np.cumsum([len(b.rows) for b in batches])[:-1])
        else:
            flags = [np.ones(len(b.rows), bool) for b in batches]  # the last exit takes every row
        for b, out, flag in zip(batches, logits, flags, strict=True):
            leaving = np.flatnonzero(b.alive & flag)
            if not len(leaving):
                continue
            exit_index[b.rows[leaving]] = i
            left_rows.append(b.rows[leaving])
            whole = len(leaving) == len(b.rows)
            left_logits.append(out if whole else out[torch.from_numpy(leaving).to(device)])
            b.alive &= ~flag
        if i < last:
            batches = _rebatch(model, batches, batch_size, compact_share)
            if not batches:
                break

    assert (exit_index >= 0).all(), "every row must leave at some exit"
    exit_logits = torch.zeros(num_rows, model.num_labels, device=device)  # (N, K)
    if left_rows:
        exit_logits[torch.from_numpy(np.concatenate(left_rows)).to(device)] = torch.cat(left_logits)
    return exit_logits, torch.from_numpy(exit_index).to(device)


def _first_batches(
    model: MultiExitModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    lengths: np.ndarray,
    state: torch.Tensor,
    batch_size: int,
) -> list[_Batch]:
    """The call's rows in length-sorted batches, each padded to its own longest row and embedded,
    its layer mask built once."""
    batches = []
    for rows in plan_batches(lengths, batch_size):
        width = int(lengths[rows].max())
        index = torch.from_numpy(rows).to(input_ids.device)
        types = None if token_type_ids is None else token_type_ids[index, :width]
        h = model.embed(input_ids[index, :width], types)  # (b, t, C)
        pad = attention_mask[index, :width]
        batches.append(_Batch(rows, lengths[rows], h, pad, state[index], None, np.ones(len(rows), bool)))
        batches[-1].layer_mask = model.layer_mask(h, pad, padded=bool(lengths[rows].min() < width))
    return batches


def _rebatch(
    model: MultiExitModel, batches: list[_Batch], batch_size: int, compact_share: float
) -> list[_Batch]:
    """The batches of the next segment: whole batches kept, the others' survivors merged."""
    kept: list[_Batch] = []
    pieces: list[tuple[_Batch, np.ndarray]] = []  # (batch, its surviving rows), in length order
    for b in batches:
        alive = int(b.alive.sum())
        finished = len(b.rows) - alive
        if alive == 0:
            continue
        if finished == 0 or finished < compact_share * len(b.rows):
            kept.append(b)  # no gather: tensors, mask and state go on as they are
        else:
            pieces.append((b, np.flatnonzero(b.alive)))
    merged, group, size = [], [], 0
    for b, alive in pieces:
        while len(alive):
            take = alive[: batch_size - size]
            group.append((b, take))
            size, alive = size + len(take), alive[len(take) :]
            if size == batch_size:
                merged.append(_merge(model, group))
                group, size = [], 0
    if group:
        merged.append(_merge(model, group))
    return sorted(kept + merged, key=lambda b: b.h.shape[1])


def _merge(model: MultiExitModel, group: list[tuple[_Batch, np.ndarray]]) -> _Batch:
    """One new batch from some rows of several batches, padded to its own longest row."""
    lengths = np.concatenate([b.lengths[take] for b, take in group])
    width = int(lengths.max())
    hs, states = [], []
    for b, take in group:
        index = torch.from_numpy(take).to(b.h.device)
        h = b.h[index, :width]  # (r, <=t, C)
        if h.shape[1] < width:  # zeros in the new padding: masked keys, excluded from pooling
            h = torch.nn.functional.pad(h, (0, 0, 0, width - h.shape[1]))
        hs.append(h)
        states.append(b.state[index])
    h = hs[0] if len(hs) == 1 else torch.cat(hs)  # (b, t, C)
    first = group[0][0]
    pad = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None]).to(first.pad.device, first.pad.dtype)
    mask = model.layer_mask(h, pad, padded=bool(lengths.min() < width))
    rows = np.concatenate([b.rows[take] for b, take in group])
    state = states[0] if len(states) == 1 else torch.cat(states)
    return _Batch(rows, lengths, h, pad, state, mask, np.ones(len(rows), bool))


def _square(bias: torch.Tensor | None, width: int) -> torch.Tensor | None:
    """The (1, H, t, t) top-left block of the call's position bias."""
    return None if bias is None else bias[:, :, :width, :width]


def _right_padded_lengths(attention_mask: torch.Tensor) -> np.ndarray:
    """(N,) real tokens per row, checking each row is 1s then 0s with at least one 1."""
    mask = attention_mask.cpu().numpy().astype(bool)  # (N, T)
    lengths = mask.sum(axis=1).astype(np.int64)
    if not (mask == (np.arange(mask.shape[1])[None, :] < lengths[:, None])).all():
        raise ValueError("early exit needs right-padded rows: attention_mask 1s, then 0s")
    if len(lengths) and lengths.min() < 1:
        raise ValueError("every row needs at least one token (attention_mask all 0 in a row)")
    return lengths
