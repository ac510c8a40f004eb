"""Tests for tango.calibration (temperature scaling, metrics) and tango.threshold_curve (sweeps and
the LTT guarantee)."""

from __future__ import annotations

import doctest
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tango import calibration, threshold_curve
from tango.calibration import (
    TemperatureScaler,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)
from tango.confidence import softmax
from tango.threshold_curve import guarantee_threshold, select_threshold, sweep_thresholds

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One label per row drawn from that row's categorical distribution."""
    cumulative = probs.cumsum(axis=1)
    draws = rng.uniform(size=(len(probs), 1))
    return np.minimum((draws > cumulative).sum(axis=1), probs.shape[1] - 1)


def overconfident_logits(rng: np.random.Generator, n: int, k: int, true_t: float):
    """Logits z whose labels follow softmax(z / true_t): calibrated only at T = true_t."""
    logits = rng.normal(scale=3.0, size=(n, k))
    return logits, sample_labels(rng, softmax(logits, true_t))


# --- temperature scaling --------------------------------------------------------------------


@pytest.mark.parametrize(("k", "true_t"), [(2, 0.5), (5, 2.0), (10, 3.0)])
def test_temperature_scaler_recovers_known_temperature(k: int, true_t: float) -> None:
    logits, y = overconfident_logits(np.random.default_rng(k), 20_000, k, true_t)
    scaler = TemperatureScaler().fit(logits, y)
    assert scaler.temperature_ == pytest.approx(true_t, rel=0.08)
    assert scaler.n_classes_ == k


def test_temperature_scaling_lowers_nll_and_ece_on_overconfident_logits() -> None:
    logits, y = overconfident_logits(np.random.default_rng(1), 10_000, 4, 2.5)
    raw = softmax(logits)
    calibrated = TemperatureScaler().fit(logits, y).predict_proba(logits)
    assert negative_log_likelihood(calibrated, y) < negative_log_likelihood(raw, y) - 0.1
    assert expected_calibration_error(calibrated, y) < 0.02 < expected_calibration_error(raw, y)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), raw.argmax(axis=1))


def test_predict_proba_rows_sum_to_one_including_empty_input() -> None:
    logits, y = overconfident_logits(np.random.default_rng(2), 500, 3, 1.5)
    scaler = TemperatureScaler().fit(logits, y)
    np.testing.assert_allclose(scaler.predict_proba(logits).sum(axis=1), 1.0)
    assert scaler.predict_proba(np.empty((0, 3))).shape == (0, 3)


def test_fit_warns_when_the_temperature_hits_the_range() -> None:
    separable = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    with pytest.warns(RuntimeWarning, match="edge of temperature_range"):
        scaler = TemperatureScaler(temperature_range=(0.1, 10.0)).fit(separable, [0, 1] * 10)
    assert scaler.temperature_ == pytest.approx(0.1, rel=1e-3)


@pytest.mark.parametrize(
    ("logits", "y", "error", "match"),
    [
        (np.zeros(3), [0, 1, 0], ValueError, "shape \\(rows, classes>=2\\)"),
        (np.zeros((3, 1)), [0, 0, 0], ValueError, "classes>=2"),
        (np.full((2, 2), np.nan), [0, 1], ValueError, "NaN or inf"),
        (np.zeros((3, 2)), [0, 1], ValueError, "y must have shape \\(3,\\)"),
        (np.zeros((2, 2)), [0.0, 1.0], TypeError, "integer class indices"),
        (np.zeros((2, 2)), [0, 2], ValueError, "must lie in 0..1"),
        (np.zeros((0, 2)), np.array([], dtype=int), ValueError, "at least one"),
    ],
)
def test_fit_rejects_bad_input(logits, y, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TemperatureScaler().fit(logits, y)


def test_scaler_errors_say_how_to_fix() -> None:
    with pytest.raises(ValueError, match="call fit"):
        TemperatureScaler().predict_proba(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="0 < low < high"):
        TemperatureScaler(temperature_range=(2.0, 1.0)).fit(np.zeros((2, 2)), [0, 1])
    scaler = TemperatureScaler().fit([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0, 1, 1])
    with pytest.raises(ValueError, match="fitted on 2"):
        scaler.predict_proba(np.zeros((1, 3)))


# --- metrics --------------------------------------------------------------------------------


def test_negative_log_likelihood_known_value() -> None:
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert negative_log_likelihood(probs, [0, 1]) == pytest.approx(expected)
    assert math.isfinite(negative_log_likelihood([[1.0, 0.0]], [1]))


def test_metrics_reject_logits_passed_as_probs() -> None:
    with pytest.raises(ValueError, match="pass softmax\\(logits\\)"):
        expected_calibration_error([[2.0, -1.0]], [0])


def test_ece_is_small_for_a_calibrated_sample() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=20_000)
    assert expected_calibration_error(probs, sample_labels(rng, probs)) < 0.02


def test_ece_known_values() -> None:
    probs = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(probs, np.zeros(10, dtype=int)) == pytest.approx(0.2)
    # Two bins: confidences 0.6 (1 of 2 right) and 0.9 (2 of 2 right) -> (2*0.1 + 2*0.1) / 4.
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error(probs, [0, 1, 1, 1], n_bins=10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(probs, [0, 1, 1, 1], n_bins=0)


def test_reliability_diagram_writes_png(tmp_path: Path) -> None:
    logits, y = overconfident_logits(np.random.default_rng(4), 2_000, 3, 2.0)
    after = TemperatureScaler().fit(logits, y).predict_proba(logits)
    path = reliability_diagram(softmax(logits), after, y, tmp_path / "rel.png", title="t")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="same rows"):
        reliability_diagram(softmax(logits), after[:10], y, tmp_path / "bad.png")


# --- threshold sweep ------------------------------------------------------------------------

row = st.tuples(
    st.sampled_from([-0.3, 0.0, 0.2, 0.5, 0.5000001, 0.9, 1.0]),  # ties and near-ties
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(0, 2),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row, min_size=1, max_size=30))
def test_sweep_matches_brute_force(rows: list[tuple[float, int, int, int]]) -> None:
    conf, pred1, pred2, y = (np.array(column) for column in zip(*rows, strict=True))
    curve = sweep_thresholds(conf, pred1, pred2, y, cost1=1.0, cost2=4.0)
    np.testing.assert_array_equal(curve.threshold[:-1], sorted(set(conf) | {0.0}))
    assert curve.threshold[-1] > conf.max()
    for i, t in enumerate(curve.threshold):  # O(N^2): recompute each point from scratch
        escalate = conf < t
        final = np.where(escalate, pred2, pred1)
        assert curve.escalated[i] == pytest.approx(escalate.mean())
        assert curve.accuracy[i] == pytest.approx((final == y).mean())
        assert curve.agreement_with_tier2[i] == pytest.approx((final == pred2).mean())
        assert curve.cost[i] == pytest.approx(1.0 + 4.0 * escalate.mean())
        assert curve.speedup[i] == pytest.approx(4.0 / curve.cost[i])


def test_sweep_endpoints_are_the_single_tiers() -> None:
    rng = np.random.default_rng(5)
    conf, y = rng.uniform(size=1_000), rng.integers(0, 3, 1_000)
    pred1, pred2 = rng.integers(0, 3, 1_000), np.where(rng.uniform(size=1_000) < 0.9, y, 0)
    curve = sweep_thresholds(conf, pred1, pred2, y, cost1=1.0, cost2=10.0)
    assert (curve.escalated[0], curve.escalated[-1]) == (0.0, 1.0)
    assert curve.accuracy[0] == curve.tier1_accuracy == np.mean(pred1 == y)
    assert curve.accuracy[-1] == curve.tier2_accuracy == np.mean(pred2 == y)
    assert curve.speedup[0] == pytest.approx(10.0)
    assert curve.speedup[-1] == pytest.approx(10.0 / 11.0)


def test_sweep_without_labels_serialises_and_plots(tmp_path: Path) -> None:
    labels = np.array(["pos", "neg", "pos", "neg"])  # predictions may be label names
    curve = sweep_thresholds([0.9, 0.4, 0.7, 0.4], labels, labels[::-1], None, 1.0, 5.0)
    assert curve.accuracy is None and curve.tier2_accuracy is None
    record = json.loads(json.dumps(curve.to_dict()))
    assert record["threshold"] == curve.threshold.tolist()
    assert curve.plot(tmp_path / "curve.png").read_bytes().startswith(PNG_MAGIC)


def test_sweep_plot_with_labels(tmp_path: Path) -> None:
    curve = sweep_thresholds([0.9, 0.4, 0.7], [0, 1, 1], [0, 0, 1], [0, 0, 1], 1.0, 5.0)
    assert curve.plot(tmp_path / "curve.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": np.zeros((2, 2))}, "1-D array"),
        ({"confidence": []}, "non-empty"),
        ({"confidence": [0.5, np.nan, 0.1]}, "NaN or inf"),
        ({"tier1_pred": [0, 1]}, "tier1_pred must have shape \\(3,\\)"),
        ({"y": [0]}, "y must have shape \\(3,\\)"),
        ({"cost1": 0.0}, "must be > 0"),
    ],
)
def test_sweep_rejects_bad_input(kwargs: dict, match: str) -> None:
    args = {
        "confidence": [0.1, 0.5, 0.9],
        "tier1_pred": [0, 1, 1],
        "tier2_pred": [0, 0, 1],
        "y": [0, 0, 1],
        "cost1": 1.0,
        "cost2": 5.0,
    }
    with pytest.raises(ValueError, match=match):
        sweep_thresholds(**{**args, **kwargs})


# --- threshold selection --------------------------------------------------------------------


@pytest.fixture
def curve() -> threshold_curve.ThresholdCurve:
    """Ten rows at confidence 0.1..1.0; tier 2 is always right, tier 1 misses 0.1, 0.2, 0.4.

    threshold 0 and 0.1: accuracy 0.7, speedup 9 | 0.2: 0.8, 4.74 | 0.3: 0.9, 3.21 |
    0.4: 0.9, 2.43 | 0.5 and up: 1.0, <= 1.96. Threshold t >= 0.1 escalates 10 t - 1 rows.
    """
    conf = np.round(np.arange(1, 11) / 10, 1)
    pred1 = np.where(np.isin(conf, [0.1, 0.2, 0.4]), 1, 0)
    zeros = np.zeros(10, dtype=int)
    return sweep_thresholds(conf, pred1, zeros, zeros, cost1=1.0, cost2=9.0)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"max_drop": 0.0}, 0.5),
        ({"max_drop": 10.0}, 0.3),  # 10 points: accuracy >= 0.9
        ({"max_drop": 30.0}, 0.1),  # tier 1 alone is good enough
        ({"min_speedup": 3.0}, 0.3),
        ({"min_speedup": 4.7}, 0.2),
        ({"min_speedup": 9.0}, 0.1),
        ({"max_escalation": 0.25}, 0.3),
        ({"max_escalation": 0.0}, 0.1),
    ],
)
def test_select_threshold_meets_each_target(curve, target: dict, expected: float) -> None:
    assert select_threshold(curve, **target) == pytest.approx(expected)


def test_select_threshold_max_escalation_one_escalates_everything(curve) -> None:
    assert select_threshold(curve, max_escalation=1.0) == curve.threshold[-1]


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ({}, "exactly one.*got none"),
        ({"max_drop": 1.0, "min_speedup": 2.0}, "exactly one"),
        ({"min_speedup": 10.0}, "best achievable is 9"),
        ({"max_drop": -1.0}, ">= 0"),
        ({"max_escalation": 1.5}, "in \\[0, 1\\]"),
    ],
)
def test_select_threshold_errors(curve, target: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_threshold(curve, **target)


def test_select_threshold_without_labels() -> None:
    unlabelled = sweep_thresholds([0.2, 0.6, 0.9], [1, 0, 0], [0, 0, 0], None, 1.0, 4.0)
    with pytest.raises(ValueError, match="pass labels y"):
        select_threshold(unlabelled, max_drop=1.0)
    # Speedup 1.7 allows escalating one row (cost 1 + 4/3, speedup 1.71): the disagreeing one.
    assert select_threshold(unlabelled, min_speedup=1.7) == pytest.approx(0.6)


# --- finite-sample guarantee ----------------------------------------------------------------

# Population: confidence ~ U(0, 1); tier 1 disagrees with tier 2 with probability
# A (1 - c)^2, so a threshold t has exact true risk A (1 - t)^3 / 3 (no Monte-Carlo error).
A, EPS, DELTA, N_DEV, TRIALS = 0.5, 0.05, 0.1, 1_000, 200
GRID = np.linspace(0.0, 1.0, 1001)


def true_risk(threshold: float) -> float:
    return A * (1 - threshold) ** 3 / 3


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    conf = rng.uniform(size=n)
    return conf, rng.uniform(size=n) < A * (1 - conf) ** 2


def plug_in_threshold(conf: np.ndarray, disagree: np.ndarray) -> float:
    """The naive choice: the lowest grid threshold whose *empirical* risk is <= EPS."""
    disagree_conf = np.sort(conf[disagree])
    risk = (len(disagree_conf) - np.searchsorted(disagree_conf, GRID)) / len(conf)
    return float(GRID[np.flatnonzero(risk <= EPS)[0]])


def test_guarantee_holds_by_simulation_and_plug_in_does_not() -> None:
    rng = np.random.default_rng(6)
    ltt, naive = [], []
    for _ in range(TRIALS):
        conf, disagree = draw(rng, N_DEV)
        ltt.append(guarantee_threshold(conf, disagree, EPS, DELTA).threshold)
        naive.append(plug_in_threshold(conf, disagree))
    violations = np.mean([true_risk(t) > EPS for t in ltt])
    naive_violations = np.mean([true_risk(t) > EPS for t in naive])
    assert violations <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / TRIALS)
    assert naive_violations > 0.3  # the check above has teeth: plug-in fails ~half the time
    oracle = 1 - (3 * EPS / A) ** (1 / 3)  # true_risk(oracle) == EPS
    assert oracle < np.mean(ltt) < oracle + 0.15  # safe, but not by escalating everything


def test_guarantee_result_is_consistent() -> None:
    conf, disagree = draw(np.random.default_rng(7), 2_000)
    result = guarantee_threshold(conf, disagree, eps=0.05, delta=0.1)
    kept = conf >= result.threshold
    assert result.empirical_risk == pytest.approx(np.mean(disagree & kept))
    assert result.escalated == pytest.approx(np.mean(~kept))
    assert result.empirical_risk <= result.risk_bound <= 0.05
    assert result.n == 2_000
    assert json.loads(json.dumps(result.to_dict()))["threshold"] == result.threshold


def test_guarantee_uses_the_given_thresholds() -> None:
    conf, disagree = draw(np.random.default_rng(8), 2_000)
    result = guarantee_threshold(conf, disagree, 0.05, 0.1, thresholds=[0.2, 0.9, 0.5, 1.0])
    assert result.threshold in (0.5, 0.9, 1.0)


def test_guarantee_on_a_hand_example() -> None:
    # Thresholds 1.0 and 0.5 keep no disagreeing row and pass; 0.4 keeps 30 of them and fails.
    conf = np.array([0.45] * 200 + [0.3] * 800)
    disagree = np.zeros(1_000, dtype=bool)
    disagree[:30] = True  # rows at 0.45: kept at thresholds <= 0.45
    result = guarantee_threshold(conf, disagree, eps=0.02, delta=0.1, thresholds=[0.0, 0.4, 0.5, 1.0])
    assert result.threshold == 0.5
    assert result.risk_bound == pytest.approx(1 - 0.1 ** (1 / 1_000))


@pytest.mark.parametrize(
    ("conf", "disagree", "kwargs", "match"),
    [
        ([0.5, 1.5], [True, False], {}, "in \\[0, 1\\]"),
        ([0.5, 0.6], [2, 0], {}, "boolean"),
        ([0.5, 0.6], [True], {}, "disagree must have shape"),
        ([0.5, 0.6], [True, False], {"eps": 0.0}, "eps and delta"),
        ([0.5, 0.6], [True, False], {"thresholds": []}, "thresholds"),
        ([0.5] * 10, [False] * 10, {}, "cannot certify eps=0.05 .* 10 rows"),
    ],
)
def test_guarantee_rejects_bad_input(conf, disagree, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        guarantee_threshold(conf, disagree, **{"eps": 0.05, "delta": 0.1, **kwargs})


# --- documentation stays runnable -----------------------------------------------------------


def test_docstring_examples() -> None:
    assert doctest.testmod(calibration).failed == 0


def test_docs_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).parents[1] / "docs" / "calibration.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "docs/calibration.md should hold a python example"
    monkeypatch.chdir(tmp_path)  # the example writes its PNGs to the working directory
    for block in blocks:
        exec(compile(block, "docs/calibration.md", "exec"), {})
