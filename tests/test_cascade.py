import json

import numpy as np
import pytest
from tiny_models import build_tiny_classifier
from tolerances import assert_close, assert_same_labels, assert_same_where_clear, clear_of

from tango.cascade import Cascade
from tango.confidence import confidence, softmax
from tango.tiers import Tier

TEXTS = [
    "the film was good",
    "awful boring mess",
    "i loved it",
    "what a waste of time really",
    "news about the stock market",
    "the team lost the game",
    "a wonderful , funny story",
    "the worst acting i have seen",
    "it was not bad",
    "quite dull but the actors are great",
    "one , two , three",
    "why ?",
    "space science",
    "the government and the war",
    "best day",
] * 3


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiers")
    return [
        build_tiny_classifier(root / f"t{k}", seed=k, model_type=kind)
        for k, kind in enumerate(["bert", "mpnet", "bert"])
    ]


@pytest.fixture(scope="module")
def tiers(tier_dirs):
    return [Tier.from_pretrained(d, precision="fp32", batch_size=4) for d in tier_dirs]


def test_routing_is_exact_and_keeps_input_order(tiers):
    t1, t2 = tiers[:2]
    p1, p2 = t1.predict_proba(TEXTS), t2.predict_proba(TEXTS)
    threshold = float(np.median(p1.max(axis=1)))  # about half the rows escalate
    result = Cascade([t1, t2], thresholds=threshold).predict_detailed(TEXTS)
    escalate = p1.max(axis=1) < threshold
    assert 0 < escalate.sum() < len(TEXTS)
    assert np.array_equal(result.tier, escalate.astype(int))  # tier 1 scores every row: same computation
    expected = np.where(escalate[:, None], p2, p1)
    assert_close(result.probabilities, expected)  # tier 2 scores a subset: other batches
    clear = assert_same_labels(result.probabilities, expected)
    assert list(result.labels[clear]) == [t1.labels[i] for i in expected.argmax(axis=1)[clear]]
    assert result.stats.escalated == [pytest.approx(escalate.mean())]
    assert result.stats.tiers[1].answered == escalate.sum()


@pytest.mark.parametrize("threshold, expected_tier", [(0.0, 0), (1.01, 1), (float("inf"), 1)])
def test_threshold_extremes(tiers, threshold, expected_tier):
    result = Cascade(tiers[:2], thresholds=threshold).predict_detailed(TEXTS)
    assert set(result.tier.tolist()) == {expected_tier}


def test_three_tiers_route_through_each_boundary(tiers):
    p = [t.predict_proba(TEXTS) for t in tiers]
    thresholds = [float(np.quantile(p[0].max(1), 0.6)), float(np.quantile(p[1].max(1), 0.6))]
    result = Cascade(tiers, thresholds=thresholds).predict_detailed(TEXTS)
    to_second = p[0].max(1) < thresholds[0]
    to_third = to_second & (p[1].max(1) < thresholds[1])
    expected_tier = to_second.astype(int) + to_third.astype(int)
    clear = clear_of(p[1].max(1), thresholds[1])  # tier 2 scores a subset: its side of the boundary
    assert_same_where_clear(result.tier, expected_tier, clear)
    assert len(set(expected_tier.tolist())) == 3, "test data should reach all three tiers"
    expected = np.choose(result.tier[:, None], p)
    assert_close(result.probabilities, expected)


def test_temperatures_and_confidence_kinds_change_the_gate(tiers):
    t1, t2 = tiers[:2]
    logits = t1.logits(TEXTS)
    for kind in ("maxprob", "margin", "entropy"):
        conf = confidence(softmax(logits, 3.0), kind)
        threshold = float(np.median(conf))
        result = Cascade([t1, t2], threshold, confidence=kind, temperatures=[3.0, 1.0]).predict_detailed(
            TEXTS
        )
        assert np.array_equal(result.tier == 1, conf < threshold)
        # the answering tier's calibrated probabilities are returned
        kept = result.tier == 0
        assert_close(result.probabilities[kept], softmax(logits, 3.0)[kept])


def test_batch_of_one_empty_batch_and_single_text(tiers):
    cascade = Cascade(tiers[:2], thresholds=0.5)
    assert cascade.predict(["i loved it"]).shape == (1,)
    assert cascade.predict("i loved it").shape == (1,)
    empty = cascade.predict_detailed([])
    assert empty.labels.shape == (0,) and empty.probabilities.shape == (0, 2)
    assert cascade.predict_proba([]).shape == (0, 2)


def test_text_pairs_route_like_singles(tiers):
    pairs = [(a, b) for a, b in zip(TEXTS[:10], TEXTS[5:15], strict=True)]
    t1, t2 = tiers[:2]
    p1, p2 = t1.predict_proba(pairs), t2.predict_proba(pairs)
    assert not np.allclose(p1, t1.predict_proba([a for a, _ in pairs])), "the pair must matter"
    threshold = float(np.median(p1.max(1)))
    result = Cascade([t1, t2], threshold).predict_detailed(pairs)
    assert_close(result.probabilities, np.where((p1.max(1) < threshold)[:, None], p2, p1))


def test_labels_are_names_and_probabilities_sum_to_one(tiers):
    cascade = Cascade(tiers[:2], thresholds=0.9)
    assert set(cascade.predict(TEXTS)) <= {"negative", "positive"}
    assert list(cascade.classes_) == ["negative", "positive"]
    np.testing.assert_allclose(cascade.predict_proba(TEXTS).sum(axis=1), 1.0)


def test_shared_tokenizer_tokenizes_once(tiers, monkeypatch):
    t1, _, t3 = tiers  # both BERT with the same vocabulary
    assert t1.tokenizer_fingerprint == t3.tokenizer_fingerprint
    calls = []
    original = Tier.tokenize
    monkeypatch.setattr(
        Tier, "tokenize", lambda self, texts: calls.append(len(texts)) or original(self, texts)
    )
    result = Cascade([t1, t3], thresholds=1.01).predict_detailed(TEXTS)
    assert calls == [len(TEXTS)]
    assert_close(result.probabilities, t3.predict_proba(TEXTS))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": -0.1}, "thresholds must be >= 0"),
        ({"thresholds": [0.5, 0.5]}, "need 1 thresholds"),
        ({"thresholds": float("nan")}, "thresholds must be >= 0"),
        ({"confidence": "vibes"}, "confidence must be one of"),
        ({"temperatures": [1.0, 0.0]}, "temperature"),
    ],
)
def test_bad_settings_fail_with_clear_errors(tiers, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Cascade(tiers[:2], **kwargs).predict(TEXTS[:2])


def test_tiers_with_different_labels_are_refused(tmp_path, tiers):
    other = Tier.from_pretrained(build_tiny_classifier(tmp_path / "x", labels=("no", "yes")))
    with pytest.raises(ValueError, match="tiers disagree on labels") as error:
        Cascade([tiers[0], other]).predict(TEXTS[:2])
    assert "['negative', 'positive']" in str(error.value) and "['no', 'yes']" in str(error.value)
    swapped = Tier.from_pretrained(build_tiny_classifier(tmp_path / "y", labels=("POSITIVE", "NEGATIVE")))
    with pytest.raises(ValueError, match="same classes in the same order"):
        Cascade([tiers[0], swapped]).predict(TEXTS[:2])


def test_labels_differing_only_in_case_match_and_tier_1_names_answer(tmp_path, tiers):
    shouting = Tier.from_pretrained(build_tiny_classifier(tmp_path / "x", labels=("NEGATIVE", "POSITIVE")))
    cascade = Cascade([tiers[0], shouting], thresholds=2.0)  # every row reaches the upper-case tier
    assert set(cascade.predict(TEXTS[:6])) <= {"negative", "positive"}
    assert list(cascade.classes_) == ["negative", "positive"]
    assert list(Cascade([shouting, tiers[0]]).classes_) == ["NEGATIVE", "POSITIVE"]


def test_save_and_load_round_trip(tiers, tmp_path):
    cascade = Cascade(tiers[:2], thresholds=0.8, confidence="margin", temperatures=[1.5, 0.7])
    expected = cascade.predict_detailed(TEXTS)
    cascade.save_pretrained(tmp_path / "c")
    manifest = json.loads((tmp_path / "c" / "cascade.json").read_text())
    assert manifest["thresholds"] == [0.8] and manifest["temperatures"] == [1.5, 0.7]
    assert manifest["labels"] == ["negative", "positive"]
    loaded = Cascade.from_pretrained(tmp_path / "c", precision="fp32")
    result = loaded.predict_detailed(TEXTS)
    assert_close(result.probabilities, expected.probabilities)  # batch size 32 against 4
    assert np.array_equal(result.tier, expected.tier)
    overridden = Cascade.from_pretrained(tmp_path / "c", thresholds=0.0, precision="fp32")
    assert set(overridden.predict_detailed(TEXTS).tier.tolist()) == {0}


def test_loading_a_non_cascade_directory_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cascade.json"):
        Cascade.from_pretrained(tmp_path)
