"""Early exit: crafted exits, compaction == batch of one, patience, SWEET gradients, training."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from tolerances import FP32_SOFT_TEMPERATURE, assert_close
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizer, MPNetConfig, MPNetModel

from tango.checkpoints import Checkpoint
from tango.early_exit import EarlyExitClassifier, ExitPolicy, MultiExitModel, schedule, train_early_exit
from tango.early_exit.classifier import check_device, encode
from tango.early_exit.model import parse_exits, pool
from tango.early_exit.training import _stages, _train_stage
from tango.tiers import bf16_supported
from tango.training import TrainConfig

SPECIALS = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] = 1, MPNet's padding index
CODES = [f"code{c}" for c in range(4)]  # crafted tests: the token at position 0 picks the exit
WORDS = ["good", "bad", "the", "a", "movie", "film", "plot", "was", "is", "very", "quite", "so"]
VOCAB = SPECIALS + CODES + WORDS
HIDDEN = 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run ~30x faster without intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    tok = BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)})
    assert len(tok) == len(VOCAB), "the tokenizer ignored our vocabulary"
    assert tok.pad_token_id == 1
    return tok


def tiny_encoder(kind: str, num_layers: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    sizes = dict(
        vocab_size=len(VOCAB),
        hidden_size=HIDDEN,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=64,
        pad_token_id=1,
    )
    if kind == "bert":
        return BertModel(BertConfig(**sizes), add_pooling_layer=False)
    return MPNetModel(MPNetConfig(**sizes), add_pooling_layer=False)


def random_texts(n: int, seed: int, max_words: int = 14) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) for _ in range(n)]


# --- exits and policies --------------------------------------------------------------------------


def test_parse_exits() -> None:
    assert parse_exits("all", 4) == (1, 2, 3, 4)
    assert parse_exits("1, 3", 4) == (1, 3, 4), "the last layer is always an exit"
    assert parse_exits([4, 2, 2], 4) == (2, 4)
    for bad in ("0,2", "1,5", "one,two"):
        with pytest.raises(ValueError, match="exit"):
            parse_exits(bad, 4)


def craft(model: MultiExitModel) -> MultiExitModel:
    """Make the layers identities and head i confident only when the first token is code{i}.

    Zeroed linear maps turn each layer into LayerNorm(LayerNorm(h)) = h; the embedding of code{c}
    is 10 * e_c, so after LayerNorm the CLS vector is high on dim c and equal on all others. Head
    i's logit gap is 20 * (h_i - h_last): ~24 when c == i, exactly 0 (probabilities 0.5) otherwise.
    """
    with torch.no_grad():
        for linear in (m for m in model.encoder.encoder.layer.modules() if isinstance(m, nn.Linear)):
            linear.weight.zero_()
            linear.bias.zero_()
        embeddings = model.encoder.embeddings
        embeddings.position_embeddings.weight.zero_()
        if hasattr(embeddings, "token_type_embeddings"):
            embeddings.token_type_embeddings.weight.zero_()
        embeddings.word_embeddings.weight.zero_()
        for c, code in enumerate(CODES):
            embeddings.word_embeddings.weight[VOCAB.index(code), c] = 10.0
        for i, head in enumerate(model.heads):
            head.dense.weight.copy_(torch.eye(HIDDEN))
            head.dense.bias.zero_()
            head.classifier.weight.zero_()
            head.classifier.bias.zero_()
            head.classifier.weight[1, i] = 20.0
            head.classifier.weight[1, HIDDEN - 1] = -20.0
    return model.eval()


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
@pytest.mark.parametrize("policy", [ExitPolicy("maxprob", 0.9), ExitPolicy("entropy", 0.2)])
@pytest.mark.parametrize("batch_size", [None, 1, 5])
def test_crafted_heads_force_known_exits(kind: str, policy: ExitPolicy, batch_size, tokenizer) -> None:
    """Rows of mixed lengths in random order come back in input order with their known exits."""
    model = craft(MultiExitModel(tiny_encoder(kind), exits=(1, 2, 4), num_labels=2, pooling="cls"))
    rng = random.Random(0)
    codes = [rng.randrange(3) for _ in range(24)]  # code{c} -> exit index c -> layer (1, 2, 4)[c]
    texts = [" ".join([CODES[c], *rng.choices(WORDS, k=rng.randint(0, 9))]) for c in codes]
    batch = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    logits, exit_index = schedule.early_exit(
        model, batch["input_ids"], batch["attention_mask"], policy, batch_size=batch_size
    )
    assert exit_index.tolist() == codes
    assert (logits.argmax(-1) == 1).all(), "every exit here is confident in class 1"


def run_without_compaction(policy: ExitPolicy, logits: torch.Tensor) -> list[int]:
    """Reference: the first exit each row of (E, N, K) logits takes; the last one if none."""
    state = policy.start(logits.shape[1], "cpu")
    first = torch.full((logits.shape[1],), logits.shape[0] - 1)
    taken = torch.zeros(logits.shape[1], dtype=torch.bool)
    for i in range(logits.shape[0] - 1):
        done, state = policy.step(i, logits[i], state)
        first = torch.where(done & ~taken, i, first)
        taken |= done
    return first.tolist()


@pytest.mark.parametrize(
    ("patience", "expected"),
    [(1, [1, 2, 3, 1, 3]), (2, [2, 3, 3, 3, 3]), (3, [3, 3, 3, 3, 3])],
)
def test_patience_counts_consecutive_agreeing_exits(patience: int, expected: list[int]) -> None:
    argmax = torch.tensor(
        [[0, 0, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0]]
    ).T  # (E=4, N=5): the argmax of each row at each exit
    logits = nn.functional.one_hot(argmax, 2).float() * 3.0  # (E, N, K)
    assert run_without_compaction(ExitPolicy("patience", patience=patience), logits) == expected


@pytest.mark.parametrize(("patience", "expected_layer"), [(1, 3), (2, 4)])
def test_patience_through_the_model(patience: int, expected_layer: int, tokenizer) -> None:
    """Heads with fixed outputs (bias only) vote 1, 0, 0, 0 at layers 1..4."""
    model = MultiExitModel(tiny_encoder("bert"), exits="all", num_labels=2).eval()
    with torch.no_grad():
        for i, head in enumerate(model.heads):
            head.classifier.weight.zero_()
            head.classifier.bias.copy_(torch.tensor([0.0, 1.0] if i == 0 else [1.0, 0.0]))
    clf = EarlyExitClassifier(model, tokenizer, ["neg", "pos"], policy="patience", patience=patience)
    result = clf.predict_detailed(random_texts(5, seed=1))
    assert result.exit_layer.tolist() == [expected_layer] * 5
    assert result.labels.tolist() == ["neg"] * 5


# --- compaction ----------------------------------------------------------------------------------


def random_classifier(
    kind: str,
    tokenizer,
    policy: str,
    texts: list,
    pooling: str = "mean",
    device: str = "cpu",
    exits: tuple[int, ...] = (1, 2, 4),
    patience: int = 1,
) -> EarlyExitClassifier:
    """A random model whose exits disagree and are peaky on ``texts``; median thresholds.

    Each head's bias is centred so that its argmax varies across rows, and each exit's
    temperature scales its logits to a spread of about 3, so every exit is confident on some rows.
    """
    model = MultiExitModel(tiny_encoder(kind, seed=3), exits=exits, num_labels=3, pooling=pooling)
    clf = EarlyExitClassifier(
        model, tokenizer, ["a", "b", "c"], policy=policy, patience=patience, device=device
    )
    clf.batch_size = 8
    logits = torch.from_numpy(clf.exit_logits(texts))  # (E, N, K)
    with torch.no_grad():
        for head, exit_logits in zip(model.heads, logits, strict=True):
            head.classifier.bias -= exit_logits.mean(dim=0)
    logits = logits - logits.mean(dim=1, keepdim=True)
    clf.temperatures = (logits.std(dim=(1, 2)) / 3).tolist()
    probs = torch.softmax(logits[0] / clf.temperatures[0], dim=-1)  # (N, K) at the first exit
    entropy = -(probs * probs.log()).sum(dim=-1) / np.log(3)
    scores = {"maxprob": probs.max(dim=-1).values, "entropy": entropy}
    clf.threshold = middle_gap(scores[policy]) if policy in scores else None
    return clf


def middle_gap(values: torch.Tensor) -> float:
    """A threshold in the widest gap of the middle third of ``values``: far from every row, so
    float rounding between padded and unpadded runs cannot flip a decision."""
    v = values.sort().values
    lo, hi = len(v) // 3, 2 * len(v) // 3
    k = lo + int((v[lo + 1 : hi + 1] - v[lo:hi]).argmax())
    return float(v[k] + v[k + 1]) / 2


@pytest.mark.parametrize(
    ("kind", "policy", "pairs", "pooling"),
    [
        ("bert", "maxprob", False, "mean"),
        ("bert", "maxprob", False, "cls"),
        ("bert", "entropy", True, "mean"),
        ("bert", "patience", False, "mean"),
        ("mpnet", "maxprob", False, "mean"),
        ("mpnet", "patience", False, "cls"),
    ],
)
def test_compaction_equals_batch_of_one(
    kind: str, policy: str, pairs: bool, pooling: str, tokenizer, monkeypatch
) -> None:
    """Breadth-first over rows of mixed lengths, at several batch sizes and compaction shares
    (0 = gather as soon as one row leaves, 1 = never gather), gives each row its batch-of-one
    answer: the same exit and label, probabilities to float rounding."""
    texts = random_texts(40, seed=2)
    if pairs:
        texts = list(zip(texts, random_texts(40, seed=3), strict=True))
    clf = random_classifier(kind, tokenizer, policy, texts, pooling)
    clf.batch_size = 1
    alone = [clf.predict_detailed([text]) for text in texts]
    expected_layers = [r.exit_layer[0] for r in alone]
    expected_probabilities = np.concatenate([r.probabilities for r in alone])
    assert len(set(expected_layers)) >= 2, "the test needs early and late rows"
    for batch_size, share in [(1, 0.125), (3, 0.0), (3, 1.0), (8, 0.125), (8, 0.5), (64, 0.125)]:
        monkeypatch.setattr(schedule, "COMPACT_SHARE", share)
        clf.batch_size = batch_size
        batched = clf.predict_detailed(texts)
        where = f"batch_size {batch_size}, compact_share {share}"
        assert batched.exit_layer.tolist() == expected_layers, where
        # temperatures here are ~1e-4 (the tiny model's logits barely differ), so they magnify
        # fp32 rounding of padded matmuls ~1e4-fold
        assert_close(batched.probabilities, expected_probabilities, FP32_SOFT_TEMPERATURE, err_msg=where)
        assert batched.labels.tolist() == [r.labels[0] for r in alone], where


@pytest.mark.parametrize("patience", [1, 2])
def test_patience_history_survives_rebatching(patience: int, tokenizer, monkeypatch) -> None:
    """Each row's patience streak moves with it when batches are compacted and merged: the exits
    equal the reference computed from every exit's logits, and the batch-of-one exits."""
    texts = random_texts(60, seed=6)
    clf = random_classifier("bert", tokenizer, "patience", texts, exits=(1, 2, 3, 4), patience=patience)
    reference = run_without_compaction(clf._policy(), torch.from_numpy(clf.exit_logits(texts)))
    expected = [clf.exits_[i] for i in reference]
    assert len(set(expected)) >= 2, "the test needs early and late rows"
    clf.batch_size = 1
    assert [clf.predict_detailed([t]).exit_layer[0] for t in texts] == expected
    for batch_size, share in [(2, 0.0), (7, 0.125), (7, 1.0), (64, 0.0)]:
        monkeypatch.setattr(schedule, "COMPACT_SHARE", share)
        clf.batch_size = batch_size
        assert clf.predict_detailed(texts).exit_layer.tolist() == expected, (batch_size, share)


def test_rows_keep_their_input_order(tokenizer) -> None:
    """Shuffling the input shuffles the answers the same way (length sorting is undone)."""
    texts = random_texts(40, seed=2)
    clf = random_classifier("bert", tokenizer, "maxprob", texts)
    clf.batch_size = 4
    result = clf.predict_detailed(texts)
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = clf.predict_detailed([texts[i] for i in order])
    assert shuffled.exit_layer.tolist() == result.exit_layer[order].tolist()
    assert shuffled.labels.tolist() == result.labels[order].tolist()
    np.testing.assert_allclose(shuffled.probabilities, result.probabilities[order], atol=1e-4)


def test_no_exit_skips_compaction_and_builds_each_mask_once(tokenizer, monkeypatch) -> None:
    """Where no row leaves before the last exit, no batch is gathered or re-batched: each batch's
    layer mask is built once for the whole call, and the answers are the batch-of-one ones."""
    texts = random_texts(40, seed=2)
    clf = random_classifier("mpnet", tokenizer, "maxprob", texts)
    clf.threshold, clf.batch_size = 1.0, 8  # a probability of exactly 1 never happens here
    merges, masks = [], []
    monkeypatch.setattr(schedule, "_merge", lambda *args: merges.append(args))
    layer_mask = clf.model.layer_mask
    monkeypatch.setattr(clf.model, "layer_mask", lambda *a, **k: masks.append(1) or layer_mask(*a, **k))
    result = clf.predict_detailed(texts)
    assert result.exit_layer.tolist() == [4] * len(texts)
    assert merges == [] and len(masks) == len(texts) // 8, "one mask per batch, no gathers"
    monkeypatch.undo()
    clf.batch_size = 1
    alone = np.concatenate([clf.predict_detailed([t]).probabilities for t in texts])
    np.testing.assert_allclose(result.probabilities, alone, atol=1e-4)


def test_early_exit_refuses_left_padding(tokenizer) -> None:
    model = MultiExitModel(tiny_encoder("bert"), exits="all", num_labels=2).eval()
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="right-padded"):
        schedule.early_exit(model, torch.ones(2, 3, dtype=torch.long), mask, ExitPolicy())


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no fast bf16 (AMX or AVX-512 bf16)")
def test_bf16_weights_cast_once_and_agree(tokenizer) -> None:
    """precision="bf16" casts the weights once; breadth-first bf16 gives each row its bf16
    batch-of-one exit, and bf16 labels agree with fp32 on nearly every row."""
    texts = random_texts(40, seed=2)
    clf = random_classifier("bert", tokenizer, "maxprob", texts)
    fp32 = clf.predict_detailed(texts)
    clf.precision = "bf16"
    bf16 = clf.predict_detailed(texts)
    assert {p.dtype for p in clf.model.parameters()} == {torch.bfloat16}, "weights cast at first use"
    clf.batch_size = 1
    alone = [clf.predict_detailed([t]) for t in texts]
    same_exit = np.array([r.exit_layer[0] for r in alone]) == bf16.exit_layer
    assert same_exit.mean() >= 0.95, f"{(~same_exit).sum()} rows exit elsewhere alone"
    np.testing.assert_allclose(
        bf16.probabilities[same_exit],
        np.concatenate([r.probabilities for r in alone])[same_exit],
        atol=2e-2,
    )
    assert (bf16.labels == fp32.labels).mean() >= 0.9
    clf.precision = "fp32"
    assert {p.dtype for p in clf.model.parameters()} == {torch.bfloat16}, "nothing happens before predict"
    clf.predict(texts[:1])
    assert {p.dtype for p in clf.model.parameters()} == {torch.float32}


def test_mean_pooling_averages_real_tokens_only() -> None:
    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = pool(h, mask, "mean")
    torch.testing.assert_close(pooled[0], h[0, :3].mean(dim=0))
    torch.testing.assert_close(pooled[1], h[1].mean(dim=0))
    h[0, 3:] = 1e6  # whatever sits in the padding is ignored
    torch.testing.assert_close(pool(h, mask, "mean"), pooled)
    torch.testing.assert_close(pool(h, mask, "cls"), h[:, 0])
    with pytest.raises(ValueError, match="pooling must be one of"):
        MultiExitModel(tiny_encoder("bert"), exits="all", num_labels=2, pooling="max")


def test_devices_are_checked_with_a_clear_error() -> None:
    assert check_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        check_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            check_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("policy", ["maxprob", "patience"])
def test_cuda_compaction_equals_batch_of_one_and_matches_cpu(policy: str, tokenizer) -> None:
    texts = random_texts(40, seed=2)
    cpu = random_classifier("bert", tokenizer, policy, texts)
    gpu = random_classifier("bert", tokenizer, policy, texts, device="cuda")
    gpu.model.load_state_dict(cpu.model.state_dict())
    gpu.temperatures, gpu.threshold = cpu.temperatures, cpu.threshold
    batched = gpu.predict_detailed(texts)
    alone = [gpu.predict_detailed([text]) for text in texts]
    assert batched.exit_layer.tolist() == [r.exit_layer[0] for r in alone]
    np.testing.assert_allclose(
        batched.probabilities, np.concatenate([r.probabilities for r in alone]), atol=1e-4
    )
    expected = cpu.predict_detailed(texts)
    assert batched.exit_layer.tolist() == expected.exit_layer.tolist()
    np.testing.assert_allclose(batched.probabilities, expected.probabilities, atol=1e-4)


def test_compaction_runs_each_layer_only_on_rows_still_inside(tokenizer, monkeypatch) -> None:
    texts = random_texts(40, seed=2)
    clf = random_classifier("bert", tokenizer, "maxprob", texts)
    clf.batch_size = 64  # one batch: the hooks see the whole of it
    monkeypatch.setattr(schedule, "COMPACT_SHARE", 0.0)  # compact as soon as one row leaves
    seen: list[tuple[int, int]] = []  # (rows, columns) entering each layer
    for layer in clf.model.encoder.encoder.layer:
        layer.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[:2])))
    result = clf.predict_detailed(texts)
    rows_per_layer = [rows for rows, _ in seen]
    assert rows_per_layer == [int((result.exit_layer >= layer).sum()) for layer in (1, 2, 3, 4)]
    assert rows_per_layer[-1] < len(texts), "some rows must have left early"
    lengths = np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])
    widths = [columns for _, columns in seen]
    assert widths == [lengths[result.exit_layer >= layer].max() for layer in (1, 2, 3, 4)]


# --- SWEET and two-stage training ----------------------------------------------------------------


def test_sweet_isolates_each_exit_to_its_own_segment(tokenizer) -> None:
    model = MultiExitModel(tiny_encoder("bert"), exits=(2, 4), num_labels=2).train()
    batch = tokenizer(random_texts(6, seed=4), padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    below_first = model.encoder.encoder.layer[1].attention.self.query.weight  # segment 1
    above_first = model.encoder.encoder.layer[2].attention.self.query.weight  # segment 2
    stage = _stages(model, "sweet")[0]
    assert stage.detach, "sweet mode must cut the gradient between segments"

    def reached(exit_index: int, detach: bool) -> tuple[bool, bool, bool]:
        """Does that exit's loss give a nonzero gradient to: layer 2, layer 3, the embeddings?"""
        model.zero_grad(set_to_none=True)
        logits = model(**batch, detach_between_exits=detach)  # (E, B, K)
        nn.functional.cross_entropy(logits[exit_index], labels).backward()
        params = (below_first, above_first, model.encoder.embeddings.word_embeddings.weight)
        return tuple(p.grad is not None and bool(p.grad.any()) for p in params)

    assert reached(exit_index=1, detach=True) == (False, True, False), "exit 2 reached below 1"
    assert reached(exit_index=0, detach=True) == (True, False, True)
    assert reached(exit_index=1, detach=False) == (True, True, True), "joint reaches everything"


def test_two_stage_second_stage_leaves_backbone_and_last_head_alone(tokenizer, tmp_path) -> None:
    model = MultiExitModel(tiny_encoder("bert", num_layers=2), exits="all", num_labels=2)
    stage1, stage2 = _stages(model, "two-stage")
    assert stage1.weights.tolist() == [0.0, 1.0] and stage2.weights.tolist() == [1.0, 0.0]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    texts = random_texts(16, seed=5)
    encodings = encode(tokenizer, texts, max_length=32)
    labels = torch.tensor([i % 2 for i in range(16)])
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, bf16=False, resume=False)
    steps, examples, _ = _train_stage(
        model,
        stage2,
        encodings,
        tokenizer.pad_token_id,
        labels,
        config,
        Checkpoint(tmp_path / "state.pt"),
        show_progress_bar=False,
    )
    assert (steps, examples) == (2, 16)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("heads.0.") for name in changed), changed


# --- the estimator and training ------------------------------------------------------------------


def synthetic(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts with one 'good' or 'bad' among filler words; the label says which."""
    rng = random.Random(seed)
    filler = [w for w in WORDS if w not in ("good", "bad")]
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(filler, k=rng.randint(2, 8))
        words.insert(rng.randint(0, len(words)), "good" if label == "pos" else "bad")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-bert")
    tiny_encoder("bert", num_layers=2).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir):
    out = tmp_path_factory.mktemp("early-exit")
    record = train_early_exit(
        base_dir,
        *synthetic(300, seed=0),
        out,
        exits="all",
        mode="joint",
        epochs=3,
        batch_size=16,
        lr=2e-3,
        max_length=32,
        seed=0,
        dev=synthetic(100, seed=1),
        precision="fp32",
        show_progress_bar=False,
    )
    return out, record


def test_training_learns_a_trivial_task(trained) -> None:
    out, record = trained
    assert record["exits"] == [1, 2] and record["steps"] == 3 * 19
    assert record["dev_accuracy"]["2"] > 0.9, record
    manifest = json.loads((out / "early_exit.json").read_text())
    assert manifest["dev_accuracy"] == record["dev_accuracy"] and manifest["mode"] == "joint"
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}


def test_save_load_round_trip_and_api_contract(trained, tmp_path) -> None:
    out, _ = trained
    clf = EarlyExitClassifier.from_pretrained(out, threshold=0.8)
    texts, labels = synthetic(30, seed=2)
    result = clf.predict_detailed(texts)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert set(result.labels) <= {"neg", "pos"} and (result.labels == np.array(labels)).mean() > 0.9
    np.testing.assert_array_equal(clf.predict(texts), result.labels)
    np.testing.assert_allclose(clf.predict_proba(texts), result.probabilities)
    np.testing.assert_allclose(result.confidence, result.probabilities.max(axis=1))
    assert set(result.exit_layer) <= {1, 2} and 1 <= result.mean_exit_layer <= 2
    assert clf.exit_logits(texts).shape == (2, 30, 2)

    clf.temperatures = [2.0, 1.5]
    clf.save_pretrained(tmp_path / "copy")
    again = EarlyExitClassifier.from_pretrained(tmp_path / "copy")
    assert again.temperatures == [2.0, 1.5] and again.threshold == 0.8
    np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)

    empty = clf.predict_detailed([])
    assert empty.probabilities.shape == (0, 2) and empty.labels.shape == (0,)
    assert clf.predict("a good film").shape == (1,)  # a single text is wrapped, as in Cascade
    with pytest.raises(TypeError, match="list of strings"):
        clf.predict([1, 2])
    with pytest.raises(ValueError, match="one value per exit"):
        EarlyExitClassifier.from_pretrained(out, temperatures=[1.0]).predict(texts)
    with pytest.raises(ValueError, match="no early_exit.json"):
        EarlyExitClassifier.from_pretrained(tmp_path)
    assert again.model.pooling == "mean"
    manifest = json.loads((tmp_path / "copy" / "early_exit.json").read_text())
    del manifest["pooling"]  # a directory saved before pooling was recorded read the CLS token
    (tmp_path / "copy" / "early_exit.json").write_text(json.dumps(manifest))
    assert EarlyExitClassifier.from_pretrained(tmp_path / "copy").model.pooling == "cls"


@pytest.mark.parametrize("mode", ["weighted", "sweet", "two-stage"])
def test_every_mode_trains(mode: str, base_dir, tmp_path) -> None:
    record = train_early_exit(
        base_dir,
        *synthetic(32, seed=0),
        tmp_path,
        mode=mode,
        batch_size=16,
        max_steps=1,
        precision="fp32",
        show_progress_bar=False,
    )
    assert record["steps"] == (2 if mode == "two-stage" else 1)
    assert EarlyExitClassifier.from_pretrained(tmp_path).predict(["good"]).shape == (1,)


def test_training_resumes_from_a_checkpoint(base_dir, tmp_path, monkeypatch) -> None:
    """Killed in stage 2 of two-stage training, a rerun picks up stage 2 from its last
    checkpoint (stage 1 from its final one) and ends where an uninterrupted run ends."""
    from safetensors.torch import load_file

    from tango.early_exit import training

    texts, labels = synthetic(32, seed=3)
    options = dict(mode="two-stage", epochs=2, batch_size=8, lr=1e-2, max_length=32)
    options.update(precision="fp32", show_progress_bar=False, checkpoint_every=3)
    straight = train_early_exit(base_dir, texts, labels, tmp_path / "straight", **options)
    assert straight["steps"] == 16

    calls, real_loss = [], training.exit_loss

    def dies_in_stage_two(*args):
        calls.append(1)
        if len(calls) > 8 + 4:  # 8 steps of stage 1, then 4 of stage 2 (checkpoint after 3)
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(training, "exit_loss", dies_in_stage_two)
    with pytest.raises(KeyboardInterrupt):
        train_early_exit(base_dir, texts, labels, tmp_path / "resumed", **options)
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoint").iterdir()) == [
        "stage1.pt",
        "stage2.pt",
    ]
    assert torch.load(tmp_path / "resumed" / "checkpoint" / "stage2.pt", weights_only=False)["step"] == 3
    calls.clear()

    def counting(*args):
        calls.append(1)
        return real_loss(*args)

    monkeypatch.setattr(training, "exit_loss", counting)
    resumed = train_early_exit(base_dir, texts, labels, tmp_path / "resumed", **options)
    assert len(calls) == 8 - 3, "only the rest of stage 2 runs again"
    assert resumed["steps"] == 16 and not (tmp_path / "resumed" / "checkpoint").exists()
    for name in ("model.safetensors", "exit_heads.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
    calls.clear()
    monkeypatch.setattr(training, "exit_loss", dies_in_stage_two)
    with pytest.raises(KeyboardInterrupt):
        train_early_exit(base_dir, texts, labels, tmp_path / "other", **options)
    with pytest.raises(ValueError, match="other data or settings"):  # a checkpoint of other settings
        train_early_exit(base_dir, texts, labels, tmp_path / "other", **{**options, "lr": 1e-3})


def test_training_batches_rows_of_similar_length(base_dir, tokenizer, tmp_path, monkeypatch) -> None:
    """Multi-exit training pads as little as tier training: length-bucketed batches."""
    from tango import training
    from tango.batching import padding_efficiency, plan_batches

    texts, labels = synthetic(64, seed=4)
    seen, pad = [], training.pad_tensors

    def spy(rows, index, *args):
        seen.append(index)
        return pad(rows, index, *args)

    monkeypatch.setattr(training, "pad_tensors", spy)
    options = dict(epochs=1, batch_size=8, max_length=32, precision="fp32", show_progress_bar=False)
    train_early_exit(base_dir, texts, labels, tmp_path, **options)
    lengths = encode(tokenizer, texts, max_length=32).lengths
    assert len(seen) == 8 and sorted(np.concatenate(seen).tolist()) == list(range(64))
    shuffled = list(np.random.default_rng(0).permutation(64).reshape(8, 8))
    assert padding_efficiency(lengths, seen) == pytest.approx(
        padding_efficiency(lengths, plan_batches(lengths, 8))
    )
    assert padding_efficiency(lengths, seen) > padding_efficiency(lengths, shuffled)


def test_mpnet_trains_saves_and_loads_with_pairs(tokenizer, tmp_path) -> None:
    tiny_encoder("mpnet", num_layers=2).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    texts, labels = synthetic(16, seed=0)
    pairs = list(zip(texts, reversed(texts), strict=True))
    train_early_exit(
        tmp_path / "base",
        pairs,
        labels,
        tmp_path / "out",
        batch_size=8,
        max_steps=1,
        precision="fp32",
        show_progress_bar=False,
    )
    clf = EarlyExitClassifier.from_pretrained(tmp_path / "out", threshold=0.0)
    assert type(clf.model.encoder).__name__ == "MPNetModel"
    assert clf.predict_detailed(pairs).exit_layer.tolist() == [1] * 16, "threshold 0 exits at 1"


def test_cli_train_early_exit(base_dir, tmp_path) -> None:
    from click.testing import CliRunner

    from tango.cli import cli

    data = tmp_path / "train.tsv"
    texts, labels = synthetic(32, seed=0)
    data.write_text("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in zip(texts, labels, strict=True)))
    out = tmp_path / "model"
    args = ["early-exit", "train", str(base_dir), "--train", str(data), "--dev", str(data), "--mode", "sweet"]
    args += ["--out", str(out), "--exits", "1", "--batch-size", "16", "--no-bf16"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "exits [1, 2], 2 steps" in result.output and "layer 2" in result.output
    assert EarlyExitClassifier.from_pretrained(out).labels == ["neg", "pos"]
    cls = CliRunner().invoke(cli, [*args, "--pooling", "cls", "--out", str(tmp_path / "cls")])
    assert cls.exit_code == 0, cls.output
    assert EarlyExitClassifier.from_pretrained(tmp_path / "cls").model.pooling == "cls"
    bad = CliRunner().invoke(cli, [*args[:9], "--out", str(out), "--exits", "1,9"])
    assert bad.exit_code == 1 and "exit layers must lie in 1..2" in bad.output


def test_calibrate_fits_one_temperature_per_exit(trained, tmp_path) -> None:
    import shutil

    from click.testing import CliRunner

    from tango.cli import cli

    model_dir = tmp_path / "model"
    shutil.copytree(trained[0], model_dir)
    texts, labels = synthetic(200, seed=5)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    args = ["early-exit", "calibrate", str(model_dir), "--dev", str(dev)]
    result = CliRunner().invoke(cli, [*args, "--max-drop", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((model_dir / "early_exit.json").read_text())
    assert len(manifest["temperatures"]) == 2 and all(t > 0 for t in manifest["temperatures"])
    report = json.loads((model_dir / "calibration" / "report.json").read_text())
    assert report["target"] == {"max_drop": 1.0, "confidence_level": 0.9}
    if report["drop_bound"] is None:  # nothing certified: no row leaves early
        manifest["threshold"] = max(report["curve"]["threshold"])
    chosen = report["curve"]["threshold"].index(manifest["threshold"])
    assert report["drop_bound"] is None or report["drop_bound"] <= 1.0
    # the simulated curve (on the 70% of rows that certify) matches what the model really does there
    from tango.tuning import temperature_split

    _, walk_rows = temperature_split(len(texts), 0.3, report["seed"])
    assert (
        (report["temperature_rows"], report["threshold_rows"])
        == (60, 140)
        == (200 - len(walk_rows), len(walk_rows))
    )
    model = EarlyExitClassifier.from_pretrained(model_dir, threshold=manifest["threshold"])
    detailed = model.predict_detailed([texts[i] for i in walk_rows])
    assert detailed.mean_exit_layer == pytest.approx(report["curve"]["mean_exit_layer"][chosen])
    assert (model_dir / "calibration" / "reliability_exit1.png").exists()
    # a registered name finds the model too
    from tango.registry import register

    register("ee-calibrate-test", model_dir)
    again = CliRunner().invoke(cli, ["early-exit", "calibrate", "ee-calibrate-test", "--dev", str(dev)])
    assert again.exit_code == 0, again.output
    assert "exit layer" in again.output and f"saved to {model_dir}" in again.output


def test_run_scores_a_file_with_an_early_exit_model(trained, tmp_path) -> None:
    from click.testing import CliRunner

    from tango.cli import cli

    texts, labels = synthetic(50, seed=7)
    lines = [f'"{t}",{y}' for t, y in zip(texts, labels, strict=True)]
    lines.insert(10, ",neg")  # line 12: empty text, goes to the errors file
    (tmp_path / "in.csv").write_text("text,label\n" + "\n".join(lines) + "\n")
    args = ["early-exit", "run", str(trained[0]), "-i", str(tmp_path / "in.csv"), "--threshold", "0.8"]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert out[0] == "id,label,confidence,exit_layer" and len(out) == 51
    expected = EarlyExitClassifier.from_pretrained(trained[0], threshold=0.8).predict_detailed(texts)
    assert [row.split(",")[3] for row in out[1:]] == [str(layer) for layer in expected.exit_layer]
    assert [row.split(",")[1] for row in out[1:]] == expected.labels.tolist()
    assert '"line": 12' in (tmp_path / "out.csv.errors.jsonl").read_text()
    assert "mean exit layer" in result.output and "errors: 1" in result.output

    patience = CliRunner().invoke(
        cli, [*args[:5], "--policy", "patience", "--patience", "1", "-o", str(tmp_path / "p.jsonl")]
    )
    assert patience.exit_code == 0, patience.output
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and all(row["exit_layer"] == 2 for row in rows), "patience 1 with 2 exits"

    # the cascade verbs send the model here, and this command takes no cascade
    as_cascade = CliRunner().invoke(cli, ["run", "--cascade", *args[2:], "-o", str(tmp_path / "c.csv")])
    assert as_cascade.exit_code == 2 and f"tango early-exit run {trained[0]}" in as_cascade.output
    mixed = CliRunner().invoke(cli, [*args, "--tier1", "x", "-o", str(tmp_path / "m.csv")])
    assert mixed.exit_code == 2 and "No such option '--tier1'" in mixed.output


def test_a_maxprob_threshold_above_one_runs_every_row_to_the_last_exit(tokenizer) -> None:
    """What a certified calibration stores when no threshold passed
    (tango.early_exit.calibration.NEVER_EARLY): even rows whose probability rounds to exactly 1
    stay in; other policies keep [0, 1]."""
    from tango.early_exit.calibration import NEVER_EARLY
    from tango.early_exit.policy import ExitPolicy

    texts = random_texts(16, seed=4)
    clf = random_classifier("mpnet", tokenizer, "maxprob", texts)
    clf.temperatures = [1e-3] * len(clf.model.exits)  # sharp: many probabilities are exactly 1
    clf.threshold = 1.0
    assert (clf.predict_detailed(texts).exit_layer < 4).any(), "some rows leave at probability 1"
    clf.threshold = NEVER_EARLY
    assert clf.predict_detailed(texts).exit_layer.tolist() == [4] * len(texts)
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
        ExitPolicy("entropy", threshold=NEVER_EARLY)
