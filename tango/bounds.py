"""Every statistical bound tango certifies with, in one place: one-sided upper (or lower) bounds
on a rate or on a cascade's accuracy drop, each at a stated level.

- :func:`clopper_pearson_upper` / :func:`clopper_pearson_lower`: exact bounds on a binomial rate
  (the guarantee gate's disagreement, and the exact drop bound);
- :func:`drop_upper_bound`: the paired drop ``(lost - gained) / n`` against the last tier, by
  Bonett and Price's adjusted Wald bound for paired proportions (the default, ``"bonett-price"``;
  ``"wald"`` is the name it had before and still works) or by Clopper-Pearson (``BOUNDS`` names
  them); also on the drop a batch of new rows will show (``new_rows``);
- :func:`disagreement_upper_bound`: the label-free gate's drop, which is its disagreement with
  the last tier: exact (Clopper-Pearson), since a small binomial rate is where a normal
  approximation's upper tail is too short;
- :func:`ppi_drop_upper_bound`: the same drop from few labelled rows beside many unlabelled ones
  (prediction-powered inference).

What is tested with them, and in which order, lives with the gates (:mod:`tango.thresholds`,
:mod:`tango.threshold_curve`). A leaf: numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def clopper_pearson_upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound at level ``alpha`` on a binomial rate, k of n (exact).

    The one place tango computes it: the guarantee gate (:mod:`tango.threshold_curve`) and the
    drop bound below both use it.
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


def _check(confidence_level: float, new_rows: int | None) -> None:
    """The arguments every drop bound takes: a level in (0, 1), a whole number of new rows."""
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    if new_rows is not None and (not isinstance(new_rows, (int, np.integer)) or new_rows < 1):
        raise ValueError(f"new_rows must be a whole number of rows >= 1, got {new_rows!r}")


BOUNDS = ("bonett-price", "clopper-pearson")
ALIASES = {"wald": "bonett-price"}  # the default's earlier name, still accepted


def drop_upper_bound(
    lost: ArrayLike,
    gained: ArrayLike,
    n: int,
    confidence_level: float,
    method: str = "bonett-price",
    new_rows: int | None = None,
) -> np.ndarray:
    """One-sided upper bound, in points, on the true drop given ``lost`` and ``gained`` of ``n``.

    ``bonett-price`` (default; ``wald`` is its earlier name): the adjusted Wald interval for a
    difference of paired proportions of Bonett and Price (2012): one pseudo-row added to each
    discordant count (``lost``, ``gained``) and two to ``n`` for the standard error, so a handful of
    rows never looks certain; the centre stays the observed drop (not shrunk toward 0, a little
    more conservative). Its coverage on SST-2's held-out sentences is measured in
    benchmarks/results/bound_coverage.md. ``clopper-pearson``: exact but
    loose, a Clopper-Pearson upper bound on ``lost / n`` minus a lower bound on ``gained / n``,
    each at half the error; roughly twice the bonett-price margin. ``new_rows`` = M (bonett-price only): bound
    the drop that M new rows will show instead of the population's: half the error for the
    population drop, half for the batch's deviation from it (see :mod:`tango.thresholds`' docstring).
    """
    method = ALIASES.get(method, method)
    _check(confidence_level, new_rows)
    lost = np.atleast_1d(np.asarray(lost, dtype=float))
    gained = np.atleast_1d(np.asarray(gained, dtype=float))
    if method == "clopper-pearson":
        if new_rows is not None:
            raise ValueError(
                "new_rows needs method='bonett-price' (Clopper-Pearson bounds a population rate)"
            )
        alpha = (1 - confidence_level) / 2
        return (clopper_pearson_upper(lost, n, alpha) - clopper_pearson_lower(gained, n, alpha)) * 100
    if method != "bonett-price":
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


def disagreement_upper_bound(
    disagreed: ArrayLike, n: int, confidence_level: float, new_rows: int | None = None
) -> np.ndarray:
    """One-sided upper bound, in points, on the rate at which a cascade's answers differ from its
    last tier's, from ``disagreed`` rows of ``n``: what the label-free gate certifies.

    With the last tier's answers as the labels no row can gain, so the drop *is* this rate, a
    binomial one: the bound is the exact Clopper-Pearson one at the full error. The adjusted Wald
    bound of :func:`drop_upper_bound` has too short an upper tail here (a small rate, no gained
    rows): at level 0.9, with the true rate just above a 0.5-point target, it certified it with
    probability above 10% for 66% of row counts from 300 to 3,000 (up to 16.4%; 1- and 2-point
    targets: 79% and 87% of them), where at most 10% is promised (exact binomial sums).
    ``new_rows`` = M bounds the rate a batch of M new rows will show: the population rate at half
    the error, then the batch's binomial upper quantile at that rate at the other half.
    """
    _check(confidence_level, new_rows)
    disagreed = np.atleast_1d(np.asarray(disagreed, dtype=float))
    if np.any(disagreed < 0) or np.any(disagreed > n):
        raise ValueError(f"disagreed counts must lie in [0, {n}]")
    alpha = 1 - confidence_level
    if new_rows is None:
        return clopper_pearson_upper(disagreed, n, alpha) * 100
    rate = clopper_pearson_upper(disagreed, n, alpha / 2)
    return stats.binom.ppf(1 - alpha / 2, new_rows, rate) / new_rows * 100


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
    Variances carry one pseudo-row each way, as :func:`drop_upper_bound`'s bonett-price bound does.
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
