"""Probabilities and confidence scores: the numbers the cascade's gate compares.

Every confidence kind lies in [0, 1] and grows with certainty, so one threshold convention
serves them all: a row escalates when ``confidence < threshold``.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE_KINDS = ("maxprob", "margin", "entropy")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``; rows sum to 1. Shape (N, K) -> (N, K)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    exp = np.exp(z)
    return exp / exp.sum(axis=-1, keepdims=True)


def confidence(probs: np.ndarray, kind: str = "maxprob") -> np.ndarray:
    """Confidence per row, in [0, 1], higher = more certain. Shape (N, K) -> (N,).

    - ``maxprob``: the largest probability (Schwartz et al. 2020).
    - ``margin``: largest minus second-largest probability.
    - ``entropy``: ``1 - H(p) / log K``, so a one-hot row scores 1 and a uniform row 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (rows, classes>=2), got {probs.shape}")
    if kind == "maxprob":
        return probs.max(axis=1)
    if kind == "margin":
        top2 = np.sort(probs, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if kind == "entropy":
        entropy = -np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=1)
        return np.clip(1.0 - entropy / np.log(probs.shape[1]), 0.0, 1.0)
    raise ValueError(f"unknown confidence kind {kind!r}; choose one of {CONFIDENCE_KINDS}")
