"""The cascade: a cheap tier scores every row, only its unsure rows go to the next tier.

Tier ``k`` scores the rows that reached it; rows whose calibrated confidence is below
``thresholds[k]`` are re-batched (with tier ``k+1``'s own batch size) and sent on, and the
later tier's answer replaces the earlier one. Threshold semantics, per tier boundary:
``0`` keeps every row at the earlier tier, anything above ``1`` escalates every row.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango._version import __version__
from tango.batching import Encodings
from tango.cascadedir import MANIFEST, read_cascade_manifest, saved_target, tier_dir
from tango.confidence import CONFIDENCE_KINDS, confidence, softmax
from tango.texts import Texts, as_texts
from tango.tiers import Tier, load_tiers

DEFAULT_THRESHOLD = 0.9
_PARAMS = ("tiers", "thresholds", "confidence", "temperatures", "target")
# set_params(name=...) discards these fitted values: they were chosen for the old value
_DISCARDS = {
    "tiers": ("temperatures_", "thresholds_", "calibration_"),
    "thresholds": ("thresholds_",),
    "confidence": (),
    "temperatures": ("temperatures_",),
    "target": ("temperatures_", "thresholds_", "calibration_"),
}


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
    truncated: np.ndarray | None = None  # (N,) bool: the answering tier read the row cut short

    def __post_init__(self) -> None:
        if self.truncated is None:
            self.truncated = np.zeros(len(self.labels), dtype=bool)

    def __len__(self) -> int:
        return len(self.labels)


class Cascade:
    """Route each row to the cheapest tier that is confident about it.

    Parameters
    ----------
    tiers : list of Tier, or of names resolvable by ``Tier.from_pretrained``
        Cheapest first. All tiers must share the same labels (compared ignoring case; the
        cascade answers with tier 1's names). Names given as strings resolve together
        (:func:`tango.tiers.load_tiers`) and load on first use.
    thresholds : float or list of float, default 0.9
        One per tier boundary (``len(tiers) - 1``); a single float is used for every boundary.
        A row escalates from tier k when its confidence is ``< thresholds[k]``.
    confidence : {"maxprob", "margin", "entropy"}
        How confidence is read off the calibrated probabilities.
    temperatures : list of float, optional
        Temperature-scaling factor per tier; default 1.
    target : tango.tuning.Target, optional
        What :meth:`fit` chooses the gate for: ``Target(max_drop=0.5)`` (the fastest thresholds
        within half a point of the last tier on new rows, at confidence level 0.9), a speedup,
        an escalation share or a disagreement guarantee, and how it is certified. ``None``:
        :meth:`fit` fits temperatures only. A hyper-parameter as in scikit-learn, so
        ``get_params`` and ``sklearn.base.clone`` carry it.

    Attributes
    ----------
    temperatures_, thresholds_ : list of float
        What :meth:`fit` chose (also restored by :meth:`from_pretrained` from a fitted cascade).
        A cascade answers with these when it has them, else with the parameters.
    calibration_ : dict
        The evidence of the last fit (:class:`tango.gate_report.CalibrationReport` as a dict), saved
        in ``cascade.json``; it names the rows the fit saw, so evaluation can refuse them.
    stats_ : CascadeStats
        The statistics of the last ``predict*`` call, a convenience for the interactive user:
        tango never reads it; with several threads use ``result.stats``, which is per call.

    Example
    -------
    >>> cascade = Cascade(["distil", "large"], target=Target(max_drop=0.5))  # doctest: +SKIP
    >>> cascade.fit(dev_texts, dev_labels)  # doctest: +SKIP
    >>> cascade.predict(["a gorgeous, witty film", "not bad at all"])  # doctest: +SKIP
    array(['positive', 'positive'], dtype='<U8')
    >>> cascade.predict_detailed(["not bad at all"]).stats.escalated  # doctest: +SKIP
    [1.0]
    """

    def __init__(
        self,
        tiers: list[Tier | str],
        thresholds: float | list[float] | None = None,
        confidence: str = "maxprob",
        temperatures: list[float] | None = None,
        target: Any = None,
    ) -> None:
        self.tiers = tiers
        self.thresholds = thresholds
        self.confidence = confidence
        self.temperatures = temperatures
        self.target = target

    # --- parameters (scikit-learn style) ------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (``deep`` is accepted for scikit-learn; tiers are leaves)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> Cascade:
        """Set constructor parameters; each one set discards its fitted counterpart.

        ``thresholds`` discards ``thresholds_`` and ``temperatures`` discards ``temperatures_``
        (what you set is what answers); ``tiers`` discards the whole fit. Nothing else is
        refitted: call :meth:`fit` again to choose the gate for the new parameters.
        """
        for name, value in params.items():
            if name not in _PARAMS:
                raise ValueError(f"Cascade has no parameter {name!r}; its parameters are {list(_PARAMS)}")
            setattr(self, name, value)
            for fitted in _DISCARDS[name]:
                self.__dict__.pop(fitted, None)
        return self

    # --- validation, done once at use (scikit-learn style) ------------------------------------
    def _loading_lock(self) -> threading.Lock:
        """This cascade's own lock for loading tiers given by name (no lock shared by every
        cascade). Made on first use; ``setdefault`` on the instance dict is atomic under the GIL,
        so two threads arriving together get the same lock."""
        return self.__dict__.setdefault("_tiers_lock", threading.Lock())

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_tiers_lock", None)  # a lock does not pickle or copy; a copy makes its own
        return state

    def _loaded_tiers(self) -> list[Tier]:
        """The tiers, loading those given by name on first use: once, even from several threads."""
        if isinstance(self.tiers, (str, Path, Tier)):
            raise TypeError(
                f"tiers must be a list, cheapest first, e.g. Cascade(['distil', 'large']); got {self.tiers!r}"
            )
        if not self.tiers:
            raise ValueError("a cascade needs at least one tier")
        if not all(isinstance(t, Tier) for t in self.tiers):
            with self._loading_lock():
                if not all(isinstance(t, Tier) for t in self.tiers):  # no other thread got here first
                    self.tiers = load_tiers(self.tiers)  # aliases resolved together: all hub or all local
        return list(self.tiers)  # type: ignore[arg-type]

    def _validated(self, fitted: bool = True) -> tuple[list[Tier], list[float], list[float]]:
        """Tiers, thresholds and temperatures the cascade answers with: the fitted ones when it
        has them (``fitted=True``), else the parameters."""
        tiers = self._loaded_tiers()
        if self.confidence not in CONFIDENCE_KINDS:
            raise ValueError(f"confidence must be one of {CONFIDENCE_KINDS}, got {self.confidence!r}")
        boundaries = len(tiers) - 1
        thresholds = getattr(self, "thresholds_", None) if fitted else None
        if thresholds is None:
            thresholds = self.thresholds if self.thresholds is not None else DEFAULT_THRESHOLD
        thresholds = [thresholds] * boundaries if np.isscalar(thresholds) else list(thresholds)
        if not all(isinstance(t, (int, float, np.number)) and not isinstance(t, bool) for t in thresholds):
            raise TypeError(f"thresholds must be numbers, got {thresholds!r}")
        thresholds = [float(t) for t in thresholds]
        if len(thresholds) != boundaries:
            raise ValueError(f"{len(tiers)} tiers need {boundaries} thresholds, got {len(thresholds)}")
        if any(not t >= 0 for t in thresholds):  # also catches NaN
            raise ValueError(f"thresholds must be >= 0 (0 = never escalate, > 1 = always), got {thresholds}")
        temperatures = getattr(self, "temperatures_", None) if fitted else None
        if temperatures is None:
            temperatures = self.temperatures
        temperatures = list(temperatures) if temperatures else [1.0] * len(tiers)
        if not all(isinstance(t, (int, float, np.number)) and not isinstance(t, bool) for t in temperatures):
            raise TypeError(f"temperatures must be numbers, got {temperatures!r}")
        if len(temperatures) != len(tiers) or any(not t > 0 for t in temperatures):
            raise ValueError(f"need one temperature > 0 per tier ({len(tiers)}), got {temperatures}")
        labels = tiers[0].labels  # the cascade answers with tier 1's names
        for k, tier in enumerate(tiers[1:], start=2):
            if [name.lower() for name in tier.labels] != [name.lower() for name in labels]:
                raise ValueError(
                    f"tiers disagree on labels: tier 1 has {labels} ({tiers[0].path}), tier {k} "
                    f"has {tier.labels} ({tier.path}); they must name the same classes in the same "
                    "order (case aside): set the same id2label in each tier's config.json"
                )
        return tiers, thresholds, temperatures

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self._validated()[0][0].labels)

    # --- fitting: the gate from labelled rows -------------------------------------------------
    def fit(
        self,
        texts: Texts,
        labels: Sequence[str] | Sequence[int] | np.ndarray | None = None,
        *,
        unlabelled: Texts | None = None,
        report_dir: str | Path | None = None,
        **target: Any,
    ) -> Cascade:
        """Fit one temperature per tier and choose the thresholds for :attr:`target` on rows like
        the traffic; returns ``self``.

        ``labels`` are label names (tier 1's, or any tier's case) or integer ids into
        :attr:`classes_`; ``None`` fits on **unlabelled** rows like the traffic: the last tier's
        answers stand in for labels and ``max_drop`` is certified on disagreement with it, which
        bounds the drop without a label. ``unlabelled`` rows beside labelled ``texts`` tighten
        ``max_drop``'s bound (prediction-powered inference; still a bound on the drop itself).
        ``report_dir`` receives reliability diagrams, the threshold curve and ``report.json``.

        Keywords are a shorthand for the target: ``fit(X, y, max_drop=0.5)`` is
        ``set_params(target=target.but(max_drop=0.5)).fit(X, y)`` (:class:`tango.tuning.Target`
        names them), so the parameters always say what the fit used. The method is
        :func:`tango.tuning.fit_cascade` (also behind ``tango calibrate``); it sets
        ``temperatures_``, ``thresholds_`` and ``calibration_``.
        """
        from tango.tuning import Target, fit_cascade

        if target:
            self.set_params(target=(self._target() or Target()).but(**target))
        goal = self._target() or Target()
        tiers, thresholds, _ = self._validated(fitted=False)
        report = fit_cascade(
            tiers, self.confidence, texts, labels, goal, report_dir=report_dir, unlabelled=unlabelled
        )
        self.temperatures_ = [t.temperature for t in report.tiers]
        self.thresholds_ = list(report.thresholds) if report.thresholds else thresholds
        self.calibration_ = report.to_dict()
        return self

    def _target(self) -> Any:
        """The ``target`` parameter as a :class:`tango.tuning.Target` (a dict of its fields is
        accepted too), or None."""
        from tango.tuning import Target

        if self.target is None or isinstance(self.target, Target):
            return self.target
        if isinstance(self.target, dict):
            return Target(**self.target)
        raise TypeError(
            f"target must be a tango.tuning.Target (or a dict of its fields), got {self.target!r}"
        )

    def score(self, texts: Texts, labels: Sequence[str] | Sequence[int] | np.ndarray) -> float:
        """Accuracy on labelled rows (labels as names or ids, as in :meth:`fit`)."""
        from tango.labels import label_ids

        y = label_ids(labels, list(self.classes_))
        rows = as_texts(texts)
        if len(rows) != len(y):
            raise ValueError(f"{len(rows)} texts but {len(y)} labels: give one label per text")
        return float((self.predict_proba(rows).argmax(axis=1) == y).mean()) if len(y) else 0.0

    # --- the one routing loop -----------------------------------------------------------------
    def predict_detailed(self, texts: Texts, progress: bool = False) -> CascadeResult:
        """Label, calibrated probabilities, confidence and answering tier per row."""
        tiers, thresholds, temperatures = self._validated()
        rows = as_texts(texts)
        n = len(rows)
        probabilities = np.zeros((n, len(tiers[0].labels)), dtype=np.float64)
        confidences = np.zeros(n, dtype=np.float64)
        answered_by = np.zeros(n, dtype=np.int64)
        cut = np.zeros(n, dtype=bool)
        stats = CascadeStats(rows=n)  # per call: travels with the result, never read off self
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
            batches = tier.plan(encodings)
            logits = tier.infer(encodings, progress=progress, batches=batches)
            tier_stats.infer_s = time.perf_counter() - start
            tier_stats.padding_efficiency = tier.padding_efficiency(encodings, batches)
            probs = softmax(logits, temperatures[k])
            conf = confidence(probs, self.confidence)
            probabilities[active], confidences[active], answered_by[active] = probs, conf, k
            cut[active] = encodings.cut
            if k < len(tiers) - 1:
                active = active[conf < thresholds[k]]
        for k, tier_stats in enumerate(stats.tiers):
            tier_stats.answered = int((answered_by == k).sum())
        self.stats_ = stats  # convenience only: tango reads result.stats
        labels = np.asarray(tiers[0].labels)[probabilities.argmax(axis=1)] if n else np.asarray([], dtype=str)
        return CascadeResult(labels, probabilities, confidences, answered_by, stats, cut)

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
            "calibration": getattr(self, "calibration_", None),
            "target": None if self._target() is None else asdict(self._target()),
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        thresholds: float | list[float] | None = None,
        allow_external_tiers: bool = False,
        **tier_options: Any,
    ) -> Cascade:
        """Load a saved cascade; ``thresholds`` overrides the stored (calibrated) ones.

        A cascade saved after :meth:`fit` comes back fitted: ``temperatures_``, ``thresholds_``
        (unless overridden) and ``calibration_``; its parameters hold the same values.
        ``tier_options`` (runtime, precision, threads, batch_size, ...) go to every
        ``Tier.from_pretrained``. Tiers load only from inside ``directory`` (as
        :meth:`save_pretrained` writes them), never from a path elsewhere or from the hub, unless
        ``allow_external_tiers``: a cascade directory received from someone cannot point at
        other files or a network.
        """
        directory = Path(directory)
        manifest = read_cascade_manifest(directory)
        tiers = [
            Tier.from_pretrained(tier_dir(directory, k, t["path"], allow_external_tiers), **tier_options)
            for k, t in enumerate(manifest["tiers"])
        ]
        for tier, entry in zip(tiers, manifest["tiers"], strict=True):
            tier.source = entry.get("source", tier.source)
        cascade = cls(
            tiers,
            thresholds if thresholds is not None else manifest["thresholds"],
            manifest.get("confidence", "maxprob"),
            manifest.get("temperatures"),
            saved_target(directory, manifest.get("target")),
        )
        if manifest.get("calibration") is not None:  # saved after fit: it comes back fitted
            cascade.calibration_ = manifest["calibration"]
            if manifest.get("temperatures") is not None:
                cascade.temperatures_ = list(manifest["temperatures"])
            if thresholds is None:
                cascade.thresholds_ = list(manifest["thresholds"])
        return cascade

    def __repr__(self) -> str:
        return (
            f"Cascade(tiers={self.tiers!r}, thresholds={self.thresholds!r}, "
            f"confidence={self.confidence!r}, temperatures={self.temperatures!r})"
        )
