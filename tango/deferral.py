"""Which rows should go on to the last tier: deferral signals, their curves, a learned rule.

A cascade pays when tier 1 is unsure exactly where it would disagree with the last tier. This
module measures how well a signal ranks those rows, on rows it did not learn from:

- the **AUROC** of each signal for disagreement with the last tier (1.0: every disagreeing row is
  less confident than every agreeing one; 0.5: no better than chance);
- the **deferral curve**: accuracy when the least confident share of rows takes the last tier's
  answer, for shares 0..1 (every threshold on the signal is one point of it);
- a **learned deferral rule** (Jitkrittum et al. 2023, "When does confidence-based cascade
  deferral suffice?"): a small scikit-learn logistic regression on tier-1 signals (its
  calibrated probabilities, max-probability, margin, entropy, and the row's length in words)
  that predicts disagreement, fitted on held-out rows. It stands beside max-probability only if
  it ranks better on new rows; :func:`deferral_study` says whether it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tango.confidence import CONFIDENCE_KINDS, confidence, softmax

__all__ = ["LearnedDeferral", "deferral_curve", "deferral_study", "rows_right", "signal_auroc"]

SHARES = tuple(round(0.05 * k, 2) for k in range(21))  # escalated shares the curve is read at


def _uncertainty(logits: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    """Each built-in signal as an uncertainty (higher: more likely to disagree)."""
    probs = softmax(logits, temperature)
    return {kind: 1.0 - confidence(probs, kind) for kind in CONFIDENCE_KINDS}


def _disagree(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    return first.argmax(axis=1) != last.argmax(axis=1)


def _auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """AUROC of ``score`` for ``positive`` rows; None when one class is missing."""
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, score))


def signal_auroc(first: np.ndarray, last: np.ndarray, temperature: float = 1.0) -> dict[str, float | None]:
    """AUROC of each built-in signal of tier 1 (logits ``first``) for disagreement with ``last``."""
    positive = _disagree(first, last)
    return {kind: _auroc(score, positive) for kind, score in _uncertainty(first, temperature).items()}


def rows_right(first: np.ndarray, last: np.ndarray, y: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """Rows right, out of n, when the k most uncertain rows take the last tier's answer, k = 0..n
    (ties broken by row order): every threshold on ``uncertainty`` is one point of it."""
    order = np.argsort(-np.asarray(uncertainty), kind="stable")  # most uncertain first
    first_right = (first.argmax(axis=1) == y)[order].astype(np.int64)
    last_right = (last.argmax(axis=1) == y)[order].astype(np.int64)
    return int(first_right.sum()) + np.concatenate([[0], np.cumsum(last_right - first_right)])


def deferral_curve(
    first: np.ndarray, last: np.ndarray, y: np.ndarray, uncertainty: np.ndarray, shares: tuple = SHARES
) -> list[float]:
    """Accuracy when the ``share`` most uncertain rows take the last tier's answer, per share."""
    right = rows_right(first, last, y, uncertainty)
    n = len(y)
    return [float(right[round(share * n)] / n) if n else 0.0 for share in shares]


@dataclass
class LearnedDeferral:
    """A logistic regression on tier-1 signals that predicts disagreement with the last tier."""

    temperature: float = 1.0
    C: float = 1.0  # inverse L2 strength (scikit-learn's name)

    def features(self, logits: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(N, K + 4): calibrated probabilities, the three confidences, log(1 + words)."""
        probs = softmax(logits, self.temperature)
        signals = [confidence(probs, kind) for kind in CONFIDENCE_KINDS]
        return np.column_stack([probs, *signals, np.log1p(np.asarray(lengths, dtype=np.float64))])

    def fit(self, first: np.ndarray, last: np.ndarray, lengths: np.ndarray) -> LearnedDeferral:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        target = _disagree(first, last)
        if target.all() or not target.any():
            raise ValueError(
                "the fitting rows need rows that agree and rows that disagree with the last tier"
            )
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        self.model_.fit(self.features(first, lengths), target)
        return self

    def uncertainty(self, first: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Predicted probability of disagreement per row (higher: defer first)."""
        return self.model_.predict_proba(self.features(first, lengths))[:, 1]


def words(texts: list) -> np.ndarray:
    """Length in words of each row (pairs: both texts)."""
    return np.asarray([len((" ".join(t) if isinstance(t, tuple) else str(t)).split()) for t in texts])


def deferral_study(
    fit_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Every signal's AUROC and deferral curve on the ``judged`` rows (first logits, last logits,
    labels, lengths), the learned rule fitted on ``fit_rows`` (first, last, lengths) when given.

    The learned rule ``beats_maxprob`` when its curve's mean accuracy over the shares (the area
    under it) exceeds max-probability's on the judged rows.
    """
    first, last, y, lengths = judged
    scores = _uncertainty(first, temperature)
    learned_error = None
    if fit_rows is not None:
        try:
            rule = LearnedDeferral(temperature).fit(*fit_rows)
            scores["learned"] = rule.uncertainty(first, lengths)
        except ValueError as error:
            learned_error = str(error)
    positive = _disagree(first, last)
    curves = {name: deferral_curve(first, last, y, score) for name, score in scores.items()}
    area = {name: float(np.mean(curve)) for name, curve in curves.items()}
    study: dict[str, Any] = {
        "rows": len(y),
        "disagreement": float(positive.mean()) if len(y) else 0.0,
        "auroc": {name: _auroc(score, positive) for name, score in scores.items()},
        "shares": list(SHARES),
        "curves": curves,
        "area": area,
    }
    if "learned" in area:
        study["beats_maxprob"] = bool(area["learned"] > area["maxprob"])
    if learned_error:
        study["learned_error"] = learned_error
    return study
