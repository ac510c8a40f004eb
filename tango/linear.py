"""A linear tier: TF-IDF n-grams and logistic regression, fitted in seconds with scikit-learn.

It is the cheapest tier a cascade can start with. Texts are hashed (``HashingVectorizer``: word
1-2-grams and character 2-5-grams within word boundaries, so nothing but the parameters needs
saving), counts become sublinear TF-IDF with one L2 norm per block, and a ``LogisticRegression``
scores them. A text pair is vectorized text by text and the features placed side by side
(``[premise | hypothesis]``), so a word weighs differently in each half; a linear model sees no
interaction between the halves, which is why it is a first tier, not the last.

The logits are LR's decision function (two classes: ``[-z/2, z/2]``), so their softmax is LR's
``predict_proba`` and the temperature calibration of every other tier applies unchanged.

A saved tier is ``tango_linear.json`` (parameters, labels, class order, provenance, and the
arrays' sha256) plus ``linear.npz`` (``coef``, ``intercept``, ``idf``; plain float arrays).
Loading never unpickles: the arrays are read with ``allow_pickle=False`` and checked against the
JSON, so a directory cannot make loading run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tango._version import __version__
from tango.data import LabelledData
from tango.hardware import default_threads
from tango.modeldir import LINEAR_FILE  # noqa: E402 - the marker Tier.from_pretrained dispatches on
from tango.texts import Texts, as_texts
from tango.tiers import Tier

ARRAYS_FILE = "linear.npz"
FORMAT_VERSION = 1
ARRAYS = ("coef", "intercept", "idf")
TOKEN_PATTERN = r"(?u)\b\w+\b|[^\w\s]"  # words of any length and punctuation ("!" says a lot)
DEFAULT_VECTORIZER = {
    "word_ngram_range": [1, 2],  # unigrams and bigrams ("not good")
    "char_ngram_range": [2, 5],  # within word boundaries: spelling variants, morphology
    "n_features": 2**20,  # hash buckets per analyzer; collisions are rare below ~1M n-grams
    "lowercase": True,
}


class _LinearRuntime:
    """What ``tier.runtime`` says about a linear tier (logs and run records read it)."""

    input_names: tuple[str, ...] = ()
    description = "scikit-learn linear (scipy sparse)"


class Features:
    """Hashed n-gram counts of N rows: what a linear tier's ``tokenize`` gives its ``infer``.

    It quacks like :class:`tango.batching.Encodings` where the cascade needs it (``len``,
    ``take``, ``cut``, ``truncated``): a linear tier reads every word, so nothing is truncated.
    """

    truncated = 0

    def __init__(self, counts: sp.csr_matrix) -> None:
        self.counts = counts  # (N, blocks * n_features) float32
        self.cut = np.zeros(counts.shape[0], dtype=bool)

    def __len__(self) -> int:
        return self.counts.shape[0]

    def take(self, rows: np.ndarray) -> Features:
        return Features(self.counts[np.asarray(rows)])


class LinearTier(Tier, kind="linear"):
    """A TF-IDF + logistic-regression tier; a ``Tier`` the cascade can put at any position.

    Build one with :func:`fit_linear` (in memory), :func:`train_linear` (fitted, saved,
    registered) or :meth:`from_pretrained`; ``Tier.from_pretrained`` returns one for a directory
    holding ``tango_linear.json``.

    Example
    -------
    >>> tier = fit_linear(["a gorgeous film", "a dull mess"], [1, 0], ["negative", "positive"])
    >>> tier.predict(["gorgeous"])
    array(['positive'], dtype='<U8')
    """

    def __init__(
        self,
        labels: list[str],
        inputs: str,
        vectorizer: dict[str, Any],
        arrays: dict[str, np.ndarray],
        path: str | Path | None = None,
        record: dict[str, Any] | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
    ) -> None:
        self.labels = list(labels)
        self.inputs = inputs  # "texts" or "pairs"
        self.vectorizer = dict(vectorizer)
        self.coef = arrays["coef"]  # (K or 1, D) float32, rows in label order
        self.intercept = arrays["intercept"]  # (K or 1,)
        self.idf = arrays["idf"]  # (D,)
        self.path = Path(path) if path is not None else Path("unsaved-linear-tier")
        self.source = str(self.path)
        self.record = dict(record or {})  # provenance: training file, dev accuracy, seconds, ...
        self.batch_size = batch_size  # kept for the Tier interface; rows are scored all at once
        self.max_tokens = max_tokens
        self.max_length = None  # type: ignore[assignment]  # no token limit: every word is hashed
        self.tokenizer = None
        self.runtime = _LinearRuntime()  # type: ignore[assignment]  # infer() runs no batches

    # --- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        name_or_path: str | Path,
        runtime: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        max_length: int | None = None,
        device: str = "cpu",
    ) -> LinearTier:
        """Load a saved linear tier; refuse (ValueError naming the file) anything that does not
        match its JSON or would need pickle.

        ``runtime``, ``precision``, ``threads``, ``max_length`` and ``device`` choose a
        transformer's runtime and are accepted and ignored (scipy's sparse products use one
        thread), so one set of cascade options serves every tier.
        """
        from tango.registry import resolve

        path = resolve(name_or_path)
        record = _read_record(path)
        arrays = _read_arrays(path, record)
        tier = cls(
            record["label_names"],
            record["inputs"],
            record["vectorizer"],
            arrays,
            path,
            record,
            batch_size,
            max_tokens,
        )
        tier.source = str(name_or_path)
        return tier

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``linear.npz`` (plain arrays) and ``tango_linear.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays_file = directory / ARRAYS_FILE
        np.savez_compressed(arrays_file, coef=self.coef, intercept=self.intercept, idf=self.idf)
        record = {
            **self.record,
            "format": "tango-linear",
            "format_version": FORMAT_VERSION,
            "label_names": self.labels,
            "classes": list(range(len(self.labels))),  # coef row k (or the sign, for 2) = label k
            "inputs": self.inputs,
            "vectorizer": self.vectorizer,
            "arrays": {
                "file": ARRAYS_FILE,
                "sha256": _sha256(arrays_file),
                "shapes": {name: list(getattr(self, name).shape) for name in ARRAYS},
            },
        }
        (directory / LINEAR_FILE).write_text(json.dumps(record, indent=2))

    # --- tokenize -> infer --------------------------------------------------------------------
    @property
    def tokenizer_fingerprint(self) -> str:
        """Shared only with linear tiers that hash alike; never a transformer's (hex) fingerprint."""
        spec = json.dumps([self.vectorizer, self.inputs, FORMAT_VERSION], sort_keys=True)
        return "linear:" + hashlib.sha1(spec.encode()).hexdigest()

    def tokenize(self, texts: Texts) -> Features:  # type: ignore[override]
        """Hashed n-gram counts, (N, D) sparse."""
        rows = self._rows(texts)
        if not rows:
            return Features(sp.csr_matrix((0, len(self.idf)), dtype=np.float32))
        return Features(_count(rows, self.vectorizer))

    def plan(self, encodings: Features) -> list[np.ndarray]:  # type: ignore[override]
        """One batch: the rows are scored in one sparse product."""
        return [np.arange(len(encodings))]

    def infer(  # type: ignore[override]
        self, encodings: Features, progress: bool = False, batches: list[np.ndarray] | None = None
    ) -> np.ndarray:
        """Logits (N, K): LR's decision function, two columns ``[-z/2, z/2]`` for two labels."""
        if not isinstance(encodings, Features):
            raise TypeError(
                f"a linear tier scores its own features, got {type(encodings).__name__}; "
                "pass the output of this tier's tokenize()"
            )
        z = _tfidf(encodings.counts, self.idf, self.vectorizer["n_features"]) @ self.coef.T + self.intercept
        z = np.asarray(z, dtype=np.float32)  # (N, K) or (N, 1)
        return np.hstack([-z / 2, z / 2]) if len(self.labels) == 2 else z

    def padding_efficiency(  # type: ignore[override]
        self, encodings: Features, batches: list[np.ndarray] | None = None
    ) -> float:
        """1.0: sparse rows are never padded."""
        return 1.0

    def __repr__(self) -> str:
        return f"LinearTier({self.source!r}, inputs={self.inputs!r}, labels={self.labels})"


# --- features ------------------------------------------------------------------------------------


def _hash(texts: list[str], vectorizer: dict[str, Any]) -> sp.csr_matrix:
    """Word and character n-gram counts of single texts: (N, 2 * n_features)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    common = dict(
        n_features=vectorizer["n_features"],
        lowercase=vectorizer["lowercase"],
        alternate_sign=False,
        norm=None,
        dtype=np.float32,
    )
    word = HashingVectorizer(
        analyzer="word",
        ngram_range=tuple(vectorizer["word_ngram_range"]),
        token_pattern=TOKEN_PATTERN,
        **common,
    )
    char = HashingVectorizer(analyzer="char_wb", ngram_range=tuple(vectorizer["char_ngram_range"]), **common)
    return sp.hstack([word.transform(texts), char.transform(texts)]).tocsr()


def _count(rows: list[str] | list[tuple[str, str]], vectorizer: dict[str, Any]) -> sp.csr_matrix:
    """Counts of texts, (N, 2F); of pairs, each text's counts side by side, (N, 4F)."""
    if isinstance(rows[0], str):
        return _hash(list(rows), vectorizer)
    firsts, seconds = zip(*rows, strict=True)
    return sp.hstack([_hash(list(firsts), vectorizer), _hash(list(seconds), vectorizer)]).tocsr()


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray, block: int) -> sp.csr_matrix:
    """Sublinear TF-IDF, each block of ``block`` columns L2-normalised on its own (so the word
    and character halves, and both texts of a pair, weigh alike). Works on the nonzeros only."""
    x = counts.astype(np.float32, copy=True)
    # sublinear tf: a word said ten times is not ten times the evidence
    x.data = (1.0 + np.log(x.data)) * idf[x.indices]
    blocks = -(-x.shape[1] // block)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    cell = rows * blocks + x.indices // block  # (row, block) of each nonzero
    norms = np.sqrt(np.bincount(cell, weights=x.data.astype(np.float64) ** 2, minlength=x.shape[0] * blocks))
    x.data /= norms[cell].astype(np.float32)  # a nonzero's own block has a norm > 0
    return x


def _idf(counts: sp.csr_matrix) -> np.ndarray:
    """scikit-learn's smooth idf, ``log((1 + n) / (1 + df)) + 1``, per column: (D,) float32."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float32)


# --- fitting -------------------------------------------------------------------------------------


def fit_linear(
    texts: Texts,
    labels: np.ndarray | list[int],
    label_names: list[str],
    *,
    C: float = 4.0,
    max_iter: int = 1000,
    threads: int | None = None,
    vectorizer: dict[str, Any] | None = None,
) -> LinearTier:
    """Fit a linear tier in memory. ``labels`` are ids into ``label_names``; every label needs
    rows. ``C`` is LR's inverse L2 strength; ``threads`` caps the BLAS/OpenMP threads of the fit
    (default: ``$TANGO_THREADS``, else all cores)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(texts):
        raise ValueError(f"need one label per text: {len(texts)} texts, {len(y)} labels")
    if len(label_names) < 2 or y.min(initial=0) < 0 or y.max(initial=0) >= len(label_names):
        raise ValueError(f"labels must be ids into label_names ({len(label_names)} names, at least 2)")
    missing = [name for k, name in enumerate(label_names) if not (y == k).any()]
    if missing:
        raise ValueError(f"labels {missing} have no training rows; every label needs some")
    vectorizer = {**DEFAULT_VECTORIZER, **(vectorizer or {})}
    rows = as_texts(texts)
    inputs = "pairs" if rows and isinstance(rows[0], tuple) else "texts"
    counts = _count(rows, vectorizer)
    idf = _idf(counts)
    model = LogisticRegression(C=C, max_iter=max_iter)
    with threadpool_limits(threads or default_threads()):
        model.fit(_tfidf(counts, idf, vectorizer["n_features"]), y)
    assert list(model.classes_) == list(range(len(label_names))), "class order must be label order"
    arrays = {
        "coef": model.coef_.astype(np.float32),
        "intercept": model.intercept_.astype(np.float32),
        "idf": idf,
    }
    record = {"C": C, "max_iter": max_iter, "iterations": int(np.max(model.n_iter_))}
    return LinearTier(label_names, inputs, vectorizer, arrays, record=record)


def train_linear(
    train: LabelledData,
    out_dir: str | Path,
    *,
    dev: LabelledData | None = None,
    name: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> LinearTier:
    """Fit a linear tier on ``train``, score ``dev``, save it in ``out_dir`` and register it as
    ``name`` (default: ``out_dir``'s basename). Returns the saved tier; ``tier.record`` holds
    ``train_seconds`` and ``dev_accuracy``. ``options`` go to :func:`fit_linear`.
    """
    from sklearn import __version__ as sklearn_version

    from tango.registry import register

    threads = threads or default_threads()
    start = time.perf_counter()
    tier = fit_linear(train.texts, train.labels, train.label_names, threads=threads, **options)
    seconds = time.perf_counter() - start
    accuracy = None
    if dev is not None:
        accuracy = float((tier.logits(dev.texts).argmax(axis=1) == dev.labels).mean())
    tier.record.update(
        {
            "train": train.source,
            "train_rows": len(train),
            "train_sha256": _rows_sha256(train),
            "dev": dev.source if dev is not None else None,
            "dev_rows": len(dev) if dev is not None else None,
            "dev_accuracy": accuracy,
            "train_seconds": round(seconds, 2),
            "threads": threads,
            "sklearn": sklearn_version,
            "tango": __version__,
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        }
    )
    tier.save_pretrained(out_dir)
    register(
        name or Path(out_dir).name,
        out_dir,
        role="tier",
        runtime="linear",
        labels=train.label_names,
        metrics={"dev_accuracy": accuracy},
    )
    return LinearTier.from_pretrained(out_dir)


def _rows_sha256(data: LabelledData) -> str:
    """A fingerprint of the training rows themselves (texts and labels, in order)."""
    digest = hashlib.sha256()
    for text, label in zip(data.texts, data.labels, strict=True):
        parts = [text] if isinstance(text, str) else list(text)
        digest.update(("\t".join(parts) + f"\t{int(label)}\n").encode())
    return digest.hexdigest()


# --- safe loading --------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_record(path: Path) -> dict[str, Any]:
    """The tier's JSON, with every field loading relies on checked."""
    file = path / LINEAR_FILE
    if not file.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())) if path.is_dir() else "nothing"
        raise ValueError(
            f"{file} is missing, so {path} is not a linear tier (found: {found}); "
            "train one with `tango train linear --train FILE --out DIR`"
        )
    try:
        record = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not valid JSON ({error}); retrain the tier") from error
    problems = _record_problems(record)
    if problems:
        raise ValueError(f"{file} does not describe a linear tier tango can load: {'; '.join(problems)}")
    return record


def _record_problems(record: Any) -> list[str]:
    if not isinstance(record, dict):
        return ["it is not a JSON object"]
    if record.get("format") != "tango-linear" or record.get("format_version") != FORMAT_VERSION:
        return [f"format must be tango-linear version {FORMAT_VERSION}"]
    problems = []
    names = record.get("label_names")
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        problems.append("label_names must be a list of at least two strings")
    elif record.get("classes") != list(range(len(names))):
        problems.append(f"classes must be {list(range(len(names)))} (the label order of the weights)")
    if record.get("inputs") not in ("texts", "pairs"):
        problems.append("inputs must be 'texts' or 'pairs'")
    vectorizer = record.get("vectorizer")
    if not isinstance(vectorizer, dict) or set(vectorizer) != set(DEFAULT_VECTORIZER):
        problems.append(f"vectorizer must have exactly the keys {sorted(DEFAULT_VECTORIZER)}")
    else:
        for key in ("word_ngram_range", "char_ngram_range"):
            low_high = vectorizer[key]
            if not (
                isinstance(low_high, list)
                and len(low_high) == 2
                and all(type(v) is int for v in low_high)
                and 1 <= low_high[0] <= low_high[1] <= 10
            ):
                problems.append(f"vectorizer.{key} must be [low, high] with 1 <= low <= high <= 10")
        n = vectorizer["n_features"]
        if type(n) is not int or not 16 <= n <= 2**24:
            problems.append("vectorizer.n_features must be an integer from 16 to 2**24")
        if type(vectorizer["lowercase"]) is not bool:
            problems.append("vectorizer.lowercase must be true or false")
    arrays = record.get("arrays")
    if not (
        isinstance(arrays, dict)
        and arrays.get("file") == ARRAYS_FILE
        and isinstance(arrays.get("sha256"), str)
    ):
        problems.append(f"arrays must name {ARRAYS_FILE} and its sha256")
    return problems


def _read_arrays(path: Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The weights, read without pickle and checked against the JSON's hash and shapes."""
    file = path / ARRAYS_FILE
    if not file.is_file():
        raise ValueError(f"{file} is missing; the tier directory is incomplete, retrain or re-save it")
    if _sha256(file) != record["arrays"]["sha256"]:
        raise ValueError(f"{file} does not match the sha256 recorded in {path / LINEAR_FILE}; it was changed")
    try:
        with np.load(file, allow_pickle=False) as npz:
            if sorted(npz.files) != sorted(ARRAYS):
                raise ValueError(f"{file} must hold exactly the arrays {list(ARRAYS)}, found {npz.files}")
            arrays = {name: npz[name] for name in ARRAYS}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise ValueError(
                f"{file} holds object arrays, which only pickle can load; tango never unpickles "
                "a tier: retrain it with `tango train linear`"
            ) from None
        raise
    except (OSError, EOFError) as error:  # not a zip / truncated
        raise ValueError(f"{file} is not a readable .npz archive ({error})") from error
    _check_shapes(file, arrays, record)
    return arrays


def _check_shapes(file: Path, arrays: dict[str, np.ndarray], record: dict[str, Any]) -> None:
    classes = len(record["label_names"])
    rows = 1 if classes == 2 else classes
    width = record["vectorizer"]["n_features"] * (4 if record["inputs"] == "pairs" else 2)
    expected = {"coef": (rows, width), "intercept": (rows,), "idf": (width,)}
    for name, shape in expected.items():
        array = arrays[name]
        if array.dtype != np.float32 or array.shape != shape:
            raise ValueError(
                f"{file}: {name} is {array.dtype} {array.shape}, but {LINEAR_FILE} implies float32 {shape}"
            )
