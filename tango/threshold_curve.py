"""The two-tier gate as one threshold on tier 1's confidence: what every threshold costs and buys,
and a threshold picked for a target or certified.

- :func:`sweep_thresholds` -> :class:`ThresholdCurve`: the cascade at every distinct confidence
  value, and :func:`select_threshold` to pick one for an accuracy, speed or escalation target;
- :func:`guarantee_threshold`: a threshold with a finite-sample guarantee on how often the cascade
  disagrees with tier 2 (Learn-then-Test, the Clopper-Pearson bound of :mod:`tango.bounds`).

Making tier 1's confidences honest first is :mod:`tango.calibration`'s job; N tiers and the
accuracy target with a margin are :mod:`tango.thresholds`'.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from tango.bounds import clopper_pearson_upper

# --- input checks ---------------------------------------------------------------------------


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


def _as_vector(values: ArrayLike, n_rows: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n_rows,):
        raise ValueError(f"{name} must have shape ({n_rows},) like confidence, got {values.shape}")
    return values


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
    conf, disagree, grid = _guarantee_inputs(confidence, disagree, eps, delta, thresholds)
    n = len(conf)
    disagree_conf = np.sort(conf[disagree.astype(bool)])
    losses = len(disagree_conf) - np.searchsorted(disagree_conf, grid, side="left")  # conf >= t
    bound = clopper_pearson_upper(losses, n, delta)
    passed = bound <= eps
    n_passed = len(grid) if passed.all() else int(np.argmin(passed))  # stop at first failure
    if n_passed == 0:
        raise _uncertifiable(eps, delta, n, grid[0], bound[0])
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


def _guarantee_inputs(
    confidence: ArrayLike, disagree: ArrayLike, eps: float, delta: float, thresholds: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`guarantee_threshold`'s inputs checked: confidence, disagree, and the candidate grid
    from the safest (largest) threshold down."""
    conf = _as_confidence(confidence)
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError("confidence must lie in [0, 1]; compute it with tango.confidence.confidence(probs)")
    disagree = _as_vector(disagree, len(conf), "disagree")
    if not np.isin(disagree, (0, 1)).all():
        raise ValueError("disagree must be boolean: tier1_pred != tier2_pred")
    if not (0 < eps < 1 and 0 < delta < 1):
        raise ValueError(f"eps and delta must lie in (0, 1), got eps={eps}, delta={delta}")
    grid = np.linspace(0.0, 1.0, 1001) if thresholds is None else np.asarray(thresholds, float)
    if grid.ndim != 1 or len(grid) == 0 or not np.isfinite(grid).all():
        raise ValueError(f"thresholds must be a non-empty 1-D array of numbers, got {grid!r}")
    return conf, disagree, np.unique(grid)[::-1]  # safest (largest) first


def _uncertifiable(eps: float, delta: float, n: int, safest: float, bound: float) -> ValueError:
    """The error when even the safest candidate fails: too few rows to certify ``eps``."""
    return ValueError(
        f"cannot certify eps={eps} at delta={delta} with {n} rows: even threshold "
        f"{safest:.4g} has risk bound {bound:.4g} (with no disagreement at all the bound "
        f"is {1 - delta ** (1 / n):.4g}); use more calibration rows or a larger eps or delta"
    )
