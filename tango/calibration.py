"""Calibration and threshold selection for a two-tier cascade.

The gate sends a row to tier 2 when its confidence is below a threshold, so this module does
three jobs:

1. make tier 1's confidences honest: `TemperatureScaler`, measured by
   `negative_log_likelihood`, `expected_calibration_error` and `reliability_diagram`;
2. show what every threshold costs and buys: `sweep_thresholds` -> `ThresholdCurve`, and
   `select_threshold` to pick one for an accuracy, speed or escalation target;
3. pick a threshold with a finite-sample guarantee on how often the cascade disagrees with
   tier 2: `guarantee_threshold` (Learn-then-Test).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from tango.confidence import softmax

# --- input checks ---------------------------------------------------------------------------


def _as_logits(logits: ArrayLike) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must have shape (rows, classes>=2), got {logits.shape}; "
            "wrap a single row as logits[None, :]"
        )
    if not np.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf; drop or fix those rows first")
    return logits


def _as_probs(probs: ArrayLike, name: str = "probs") -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"{name} must have shape (rows, classes>=2), got {probs.shape}")
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"{name} rows must be non-negative and sum to 1; pass softmax(logits), not logits")
    return probs


def _as_labels(y: ArrayLike, n_rows: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n_rows,):
        raise ValueError(f"y must have shape ({n_rows},) to match the scores, got {y.shape}")
    if n_rows == 0:
        raise ValueError("need at least one labelled row")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"y must hold integer class indices 0..{n_classes - 1}, got dtype {y.dtype}; "
            "map label names to their column index first"
        )
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y must lie in 0..{n_classes - 1} (one per column), got {y.min()}..{y.max()}")
    return y


def _as_vector(values: ArrayLike, n_rows: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n_rows,):
        raise ValueError(f"{name} must have shape ({n_rows},) like confidence, got {values.shape}")
    return values


def _as_confidence(confidence: ArrayLike) -> np.ndarray:
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.ndim != 1 or len(confidence) == 0:
        raise ValueError(
            f"confidence must be a non-empty 1-D array (one score per row), got shape "
            f"{confidence.shape}; compute it with tango.confidence.confidence(probs)"
        )
    if not np.isfinite(confidence).all():
        raise ValueError("confidence contains NaN or inf; drop or fix those rows first")
    return confidence


# --- temperature scaling --------------------------------------------------------------------


class TemperatureScaler:
    """Learn one temperature T so that ``softmax(logits / T)`` is calibrated (Guo et al. 2017).

    A single positive scale cannot change which class wins, so accuracy is untouched: T > 1
    softens an over-confident model, T < 1 sharpens an under-confident one. The gate then
    compares calibrated confidences, which makes its threshold mean the same across models.

    Parameters
    ----------
    temperature_range : (low, high)
        Interval searched for T. The NLL is convex in 1/T, hence unimodal in log T, so a
        bounded scalar search over log T finds the global minimum.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature, > 0.
    n_classes_ : int
        Number of logit columns seen in `fit`.

    Examples
    --------
    >>> logits = [[4.0, 0.0], [3.0, 1.0], [0.0, 2.0], [5.0, 1.0]]
    >>> scaler = TemperatureScaler().fit(logits, [0, 1, 1, 0])
    >>> scaler.temperature_ > 1  # one confident mistake: soften
    True
    >>> scaler.predict_proba(logits).shape
    (4, 2)
    """

    def __init__(self, temperature_range: tuple[float, float] = (1e-2, 1e2)) -> None:
        self.temperature_range = temperature_range

    def fit(self, logits: ArrayLike, y: ArrayLike) -> TemperatureScaler:
        """Find T minimising the mean NLL of ``softmax(logits / T)``. (N, K), (N,) -> self."""
        logits = _as_logits(logits)
        y = _as_labels(y, *logits.shape)
        low, high = self.temperature_range
        if not 0 < low < high:
            raise ValueError(f"temperature_range must satisfy 0 < low < high, got {(low, high)}")
        true_logit = logits[np.arange(len(y)), y]

        def nll(log_t: float) -> float:
            t = np.exp(log_t)
            return float(np.mean(special.logsumexp(logits / t, axis=1) - true_logit / t))

        bounds = (np.log(low), np.log(high))
        result = optimize.minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-6})
        # Bounded Brent never evaluates the end points: check them, or a NLL still falling at
        # an edge (separable data) would stop short of it.
        log_t = min([result.x, *bounds], key=nll)
        if log_t != result.x:
            warnings.warn(
                f"the fitted temperature {np.exp(log_t):.3g} sits at the edge of "
                f"temperature_range={self.temperature_range}: the logits may separate the "
                "labels perfectly (T -> 0) or carry no signal (T -> inf); widen the range or "
                "check the calibration data",
                RuntimeWarning,
                stacklevel=2,
            )
        self.temperature_ = float(np.exp(log_t))
        self.n_classes_ = logits.shape[1]
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / temperature_)``. (N, K) -> (N, K)."""
        if not hasattr(self, "temperature_"):
            raise ValueError("this TemperatureScaler is not fitted yet; call fit(logits, y) first")
        logits = _as_logits(logits)
        if logits.shape[1] != self.n_classes_:
            raise ValueError(
                f"logits have {logits.shape[1]} classes but the scaler was fitted on "
                f"{self.n_classes_}; use the same model head for fit and predict_proba"
            )
        return softmax(logits, self.temperature_)


# --- calibration metrics --------------------------------------------------------------------


def negative_log_likelihood(probs: ArrayLike, y: ArrayLike) -> float:
    """Mean ``-log p(true class)``: the proper scoring rule temperature scaling minimises."""
    probs = _as_probs(probs)
    y = _as_labels(y, *probs.shape)
    p_true = probs[np.arange(len(y)), y]
    # Clipping keeps one confident miss finite (~27.6 nats) instead of making the mean inf.
    return float(-np.mean(np.log(np.clip(p_true, 1e-12, None))))


def _reliability_bins(
    probs: np.ndarray, y: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of max probability: rows, accuracy, mean confidence (NaN if empty)."""
    if not (isinstance(n_bins, int | np.integer) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    # Bin m holds confidences in ((m - 1) / M, m / M], as in Guo et al. (2017).
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / counts
    return counts, accuracy, mean_conf


def expected_calibration_error(probs: ArrayLike, y: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error: row-weighted mean |accuracy - confidence| over bins.

    Confidence is the max probability, binned into `n_bins` equal-width bins (Guo et al. 2017).
    0 means the model is right exactly as often as it claims.
    """
    probs = _as_probs(probs)
    y = _as_labels(y, *probs.shape)
    counts, accuracy, mean_conf = _reliability_bins(probs, y, n_bins)
    return float(np.nansum(counts * np.abs(accuracy - mean_conf)) / len(y))


def reliability_diagram(
    probs_before: ArrayLike,
    probs_after: ArrayLike,
    y: ArrayLike,
    path: str | Path,
    *,
    title: str = "Reliability diagram",
    n_bins: int = 15,
) -> Path:
    """Write a PNG of accuracy per confidence bin before and after calibration; return its path.

    Bars on the diagonal are calibrated; bars below it are over-confident. The legend gives
    each side's ECE.
    """
    before = _as_probs(probs_before, "probs_before")
    after = _as_probs(probs_after, "probs_after")
    if before.shape != after.shape:
        raise ValueError(
            f"probs_before {before.shape} and probs_after {after.shape} must describe the same rows"
        )
    y = _as_labels(y, *before.shape)
    width = 1.0 / n_bins
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.subplots()
    for offset, label, probs, color in [
        (0.25, "before", before, "tab:red"),
        (0.75, "after", after, "tab:blue"),
    ]:
        _, accuracy, _ = _reliability_bins(probs, y, n_bins)
        ece = expected_calibration_error(probs, y, n_bins)
        ax.bar(
            (np.arange(n_bins) + offset) * width,
            np.nan_to_num(accuracy),
            width=width / 2,
            color=color,
            alpha=0.8,
            label=f"{label} (ECE {ece:.3f})",
        )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return Path(path)


# --- threshold sweep and selection ----------------------------------------------------------


def _jsonable(value: object) -> object:
    return value.tolist() if isinstance(value, np.ndarray) else value


@dataclass(frozen=True, eq=False)
class ThresholdCurve:
    """Operating point of a two-tier cascade at every threshold, in increasing threshold.

    Rows with ``confidence < threshold`` escalate to tier 2, so the first entry escalates
    nothing and the last escalates every row.
    """

    threshold: np.ndarray  # (M,) increasing
    escalated: np.ndarray  # (M,) fraction of rows sent to tier 2
    agreement_with_tier2: np.ndarray  # (M,) fraction whose final prediction equals tier 2's
    cost: np.ndarray  # (M,) cost per row: cost1 + escalated * cost2
    speedup: np.ndarray  # (M,) cost2 / cost: the gain over running tier 2 on every row
    accuracy: np.ndarray | None  # (M,) final accuracy; None when no labels were given
    tier1_accuracy: float | None  # tier 1 alone; None without labels
    tier2_accuracy: float | None  # tier 2 alone; None without labels

    def to_dict(self) -> dict[str, object]:
        """Plain lists and floats, ready for ``json.dump``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: quality vs speedup, and escalated fraction vs threshold; return its path."""
        fig = Figure(figsize=(10.0, 4.0))
        left, right = fig.subplots(1, 2)
        if self.accuracy is not None:
            left.plot(self.speedup, self.accuracy, label="cascade accuracy")
            left.axhline(self.tier1_accuracy, color="tab:red", ls=":", label="tier 1 alone")
            left.axhline(self.tier2_accuracy, color="tab:green", ls=":", label="tier 2 alone")
        left.plot(self.speedup, self.agreement_with_tier2, label="agreement with tier 2")
        left.set(xlabel="speedup over tier 2 alone", ylabel="fraction of rows")
        left.legend()
        right.plot(self.threshold, self.escalated)
        right.set(xlabel="threshold", ylabel="fraction escalated to tier 2")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        return Path(path)


def _final_rate(ok1: np.ndarray, ok2: np.ndarray, order: np.ndarray, n_escalated: np.ndarray) -> np.ndarray:
    """Fraction of rows that are ok when the `n_escalated` least confident rows use tier 2."""
    cum1 = np.concatenate([[0], np.cumsum(ok1[order])])  # (N + 1,) in increasing confidence
    cum2 = np.concatenate([[0], np.cumsum(ok2[order])])
    n = len(order)
    return (cum2[n_escalated] + cum1[n] - cum1[n_escalated]) / n


def sweep_thresholds(
    confidence: ArrayLike,
    tier1_pred: ArrayLike,
    tier2_pred: ArrayLike,
    y: ArrayLike | None,
    cost1: float,
    cost2: float,
) -> ThresholdCurve:
    """Evaluate the cascade at every distinct confidence value, in O(N log N).

    The thresholds are 0, every distinct confidence, and the next float above the largest
    ("escalate all"). Predictions and labels only need to support ``==`` (indices or names).

    Parameters
    ----------
    confidence : (N,)
        Tier 1's calibrated confidence, higher = more sure.
    tier1_pred, tier2_pred : (N,)
        Each tier's prediction for every row (tier 2 is run on all rows to build the curve).
    y : (N,) or None
        True labels; None gives a curve without accuracy (agreement with tier 2 still works).
    cost1, cost2 : float
        Cost of one row on each tier (e.g. seconds); every row pays cost1, escalated rows also
        pay cost2.
    """
    conf = _as_confidence(confidence)
    n = len(conf)
    pred1 = _as_vector(tier1_pred, n, "tier1_pred")
    pred2 = _as_vector(tier2_pred, n, "tier2_pred")
    if not (cost1 > 0 and cost2 > 0):
        raise ValueError(f"cost1 and cost2 must be > 0 (cost per row), got {cost1} and {cost2}")
    order = np.argsort(conf, kind="stable")
    thresholds = np.unique(np.append(conf, 0.0))
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))
    n_escalated = np.searchsorted(conf[order], thresholds, side="left")  # rows with conf < t
    escalated = n_escalated / n
    cost = cost1 + escalated * cost2
    agreement = _final_rate(pred1 == pred2, np.ones(n, dtype=bool), order, n_escalated)
    accuracy = tier1_accuracy = tier2_accuracy = None
    if y is not None:
        labels = _as_vector(y, n, "y")
        correct1, correct2 = pred1 == labels, pred2 == labels
        accuracy = _final_rate(correct1, correct2, order, n_escalated)
        tier1_accuracy, tier2_accuracy = float(correct1.mean()), float(correct2.mean())
    return ThresholdCurve(
        threshold=thresholds,
        escalated=escalated,
        agreement_with_tier2=agreement,
        cost=cost,
        speedup=cost2 / cost,
        accuracy=accuracy,
        tier1_accuracy=tier1_accuracy,
        tier2_accuracy=tier2_accuracy,
    )


def _best(curve: ThresholdCurve, ok: np.ndarray, primary: np.ndarray, tie: np.ndarray) -> float:
    """Threshold maximising `primary` among rows where `ok`, ties broken by `tie`."""
    candidates = np.flatnonzero(ok)
    best = candidates[np.lexsort((tie[candidates], primary[candidates]))[-1]]
    return float(curve.threshold[best])


def select_threshold(
    curve: ThresholdCurve,
    *,
    max_drop: float | None = None,
    min_speedup: float | None = None,
    max_escalation: float | None = None,
) -> float:
    """Pick a threshold from a sweep for exactly one target.

    Parameters
    ----------
    max_drop : float
        Accuracy loss allowed against tier 2 alone, in percentage points (0.5 = half a point);
        returns the fastest such threshold. Needs a curve swept with labels.
    min_speedup : float
        Required speedup over tier 2 alone; returns the most accurate such threshold (most in
        agreement with tier 2 when the curve has no labels).
    max_escalation : float
        Largest fraction of rows tier 2 may see; returns the largest threshold within it.
    """
    given = {
        name: value
        for name, value in [
            ("max_drop", max_drop),
            ("min_speedup", min_speedup),
            ("max_escalation", max_escalation),
        ]
        if value is not None
    }
    if len(given) != 1:
        raise ValueError(
            f"pass exactly one of max_drop, min_speedup, max_escalation; got {sorted(given) or 'none'}"
        )
    if max_drop is not None:
        if curve.accuracy is None:
            raise ValueError("max_drop needs accuracy: pass labels y to sweep_thresholds")
        if max_drop < 0:
            raise ValueError(f"max_drop is an allowed loss in points and must be >= 0, got {max_drop}")
        # Escalating everything reproduces tier 2 exactly, so some threshold always qualifies.
        ok = curve.accuracy >= curve.tier2_accuracy - max_drop / 100 - 1e-12
        return _best(curve, ok, curve.speedup, curve.accuracy)
    if min_speedup is not None:
        ok = curve.speedup >= min_speedup
        if not ok.any():
            raise ValueError(
                f"no threshold reaches speedup {min_speedup}; the best achievable is "
                f"{curve.speedup.max():.4g} (tier 1 alone, cost2 / cost1)"
            )
        quality = curve.accuracy if curve.accuracy is not None else curve.agreement_with_tier2
        return _best(curve, ok, quality, curve.speedup)
    if not 0 <= max_escalation <= 1:
        raise ValueError(f"max_escalation is a fraction in [0, 1], got {max_escalation}")
    # The escalated fraction grows with the threshold, so the last qualifying one is largest.
    return float(curve.threshold[np.flatnonzero(curve.escalated <= max_escalation)[-1]])


# --- finite-sample guarantee ----------------------------------------------------------------


@dataclass(frozen=True)
class GuaranteeResult:
    """A threshold certified by `guarantee_threshold`, with the evidence on its calibration rows."""

    threshold: float  # escalate rows with confidence < threshold
    risk_bound: float  # one-sided Clopper-Pearson upper bound (level delta) on the disagreement
    empirical_risk: float  # fraction of rows kept at tier 1 that disagree with tier 2
    escalated: float  # fraction of calibration rows escalated
    eps: float  # the target disagreement rate
    delta: float  # the allowed probability that the true rate exceeds eps
    n: int  # calibration rows

    def to_dict(self) -> dict[str, float | int]:
        """Plain numbers, ready for ``json.dump``."""
        return asdict(self)


def clopper_pearson_upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound at level ``alpha`` on a binomial rate, k of n (exact).

    The one place tango computes it: the guarantee gate here and the drop bound of
    :mod:`tango.thresholds` both use it.
    """
    k = np.asarray(k)
    bound = np.ones(k.shape)
    below = k < n  # k = n leaves the Beta(k + 1, 0) bound at 1
    bound[below] = stats.beta.ppf(1 - alpha, k[below] + 1, n - k[below])
    return bound


def clopper_pearson_lower(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound at level ``alpha`` on a binomial rate, k of n."""
    k = np.asarray(k)
    bound = np.zeros(k.shape)
    above = k > 0
    bound[above] = stats.beta.ppf(alpha, k[above], n - k[above] + 1)
    return bound


def guarantee_threshold(
    confidence: ArrayLike,
    disagree: ArrayLike,
    eps: float,
    delta: float = 0.1,
    *,
    thresholds: ArrayLike | None = None,
) -> GuaranteeResult:
    """Cheapest threshold whose disagreement with tier 2 is <= eps with probability >= 1 - delta.

    Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing. A row's loss at
    threshold t is ``disagree & (confidence >= t)``: it stays at tier 1 and tier 2 would have
    said something else. The candidates run from the safest (largest t, which escalates
    nearly everything) to the cheapest; each is tested with a one-sided Clopper-Pearson upper
    bound on its mean loss, and the walk stops at the first bound above eps. Testing in a fixed
    order controls the chance of certifying any threshold whose true risk exceeds eps at delta
    without a union bound, so the result holds for new rows from the same distribution.

    Because the final prediction differs from tier 2 on at most that fraction of rows, the
    cascade's accuracy is also within eps of tier 2 alone.

    Parameters
    ----------
    confidence : (N,)
        Tier 1's calibrated confidence on held-out calibration rows, in [0, 1].
    disagree : (N,) bool
        ``tier1_pred != tier2_pred`` on the same rows; no labels needed.
    eps : float
        Target disagreement rate, in (0, 1).
    delta : float
        Allowed probability that the certified threshold's true rate exceeds eps, in (0, 1).
    thresholds : (G,), optional
        Candidate thresholds, fixed before looking at the data (the guarantee needs that);
        defaults to the 1001-point grid 0, 0.001, ..., 1.

    Raises
    ------
    ValueError
        If not even the largest candidate passes: there are too few rows to certify eps.
    """
    conf = _as_confidence(confidence)
    n = len(conf)
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError("confidence must lie in [0, 1]; compute it with tango.confidence.confidence(probs)")
    disagree = _as_vector(disagree, n, "disagree")
    if not np.isin(disagree, (0, 1)).all():
        raise ValueError("disagree must be boolean: tier1_pred != tier2_pred")
    if not (0 < eps < 1 and 0 < delta < 1):
        raise ValueError(f"eps and delta must lie in (0, 1), got eps={eps}, delta={delta}")
    grid = np.linspace(0.0, 1.0, 1001) if thresholds is None else np.asarray(thresholds, float)
    if grid.ndim != 1 or len(grid) == 0 or not np.isfinite(grid).all():
        raise ValueError(f"thresholds must be a non-empty 1-D array of numbers, got {grid!r}")
    grid = np.unique(grid)[::-1]  # safest (largest) first

    disagree_conf = np.sort(conf[disagree.astype(bool)])
    losses = len(disagree_conf) - np.searchsorted(disagree_conf, grid, side="left")  # conf >= t
    bound = clopper_pearson_upper(losses, n, delta)
    passed = bound <= eps
    n_passed = len(grid) if passed.all() else int(np.argmin(passed))  # stop at first failure
    if n_passed == 0:
        raise ValueError(
            f"cannot certify eps={eps} at delta={delta} with {n} rows: even threshold "
            f"{grid[0]:.4g} has risk bound {bound[0]:.4g} (with no disagreement at all the bound "
            f"is {1 - delta ** (1 / n):.4g}); use more calibration rows or a larger eps or delta"
        )
    i = n_passed - 1
    return GuaranteeResult(
        threshold=float(grid[i]),
        risk_bound=float(bound[i]),
        empirical_risk=float(losses[i] / n),
        escalated=float(np.mean(conf < grid[i])),
        eps=float(eps),
        delta=float(delta),
        n=n,
    )
