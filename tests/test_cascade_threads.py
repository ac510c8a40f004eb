"""Two threads share one cascade: each gets exactly its single-thread answers and statistics."""

import threading

import numpy as np
import pytest
from tiny_models import build_tiny_classifier, sentiment_rows

import tango.cascade
from tango.cascade import Cascade

ITERATIONS = 25


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    return [build_tiny_classifier(root / f"t{k}", seed=k, layers=1 + k) for k in range(2)]


def counts(stats):
    """Everything in the statistics except the timings."""
    tiers = [(t.rows, t.fraction, t.answered, t.padding_efficiency, t.truncated) for t in stats.tiers]
    return stats.rows, tiers


def test_two_threads_share_one_cascade(tier_dirs, monkeypatch):
    loads = []
    load_tiers = tango.cascade.load_tiers

    def counting_load(names, **options):
        loads.append(list(names))
        return load_tiers(names, precision="fp32", **options)

    monkeypatch.setattr(tango.cascade, "load_tiers", counting_load)
    # tiers by name: they load on the first call, which both threads make at once
    shared = Cascade([str(d) for d in tier_dirs], thresholds=0.8, temperatures=[0.5, 1.0])
    inputs = [sentiment_rows(40, seed=1).texts, sentiment_rows(23, seed=2).texts]
    reference = Cascade([str(d) for d in tier_dirs], thresholds=0.8, temperatures=[0.5, 1.0])
    expected = [reference.predict_detailed(texts) for texts in inputs]
    assert all(0 < e.stats.escalated[0] < 1 for e in expected), "both tiers should answer some rows"
    assert len(loads) == 1
    loads.clear()

    start = threading.Barrier(2)
    failures = []

    def work(k):
        try:
            start.wait()
            for _ in range(ITERATIONS):
                got = shared.predict_detailed(inputs[k])
                want = expected[k]
                np.testing.assert_array_equal(got.labels, want.labels)
                np.testing.assert_array_equal(got.probabilities, want.probabilities)
                np.testing.assert_array_equal(got.confidence, want.confidence)
                np.testing.assert_array_equal(got.tier, want.tier)
                assert counts(got.stats) == counts(want.stats)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    assert len(loads) == 1  # loaded once, though both threads asked at the same time
