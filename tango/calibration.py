"""Honest confidences for a cascade's gate: temperature scaling and how calibration is measured.

The gate sends a row on when its confidence is below a threshold, so the confidences must mean
what they say: `TemperatureScaler` makes them so, measured by `negative_log_likelihood`,
`expected_calibration_error` and `reliability_diagram`. Choosing the threshold on them is
:mod:`tango.threshold_curve` (two tiers: the sweep, the selection, the guarantee) and
:mod:`tango.thresholds` (N tiers, an accuracy target with a margin).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import optimize, special

from tango.confidence import softmax

# The threshold sweep, selection and guarantee moved to tango.threshold_curve; docs/calibration.md
# documents them as importable from here, so they are re-exported (public API, not used here).
from tango.threshold_curve import guarantee_threshold as guarantee_threshold
from tango.threshold_curve import select_threshold as select_threshold
from tango.threshold_curve import sweep_thresholds as sweep_thresholds

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
