"""What a tier learns from a teacher besides its labels (``train_classifier(teacher=...)``).

- the teacher's logits over the training rows (:func:`teacher_logits`): scored once, in chunks
  saved as they finish (a killed run resumes from the last one), cached beside the checkpoint and
  rescored only for other rows or another teacher;
- unlabelled in-domain rows (:func:`load_unlabelled`, label :data:`UNLABELLED`), which a tier 1
  learns from the teacher's soft targets alone (TinyBERT's augmentation);
- Gatekeeper's loss (:func:`gatekeeper_loss`), the last stage that teaches tier 1 where to defer.

The distillation loss itself and the stages run in :mod:`tango.training`'s loop, which imports
this module (never the reverse). :func:`predict_logits` is the one place a training-side model
scores rows (the teacher here, dev accuracy there).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tango.batching import Encodings, pad_tensors, plan_batches, tokenize
from tango.data import LabelledData
from tango.modeldir import has_torch_weights
from tango.registry import resolve


@torch.no_grad()
def predict_logits(
    model,
    rows: Encodings,
    pad_id: int | None,
    *,
    batch_size: int = 64,
    bf16: bool = False,
    progress: str | None = None,
) -> np.ndarray:
    """Logits (N, C) in fp32, computed in length-sorted batches, returned in input order."""
    model.eval()
    logits = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    batches = plan_batches(rows.lengths, batch_size)
    for index in tqdm(batches, desc=progress, disable=progress is None, mininterval=5):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**pad_tensors(rows, index, pad_id)).logits
        logits[index] = out.float().numpy()
    return logits


def gatekeeper_loss(logits: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """Gatekeeper's loss with the teacher's answers as the truth a cascade defers to.

    Rows where the student agrees with the teacher: cross-entropy toward that answer (be sure);
    rows where it disagrees: cross-entropy toward the uniform distribution (be unsure, so the gate
    sends them on). ``alpha`` weighs the first term, ``1 - alpha`` the second.
    """
    log_p = F.log_softmax(logits, -1)  # (B, C)
    target = teacher.argmax(-1)  # (B,)
    agree = log_p.argmax(-1) == target
    zero = logits.sum() * 0.0
    sure = F.nll_loss(log_p[agree], target[agree]) if bool(agree.any()) else zero
    unsure = -log_p[~agree].mean() if bool((~agree).any()) else zero
    return alpha * sure + (1 - alpha) * unsure


UNLABELLED = -1  # the label id of a row the teacher alone teaches


def _texts_digest(texts: list) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(repr(text).encode() + b"\0")
    return digest.hexdigest()


def load_unlabelled(
    paths: Sequence[str | Path], *, split_sentences: bool = False, rows: int | None = None, seed: int = 0
) -> list:
    """The unlabelled rows of ``paths``: each file's texts (cut into sentences with
    ``split_sentences``, ``<br />`` removed), in file order, then a seeded sample of ``rows`` if set."""
    from tango.data import load_texts
    from tango.sentences import clean_text, sentences_of

    texts: list = []
    for path in paths:
        found = load_texts(path)
        if split_sentences:
            found = list(sentences_of(t for t in found if isinstance(t, str)))
        else:
            found = [clean_text(t) if isinstance(t, str) else t for t in found]
        texts.extend(t for t in found if t)
    if rows is not None and rows < len(texts):
        keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:rows])
        texts = [texts[i] for i in keep]
    return texts


TEACHER_CHUNK = 4096  # rows the teacher scores between saves of its logits (a kill loses at most these)


def teacher_scorer(
    teacher_dir: Path, *, max_length: int, batch_size: int, bf16: bool
) -> tuple[list[str], Callable[[Sequence], np.ndarray]]:
    """The teacher's label names and a function from texts to its logits (fp32, input order).

    A directory with PyTorch weights scores with them (bf16 autocast if asked). An exported form
    (OpenVINO IR, ONNX; a linear tier too) scores as a :class:`tango.tiers.Tier` on its own
    runtime: the form the cascade serves, so tier 1 learns the answers it will be compared with,
    and at int8 a few times faster than PyTorch over 100,000s of rows. Either reads
    ``max_length`` tokens of a row, the student's length: soft targets on text the student sees.
    """
    if not has_torch_weights(teacher_dir):
        from tango.tiers import Tier  # the serving side; training imports it only for this

        tier = Tier.from_pretrained(teacher_dir, max_length=max_length, batch_size=batch_size)
        return list(tier.labels), lambda texts: tier.logits(list(texts)).astype(np.float32)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)

    def score(texts: Sequence) -> np.ndarray:
        rows = tokenize(tokenizer, texts, max_length)
        return predict_logits(model, rows, tokenizer.pad_token_id, batch_size=batch_size, bf16=bf16)

    return [model.config.id2label[i] for i in range(model.config.num_labels)], score


def teacher_logits(
    teacher: str,
    data: LabelledData,
    cache: Path,
    *,
    max_length: int,
    batch_size: int = 64,
    bf16: bool = False,
) -> torch.Tensor:
    """The teacher's logits over the training rows, computed once and cached; the scoring itself
    resumes from the last saved chunk (unlabelled files run to 100,000s of rows). The teacher is
    a PyTorch tier (bf16 if asked) or an exported form (:func:`teacher_scorer`). ``max_length``
    tokens per row, ``batch_size`` rows per batch."""
    identity = {
        "teacher": str(resolve(teacher)),
        "rows": len(data),
        "texts": _texts_digest(data.texts),
        "max_length": max_length,  # the teacher reads what the student reads: no more tokens
    }
    identity_file = cache.with_name(cache.stem + ".json")
    if identity_file.exists() and json.loads(identity_file.read_text()) != identity:
        cache.unlink(missing_ok=True)  # scored for other rows or another teacher: start again
        cache.with_name(cache.stem + ".partial.npy").unlink(missing_ok=True)
    if cache.exists():
        logits = np.load(cache)
        if len(logits) == len(data):
            return torch.from_numpy(logits)
    cache.parent.mkdir(parents=True, exist_ok=True)
    identity_file.write_text(json.dumps(identity))
    names, score = teacher_scorer(resolve(teacher), max_length=max_length, batch_size=batch_size, bf16=bf16)
    if names != data.label_names:
        raise ValueError(
            f"teacher {teacher} predicts {names} but the data's labels are "
            f"{data.label_names}; pass matching label names (--labels)"
        )
    partial = cache.with_name(cache.stem + ".partial.npy")
    done = np.load(partial) if partial.exists() else np.zeros((0, len(names)), dtype=np.float32)
    bar = tqdm(total=len(data), initial=len(done), desc="teacher logits", unit="row", mininterval=5)
    parts = [done]
    for start in range(len(done), len(data), TEACHER_CHUNK):
        parts.append(score(data.texts[start : start + TEACHER_CHUNK]))
        np.save(partial.with_suffix(".tmp.npy"), np.concatenate(parts))
        partial.with_suffix(".tmp.npy").replace(partial)  # atomic: a kill keeps the chunks before it
        bar.update(len(parts[-1]))
    bar.close()
    logits = np.concatenate(parts)
    np.save(cache, logits)
    partial.unlink(missing_ok=True)
    return torch.from_numpy(logits)
