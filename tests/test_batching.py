import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tango.batching import (
    Encodings,
    longest_first,
    pad_batch,
    padding_efficiency,
    plan_batches,
    plan_least_padding,
)
from tango.confidence import confidence, softmax


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), max_size=200),
    batch_size=st.integers(1, 40),
    max_tokens=st.one_of(st.none(), st.integers(1, 4000)),
)
def test_plan_covers_every_row_once_within_budgets(lengths, batch_size, max_tokens):
    lengths = np.asarray(lengths, dtype=np.int64)
    assert_valid_plan(plan_batches(lengths, batch_size, max_tokens), lengths, batch_size, max_tokens)


def assert_valid_plan(batches, lengths, batch_size, max_tokens) -> None:
    """Every row once, within both budgets, sorted by length across the whole plan."""
    rows = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        if max_tokens is not None and len(batch) > 1:
            assert len(batch) * lengths[batch].max() <= max_tokens
    assert np.all(np.diff(lengths[rows]) >= 0)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), max_size=120),
    batch_size=st.integers(1, 40),
    max_tokens=st.one_of(st.none(), st.integers(1, 4000)),
    batch_cost=st.sampled_from([0, 1, 128, 10_000]),
)
def test_least_padding_plan_covers_every_row_once_within_budgets(lengths, batch_size, max_tokens, batch_cost):
    lengths = np.asarray(lengths, dtype=np.int64)
    batches = plan_least_padding(lengths, batch_size, max_tokens, batch_cost)
    assert_valid_plan(batches, lengths, batch_size, max_tokens)

    def cost(plan):
        return sum(batch_cost + len(b) * int(lengths[b].max()) for b in plan)

    assert cost(batches) <= cost(plan_batches(lengths, batch_size, max_tokens))  # never worse


def test_least_padding_is_the_cheapest_cut_of_the_sorted_rows():
    """Against every way to cut 9 sorted rows into batches of at most 4."""
    from itertools import combinations

    lengths = np.array([3, 40, 4, 41, 5, 39, 60, 6, 42])
    order = np.argsort(lengths, kind="stable")

    def cost(plan):
        return sum(128 + len(b) * int(lengths[b].max()) for b in plan)

    cheapest = None
    for k in range(len(order)):
        for cuts in combinations(range(1, len(order)), k):
            edges = [0, *cuts, len(order)]
            plan = [order[a:b] for a, b in zip(edges, edges[1:], strict=False)]
            if all(len(b) <= 4 for b in plan):
                cheapest = cost(plan) if cheapest is None else min(cheapest, cost(plan))
    assert cost(plan_least_padding(lengths, 4, None, 128)) == cheapest
    # short rows batched apart from long ones, where the greedy cut pads them to 40
    assert [sorted(lengths[b].tolist()) for b in plan_least_padding(lengths, 4, None, 128)] == [
        [3, 4, 5, 6],
        [39, 40, 41, 42],
        [60],
    ]


def test_least_padding_keeps_full_batches_of_equal_rows():
    lengths = np.full(100, 17)
    plan = plan_least_padding(lengths, 32, None, 128)
    assert sorted(len(b) for b in plan) == [4, 32, 32, 32]  # the fewest batches


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


def test_longest_first_orders_batches_by_padded_tokens_ties_in_order():
    lengths = np.array([3, 9, 4, 4, 2, 7, 1])
    batches = [np.array([6, 4]), np.array([0, 2]), np.array([3]), np.array([5, 1]), np.array([], dtype=int)]
    ordered = longest_first(batches, lengths)
    costs = [len(b) * int(lengths[b].max()) if len(b) else 0 for b in ordered]
    assert costs == [18, 8, 4, 4, 0]  # 2 x 9, 2 x 4, then two of 4 in their given order, then empty
    assert [b.tolist() for b in ordered[2:4]] == [[6, 4], [3]]
    assert sorted(np.concatenate(ordered).tolist()) == list(range(7))
