"""The cascade: a cheap tier scores every row, only its unsure rows go to the next tier.

Tier ``k`` scores the rows that reached it; rows whose calibrated confidence is below
``thresholds[k]`` are re-batched (with tier ``k+1``'s own batch size) and sent on, and the
later tier's answer replaces the earlier one. Threshold semantics, per tier boundary:
``0`` keeps every row at the earlier tier, anything above ``1`` escalates every row.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango import __version__
from tango.batching import Encodings
from tango.confidence import CONFIDENCE_KINDS, confidence, softmax
from tango.tiers import Texts, Tier, as_texts, load_tiers

MANIFEST = "cascade.json"
DEFAULT_THRESHOLD = 0.9


@dataclass
class TierStats:
    """What one tier did in one call."""

    rows: int = 0  # rows this tier scored
    fraction: float = 0.0  # rows / all rows in the call
    answered: int = 0  # rows whose final answer came from this tier
    tokenize_s: float = 0.0
    infer_s: float = 0.0
    padding_efficiency: float = 1.0
    truncated: int = 0  # rows cut to the model's max length

    @property
    def seconds(self) -> float:
        return self.tokenize_s + self.infer_s


@dataclass
class CascadeStats:
    """Per-call statistics: rows, fraction escalated per tier, seconds per tier."""

    rows: int = 0
    tiers: list[TierStats] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tiers)

    @property
    def escalated(self) -> list[float]:
        """Fraction of all rows that reached tier 1, 2, ... (tier 0 always sees all)."""
        return [t.fraction for t in self.tiers[1:]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": self.seconds,
            "escalated": self.escalated,
            "tiers": [asdict(t) for t in self.tiers],
        }


@dataclass
class CascadeResult:
    """Detailed answer per row, in input order."""

    labels: np.ndarray  # (N,) label names
    probabilities: np.ndarray  # (N, K) calibrated probabilities of the answering tier
    confidence: np.ndarray  # (N,) confidence of the answering tier
    tier: np.ndarray  # (N,) index of the tier that answered
    stats: CascadeStats

    def __len__(self) -> int:
        return len(self.labels)


class Cascade:
    """Route each row to the cheapest tier that is confident about it.

    Parameters
    ----------
    tiers : list of Tier, or of names resolvable by ``Tier.from_pretrained``
        Cheapest first. All tiers must share the same labels (compared ignoring case; the
        cascade answers with tier 1's names). Names given as strings resolve together
        (:func:`tango.tiers.load_tiers`).
    thresholds : float or list of float, default 0.9
        One per tier boundary (``len(tiers) - 1``); a single float is used for every boundary.
        A row escalates from tier k when its confidence is ``< thresholds[k]``.
    confidence : {"maxprob", "margin", "entropy"}
        How confidence is read off the calibrated probabilities.
    temperatures : list of float, optional
        Temperature-scaling factor per tier (``tango calibrate`` fits them); default 1.

    Example
    -------
    >>> cascade = Cascade(["distil", "large"], thresholds=0.9)      # doctest: +SKIP
    >>> cascade.predict(["a gorgeous, witty film", "not bad at all"])  # doctest: +SKIP
    array(['positive', 'positive'], dtype='<U8')
    >>> cascade.stats_.escalated                                    # doctest: +SKIP
    [0.5]
    """

    def __init__(
        self,
        tiers: list[Tier | str],
        thresholds: float | list[float] | None = None,
        confidence: str = "maxprob",
        temperatures: list[float] | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        self.tiers = tiers
        self.thresholds = thresholds
        self.confidence = confidence
        self.temperatures = temperatures
        self.calibration = calibration

    # --- validation, done once at use (scikit-learn style) ------------------------------------
    def _validated(self) -> tuple[list[Tier], list[float], list[float]]:
        if isinstance(self.tiers, (str, Path, Tier)):
            raise TypeError(
                f"tiers must be a list, cheapest first, e.g. Cascade(['distil', 'large']); got {self.tiers!r}"
            )
        if not self.tiers:
            raise ValueError("a cascade needs at least one tier")
        if not all(isinstance(t, Tier) for t in self.tiers):
            self.tiers = load_tiers(self.tiers)  # aliases resolved together: all hub or all local
        if self.confidence not in CONFIDENCE_KINDS:
            raise ValueError(f"confidence must be one of {CONFIDENCE_KINDS}, got {self.confidence!r}")
        boundaries = len(self.tiers) - 1
        thresholds = self.thresholds if self.thresholds is not None else DEFAULT_THRESHOLD
        thresholds = [float(thresholds)] * boundaries if np.isscalar(thresholds) else list(thresholds)
        if len(thresholds) != boundaries:
            raise ValueError(f"{len(self.tiers)} tiers need {boundaries} thresholds, got {len(thresholds)}")
        if any(not t >= 0 for t in thresholds):  # also catches NaN
            raise ValueError(f"thresholds must be >= 0 (0 = never escalate, > 1 = always), got {thresholds}")
        temperatures = list(self.temperatures) if self.temperatures else [1.0] * len(self.tiers)
        if len(temperatures) != len(self.tiers) or any(not t > 0 for t in temperatures):
            raise ValueError(f"need one temperature > 0 per tier ({len(self.tiers)}), got {temperatures}")
        labels = self.tiers[0].labels  # the cascade answers with tier 1's names
        for k, tier in enumerate(self.tiers[1:], start=2):
            if [name.lower() for name in tier.labels] != [name.lower() for name in labels]:
                raise ValueError(
                    f"tiers disagree on labels: tier 1 has {labels} ({self.tiers[0].path}), tier {k} "
                    f"has {tier.labels} ({tier.path}); they must name the same classes in the same "
                    "order (case aside): set the same id2label in each tier's config.json"
                )
        return self.tiers, thresholds, temperatures  # type: ignore[return-value]

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self._validated()[0][0].labels)

    # --- the one routing loop -----------------------------------------------------------------
    def predict_detailed(self, texts: Texts, progress: bool = False) -> CascadeResult:
        """Label, calibrated probabilities, confidence and answering tier per row."""
        tiers, thresholds, temperatures = self._validated()
        rows = as_texts(texts)
        n = len(rows)
        probabilities = np.zeros((n, len(tiers[0].labels)), dtype=np.float64)
        confidences = np.zeros(n, dtype=np.float64)
        answered_by = np.zeros(n, dtype=np.int64)
        stats = CascadeStats(rows=n)
        encoded: dict[str, tuple[np.ndarray, Encodings]] = {}  # fingerprint -> (rows, encodings)
        active = np.arange(n)
        for k, tier in enumerate(tiers):
            tier_stats = TierStats(rows=len(active), fraction=len(active) / n if n else 0.0)
            stats.tiers.append(tier_stats)
            if not len(active):
                continue
            start = time.perf_counter()
            encodings = self._encode(tier, rows, active, encoded)
            tier_stats.truncated = encodings.truncated
            tier_stats.tokenize_s = time.perf_counter() - start
            start = time.perf_counter()
            logits = tier.infer(encodings, progress=progress)
            tier_stats.infer_s = time.perf_counter() - start
            tier_stats.padding_efficiency = tier.last_padding_efficiency_ or 1.0
            probs = softmax(logits, temperatures[k])
            conf = confidence(probs, self.confidence)
            probabilities[active], confidences[active], answered_by[active] = probs, conf, k
            if k < len(tiers) - 1:
                active = active[conf < thresholds[k]]
        for k, tier_stats in enumerate(stats.tiers):
            tier_stats.answered = int((answered_by == k).sum())
        self.stats_ = stats
        labels = np.asarray(tiers[0].labels)[probabilities.argmax(axis=1)] if n else np.asarray([], dtype=str)
        return CascadeResult(labels, probabilities, confidences, answered_by, stats)

    @staticmethod
    def _encode(
        tier: Tier, rows: list, active: np.ndarray, encoded: dict[str, tuple[np.ndarray, Encodings]]
    ) -> Encodings:
        """Tokenize the active rows, or reuse an earlier tier's ids when tokenizers match."""
        fingerprint = tier.tokenizer_fingerprint
        if fingerprint in encoded:
            done_rows, done = encoded[fingerprint]
            positions = np.searchsorted(done_rows, active)  # active is a subset of done_rows
            assert np.array_equal(done_rows[positions], active), "escalated rows must be a subset"
            return done.take(positions)
        encodings = tier.tokenize([rows[i] for i in active])
        encoded[fingerprint] = (active, encodings)
        return encodings

    def predict_proba(self, texts: Texts) -> np.ndarray:
        """Calibrated class probabilities of the answering tier, (N, K), rows sum to 1."""
        return self.predict_detailed(texts).probabilities

    def predict(self, texts: Texts) -> np.ndarray:
        """Label names, (N,)."""
        return self.predict_detailed(texts).labels

    # --- directories --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``cascade.json`` and each tier's files into ``tier0/``, ``tier1/``, ..."""
        tiers, thresholds, temperatures = self._validated()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for k, tier in enumerate(tiers):
            target = directory / f"tier{k}"
            if target.resolve() != tier.path.resolve():
                tier.save_pretrained(target)
        manifest = {
            "tango_version": __version__,
            "tiers": [{"path": f"tier{k}", "source": t.source} for k, t in enumerate(tiers)],
            "thresholds": thresholds,
            "temperatures": temperatures,
            "confidence": self.confidence,
            "labels": tiers[0].labels,
            "calibration": self.calibration,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, thresholds: float | list[float] | None = None, **tier_options: Any
    ) -> Cascade:
        """Load a saved cascade; ``thresholds`` overrides the stored (calibrated) ones.

        ``tier_options`` (runtime, precision, threads, batch_size, ...) go to every
        ``Tier.from_pretrained``.
        """
        directory = Path(directory)
        manifest_file = directory / MANIFEST
        if not manifest_file.exists():
            raise FileNotFoundError(
                f"{directory} is not a cascade directory: no {MANIFEST}. "
                "Make one with Cascade(...).save_pretrained(dir)"
            )
        manifest = json.loads(manifest_file.read_text())
        tiers = [Tier.from_pretrained(directory / t["path"], **tier_options) for t in manifest["tiers"]]
        for tier, entry in zip(tiers, manifest["tiers"], strict=True):
            tier.source = entry.get("source", tier.source)
        return cls(
            tiers,
            thresholds if thresholds is not None else manifest["thresholds"],
            manifest.get("confidence", "maxprob"),
            manifest.get("temperatures"),
            manifest.get("calibration"),
        )

    def __repr__(self) -> str:
        return (
            f"Cascade(tiers={self.tiers!r}, thresholds={self.thresholds!r}, "
            f"confidence={self.confidence!r}, temperatures={self.temperatures!r})"
        )
