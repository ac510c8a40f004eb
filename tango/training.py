"""Fine-tune on CPU: one loop for every model tango trains.

``fit`` is the loop: length-bucketed batches, bf16 autocast where the CPU has bf16 units
(AMX/AVX-512 BF16: ~3x fp32), AdamW (fused) with linear warm-up and decay and no decay on biases
and LayerNorm weights, gradient clipping, and a resumable checkpoint every ``checkpoint_every``
steps. What it minimises is a callback, so the same loop trains:

- a tier (``train_classifier``): plain fine-tuning, a shallow tier cut from the first K layers of
  a bigger encoder (``layers=K``), or distillation of a tier-1 from a fine-tuned tier-2
  (``teacher=DIR``: a temperature-scaled KL on the teacher's soft targets mixed with the usual
  cross-entropy; soft targets teach the student *how sure* to be, which is what the cascade's gate
  reads);
- a multi-exit model (``tango.early_exit.train_early_exit``), one ``fit`` per training stage.

A tier's directory is ``save_pretrained`` of model and tokenizer (with ``id2label``) plus
``tango_train.json``; ``checkpoint/`` holds what a killed run resumes from
(:mod:`tango.checkpoints`) and is removed when training ends. The teacher's side (its logits,
unlabelled rows, Gatekeeper's loss) is :mod:`tango.distillation`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tango.batching import Encodings, pad_tensors, tokenize
from tango.checkpoints import Checkpoint
from tango.data import LabelledData
from tango.distillation import UNLABELLED, gatekeeper_loss, load_unlabelled, predict_logits, teacher_logits
from tango.hardware import bf16_supported
from tango.modeldir import TRAIN_FILE
from tango.registry import register, resolve

Loss = Callable[[dict[str, torch.Tensor], np.ndarray], torch.Tensor]  # (batch, its rows) -> scalar


@dataclass
class TrainConfig:
    epochs: int = 1  # passes over the training rows
    batch_size: int = 32  # rows per optimizer step
    lr: float | None = None  # peak learning rate; None: 5e-5 under 50M parameters, else 3e-5
    max_length: int = 64  # tokens per row (SST-2 averages 25; use 128-256 for reviews)
    warmup: float = 0.06  # fraction of steps with a linear warm-up, then linear decay to 0
    weight_decay: float = 0.01  # AdamW decay, not applied to biases and LayerNorm weights
    seed: int = 0  # seeds batch order, dropout and the new classification head
    bf16: bool | str = "auto"  # bf16 autocast: "auto" uses it where the CPU has bf16 units
    max_steps: int | None = None  # stop after this many steps (smoke tests, budgets); per stage
    layers: int | None = None  # keep only the first K encoder layers (a shallow tier)
    teacher: str | None = None  # fine-tuned tier to distil from (same labels)
    distill_alpha: float = 0.5  # weight of the KL term; 1 - alpha goes to cross-entropy
    distill_temperature: float = 2.0  # softens both distributions in the KL term
    # Unlabelled in-domain files the teacher scores once; tier 1 learns them from its soft targets
    # alone (TinyBERT's augmentation). Needs a teacher.
    unlabelled: tuple[str, ...] = ()
    split_sentences: bool = False  # cut the unlabelled texts into sentences (reviews -> SST-2-like rows)
    unlabelled_rows: int | None = None  # at most this many unlabelled rows (seeded sample)
    # Gatekeeper (Rabanser et al. 2025): a last stage that makes tier 1 confident where it agrees
    # with its teacher (the last tier) and unsure where it does not; alpha weighs the two terms.
    gatekeeper: float | None = None
    gatekeeper_epochs: int = 1
    checkpoint_every: int = 500  # steps between resumable checkpoints
    resume: bool = True  # continue from out_dir/checkpoint when its settings match
    log_every: int = 20  # steps between progress-bar updates of loss and examples/s
    eval_batch_size: int = 64  # rows per batch when scoring dev rows or teacher logits


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    train_seconds: float  # wall time of the optimisation loop, summed over resumed runs
    examples_per_second: float
    dev_accuracy: float | None


# --- inputs --------------------------------------------------------------------------------------


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort within windows of 50 batches by length, then shuffle the batches.

    Rows in a batch have similar lengths (little padding) while the order stays random.
    """
    order = rng.permutation(len(lengths))
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _use_bf16(setting: bool | str) -> bool:
    return bf16_supported() if setting == "auto" else bool(setting)


# --- model ---------------------------------------------------------------------------------------


def _load(model_dir: Path, data: LabelledData, layers: int | None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    id2label = dict(enumerate(data.label_names))
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
        ignore_mismatched_sizes=True,
        dtype=torch.float32,
    )
    if layers is not None:
        encoder = model.base_model.encoder
        if not 0 < layers <= len(encoder.layer):
            raise ValueError(f"layers={layers}: {model_dir} has {len(encoder.layer)} layers")
        encoder.layer = encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    return model, tokenizer


def _optimizer(net, params: list[torch.nn.Parameter], config: TrainConfig, total_steps: int):
    """AdamW over ``params`` (decay on matrices only), linear warm-up then linear decay to 0."""
    n_params = sum(p.numel() for p in net.parameters())
    lr = config.lr or (5e-5 if n_params < 50e6 else 3e-5)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # biases, LayerNorm
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
    warmup = max(1, int(config.warmup * total_steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _gatekeeper_stage(
    net,
    rows: Encodings,
    pad_id: int | None,
    soft: torch.Tensor,
    config: TrainConfig,
    out_dir: Path,
    settings: dict,
) -> tuple[int, int, float]:
    """The last stage: ``config.gatekeeper_epochs`` passes of :func:`gatekeeper_loss`, resumable."""
    stage = replace(config, epochs=config.gatekeeper_epochs, seed=config.seed + 1000)

    def loss(batch: dict[str, torch.Tensor], index: np.ndarray) -> torch.Tensor:
        return gatekeeper_loss(net(**batch).logits.float(), soft[index], config.gatekeeper)

    checkpoint = Checkpoint(out_dir / "checkpoint" / "gatekeeper.pt", {**settings, "stage": "gatekeeper"})
    return fit(net, rows, pad_id, loss, stage, checkpoint, desc="gatekeeper")


def with_unlabelled(train: LabelledData, config: TrainConfig) -> LabelledData:
    """The labelled rows followed by the unlabelled ones (label -1), when the config names any."""
    if not config.unlabelled:
        return train
    if not config.teacher:
        raise ValueError(
            "unlabelled rows are learnt from a teacher's soft targets: give a teacher (--teacher)"
        )
    sentences, rows = config.split_sentences, config.unlabelled_rows
    extra = load_unlabelled(config.unlabelled, split_sentences=sentences, rows=rows, seed=config.seed)
    if not extra:
        raise ValueError(f"the unlabelled files {list(config.unlabelled)} hold no rows")
    labels = np.concatenate([train.labels, np.full(len(extra), UNLABELLED, dtype=np.int64)])
    source = f"{train.source} + {len(extra)} unlabelled rows of {', '.join(config.unlabelled)}"
    return LabelledData(list(train.texts) + extra, labels, train.label_names, source)


def _record_unlabelled(out_dir: Path, labelled: LabelledData, rows: int) -> None:
    record = json.loads((out_dir / TRAIN_FILE).read_text())
    record.update(labelled_rows=len(labelled), unlabelled_rows=rows)
    (out_dir / TRAIN_FILE).write_text(json.dumps(record, indent=2))


def _loss(
    logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None, config: TrainConfig
) -> torch.Tensor:
    """Cross-entropy; with a teacher, alpha * T^2 * KL(teacher_T || student_T) + (1-alpha) * CE.

    Unlabelled rows (label -1) count in the KL term only; a batch of them alone is pure KL.
    """
    known = labels >= 0
    ce = F.cross_entropy(logits[known], labels[known]) if bool(known.any()) else logits.sum() * 0.0
    if soft is None:
        return ce
    if not bool(known.any()):
        t = config.distill_temperature
        kl = F.kl_div(
            F.log_softmax(logits / t, -1), F.log_softmax(soft / t, -1), log_target=True, reduction="batchmean"
        )
        return t * t * kl
    t = config.distill_temperature
    kl = F.kl_div(
        F.log_softmax(logits / t, -1), F.log_softmax(soft / t, -1), log_target=True, reduction="batchmean"
    )
    return config.distill_alpha * t * t * kl + (1 - config.distill_alpha) * ce


def fingerprint(model_dir: Path, data: LabelledData, config: TrainConfig, **more) -> dict:
    """What must match for a checkpoint to be resumed; ``more`` adds the caller's own settings."""
    keep = (
        "epochs",
        "batch_size",
        "lr",
        "max_length",
        "warmup",
        "weight_decay",
        "seed",
        "max_steps",
        "layers",
        "teacher",
        "distill_alpha",
        "distill_temperature",
        "unlabelled",
        "split_sentences",
        "unlabelled_rows",
        "gatekeeper",
        "gatekeeper_epochs",
    )
    return {
        "model": str(model_dir),
        "rows": len(data),
        "labels": data.label_names,
        "first_text": str(data.texts[0])[:80],
        **{k: getattr(config, k) for k in keep},
        **more,
    }


# --- the loop ------------------------------------------------------------------------------------


def fit(
    net: torch.nn.Module,
    rows: Encodings,
    pad_id: int | None,
    loss: Loss,
    config: TrainConfig,
    checkpoint: Checkpoint,
    *,
    params: list[torch.nn.Parameter] | None = None,
    device: str | torch.device = "cpu",
    desc: str = "train",
    show_progress_bar: bool | None = True,
) -> tuple[int, int, float]:
    """Minimise ``loss`` over length-bucketed batches of ``rows``; returns (steps, examples,
    seconds) of the whole plan.

    ``loss(batch, index)`` runs ``net`` on the padded batch (tensors on ``device``, under bf16
    autocast when ``config.bf16`` resolves to it) and returns the scalar loss of rows ``index``.
    ``params`` (default: all of ``net``'s) are what AdamW updates; ``net`` is left in the mode
    the caller set (train, or eval for frozen parts). With ``config.resume``, training continues
    from ``checkpoint`` when it was made with the same fingerprint (see :func:`fingerprint`;
    saved every ``config.checkpoint_every`` steps, and once more at the end
    with ``checkpoint.keep``, so that a later stage can resume past this one); the seconds
    returned include those spent before a resume.
    """
    params = list(net.parameters()) if params is None else params
    plan = _plan(rows.lengths, config)
    optimizer, scheduler = _optimizer(net, params, config, len(plan))
    first, spent = 0, 0.0
    if config.resume and checkpoint.path.exists():
        first, spent = checkpoint.load(net, optimizer, scheduler)
        print(f"resuming {desc} from step {first} of {len(plan)} ({checkpoint.path})")
    device = torch.device(device)
    bf16 = _use_bf16(config.bf16)
    progress = _Progress(len(plan), first, desc, show_progress_bar, config.log_every)
    start = time.perf_counter()
    for step in range(first, len(plan)):
        index = plan[step]
        batch = pad_tensors(rows, index, pad_id, device)  # (B, T) each
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            value = loss(batch, index)
        _descend(value, params, optimizer, scheduler)
        progress.update(len(index), value.item())
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < len(plan):
            checkpoint.save(step + 1, spent + time.perf_counter() - start, net, optimizer, scheduler)
    progress.bar.close()
    if not math.isfinite(progress.last_loss):
        raise ValueError("training diverged (loss is not finite); lower the learning rate (--lr)")
    seconds = spent + time.perf_counter() - start
    if checkpoint.keep and first < len(plan):
        checkpoint.save(len(plan), seconds, net, optimizer, scheduler)
    return len(plan), sum(len(batch) for batch in plan), seconds


def _plan(lengths: np.ndarray, config: TrainConfig) -> list[np.ndarray]:
    """Every step's rows: each epoch's length-bucketed batches (seeded per epoch), in order, cut
    at ``config.max_steps``."""
    epochs = [
        _length_batches(lengths, config.batch_size, np.random.default_rng(config.seed + e))
        for e in range(config.epochs)
    ]
    return [batch for epoch in epochs for batch in epoch][: config.max_steps]


def _descend(value: torch.Tensor, params: list[torch.nn.Parameter], optimizer, scheduler) -> None:
    """One step down ``value``'s gradient, clipped to norm 1, then one step of the schedule."""
    value.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


class _Progress:
    """The progress bar of one :func:`fit`: a tick per step and, every ``log_every`` steps, the
    mean loss of those steps and the examples per second so far."""

    def __init__(self, total: int, first: int, desc: str, show: bool | None, log_every: int) -> None:
        disable = None if show is None else not show  # None: only on a terminal
        self.bar = tqdm(total=total, initial=first, desc=desc, unit="step", mininterval=5, disable=disable)
        self.step, self.log_every, self.seen, self.losses = first, log_every, 0, []
        self.start = time.perf_counter()

    def update(self, rows: int, loss: float) -> None:
        self.step, self.seen = self.step + 1, self.seen + rows
        self.losses.append(loss)
        self.bar.update()
        if self.step % self.log_every == 0:
            rate = self.seen / (time.perf_counter() - self.start)
            self.bar.set_postfix(loss=f"{np.mean(self.losses[-self.log_every :]):.4f}", ex_s=f"{rate:.0f}")

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else 0.0


# --- tiers ---------------------------------------------------------------------------------------


def train_classifier(
    model: str | Path,
    train: LabelledData,
    out_dir: str | Path,
    *,
    dev: LabelledData | None = None,
    name: str | None = None,
    config: TrainConfig | None = None,
    **options,
) -> TrainResult:
    """Fine-tune ``model`` (a directory or registered name) on ``train``; save it in ``out_dir``.

    Settings come from ``config`` or as keyword arguments (``epochs=1, layers=2, teacher=...``),
    see ``TrainConfig``. The tier is registered as ``name`` (default: ``out_dir``'s basename).

    >>> train_classifier("minilm", load_labelled("train.tsv"), "out", epochs=1)  # doctest: +SKIP
    """
    config = config or TrainConfig(**options)
    out_dir = Path(out_dir)
    model_dir = resolve(model)
    torch.manual_seed(config.seed)
    if config.gatekeeper is not None and not (config.teacher and 0 < config.gatekeeper < 1):
        raise ValueError(
            "the gatekeeper stage tunes tier 1's confidence toward agreement with its teacher: give "
            f"--teacher and an alpha in (0, 1); got teacher={config.teacher!r}, alpha={config.gatekeeper!r}"
        )
    labelled, train = train, with_unlabelled(train, config)
    net, tokenizer = _load(model_dir, train, config.layers)
    settings = fingerprint(model_dir, train, config)
    steps, examples, seconds = _train_tier(net, tokenizer, train, config, out_dir, settings)
    accuracy = evaluate(net, tokenizer, dev, config) if dev is not None else None

    net.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    result = TrainResult(out_dir, steps, seconds, examples / max(seconds, 1e-9), accuracy)
    _write_record(out_dir, model_dir, train, dev, config, _use_bf16(config.bf16), result)
    if len(train) > len(labelled):
        _record_unlabelled(out_dir, labelled, len(train) - len(labelled))
    shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    labels, metrics = train.label_names, {"dev_accuracy": accuracy}
    register(name or out_dir.name, out_dir, role="tier", runtime="torch", labels=labels, metrics=metrics)
    return result


def _train_tier(
    net, tokenizer, train: LabelledData, config: TrainConfig, out_dir: Path, settings: dict
) -> tuple[int, int, float]:
    """Every stage of a tier's training through :func:`fit`, resumable: (steps, examples, seconds)
    summed. With a teacher, its logits are scored (or read from the cache) first; the Gatekeeper
    stage, when asked for, comes last."""
    rows = tokenize(tokenizer, train.texts, config.max_length)
    soft = None
    if config.teacher:
        cache, bf16 = out_dir / "checkpoint" / "teacher.npy", _use_bf16(config.bf16)
        batch, length = config.eval_batch_size, config.max_length
        soft = teacher_logits(config.teacher, train, cache, max_length=length, batch_size=batch, bf16=bf16)
    labels = torch.from_numpy(train.labels)  # -1: an unlabelled row, learnt from the teacher alone

    def loss(batch: dict[str, torch.Tensor], index: np.ndarray) -> torch.Tensor:
        logits = net(**batch).logits.float()  # (B, C)
        return _loss(logits, labels[index], None if soft is None else soft[index], config)

    net.train()
    gatekeeper = config.gatekeeper is not None
    checkpoint = Checkpoint(out_dir / "checkpoint" / "state.pt", settings, keep=gatekeeper)
    steps, examples, seconds = fit(net, rows, tokenizer.pad_token_id, loss, config, checkpoint)
    if gatekeeper:
        extra = _gatekeeper_stage(net, rows, tokenizer.pad_token_id, soft, config, out_dir, settings)
        steps, examples, seconds = steps + extra[0], examples + extra[1], seconds + extra[2]
    return steps, examples, seconds


def evaluate(net, tokenizer, data: LabelledData, config: TrainConfig) -> float:
    """Accuracy on ``data`` in fp32 (what an fp32 export reproduces)."""
    rows = tokenize(tokenizer, data.texts, config.max_length)
    logits = predict_logits(net, rows, tokenizer.pad_token_id, batch_size=config.eval_batch_size)
    return float((logits.argmax(-1) == data.labels).mean())


def _write_record(
    out_dir: Path,
    model_dir: Path,
    train: LabelledData,
    dev: LabelledData | None,
    config: TrainConfig,
    bf16: bool,
    result: TrainResult,
) -> None:
    record = {
        "base_model": str(model_dir),
        "train": train.source,
        "train_rows": len(train),
        "dev": dev.source if dev is not None else None,
        "dev_rows": len(dev) if dev is not None else None,
        "label_names": train.label_names,
        "inputs": "pairs" if train.texts and isinstance(train.texts[0], tuple) else "texts",
        "config": asdict(config),
        "bf16": bf16,
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 1),
        "examples_per_second": round(result.examples_per_second, 1),
        "dev_accuracy": result.dev_accuracy,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    (out_dir / TRAIN_FILE).write_text(json.dumps(record, indent=2))
