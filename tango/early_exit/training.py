"""Fine-tuning a multi-exit encoder: the four training modes of the issue.

- ``joint``: the sum of every exit's cross-entropy (Schwartz et al. 2020).
- ``weighted``: exit losses weighted by their layer number, ``sum_j j * L_j / sum_j j`` (PABEE).
- ``sweet``: the sum, but the gradient is cut between segments, so exit i's loss only updates the
  layers between exit i-1 and exit i (Rotem et al. 2023).
- ``two-stage``: stage 1 trains the backbone and the last head; stage 2 freezes them and trains
  the other heads (DeeBERT).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from tango.early_exit.classifier import (
    EarlyExitClassifier,
    Texts,
    auto_precision,
    check_device,
    collate,
    encode,
    precision_context,
)
from tango.early_exit.model import MultiExitModel

MODES = ("joint", "weighted", "sweet", "two-stage")


@dataclass
class _Stage:
    name: str
    params: list[torch.nn.Parameter]  # what the optimizer updates
    weights: torch.Tensor  # (E,) weight of each exit's loss
    detach: bool = False  # SWEET: cut the gradient between segments
    frozen_backbone: bool = False  # two-stage, stage 2: encoder and last head fixed, in eval mode


def train_early_exit(
    base_model_dir: str | Path,
    train_texts: Texts,
    train_labels: Sequence[Any],
    out_dir: str | Path,
    *,
    exits: str | Sequence[int] = "all",
    mode: str = "joint",
    pooling: str = "mean",
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
    dev: tuple[Texts, Sequence[Any]] | None = None,
    label_names: Sequence[str] | None = None,
    max_steps: int | None = None,
    device: str = "cpu",
    precision: str = "auto",
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_model_dir`` with exits and save an early-exit directory to ``out_dir``.

    ``pooling`` is what each exit head reads: "mean" of the tokens, or "cls" (the papers' choice,
    useless at the low layers of mean-pooled sentence encoders; see ``model.pool``).
    ``label_names`` None = the sorted distinct training labels. ``max_steps`` caps each stage.
    ``precision`` "auto" = bf16 autocast where the hardware has fast bf16 (AMX CPUs, CUDA).
    Returns the training record also stored in ``early_exit.json``, with per-exit dev accuracy.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if len(train_texts) != len(train_labels) or not len(train_texts):
        raise ValueError(f"{len(train_texts)} texts for {len(train_labels)} labels; need >0 each")
    names = [str(n) for n in label_names] if label_names else _label_names(train_labels)
    y = torch.tensor(_label_ids(train_labels, names))
    check_device(device)
    precision = auto_precision(device) if precision == "auto" else precision
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16'; got {precision!r}")
    precision = "bf16-autocast" if precision == "bf16" else precision  # training keeps fp32 weights
    torch.manual_seed(seed)

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    encoder = AutoModel.from_pretrained(base_model_dir, add_pooling_layer=False)
    model = MultiExitModel(encoder, exits, len(names), pooling).to(device)
    encodings = encode(tokenizer, train_texts, max_length)

    started, steps = time.perf_counter(), 0
    for stage in _stages(model, mode):
        steps += _train_stage(
            model,
            stage,
            tokenizer,
            encodings,
            y,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            max_steps=max_steps,
            seed=seed,
            device=device,
            precision=precision,
            show_progress_bar=show_progress_bar,
        )
    seconds = time.perf_counter() - started

    clf = EarlyExitClassifier(
        model,
        tokenizer,
        names,
        batch_size=batch_size,
        max_length=max_length,
        device=device,
        precision=precision,
    )
    record: dict[str, Any] = {
        "mode": mode,
        "base_model": str(base_model_dir),
        "train_examples": len(y),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "dev_accuracy": _dev_accuracy(clf, dev, names) if dev is not None else None,
    }
    clf.metadata = record
    clf.save_pretrained(out_dir)
    return {"exits": list(model.exits), "pooling": pooling, **record}


def _stages(model: MultiExitModel, mode: str) -> list[_Stage]:
    num_exits = len(model.exits)
    ones = torch.ones(num_exits)
    if mode == "joint":
        return [_Stage("joint", list(model.parameters()), ones)]
    if mode == "weighted":
        layers = torch.tensor(model.exits, dtype=torch.float)
        return [_Stage("weighted", list(model.parameters()), layers / layers.sum())]
    if mode == "sweet":
        return [_Stage("sweet", list(model.parameters()), ones, detach=True)]
    last_only = torch.zeros(num_exits)
    last_only[-1] = 1.0
    backbone = [*model.encoder.parameters(), *model.heads[-1].parameters()]
    others = [p for head in model.heads[:-1] for p in head.parameters()]
    stages = [_Stage("two-stage 1/2", backbone, last_only)]
    if others:  # with a single exit there is no second stage
        stages.append(_Stage("two-stage 2/2", others, ones - last_only, frozen_backbone=True))
    return stages


def exit_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over exits of the mean cross-entropy.

    logits (E, B, K), labels (B,), weights (E,) -> scalar.
    """
    num_exits, batch_size, _ = logits.shape
    ce = F.cross_entropy(logits.flatten(0, 1).float(), labels.repeat(num_exits), reduction="none")
    return (weights.to(ce.device) * ce.view(num_exits, batch_size).mean(dim=1)).sum()


def _train_stage(
    model: MultiExitModel,
    stage: _Stage,
    tokenizer: Any,
    encodings: dict[str, list[list[int]]],
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    max_steps: int | None,
    seed: int,
    device: str,
    precision: str,
    show_progress_bar: bool | None,
) -> int:
    """AdamW with linear warm-up (10%) and decay over one stage; returns the steps taken."""
    total = epochs * math.ceil(len(labels) / batch_size)
    total = min(total, max_steps) if max_steps else total
    warmup = max(1, total // 10)
    optimizer = torch.optim.AdamW(stage.params, lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    model.train()
    model.encoder.requires_grad_(not stage.frozen_backbone)
    model.heads[-1].requires_grad_(not stage.frozen_backbone)
    if stage.frozen_backbone:
        model.encoder.eval()
    bar = tqdm(total=total, desc=stage.name, unit="step", disable=_quiet(show_progress_bar))
    started, seen, steps = time.perf_counter(), 0, 0
    for rows in itertools.islice(_shuffled_batches(len(labels), batch_size, epochs, seed), total):
        batch = collate(tokenizer, encodings, rows.tolist(), device)
        with precision_context(device, precision):
            logits = model(**batch, detach_between_exits=stage.detach)  # (E, B, K)
        loss = exit_loss(logits, labels[rows].to(device), stage.weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(stage.params, 1.0)
        optimizer.step()
        scheduler.step()
        seen, steps = seen + len(rows), steps + 1
        bar.update()
        rate = seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{loss.item():.3f}", examples_per_s=f"{rate:.0f}")
    bar.close()
    model.requires_grad_(True)
    model.eval()
    return steps


def _shuffled_batches(n: int, batch_size: int, epochs: int, seed: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        yield from torch.randperm(n, generator=generator).split(batch_size)


def _dev_accuracy(
    clf: EarlyExitClassifier, dev: tuple[Texts, Sequence[Any]], names: list[str]
) -> dict[str, float]:
    """Accuracy of every exit on the dev set: {"<layer>": accuracy}."""
    texts, labels = dev
    y = np.asarray(_label_ids(labels, names))
    predictions = clf.exit_logits(texts).argmax(axis=-1)  # (E, N)
    accuracies = (predictions == y).mean(axis=1)  # (E,)
    return {str(layer): float(a) for layer, a in zip(clf.exits_, accuracies, strict=True)}


def _label_names(labels: Sequence[Any]) -> list[str]:
    return [str(label) for label in sorted(set(labels))]


def _label_ids(labels: Sequence[Any], names: list[str]) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(label) for label in labels} - index.keys())
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among label_names {names}")
    return [index[str(label)] for label in labels]


def _quiet(show_progress_bar: bool | None) -> bool | None:
    """tqdm's ``disable``: None (auto) hides the bar when stderr is not a terminal."""
    return None if show_progress_bar is None else not show_progress_bar
