"""Choosing an N-tier cascade's thresholds for an accuracy target, with a margin that holds.

The in-sample rule (take the fastest thresholds whose drop on the calibration rows is within
target) suffers the winner's curse: among many candidates, the cheapest one that *looks* fine is
usually one whose true drop is worse, so on new rows it misses the target about half the time.

The certified rule here picks the fastest thresholds whose drop is within target **at a stated
confidence level**. It is Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing:

- candidate threshold settings are fixed and ordered from the safest (escalate everything) to the
  cheapest *before* the certifying rows are looked at: the grid and the order come from the
  temperature rows, which are disjoint (two tiers: thresholds from the largest down; more: the
  cost/drop frontier there);
- each candidate's drop against the last tier, ``(lost - gained) / n`` (rows it gets wrong that
  the last tier gets right, minus the reverse), gets a one-sided upper bound at
  ``confidence_level`` (:func:`drop_upper_bound`);
- with ``new_rows`` = M, the bound is on the drop *measured on a batch of M new rows*, not on the
  population's: a batch has sampling noise of its own. The error is split in half: the
  population drop is bounded at ``1 - (1 - confidence_level) / 2`` as above, and the batch's
  deviation from it at the chosen setting (fixed before the batch is seen: one test) at the
  same level, so the margin is ``z' * (sqrt(v / n) + sqrt(v / M))`` (a union bound). The
  tighter ``z * sqrt(v / n + v / M)`` is not valid under fixed-sequence selection (the first
  setting a batch pushes over the target can have a small population drop); on simulated tiers
  it kept the target on 80% of batches instead of 90%. A target checked on one finite set of
  rows (a benchmark's, a day's traffic) needs this; without it a setting whose population drop
  sits just under the target misses on such a set about half the time;
- the walk stops at the first candidate whose bound exceeds the target; the cheapest candidate
  before it is returned. Testing in a fixed order needs no correction for the number of
  candidates, so the chance that the returned setting's true drop exceeds the target is at most
  ``1 - confidence_level``.

Everything is vectorised over candidates: a setting's outcome is which tier answers each row.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from tango.calibration import clopper_pearson_lower, clopper_pearson_upper

ESCALATE_ALL = float(np.nextafter(1.0, 2.0))  # above every confidence: every row moves on


@dataclass(frozen=True)
class ThresholdChoice:
    """Thresholds chosen for a target, with what they did on the rows that chose them."""

    thresholds: list[float]  # one per tier boundary; a row escalates from tier k if conf < t[k]
    drop: float  # accuracy of the last tier minus the cascade's, in points, on the choosing rows
    drop_bound: float | None  # one-sided upper bound on the drop, in points (certified rule only)
    cost: float  # expected cost per row (same unit as the tiers' costs)
    speedup: float  # cost of the last tier alone / cost
    reached: list[float]  # fraction of rows that reach each tier (tier 1 = 1.0)
    rows: int
    confidence_level: float | None
    new_rows: int | None = None  # the bound is on the drop a batch of this many new rows shows

    def to_dict(self) -> dict[str, object]:
        """Plain numbers, ready for ``json.dump``."""
        return asdict(self)


def answering_tier(confidences: list[np.ndarray], thresholds: ArrayLike) -> np.ndarray:
    """Which tier (0-based) answers each row under ``thresholds``: the routing of ``Cascade``."""
    n = len(confidences[0])
    answered = np.full(n, len(confidences), dtype=np.int64)  # the last tier unless one stops it
    still = np.ones(n, dtype=bool)
    for k, t in enumerate(np.asarray(thresholds, dtype=float)):
        stop = still & (confidences[k] >= t)
        answered[stop] = k
        still &= ~stop
    return answered


def default_grid_size(boundaries: int) -> int:
    """Candidates per boundary: fine for one boundary, coarser where the grid is a product."""
    return 400 if boundaries == 1 else 60


def candidate_grid(confidences: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Per boundary: quantiles of that tier's confidences, plus "never" (0) and "always".

    Quantiles put candidates where rows are, so a coarse grid still moves a few rows at a time.
    Compute them on rows other than those that certify the choice.
    """
    grids = []
    for conf in confidences:
        levels = np.quantile(conf, np.linspace(0, 1, size)) if len(conf) else np.array([])
        grids.append(np.unique(np.concatenate([[0.0], levels, [ESCALATE_ALL]])))
    return grids


def _outcomes(
    confidences: list[np.ndarray], correct: list[np.ndarray], settings: np.ndarray, costs: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each setting (rows of ``settings``): rows lost, rows gained, cost per row, reach."""
    lost, gained, cost = [], [], []
    reach = []
    last = correct[-1]
    for setting in settings:
        answered = answering_tier(confidences, setting)
        final = np.choose(answered, correct) if len(answered) else answered.astype(bool)
        lost.append(int(np.sum(last & ~final)))
        gained.append(int(np.sum(~last & final)))
        reached = [float(np.mean(answered >= k)) if len(answered) else 0.0 for k in range(len(costs))]
        reach.append(reached)
        cost.append(float(np.dot(reached, costs)))
    return np.array(lost), np.array(gained), np.array(cost), np.array(reach)


def disagreements(
    confidences: list[np.ndarray], predictions: list[np.ndarray], settings: np.ndarray
) -> np.ndarray:
    """For each setting: rows whose final answer differs from the last tier's (no labels needed)."""
    stacked = np.stack([np.asarray(p) for p in predictions])  # (tiers, rows)
    rows = np.arange(stacked.shape[1])
    return np.array(
        [int(np.sum(stacked[answering_tier(confidences, s), rows] != stacked[-1])) for s in settings]
    )


def _settings(grids: list[np.ndarray]) -> np.ndarray:
    return np.array(list(itertools.product(*grids)), dtype=float).reshape(-1, len(grids))


def _validate(confidences: list[np.ndarray], predictions: list[np.ndarray], y: ArrayLike, costs: list[float]):
    if len(confidences) < 1 or len(predictions) != len(confidences) + 1 or len(costs) != len(predictions):
        raise ValueError(
            "need one confidence array per boundary (N-1), one prediction array per tier (N) "
            "and one cost per tier"
        )
    y = np.asarray(y)
    n = len(y)
    if any(len(c) != n for c in confidences) or any(len(p) != n for p in predictions):
        raise ValueError(f"every array needs one entry per row ({n})")
    if not all(c > 0 for c in costs):
        raise ValueError(f"costs per row must be > 0, got {costs}")
    return [np.asarray(c, dtype=float) for c in confidences], [np.asarray(p) == y for p in predictions], n


def best_in_sample(
    confidences: list[np.ndarray],
    predictions: list[np.ndarray],
    y: ArrayLike,
    costs: list[float],
    max_drop: float,
    grids: list[np.ndarray] | None = None,
    grid_size: int | None = None,
) -> ThresholdChoice:
    """The cheapest setting whose drop *on these rows* is within ``max_drop`` points.

    This is the rule without a margin: its drop on new rows exceeds the target about as often
    as not. Kept for comparison and for ``confidence_level=None``.
    """
    confs, correct, n = _validate(confidences, predictions, y, costs)
    size = grid_size or default_grid_size(len(confs))
    grids = grids if grids is not None else candidate_grid(confs, size)
    settings = _settings(grids)
    lost, gained, cost, reach = _outcomes(confs, correct, settings, costs)
    drop = (lost - gained) / max(n, 1) * 100
    ok = np.flatnonzero(drop <= max_drop + 1e-9)
    best = ok[np.lexsort((drop[ok], cost[ok]))[0]]  # cheapest, then smallest drop
    return _choice(settings[best], drop[best], None, cost[best], costs, reach[best], n, None)


BOUNDS = ("wald", "clopper-pearson")


def drop_upper_bound(
    lost: ArrayLike,
    gained: ArrayLike,
    n: int,
    confidence_level: float,
    method: str = "wald",
    new_rows: int | None = None,
) -> np.ndarray:
    """One-sided upper bound, in points, on the true drop given ``lost`` and ``gained`` of ``n``.

    ``wald`` (default): the paired difference's mean plus z times its standard error, with one
    pseudo-row added to each of ``lost`` and ``gained`` so a handful of rows never looks certain
    (as Agresti and Caffo do for a difference of proportions). ``clopper-pearson``: exact but
    loose, a Clopper-Pearson upper bound on ``lost / n`` minus a lower bound on ``gained / n``,
    each at half the error; roughly twice the wald margin. ``new_rows`` = M (wald only): bound
    the drop that M new rows will show instead of the population's: half the error for the
    population drop, half for the batch's deviation from it (see the module's docstring).
    """
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    if new_rows is not None and (not isinstance(new_rows, (int, np.integer)) or new_rows < 1):
        raise ValueError(f"new_rows must be a whole number of rows >= 1, got {new_rows!r}")
    lost = np.atleast_1d(np.asarray(lost, dtype=float))
    gained = np.atleast_1d(np.asarray(gained, dtype=float))
    if method == "clopper-pearson":
        if new_rows is not None:
            raise ValueError("new_rows needs method='wald' (Clopper-Pearson bounds a population rate)")
        alpha = (1 - confidence_level) / 2
        return (clopper_pearson_upper(lost, n, alpha) - clopper_pearson_lower(gained, n, alpha)) * 100
    if method != "wald":
        raise ValueError(f"method must be one of {BOUNDS}, got {method!r}")
    lost_, gained_, n_ = lost + 1, gained + 1, n + 2
    mean = (lost_ - gained_) / n_
    variance = np.maximum((lost_ + gained_) / n_ - mean**2, 0.0)
    if new_rows is None:
        margin = stats.norm.ppf(confidence_level) * np.sqrt(variance / n_)
    else:  # a union bound: population drop and the batch's deviation, each at half the error
        z = stats.norm.ppf(1 - (1 - confidence_level) / 2)
        margin = z * (np.sqrt(variance / n_) + np.sqrt(variance / new_rows))
    return ((lost - gained) / n + margin) * 100


def ppi_drop_upper_bound(
    lost: ArrayLike,
    gained: ArrayLike,
    disagreed: ArrayLike,
    n: int,
    unlabelled_disagreed: ArrayLike,
    n_unlabelled: int,
    confidence_level: float,
) -> np.ndarray:
    """One-sided upper bound, in points, on the true drop from few labelled rows beside many
    unlabelled ones: prediction-powered inference (Angelopoulos et al. 2023) with PPI++'s power
    tuning (Angelopoulos, Duchi and Zrnic 2023).

    On a row, the drop is ``g = [last right, cascade wrong] - [last wrong, cascade right]`` and its
    label-free stand-in is ``f = [cascade answers other than the last tier]`` (``f >= g``: the
    disagreement bound). The estimate ``lambda * mean_U(f) + mean_L(g - lambda * f)`` is unbiased
    for the drop for any ``lambda``; the unlabelled rows (many) pin down ``f``'s mean and the
    labelled ones (few) only the correction ``g - lambda f``, whose variance is small when ``f``
    tracks ``g``. ``lambda`` in [0, 1] minimises the variance (0: labels alone, 1: plain PPI).
    Counts per setting: on the ``n`` labelled rows ``lost``, ``gained`` and ``disagreed`` (answers
    unlike the last tier's, a superset of both); on the unlabelled rows ``unlabelled_disagreed``.
    Variances carry one pseudo-row each way, as :func:`drop_upper_bound`'s wald bound does.
    """
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    if n < 1 or n_unlabelled < 1:
        raise ValueError(f"need labelled and unlabelled rows, got {n} and {n_unlabelled}")
    lost, gained, disagreed, u_disagreed = (
        np.atleast_1d(np.asarray(v, dtype=float)) for v in (lost, gained, disagreed, unlabelled_disagreed)
    )
    if np.any(disagreed < lost + gained):
        raise ValueError("disagreed counts every lost and gained row: it cannot be smaller than both")
    # moments on the labelled rows, with a lost and a gained pseudo-row (both disagree)
    n_ = n + 2
    mean_g = (lost - gained) / n_
    var_g = (lost + gained + 2) / n_ - mean_g**2
    mean_f = (disagreed + 2) / n_
    var_f = mean_f - mean_f**2
    cov = mean_g - mean_g * mean_f  # E[g f] = E[g]: f is 1 wherever g is not 0
    u_rate = (u_disagreed + 1) / (n_unlabelled + 2)
    var_u = u_rate - u_rate**2
    with np.errstate(divide="ignore", invalid="ignore"):
        tuned = cov / ((1 + n / n_unlabelled) * var_f)
    lam = np.clip(np.nan_to_num(tuned, nan=0.0), 0.0, 1.0)
    estimate = lam * u_disagreed / n_unlabelled + (lost - gained - lam * disagreed) / n
    variance = lam**2 * var_u / n_unlabelled + np.maximum(var_g + lam**2 * var_f - 2 * lam * cov, 0.0) / n
    return (estimate + stats.norm.ppf(confidence_level) * np.sqrt(variance)) * 100


def pareto_sequence(drop: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the settings no other beats on both drop and cost, most expensive first.

    Along this frontier the drop only grows as the cost falls, which is the order in which
    fixed-sequence testing loses least: it stops at the first failure.
    """
    order = np.lexsort((drop, cost))  # cheapest first, then smallest drop
    best_so_far = np.minimum.accumulate(np.concatenate([[np.inf], drop[order]]))[:-1]
    frontier = order[drop[order] < best_so_far]
    return frontier[::-1]


def certify(
    confidences: list[np.ndarray],
    predictions: list[np.ndarray],
    y: ArrayLike,
    costs: list[float],
    max_drop: float,
    *,
    order_rows: tuple[list[np.ndarray], list[np.ndarray], ArrayLike],
    confidence_level: float = 0.9,
    bound: str = "wald",
    grid_size: int | None = None,
    new_rows: int | None = None,
    unlabelled: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> ThresholdChoice:
    """The cheapest setting whose drop is within ``max_drop`` points at ``confidence_level``.

    Parameters
    ----------
    confidences, predictions, y : the certifying rows
        Calibrated confidence of tiers 1..N-1, predictions of tiers 1..N, and true labels.
    costs : one per tier
        Measured cost per row.
    order_rows : (confidences, predictions, y) on *other* labelled rows (the temperature rows)
        Fix the candidate grid and the testing order (the cost/drop frontier there) without
        looking at the certifying rows; the guarantee needs that independence.
    new_rows : int, optional
        The drop to keep is the one a batch of this many new rows will show (its own sampling
        noise included: :func:`drop_upper_bound`); default, the population's.
    unlabelled : (confidences, predictions) on unlabelled rows like the traffic, optional
        Combine them with the labelled rows (:func:`ppi_drop_upper_bound`): the bound is still on
        the drop itself, its variance mostly that of disagreement on the many unlabelled rows.

    The setting "escalate every row" reproduces the last tier exactly, so it is tested first
    and always passes: the result is never worse than the last tier alone.
    """
    confs, correct, n = _validate(confidences, predictions, y, costs)
    order_confs, order_correct, _ = _validate(*order_rows[:2], order_rows[2], costs)
    if len(order_confs) != len(confs):
        raise ValueError(f"order_rows needs {len(confs)} confidence arrays, got {len(order_confs)}")
    settings = _settings(candidate_grid(order_confs, grid_size or default_grid_size(len(confs))))
    lost_a, gained_a, cost_a, _ = _outcomes(order_confs, order_correct, settings, costs)
    if len(confs) == 1:  # one boundary: every threshold, from the largest; cost falls with it
        frontier = np.lexsort((-settings[:, 0], -cost_a))
    else:  # a product grid has no natural order: walk the cost/drop frontier of the temperature rows
        frontier = pareto_sequence(lost_a - gained_a, cost_a)
    everything = np.flatnonzero(np.all(settings == ESCALATE_ALL, axis=1))
    sequence = np.concatenate([everything, frontier[~np.isin(frontier, everything)]])
    lost, gained, cost, reach = _outcomes(confs, correct, settings[sequence], costs)
    if unlabelled is None:
        bounds = drop_upper_bound(lost, gained, n, confidence_level, bound, new_rows)
    else:
        if new_rows is not None or bound != "wald":
            raise ValueError("unlabelled rows combine with the default bound only (no new_rows)")
        disagreed = disagreements(confs, [np.asarray(p) for p in predictions], settings[sequence])
        u_confs = [np.asarray(c, dtype=float) for c in unlabelled[0]]
        u_preds = [np.asarray(p) for p in unlabelled[1]]
        u_disagreed = disagreements(u_confs, u_preds, settings[sequence])
        bounds = ppi_drop_upper_bound(
            lost, gained, disagreed, n, u_disagreed, len(u_preds[-1]), confidence_level
        )
    bounds[0] = 0.0  # escalating every row *is* the last tier
    failed = np.flatnonzero(bounds > max_drop)
    tested = len(sequence) if not len(failed) else int(failed[0])
    i = int(np.argmin(cost[:tested]))  # every setting before the first failure is certified
    drop = (lost[i] - gained[i]) / n * 100
    return _choice(
        settings[sequence[i]], drop, bounds[i], cost[i], costs, reach[i], n, confidence_level, new_rows
    )


def _choice(setting, drop, bound, cost, costs, reach, n, level, new_rows=None) -> ThresholdChoice:
    return ThresholdChoice(
        thresholds=[float(t) for t in setting],
        drop=float(drop),
        drop_bound=None if bound is None else float(bound),
        cost=float(cost),
        speedup=float(costs[-1] / cost),
        reached=[float(r) for r in reach],
        rows=int(n),
        confidence_level=level,
        new_rows=None if new_rows is None else int(new_rows),
    )
