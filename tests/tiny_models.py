"""Tiny random-weight classifiers for tests: built from a config, no network, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tango.data import LabelledData

WORDS = (
    "the a an and or but not no is was are were be been it this that film movie story plot "
    "actors acting good great wonderful excellent fun funny brilliant best love loved bad awful "
    "terrible boring dull worst hate hated mess waste i you he she they we very really so too "
    "quite rather of in on at to for with by from as about than then there here what which who "
    "why how one two three time day night man woman life world news market sports game team "
    "win lost company stock shares price war government science space ? ! . , '"
).split()


def write_vocab(directory: Path) -> Path:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path = directory / "vocab.txt"
    path.write_text("\n".join(special + sorted(set(WORDS))) + "\n")
    return path


def build_tiny_classifier(
    directory: Path,
    seed: int = 0,
    labels: tuple[str, ...] = ("negative", "positive"),
    layers: int = 2,
    hidden: int = 32,
    model_type: str = "bert",
) -> Path:
    """Save a randomly initialised sequence classifier + tokenizer as a HF directory."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        MPNetConfig,
        MPNetForSequenceClassification,
    )

    directory.mkdir(parents=True, exist_ok=True)
    # transformers 5 ignores BertTokenizerFast(vocab_file=...): build the WordPiece model directly.
    wordpiece = BertWordPieceTokenizer(str(write_vocab(directory)), lowercase=True)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, model_max_length=64)
    assert len(tokenizer) == 5 + len(set(WORDS)), "the tiny vocabulary did not load"
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=66,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        pad_token_id=0,
        initializer_range=0.5,
    )  # wide weights: inputs get visibly different logits
    torch.manual_seed(seed)
    if model_type == "bert":
        model = BertForSequenceClassification(BertConfig(**common))
    else:
        model = MPNetForSequenceClassification(MPNetConfig(**common, bos_token_id=2, eos_token_id=3))
    # Default heads (std 0.02) give near-uniform probabilities; wider ones spread confidences.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "classifier" in name and param.dim() == 2:
                param.normal_(0.0, 1.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


POSITIVE = "good great wonderful excellent fun funny brilliant best love loved".split()
NEGATIVE = "bad awful terrible boring dull worst hate hated mess waste".split()
FILLER = "the a film movie story plot actors acting was is it this very really so".split()


def sentiment_rows(n: int, seed: int) -> LabelledData:
    """Sentences of filler words with one or two sentiment words: learnable from the vocabulary."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, rng.integers(3, 8)))
        for _ in range(rng.integers(1, 3)):
            words.insert(rng.integers(0, len(words) + 1), rng.choice((NEGATIVE, POSITIVE)[label]))
        texts.append(" ".join(words))
    return LabelledData(texts, labels.astype(np.int64), ["negative", "positive"], "synthetic")


SCORING_TEXTS = [
    "the film was good",
    "awful boring mess",
    "i loved it",
    "the team lost the game",
    "a wonderful story",
]


def write_scoring_jsonl(path: Path, n: int, start: int = 0, pad: str = "") -> None:
    """``n`` JSON lines ``{"id": "r<i>", "text": ...}`` for scoring runs, each text unique."""
    import json

    with open(path, "w") as file:
        for i in range(start, start + n):
            text = f"{SCORING_TEXTS[i % len(SCORING_TEXTS)]} {i}{pad}"
            file.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")


def two_tiny_tiers(root: Path) -> tuple[Path, Path]:
    """Two tiny classifiers with different weights (seeds 0 and 1): a cascade's tier 1 and 2."""
    return build_tiny_classifier(root / "t1", seed=0), build_tiny_classifier(root / "t2", seed=1)


def write_tsv(path, data):
    """``data`` (LabelledData) as a labelled TSV file at ``path`` (sentence, label id); ``path``."""
    path.write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(data.texts, data.labels, strict=True))
    )
    return path


def calibrate_args(tmp_path, tier_dirs, traffic_rows: int, labelled_rows: int, seed: int) -> list[str]:
    """`tango calibrate` arguments for a two-tier cascade with unlabelled traffic (JSONL, seeded
    ``seed``) and labelled rows beside it (TSV with label names, seeded ``seed + 1``), max drop 5."""
    import json

    traffic = sentiment_rows(traffic_rows, seed=seed).texts
    (tmp_path / "traffic.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in traffic))
    checks = sentiment_rows(labelled_rows, seed=seed + 1)
    named = [checks.label_names[y] for y in checks.labels]
    (tmp_path / "dev.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(checks.texts, named, strict=True))
    )
    args = ["calibrate", str(tmp_path / "c"), "--tier1", str(tier_dirs[0]), "--tier2", str(tier_dirs[1])]
    return args + [
        "--unlabelled",
        str(tmp_path / "traffic.jsonl"),
        "--max-drop",
        "5",
        "--dev",
        str(tmp_path / "dev.tsv"),
    ]
