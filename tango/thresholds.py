"""Choosing an N-tier cascade's thresholds for an accuracy target, with a margin that holds.

The in-sample rule (take the fastest thresholds whose drop on the calibration rows is within
target) suffers the winner's curse: among many candidates, the cheapest one that *looks* fine is
usually one whose true drop is worse, so on new rows it misses the target about half the time.

The certified rule here picks the fastest thresholds whose drop is within target **at a stated
confidence level**. It is Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing:

- candidate threshold settings are fixed and ordered from the safest (escalate everything) to the
  cheapest *before* the certifying rows are looked at: the grid and the order come from the
  temperature rows, which are disjoint (two tiers: thresholds from the largest down; more: one
  boundary at a time, the last first, each from "escalate all" down to where a walk with the
  temperature rows' rates gets, and held there while the boundary before it walks);
- each candidate's drop against the last tier, ``(lost - gained) / n`` (rows it gets wrong that
  the last tier gets right, minus the reverse), gets a one-sided upper bound at
  ``confidence_level`` (:func:`tango.bounds.drop_upper_bound`; label-free, where the labels are
  the last tier's answers, the exact :func:`tango.bounds.disagreement_upper_bound`);
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tango.bounds import disagreement_upper_bound, drop_upper_bound, ppi_drop_upper_bound

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


@dataclass(frozen=True)
class CertifyOptions:
    """How :func:`certify` tests a setting: its drop bounded at ``confidence_level`` by ``bound``
    (one of :data:`tango.bounds.BOUNDS`), on the population or, with ``new_rows`` = M, on the drop
    a batch of M new rows will show (its own sampling noise included:
    :func:`tango.bounds.drop_upper_bound`); ``grid_size`` candidates per boundary (default
    :func:`default_grid_size`)."""

    confidence_level: float = 0.9
    bound: str = "bonett-price"
    grid_size: int | None = None
    new_rows: int | None = None
    label_free: bool = False  # the labels are the last tier's answers: the exact disagreement bound

    def drop_bounds(self, lost: np.ndarray, gained: np.ndarray, n: int, new_rows: int | None) -> np.ndarray:
        """Each setting's upper bound on its drop, in points. Label-free, no row can gain and the
        drop is a binomial disagreement rate: :func:`tango.bounds.disagreement_upper_bound`
        (exact), whatever ``bound`` says; else :func:`tango.bounds.drop_upper_bound`."""
        if self.label_free:
            if np.any(np.asarray(gained) > 0):
                raise ValueError("label_free: a row gained, so the labels are not the last tier's answers")
            return disagreement_upper_bound(lost, n, self.confidence_level, new_rows)
        return drop_upper_bound(lost, gained, n, self.confidence_level, self.bound, new_rows)


def certify(
    confidences: list[np.ndarray],
    predictions: list[np.ndarray],
    y: ArrayLike,
    costs: list[float],
    max_drop: float,
    *,
    order_rows: tuple[list[np.ndarray], list[np.ndarray], ArrayLike],
    options: CertifyOptions | None = None,
    unlabelled: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    **keywords: Any,
) -> ThresholdChoice:
    """The cheapest setting whose drop is within ``max_drop`` points at a confidence level.

    Parameters
    ----------
    confidences, predictions, y : the certifying rows
        Calibrated confidence of tiers 1..N-1, predictions of tiers 1..N, and true labels.
    costs : one per tier
        Measured cost per row.
    order_rows : (confidences, predictions, y) on *other* labelled rows (the temperature rows)
        Fix the candidate grid and the testing order (:func:`_testing_order`) without
        looking at the certifying rows; the guarantee needs that independence.
    options : CertifyOptions, or its fields as keywords (``confidence_level=0.9``, ``bound``,
        ``grid_size``, ``new_rows``; keywords override ``options``)
        How each candidate's drop is bounded.
    unlabelled : (confidences, predictions) on unlabelled rows like the traffic, optional
        Combine them with the labelled rows (:func:`tango.bounds.ppi_drop_upper_bound`): the bound
        is still on the drop itself, its variance mostly that of disagreement on the many
        unlabelled rows.

    The setting "escalate every row" reproduces the last tier exactly, so it is tested first
    and always passes: the result is never worse than the last tier alone.
    """
    options = replace(options or CertifyOptions(), **keywords)
    confs, correct, n = _validate(confidences, predictions, y, costs)
    order_confs, order_correct, _ = _validate(*order_rows[:2], order_rows[2], costs)
    if len(order_confs) != len(confs):
        raise ValueError(f"order_rows needs {len(confs)} confidence arrays, got {len(order_confs)}")
    settings = _settings(candidate_grid(order_confs, options.grid_size or default_grid_size(len(confs))))

    def walk_reaches(lost: np.ndarray, gained: np.ndarray, rows: int) -> int:
        """How far a walk on the order rows gets, bounded as the certifying walk will be (with
        ``new_rows``, a constant). Fewer rows than certify, so it stops short of where the
        certifying walk will: an anchor there is passed, and later legs are reached."""
        bounds = options.drop_bounds(lost, gained, rows, options.new_rows)
        return certified_prefix(np.concatenate([[0.0], bounds[1:]]), max_drop)

    settings = settings[_testing_order(order_confs, order_correct, settings, costs, walk_reaches)]
    lost, gained, cost, reach = _outcomes(confs, correct, settings, costs)
    if unlabelled is None:
        bounds = options.drop_bounds(lost, gained, n, options.new_rows)
    else:
        disagreed = disagreements(confs, [np.asarray(p) for p in predictions], settings)
        bounds = _combined_bound(lost, gained, disagreed, n, unlabelled, settings, options)
    bounds[0] = 0.0  # escalating every row *is* the last tier
    i = int(np.argmin(cost[: certified_prefix(bounds, max_drop)]))
    drop = (lost[i] - gained[i]) / n * 100
    level, new_rows = options.confidence_level, options.new_rows
    return _choice(settings[i], drop, bounds[i], cost[i], costs, reach[i], n, level, new_rows)


def certified_prefix(bounds: ArrayLike, max_drop: float) -> int:
    """Fixed-sequence testing: how many settings, in their testing order, have a drop bound within
    ``max_drop`` before the first that has not. Every one of them is certified; testing stops at
    the first failure, so no level is spent on the settings after it."""
    failed = np.flatnonzero(np.asarray(bounds) > max_drop)
    return int(failed[0]) if len(failed) else len(np.asarray(bounds))


def _testing_order(
    confs: list[np.ndarray],
    correct: list[np.ndarray],
    settings: np.ndarray,
    costs: list[float],
    walk_reaches: Callable[[np.ndarray, np.ndarray, int], int],
) -> np.ndarray:
    """The order in which :func:`certify` tests ``settings``, from the temperature rows alone:
    "escalate every row" first, then one boundary at a time, the last first (:func:`nested_legs`).

    Two tiers: the one boundary's thresholds from the largest down (the cost falls with them).
    More: the last boundary's walk is the cascade of the last two tiers (every earlier tier sends
    every row on), up to where a walk on these rows (their own count, so short of the certifying
    walk's reach) gets; there its threshold stays while the boundary before it walks down from
    "escalate all"; and so on to tier 1; then the last boundary walks on. The N-tier walk thus
    contains the shorter cascade's up to that point and gives the earlier tiers their turn, where
    a frontier over the whole product grid, noisy on a few hundred rows, could put a bad setting
    early and stop the walk before any good one (AG News, series 4 of benchmarks/PROTOCOL.md: in
    half the seeds three tiers certified less than two). Series 6 ran the legs uncut: tier 1 was
    never reached.
    """
    everything = np.flatnonzero(np.all(settings == ESCALATE_ALL, axis=1))
    legs = nested_legs(confs, correct, settings, costs, walk_reaches)
    # each setting at its first place (dict keys keep order; legs run to 10^4-10^5 settings)
    order = dict.fromkeys(np.concatenate([everything, *legs]).tolist())
    return np.fromiter(order, dtype=np.int64, count=len(order))


def nested_legs(
    confs: list[np.ndarray],
    correct: list[np.ndarray],
    settings: np.ndarray,
    costs: list[float],
    walk_reaches: Callable[[np.ndarray, np.ndarray, int], int],
) -> list[np.ndarray]:
    """The testing order's legs (setting indices). Per boundary, the last first: it walks from
    its largest threshold down, every later boundary held at its anchor and every earlier one
    escalating all, to its anchor: the cheapest setting before the first that
    ``walk_reaches(lost, gained, n)`` says a walk would not certify. There it is held. Then the
    last boundary walks on from its anchor to its smallest threshold, every other held at its
    anchor: the certifying rows may carry the walk further than these rows said.

    Each leg ends at its anchor because a walk stops at its first failure: a leg run on to its
    end (the last boundary's ends with tier N-1 answering every row) would fail before any
    boundary after it in the order is reached. Two tiers: one leg, its thresholds from the
    largest down, cut at nothing."""
    n_rows, boundaries = len(correct[-1]), settings.shape[1]
    held: dict[int, float] = {}
    legs = []
    for k in reversed(range(boundaries)):
        leg = _leg(settings, k, {j: ESCALATE_ALL for j in range(k)} | held)
        lost, gained, cost, _ = _outcomes(confs, correct, settings[leg], costs)
        reached = max(walk_reaches(lost, gained, n_rows), 1)
        anchor = int(np.argmin(cost[:reached]))
        held[k] = float(settings[leg[anchor], k])
        legs.append(leg[: anchor + 1])
    last = boundaries - 1
    rest = _leg(settings, last, {j: held[j] for j in range(last)})
    legs.append(rest[settings[rest, last] < held[last]])
    return legs


def _leg(settings: np.ndarray, k: int, held: dict[int, float]) -> np.ndarray:
    """The settings where boundary ``k`` varies, the others at ``held``, its threshold falling."""
    mask = np.ones(len(settings), dtype=bool)
    for j, value in held.items():
        if j != k:
            mask &= settings[:, j] == value
    leg = np.flatnonzero(mask)
    return leg[np.argsort(-settings[leg, k], kind="stable")]


def _combined_bound(
    lost: np.ndarray,
    gained: np.ndarray,
    disagreed: np.ndarray,
    n: int,
    unlabelled: tuple[list[np.ndarray], list[np.ndarray]],
    settings: np.ndarray,
    options: CertifyOptions,
) -> np.ndarray:
    """The prediction-powered bound of each setting: the labelled counts beside the settings'
    disagreements on the unlabelled rows (the default bound's kind only; no ``new_rows``)."""
    if options.label_free:
        raise ValueError("unlabelled rows join labelled ones; a label-free gate has no labels to combine")
    if options.new_rows is not None or options.bound not in ("bonett-price", "wald"):
        raise ValueError("unlabelled rows combine with the default bound only (no new_rows)")
    u_confs = [np.asarray(c, dtype=float) for c in unlabelled[0]]
    u_preds = [np.asarray(p) for p in unlabelled[1]]
    u_disagreed = disagreements(u_confs, u_preds, settings)
    level = options.confidence_level
    return ppi_drop_upper_bound(lost, gained, disagreed, n, u_disagreed, len(u_preds[-1]), level)


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
