import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tango.batching import Encodings, pad_batch, padding_efficiency, plan_batches
from tango.confidence import confidence, softmax


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), max_size=200),
    batch_size=st.integers(1, 40),
    max_tokens=st.one_of(st.none(), st.integers(1, 4000)),
)
def test_plan_covers_every_row_once_within_budgets(lengths, batch_size, max_tokens):
    lengths = np.asarray(lengths, dtype=np.int64)
    batches = plan_batches(lengths, batch_size, max_tokens)
    rows = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        if max_tokens is not None and len(batch) > 1:
            assert len(batch) * lengths[batch].max() <= max_tokens
    # sorted by length across the whole plan
    assert np.all(np.diff(lengths[rows]) >= 0)


def test_sorting_keeps_padding_low_on_mixed_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=1000)
    sorted_plan = plan_batches(lengths, 32)
    unsorted_plan = [np.arange(i, min(i + 32, 1000)) for i in range(0, 1000, 32)]
    assert padding_efficiency(lengths, sorted_plan) > 0.95
    assert padding_efficiency(lengths, unsorted_plan) < 0.7


def test_pad_batch_pads_to_the_longest_row_of_the_batch():
    enc = Encodings([[2, 5, 3], [2, 3], [2, 7, 8, 9, 3]], [[0, 0, 0], [0, 0], [0, 0, 1, 1, 1]])
    batch = pad_batch(enc, np.array([1, 0]), pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 3, 0], [2, 5, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert pad_batch(enc, np.array([2]))["token_type_ids"].tolist() == [[0, 0, 1, 1, 1]]
    assert enc.take(np.array([2, 0])).input_ids == [[2, 7, 8, 9, 3], [2, 5, 3]]


def test_confidence_kinds_are_in_unit_interval_and_ordered():
    probs = softmax(np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.9, 0.0]]))
    assert np.allclose(probs.sum(axis=1), 1)
    for kind in ("maxprob", "margin", "entropy"):
        conf = confidence(probs, kind)
        assert np.all((conf >= 0) & (conf <= 1))
        assert conf[0] > conf[2] > conf[1] or kind == "maxprob" and conf[0] > conf[1]
    assert np.isclose(confidence(probs, "entropy")[1], 0.0)
    assert np.isclose(confidence(probs, "margin")[1], 0.0)
