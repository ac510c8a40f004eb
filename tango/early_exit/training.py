"""Fine-tuning a multi-exit encoder: the four training modes of the issue.

- ``joint``: the sum of every exit's cross-entropy (Schwartz et al. 2020).
- ``weighted``: exit losses weighted by their layer number, ``sum_j j * L_j / sum_j j`` (PABEE).
- ``sweet``: the sum, but the gradient is cut between segments, so exit i's loss only updates the
  layers between exit i-1 and exit i (Rotem et al. 2023).
- ``two-stage``: stage 1 trains the backbone and the last head; stage 2 freezes them and trains
  the other heads (DeeBERT).

A mode is a list of stages, each a loss over the exits and the parameters it updates; each stage
runs :func:`tango.training.fit`, the loop tiers train with (length bucketing, bf16 autocast,
warm-up and decay, checkpoint and resume).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from tango.batching import Encodings, tokenize
from tango.checkpoints import Checkpoint
from tango.data import LabelledData
from tango.early_exit.classifier import EarlyExitClassifier, Texts, auto_precision, check_device
from tango.early_exit.model import MultiExitModel
from tango.labels import map_labels
from tango.texts import as_texts
from tango.training import TrainConfig, fingerprint, fit

MODES = ("joint", "weighted", "sweet", "two-stage")


@dataclass
class _Stage:
    name: str
    params: list[torch.nn.Parameter]  # what the optimizer updates
    weights: torch.Tensor  # (E,) weight of each exit's loss
    detach: bool = False  # SWEET: cut the gradient between segments
    frozen_backbone: bool = False  # two-stage, stage 2: encoder and last head fixed, in eval mode


@dataclass(frozen=True)
class EarlyExitOptions:
    """How :func:`train_early_exit` trains, as one value.

    ``exits`` ("all" or layer numbers) and ``mode`` (one of :data:`MODES`) shape the model;
    ``pooling`` is what each exit head reads: "mean" of the tokens, or "cls" (the papers' choice,
    useless at the low layers of mean-pooled sentence encoders; see ``model.pool``).
    ``label_names`` None = the sorted distinct training labels. ``max_steps`` caps each stage.
    ``precision`` "auto" = bf16 autocast where the hardware has fast bf16 (AMX CPUs, CUDA).
    """

    exits: str | Sequence[int] = "all"
    mode: str = "joint"
    pooling: str = "mean"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 128
    seed: int = 0
    label_names: Sequence[str] | None = None
    max_steps: int | None = None
    device: str = "cpu"
    precision: str = "auto"
    show_progress_bar: bool | None = None


def train_early_exit(
    base_model_dir: str | Path,
    train_texts: Texts,
    train_labels: Sequence[Any],
    out_dir: str | Path,
    options: EarlyExitOptions | None = None,
    *,
    dev: tuple[Texts, Sequence[Any]] | None = None,
    **keywords: Any,
) -> dict[str, Any]:
    """Fine-tune ``base_model_dir`` with exits and save an early-exit directory to ``out_dir``.

    ``options`` (an :class:`EarlyExitOptions`) or its fields as keywords say how (keywords override
    ``options``); other keywords are further :class:`tango.training.TrainConfig` settings
    (``resume``, ``checkpoint_every``, ``warmup``, ``weight_decay``): a killed run resumes from
    ``out_dir/checkpoint`` as a tier's does. ``dev`` = (texts, labels) gives per-exit accuracy.
    Returns the training record also stored in ``early_exit.json``, with per-exit dev accuracy.
    """
    names = {f.name for f in fields(EarlyExitOptions)}
    options = replace(options or EarlyExitOptions(), **{k: v for k, v in keywords.items() if k in names})
    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {options.mode!r}")
    if len(train_texts) != len(train_labels) or not len(train_texts):
        raise ValueError(f"{len(train_texts)} texts for {len(train_labels)} labels; need >0 each")
    train = _labelled(train_texts, train_labels, options.label_names)
    check_device(options.device)
    precision = _training_precision(options)
    config = _train_config(options, precision, {k: v for k, v in keywords.items() if k not in names})
    torch.manual_seed(options.seed)

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    encoder = AutoModel.from_pretrained(base_model_dir, add_pooling_layer=False)
    model = MultiExitModel(encoder, options.exits, len(train.label_names), options.pooling).to(options.device)
    out_dir = Path(out_dir)
    exits = dict(mode=options.mode, exits=list(model.exits), pooling=options.pooling)
    settings = fingerprint(Path(base_model_dir), train, config, **exits)
    steps, seconds = _train_stages(model, tokenizer, train, config, out_dir, settings, options)

    clf = EarlyExitClassifier(
        model,
        tokenizer,
        train.label_names,
        batch_size=options.batch_size,
        max_length=options.max_length,
        device=options.device,
        precision=precision,
    )
    record: dict[str, Any] = {
        "mode": options.mode,
        "base_model": str(base_model_dir),
        "train_examples": len(train),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "dev_accuracy": _dev_accuracy(clf, dev) if dev is not None else None,
    }
    clf.metadata = record
    clf.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    return {"exits": list(model.exits), "pooling": options.pooling, **record}


def _training_precision(options: EarlyExitOptions) -> str:
    """ "fp32" or "bf16-autocast": training keeps fp32 weights, bf16 runs under autocast."""
    precision = auto_precision(options.device) if options.precision == "auto" else options.precision
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16'; got {options.precision!r}")
    return "bf16-autocast" if precision == "bf16" else precision


def _train_config(options: EarlyExitOptions, precision: str, more: dict[str, Any]) -> TrainConfig:
    """The loop's settings: those of ``options`` it reads, and ``more`` (resume, warm-up, ...)."""
    return TrainConfig(
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        max_length=options.max_length,
        seed=options.seed,
        bf16=precision == "bf16-autocast",
        max_steps=options.max_steps,
        **more,
    )


def _train_stages(
    model: MultiExitModel,
    tokenizer: Any,
    train: LabelledData,
    config: TrainConfig,
    out_dir: Path,
    settings: dict,
    options: EarlyExitOptions,
) -> tuple[int, float]:
    """Every stage of ``options.mode``, each resumable from its own checkpoint (a stage but the
    last keeps its final one, so a rerun starts past it): (steps, seconds) summed."""
    rows = tokenize(tokenizer, train.texts, options.max_length)
    labels = torch.from_numpy(train.labels).to(options.device)
    stages, steps, seconds = _stages(model, options.mode), 0, 0.0
    for number, stage in enumerate(stages, start=1):
        path = out_dir / "checkpoint" / f"stage{number}.pt"
        checkpoint = Checkpoint(path, settings, keep=number < len(stages))
        loop = dict(device=options.device, show_progress_bar=options.show_progress_bar)
        taken, _, spent = _train_stage(
            model, stage, rows, tokenizer.pad_token_id, labels, config, checkpoint, **loop
        )
        steps, seconds = steps + taken, seconds + spent
    return steps, seconds


def _labelled(texts: Texts, labels: Sequence[Any], label_names: Sequence[str] | None) -> LabelledData:
    """Texts and labels (names or ids) as ``LabelledData``, labels as ids into the names."""
    names = [str(name) for name in label_names] if label_names else None
    ids, names = map_labels([str(label) for label in labels], names)
    return LabelledData(as_texts(texts), ids, names)


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
    rows: Encodings,
    pad_id: int | None,
    labels: torch.Tensor,
    config: TrainConfig,
    checkpoint: Checkpoint,
    **loop: Any,
) -> tuple[int, int, float]:
    """One stage through :func:`tango.training.fit`: (steps, examples, seconds)."""

    def loss(batch: dict[str, torch.Tensor], index: np.ndarray) -> torch.Tensor:
        logits = model(**batch, detach_between_exits=stage.detach)  # (E, B, K)
        return exit_loss(logits, labels[index], stage.weights)

    model.train()
    model.encoder.requires_grad_(not stage.frozen_backbone)
    model.heads[-1].requires_grad_(not stage.frozen_backbone)
    if stage.frozen_backbone:
        model.encoder.eval()
    try:
        return fit(
            model,
            rows,
            pad_id,
            loss,
            config,
            checkpoint,
            params=stage.params,
            desc=stage.name,
            **loop,
        )
    finally:
        model.requires_grad_(True)
        model.eval()


def _dev_accuracy(clf: EarlyExitClassifier, dev: tuple[Texts, Sequence[Any]]) -> dict[str, float]:
    """Accuracy of every exit on the dev set: {"<layer>": accuracy}."""
    texts, labels = dev
    y, _ = map_labels([str(label) for label in labels], list(clf.labels))
    predictions = clf.exit_logits(texts).argmax(axis=-1)  # (E, N)
    accuracies = (predictions == y).mean(axis=1)  # (E,)
    return {str(layer): float(a) for layer, a in zip(clf.exits_, accuracies, strict=True)}
