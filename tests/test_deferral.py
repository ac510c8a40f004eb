"""Deferral signals (issue #28): AUROC for disagreement with the last tier, the deferral curve,
and the learned rule that must beat max-probability on rows it did not learn from."""

import numpy as np
import pytest

from tango.deferral import LearnedDeferral, deferral_curve, deferral_study, signal_auroc


def two_tiers(n: int, seed: int, by_length: bool = False):
    """Tier-1 logits, last-tier logits, labels, lengths. The last tier is always right; tier 1 is
    wrong on unsure rows (``by_length``: on long rows, whatever its confidence says)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    lengths = rng.integers(3, 40, n)
    margin = rng.uniform(0.05, 4.0, n)
    wrong = lengths > 30 if by_length else margin < 0.6
    first_label = np.where(wrong, 1 - y, y)
    first = np.zeros((n, 2))
    first[np.arange(n), first_label] = margin
    last = np.zeros((n, 2))
    last[np.arange(n), y] = 5.0
    return first, last, y, lengths


def test_auroc_is_one_for_a_signal_that_ranks_every_disagreement_first():
    first, last, _, _ = two_tiers(400, 0)
    auroc = signal_auroc(first, last)
    assert auroc["maxprob"] == pytest.approx(1.0) and auroc["margin"] == pytest.approx(1.0)


def test_the_curve_runs_from_tier_one_to_the_last_tier():
    first, last, y, _ = two_tiers(400, 1)
    curve = deferral_curve(first, last, y, 1 - np.abs(first[:, 0] - first[:, 1]))
    assert curve[0] == pytest.approx((first.argmax(1) == y).mean()) and curve[-1] == 1.0
    assert all(b >= a for a, b in zip(curve, curve[1:], strict=False))  # a perfect ranking only gains


def test_a_learned_rule_finds_what_confidence_cannot():
    fit_rows, judged = two_tiers(600, 2, by_length=True), two_tiers(600, 3, by_length=True)
    study = deferral_study((fit_rows[0], fit_rows[1], fit_rows[3]), judged)
    assert study["auroc"]["learned"] > 0.9 > study["auroc"]["maxprob"] + 0.2
    assert study["beats_maxprob"] is True
    plain = deferral_study((fit_rows[0], fit_rows[1], fit_rows[3]), two_tiers(600, 4))
    assert plain["auroc"]["maxprob"] == pytest.approx(1.0)


def test_the_learned_rule_needs_both_kinds_of_rows():
    first, last, _, lengths = two_tiers(50, 5)
    with pytest.raises(ValueError, match="agree and rows that disagree"):
        LearnedDeferral().fit(last, last, lengths)
    study = deferral_study((last, last, lengths), (first, last, np.zeros(50, dtype=int), lengths))
    assert "learned" not in study["auroc"] and "learned_error" in study
