"""A tier: one text classifier and its tokenizer, on ONNX Runtime, OpenVINO or PyTorch.

Texts (or text pairs) go in, logits come out. Rows are tokenized once, sorted by length and
batched by :mod:`tango.batching`, and the logits are returned in input order. The runtime is
the one ``tango probe`` recorded as fastest among those that keep PyTorch fp32's predictions
(:mod:`tango.probe`), else chosen by the directory's contents (``model.onnx`` -> ONNX Runtime,
an OpenVINO IR -> OpenVINO, else PyTorch); loading never exports.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tango.batching import (
    Encodings,
    longest_first,
    pad_batch,
    padding_efficiency,
    plan_least_padding,
    tokenize,
)
from tango.confidence import softmax
from tango.hardware import bf16_supported, set_torch_threads
from tango.modeldir import ONNX_FILE, is_linear, recorded_inputs, refuse_early_exit
from tango.runtimes import PRECISIONS, RUNTIMES, OnnxRuntime, Runtime, TorchRuntime, make_runtime
from tango.texts import Texts, as_texts

# Names other modules and user code import from here (the runtimes moved to tango.runtimes).
__all__ = [
    "ONNX_FILE",
    "OnnxRuntime",
    "Tier",
    "TorchRuntime",
    "bf16_supported",
    "load_tiers",
    "model_max_length",
    "recorded_inputs",
    "set_torch_threads",
]

# A runtime with several streams (OpenVINO's) takes a tier's batches when each stream has at least
# this many to run; with fewer, one stream on all the threads runs them one at a time. Batches cut
# by least padding are balanced enough for two per stream on a cascade's escalated rows
# (benchmarks/results/escalated_batches.md, docs/architecture.md); greedy batches needed four.
BATCHES_PER_STREAM = 2


class Tier:
    """A text classifier with its tokenizer. Build one with :meth:`from_pretrained`.

    Example
    -------
    >>> tier = Tier.from_pretrained("path/to/model_dir")           # doctest: +SKIP
    >>> tier.predict(["a gorgeous, witty film", "a dull mess"])      # doctest: +SKIP
    array(['positive', 'negative'], dtype='<U8')
    """

    # Subclasses that load from a marked directory register here by kind (``LinearTier`` is
    # "linear"), so loading dispatches on the directory without this module importing them.
    _kinds: dict[str, type[Tier]] = {}

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            Tier._kinds[kind] = cls

    def __init__(
        self,
        path: Path,
        tokenizer: Any,
        runtime: Runtime,
        labels: list[str],
        batch_size: int = 32,
        max_tokens: int | None = 16384,
        max_length: int | None = None,
        source: str | None = None,
        inputs: str | None = None,
    ) -> None:
        self.path = path
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.labels = labels
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.max_length = max_length or model_max_length(tokenizer, path)
        self.source = source or str(path)
        self.inputs = inputs  # "texts" or "pairs" when the tier's training recorded it, else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        runtime: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int | None = 16384,
        max_length: int | None = None,
        device: str = "cpu",
        runtime_options: dict[str, Any] | None = None,
    ) -> Tier:
        """Load a tier from a directory, an alias (``tango/resources/aliases.toml``) or a hub id.

        ``runtime="auto"`` uses the fastest runtime that ``tango probe`` recorded in the
        directory (``tango_runtimes.json``) among those that kept PyTorch fp32's predictions;
        without a record, ONNX Runtime when the directory holds ``model.onnx``, OpenVINO when it
        holds an IR, PyTorch otherwise. ``precision`` applies to PyTorch (``fp32``, ``bf16``
        weights cast once, ``bf16-autocast``) and OpenVINO (``fp32``, ``bf16``); ``auto`` =
        the record's choice, else bf16 autocast for PyTorch where the CPU has fast bf16 and fp32
        for OpenVINO. ``runtime_options`` go to the runtime (OpenVINO's ``snippets``); None =
        the options the record measured fastest. ``threads`` defaults to this machine's cores.
        A directory holding ``tango_linear.json`` loads as a :class:`tango.linear.LinearTier`
        (the runtime options choose among transformer runtimes and do not apply to it).
        """
        from tango.registry import resolve

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        path = resolve(name_or_path)
        refuse_early_exit(path, name_or_path)  # its encoder would load, with an untrained head
        if is_linear(path):  # a scikit-learn tier: the subclass that marks itself with this file
            linear = Tier._kinds["linear"].from_pretrained(path, batch_size=batch_size, max_tokens=max_tokens)
            linear.source = str(name_or_path)
            return linear
        from transformers import AutoConfig, AutoTokenizer

        if runtime == "onnx" and not (path / ONNX_FILE).exists():
            raise ValueError(
                f"{path} has no {ONNX_FILE}; make one with `tango export {path} "
                f"--out DIR`, or use runtime='torch'"
            )
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        backend = make_runtime(path, runtime, precision, threads, device, runtime_options)
        labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        return cls(
            path,
            tokenizer,
            backend,
            labels,
            batch_size,
            max_tokens,
            max_length,
            source=str(name_or_path),
            inputs=recorded_inputs(path),
        )

    # --- tokenize -> infer --------------------------------------------------------------------
    @property
    def tokenizer_fingerprint(self) -> str:
        """Equal for tiers whose tokenizers give identical ids, so a cascade tokenizes once.

        Serializing a tokenizer takes milliseconds and a cascade asks on every call, so the value
        is kept for as long as the tier holds the same tokenizer object and ``max_length``."""
        cached = getattr(self, "_fingerprint", None)
        if cached is not None and cached[0] is self.tokenizer and cached[1] == self.max_length:
            return cached[2]
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        spec = backend.to_str() if backend is not None else repr(self.tokenizer.get_vocab())
        fingerprint = hashlib.sha1(f"{spec}|{self.max_length}".encode()).hexdigest()
        self._fingerprint = (self.tokenizer, self.max_length, fingerprint)  # a value, not state
        return fingerprint

    def tokenize(self, texts: Texts) -> Encodings:
        """Token ids, truncated to ``max_length``, unpadded."""
        return tokenize(self.tokenizer, self._rows(texts), self.max_length)

    def _rows(self, texts: Texts) -> list[str] | list[tuple[str, str]]:
        """The rows as a list, refused when they are pairs and the tier was trained on texts
        (or the other way round)."""
        rows = as_texts(texts)
        if self.inputs and rows and isinstance(rows[0], tuple) != (self.inputs == "pairs"):
            given = "text pairs" if isinstance(rows[0], tuple) else "single texts"
            raise TypeError(
                f"tier {self.path} was trained on "
                f"{'text pairs' if self.inputs == 'pairs' else 'single texts'} but was given {given}; "
                + (
                    "pass (text, text_pair) tuples (--pair-column)"
                    if self.inputs == "pairs"
                    else "drop the pairs"
                )
            )
        return rows

    def infer(
        self, encodings: Encodings, progress: bool = False, batches: list[np.ndarray] | None = None
    ) -> np.ndarray:
        """Logits (N, K) in input order, from length-sorted, token-budgeted batches.

        ``batches`` is :meth:`plan`'s cut of these encodings, when the caller already has it.
        Reads nothing but its arguments and writes nothing on the tier, so threads may share one.
        """
        logits = np.zeros((len(encodings), len(self.labels)), dtype=np.float32)
        if not len(encodings):
            return logits
        pad_id = self.tokenizer.pad_token_id or 0
        batches = self.plan(encodings) if batches is None else batches
        streams = getattr(self.runtime, "streams", 1)
        if streams == 1 or len(batches) < BATCHES_PER_STREAM * streams:
            for rows in tqdm(batches, desc=f"{self.path.name}", disable=not progress, leave=False):
                logits[rows] = self.runtime.run(pad_batch(encodings, rows, pad_id))
            return logits
        # enough batches to keep several streams busy: the runtime takes them as they are padded,
        # the costliest first, so the streams finish together (no stream idles while another
        # runs the last, longest batch)
        batches = longest_first(batches, encodings.lengths)
        shown = tqdm(batches, desc=f"{self.path.name}", disable=not progress, leave=False)
        outputs = self.runtime.run_batches(pad_batch(encodings, rows, pad_id) for rows in shown)
        for rows, output in zip(batches, outputs, strict=True):
            logits[rows] = output
        return logits

    def padding_efficiency(self, encodings: Encodings, batches: list[np.ndarray] | None = None) -> float:
        """Real tokens / computed tokens of the batches :meth:`infer` runs on ``encodings``.

        1.0 = no padding. A pure function of the encodings and the batch settings, so each call
        gets its own number; ``batches`` is :meth:`plan`'s cut when the caller has it (else it is
        planned again).
        """
        if not len(encodings):
            return 1.0
        return padding_efficiency(encodings.lengths, self.plan(encodings) if batches is None else batches)

    def plan(self, encodings: Encodings) -> list[np.ndarray]:
        """The batches :meth:`infer` runs: rows sorted by length, at most ``batch_size`` rows and
        ``max_tokens`` padded tokens each, cut where padding costs least
        (:func:`tango.batching.plan_least_padding`)."""
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        return plan_least_padding(encodings.lengths, self.batch_size, self.max_tokens)

    # --- scikit-learn style -------------------------------------------------------------------
    def logits(self, texts: Texts) -> np.ndarray:
        return self.infer(self.tokenize(texts))

    def predict_proba(self, texts: Texts) -> np.ndarray:
        return softmax(self.logits(texts))

    def predict(self, texts: Texts) -> np.ndarray:
        return np.asarray(self.labels)[self.logits(texts).argmax(axis=1)]

    def save_pretrained(self, directory: str | Path) -> None:
        """Copy the tier's files (config, tokenizer, weights or ONNX graph) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for item in self.path.iterdir():
            if item.is_file() and not item.name.startswith("."):
                shutil.copy2(item, directory / item.name)

    def __repr__(self) -> str:
        return (
            f"Tier({self.source!r}, runtime={getattr(self.runtime, 'description', '?')}, "
            f"labels={self.labels})"
        )


def load_tiers(names: Sequence[str | Path | Tier], **options: Any) -> list[Tier]:
    """The tiers of one run, cheapest first: names resolved together, then each loaded.

    Aliases resolve all from the hub or all to local tiers (:func:`tango.registry.resolve_all`),
    so one run never pairs a hub tier with a locally trained one by accident. ``options`` go to
    :meth:`Tier.from_pretrained`; a ``Tier`` passes through unchanged.
    """
    from tango.registry import resolve_all

    named = [k for k, name in enumerate(names) if not isinstance(name, Tier)]
    paths = dict(zip(named, resolve_all([names[k] for k in named]), strict=True))  # type: ignore[misc]
    tiers = []
    for k, name in enumerate(names):
        if isinstance(name, Tier):
            tiers.append(name)
            continue
        tier = Tier.from_pretrained(paths[k], **options)
        tier.source = str(name)  # the name the user gave, as the cascade's manifest records it
        tiers.append(tier)
    return tiers


def model_max_length(tokenizer: Any, path: Path) -> int:
    """The longest input the model takes: the tokenizer's limit, capped by its positions."""
    config_file = path / "config.json"
    positions = 512
    if config_file.exists():
        config = json.loads(config_file.read_text())
        offset = 2 if config.get("model_type") in ("roberta", "mpnet", "xlm-roberta") else 0
        positions = int(config.get("max_position_embeddings", 512)) - offset
    limit = getattr(tokenizer, "model_max_length", positions) or positions
    return int(min(limit, positions, 512))
