"""The linear tier: LR's probabilities, a pickle-free round trip, refusals, cascades, the CLI."""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import FILLER, NEGATIVE, POSITIVE, sentiment_rows
from tolerances import assert_close, assert_same_where_clear, clear_of

from tango.cascade import Cascade
from tango.cli import cli
from tango.data import LabelledData
from tango.linear import ARRAYS_FILE, LINEAR_FILE, LinearTier, _count, _idf, _tfidf, fit_linear, train_linear
from tango.registry import registered
from tango.tiers import Tier

SMALL = {"n_features": 2**10}  # hash buckets per analyzer: tiny arrays, fast tests


def pair_rows(n: int, seed: int) -> LabelledData:
    """(premise, hypothesis) pairs: entailment iff the hypothesis repeats the premise's sentiment."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        a, b = rng.integers(0, 2, 2)
        premise = f"the film was {rng.choice((NEGATIVE, POSITIVE)[a])}"
        hypothesis = f"it is {rng.choice((NEGATIVE, POSITIVE)[b])}"
        texts.append((premise, hypothesis))
        labels.append(int(a != b))
    return LabelledData(texts, np.asarray(labels), ["entailment", "contradiction"], "synthetic pairs")


@pytest.fixture(scope="module")
def data() -> LabelledData:
    return sentiment_rows(200, 0)


@pytest.fixture(scope="module")
def tier(data: LabelledData) -> LinearTier:
    return fit_linear(data.texts, data.labels, data.label_names, vectorizer=SMALL)


@pytest.fixture
def saved(tier: LinearTier, tmp_path):
    tier.save_pretrained(tmp_path / "linear")
    return tmp_path / "linear"


def test_it_learns_and_probabilities_are_logistic_regressions(tier, data):
    from sklearn.linear_model import LogisticRegression

    test = sentiment_rows(100, 1)
    assert (tier.predict(test.texts) == np.asarray(test.label_names)[test.labels]).mean() > 0.95
    counts = _count(data.texts, tier.vectorizer)
    block = tier.vectorizer["n_features"]
    model = LogisticRegression(C=4.0, max_iter=1000).fit(_tfidf(counts, _idf(counts), block), data.labels)
    expected = model.predict_proba(_tfidf(_count(test.texts, tier.vectorizer), tier.idf, block))
    np.testing.assert_allclose(tier.predict_proba(test.texts), expected, atol=1e-4)
    logits = tier.logits(test.texts)
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1])  # [-z/2, z/2]: softmax = sigmoid(z)


def test_three_labels_give_three_logits(data):
    names = ["negative", "neutral", "positive"]
    texts = data.texts + [f"the {w} film" for w in FILLER]
    labels = np.concatenate([data.labels * 2, np.ones(len(FILLER), dtype=np.int64)])
    tier = fit_linear(texts, labels, names, vectorizer=SMALL)
    probs = tier.predict_proba(["a wonderful film", "awful", "the plot"])
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert list(tier.predict(["wonderful wonderful", "awful awful"])) == ["positive", "negative"]


def test_save_load_round_trip_is_exact(tier, saved):
    texts = sentiment_rows(50, 2).texts
    for loaded in (LinearTier.from_pretrained(saved), Tier.from_pretrained(saved)):
        assert isinstance(loaded, LinearTier)
        assert loaded.labels == tier.labels and loaded.inputs == "texts"
        np.testing.assert_array_equal(loaded.predict_proba(texts), tier.predict_proba(texts))
    again = saved.parent / "again"
    LinearTier.from_pretrained(saved).save_pretrained(again)
    np.testing.assert_array_equal(LinearTier.from_pretrained(again).logits(texts), tier.logits(texts))


def test_fit_refuses_labels_without_rows(data):
    with pytest.raises(ValueError, match=r"labels \['neutral'\] have no training rows"):
        fit_linear(data.texts, data.labels * 2, ["negative", "neutral", "positive"], vectorizer=SMALL)


def test_a_saved_cascade_keeps_its_linear_tier(tier, tmp_path):
    texts = sentiment_rows(30, 6).texts
    cascade = Cascade([tier, tier], thresholds=0.8, temperatures=[1.0, 0.5])
    cascade.save_pretrained(tmp_path / "cascade")
    loaded = Cascade.from_pretrained(tmp_path / "cascade", runtime="onnx", threads=1)
    assert all(isinstance(t, LinearTier) for t in loaded.tiers)
    np.testing.assert_array_equal(loaded.predict_proba(texts), cascade.predict_proba(texts))


def test_empty_input_gives_no_rows(tier):
    assert tier.predict_proba([]).shape == (0, 2)
    assert tier.predict([]).shape == (0,)


def test_trained_tier_is_saved_with_its_record_and_registered(data, tmp_path):
    dev = sentiment_rows(60, 3)
    loaded = train_linear(data, tmp_path / "lin", dev=dev, name="tiny-linear", vectorizer=SMALL)
    record = json.loads((tmp_path / "lin" / LINEAR_FILE).read_text())
    assert record["train_rows"] == 200 and record["dev_rows"] == 60 and record["inputs"] == "texts"
    assert len(record["train_sha256"]) == 64 and record["sklearn"] and record["classes"] == [0, 1]
    assert record["dev_accuracy"] == loaded.record["dev_accuracy"] > 0.9
    assert registered()["tiny-linear"]["runtime"] == "linear"
    by_name = Tier.from_pretrained("tiny-linear")
    assert isinstance(by_name, LinearTier) and by_name.source == "tiny-linear"
    np.testing.assert_array_equal(by_name.logits(dev.texts), loaded.logits(dev.texts))


class _Boom:
    """Unpickling this runs ``open(marker, "w")``: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_arrays_are_refused_and_never_run(saved, tmp_path):
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _Boom(str(marker))
    with open(saved / ARRAYS_FILE, "wb") as file:  # the attacker also fixes the recorded hash
        np.savez(file, coef=payload, intercept=payload, idf=payload)
    record = json.loads((saved / LINEAR_FILE).read_text())
    record["arrays"]["sha256"] = hashlib.sha256((saved / ARRAYS_FILE).read_bytes()).hexdigest()
    (saved / LINEAR_FILE).write_text(json.dumps(record))
    assert pickle.loads(pickle.dumps(payload)) is not None and marker.exists()  # the payload is live
    marker.unlink()
    with pytest.raises(ValueError, match=rf"{ARRAYS_FILE} holds object arrays.*never unpickles"):
        Tier.from_pretrained(saved)
    assert not marker.exists()


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda d: (d / LINEAR_FILE).unlink(), f"{LINEAR_FILE} is missing"),
        (lambda d: (d / LINEAR_FILE).write_text("{not json"), "is not valid JSON"),
        (lambda d: _edit(d, label_names=["a", "b", "c"], classes=[0, 1, 2]), r"implies float32 \(3,"),
        (lambda d: _edit(d, classes=[1, 0]), "classes must be"),
        (lambda d: _edit(d, inputs="pairs"), "implies float32"),
        (lambda d: _edit(d, vectorizer={"n_features": 1024, "analyzer": "x"}), "vectorizer must have"),
        (lambda d: _edit(d, format_version=99), "format must be"),
        (lambda d: (d / ARRAYS_FILE).write_bytes(b"PK" + b"\0" * 64), "does not match the sha256"),
        (lambda d: (d / ARRAYS_FILE).unlink(), f"{ARRAYS_FILE} is missing"),
    ],
)
def test_tampered_or_incomplete_directories_are_refused(saved, tamper, message):
    tamper(saved)
    with pytest.raises(ValueError, match=message):
        LinearTier.from_pretrained(saved)


def _edit(directory, **changes):
    record = json.loads((directory / LINEAR_FILE).read_text())
    record.update(changes)
    (directory / LINEAR_FILE).write_text(json.dumps(record))


def test_linear_tier_at_either_end_of_a_cascade(tier, tiny_model_dir):
    transformer = Tier.from_pretrained(tiny_model_dir, precision="fp32", batch_size=4)
    assert tier.tokenizer_fingerprint != transformer.tokenizer_fingerprint
    texts = sentiment_rows(40, 4).texts
    for first, second in ((tier, transformer), (transformer, tier)):
        p1, p2 = first.predict_proba(texts), second.predict_proba(texts)
        threshold = float(np.median(p1.max(axis=1)))
        result = Cascade([first, second], thresholds=threshold).predict_detailed(texts)
        escalated = p1.max(axis=1) < threshold
        assert 0 < escalated.sum() < len(texts)
        # the later tier scores only the escalated rows: another batch, fp32 summed in another order
        assert_same_where_clear(result.tier, escalated.astype(int), clear_of(p1.max(axis=1), threshold))
        assert_close(result.probabilities, np.where((result.tier == 1)[:, None], p2, p1))


def test_two_linear_tiers_share_features_only_when_they_hash_alike(tier, data):
    other = fit_linear(data.texts, 1 - data.labels, data.label_names, vectorizer=SMALL)  # same hashing
    wider = fit_linear(data.texts, data.labels, data.label_names, vectorizer={"n_features": 2**11})
    assert other.tokenizer_fingerprint == tier.tokenizer_fingerprint != wider.tokenizer_fingerprint
    texts = sentiment_rows(30, 5).texts
    for second in (other, wider):
        result = Cascade([tier, second], thresholds=2.0).predict_detailed(texts)  # all escalate
        np.testing.assert_allclose(result.probabilities, second.predict_proba(texts), atol=1e-6)


def test_text_pairs(tmp_path):
    train, test = pair_rows(300, 0), pair_rows(60, 1)
    tier = fit_linear(train.texts, train.labels, train.label_names, vectorizer=SMALL)
    assert tier.inputs == "pairs" and tier.coef.shape == (1, 4 * 2**10)  # both texts side by side
    predicted = tier.predict(test.texts)
    assert (predicted == np.asarray(test.label_names)[test.labels]).mean() > 0.5
    flipped = [(b, a) for a, b in test.texts]
    assert not np.allclose(tier.logits(flipped), tier.logits(test.texts))  # each half has its own weights
    tier.save_pretrained(tmp_path / "pairs")
    loaded = Tier.from_pretrained(tmp_path / "pairs")
    np.testing.assert_array_equal(loaded.predict_proba(test.texts), tier.predict_proba(test.texts))
    with pytest.raises(TypeError, match="trained on text pairs but was given single texts"):
        loaded.predict(["the film was good"])


def _write_tsv(path, data: LabelledData) -> None:
    rows = "".join(f"{t}\t{y}\n" for t, y in zip(data.texts, data.labels, strict=True))
    path.write_text("sentence\tlabel\n" + rows)


def test_cli_trains_a_loadable_linear_tier(tmp_path):
    _write_tsv(tmp_path / "train.tsv", sentiment_rows(200, 0))
    _write_tsv(tmp_path / "dev.tsv", sentiment_rows(50, 1))
    out = tmp_path / "out"
    args = ["train", "linear", "--train", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv")]
    result = CliRunner().invoke(cli, [*args, "--labels", "sst2", "--out", str(out), "--name", "cli-linear"])
    assert result.exit_code == 0, result.output
    assert "linear tier fitted on 200 rows in" in result.output and "dev accuracy 1.0000" in result.output
    tier = Tier.from_pretrained("cli-linear")
    assert isinstance(tier, LinearTier) and tier.labels == ["negative", "positive"]
    assert list(tier.predict(["a wonderful film", "a dull boring mess"])) == ["positive", "negative"]


@pytest.mark.parametrize(
    "option", [["--layers", "2"], ["--teacher", "x"], ["--max-steps", "5"], ["--epochs", "1"]]
)
def test_cli_refuses_fine_tuning_options_for_a_linear_tier(tmp_path, option):
    _write_tsv(tmp_path / "train.tsv", sentiment_rows(40, 0))
    args = ["train", "linear", "--train", str(tmp_path / "train.tsv"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, *option])
    assert result.exit_code == 2
    assert (
        f"{option[0]} does not apply to a linear tier: they configure transformer fine-tuning"
        in result.output
    )
    assert not (tmp_path / "out").exists()


def test_cli_refuses_early_exit_for_a_linear_tier(tmp_path):
    _write_tsv(tmp_path / "train.tsv", sentiment_rows(40, 0))
    args = ["linear", "--train", str(tmp_path / "train.tsv"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, ["early-exit", "train", *args, "--mode", "sweet", "--exits", "1,2"])
    assert result.exit_code == 2 and "a linear tier has no layers to exit from" in result.output
    assert not (tmp_path / "out").exists()
