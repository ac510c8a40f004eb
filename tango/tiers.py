"""A tier: one text classifier and its tokenizer, on ONNX Runtime, OpenVINO or PyTorch.

Texts (or text pairs) go in, logits come out. Rows are tokenized once, sorted by length and
batched by :mod:`tango.batching`, and the logits are returned in input order. The runtime is
the one ``tango probe`` recorded as fastest among those that keep PyTorch fp32's predictions
(:mod:`tango.probe`), else chosen by the directory's contents (``model.onnx`` -> ONNX Runtime,
an OpenVINO IR -> OpenVINO, else PyTorch); loading never exports.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

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
from tango.hardware import bf16_supported, default_threads, set_torch_threads
from tango.texts import Texts, as_texts

ONNX_FILE = "model.onnx"
RUNTIMES = ("auto", "onnx", "openvino", "torch")
# bf16 = weights cast once at load; bf16-autocast = fp32 weights cast per batch (PyTorch only)
PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast")
# A runtime with several streams (OpenVINO's) takes a tier's batches when each stream has at least
# this many to run; with fewer, one stream on all the threads runs them one at a time. Batches cut
# by least padding are balanced enough for two per stream on a cascade's escalated rows
# (benchmarks/results/escalated_batches.md, docs/architecture.md); greedy batches needed four.
BATCHES_PER_STREAM = 2


class Runtime(Protocol):
    """What a tier needs from a runtime: padded int64 batches in, float logits (B, K) out."""

    input_names: tuple[str, ...]

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


def make_session(model_path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """The one place an ONNX Runtime session is built: threads, providers, graph optimisation."""
    import onnxruntime as ort

    providers = providers or ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ValueError(
            f"ONNX Runtime providers {missing} are not available here; "
            f"available: {ort.get_available_providers()}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


class OnnxRuntime:
    """Runs ``model.onnx`` (fp32 or int8) with ONNX Runtime on the CPU."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        self.session = make_session(model_path, threads)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.description = f"onnxruntime ({_onnx_precision(model_path)})"

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: batch[name] for name in self.input_names}
        return self.session.run(None, feed)[0].astype(np.float32)


def _onnx_precision(model_path: Path) -> str:
    export_info = model_path.parent / "tango_export.json"
    if not export_info.exists():
        return "fp32"
    record = json.loads(export_info.read_text())
    if not record.get("int8"):
        return "fp32"
    if not record.get("activation_scales"):
        import warnings

        warnings.warn(
            f"{model_path.parent} is an int8 export with one activation scale per batch (tango < 0.2): "
            "a row's answer depends on the rows batched with it. Re-export it with "
            "`tango export SOURCE --out DIR --int8` for per-token scales",
            stacklevel=3,
        )
        return "int8, per-batch scales"
    return "int8"


class TorchRuntime:
    """Runs a Hugging Face sequence classifier in PyTorch: fp32, bf16 weights, or bf16 autocast.

    ``bf16`` casts the weights once at load (logits back to fp32); ``bf16-autocast`` keeps fp32
    weights and lets autocast cast them on every batch: slower, but its fp32 accumulation keeps
    more models' predictions where ``tango probe`` finds the cast-once model drifts. ``auto``
    here = autocast where the CPU has fast bf16, else fp32 (``Tier.from_pretrained`` resolves
    ``auto`` from the directory's probe record first).
    """

    def __init__(
        self, model_dir: Path, threads: int | None = None, precision: str = "auto", device: str = "cpu"
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        set_torch_threads(threads)  # process-wide, and only when asked for: see set_torch_threads
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval().to(device)
        self.device = device
        if precision == "auto":
            precision = "bf16-autocast" if bf16_supported() else "fp32"
        if precision == "bf16":
            self.model.to(torch.bfloat16)
        self.precision = precision
        self.bf16 = precision == "bf16-autocast"  # autocast on every batch
        self.input_names = tuple(
            name
            for name in ("input_ids", "attention_mask", "token_type_ids")
            if name in inspect.signature(self.model.forward).parameters
        )
        names = {"bf16": "bf16 weights", "bf16-autocast": "bf16 autocast"}
        self.description = f"pytorch ({names.get(precision, 'fp32')})"

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = {
            name: torch.from_numpy(batch[name]).to(self.device) for name in self.input_names if name in batch
        }
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        # cache_enabled=False: under inference_mode the autocast weight cache grows with every
        # new batch shape (measured: +580 MB over 1M rows); each weight is used once per call anyway.
        autocast = torch.autocast(device_type, torch.bfloat16, enabled=self.bf16, cache_enabled=False)
        with torch.inference_mode(), autocast:
            logits = self.model(**inputs).logits
        return logits.float().cpu().numpy()  # bf16 weights give bf16 logits


def make_runtime(
    path: Path,
    runtime: str,
    precision: str,
    threads: int | None,
    device: str,
    options: dict[str, Any] | None = None,
) -> Runtime:
    """The runtime for a tier directory, ``auto`` resolved by :func:`tango.probe.choose`.

    ``options`` are the runtime's own (OpenVINO's ``snippets``); None = what the probe record
    measured fastest at the chosen runtime and precision, else the runtime's defaults."""
    from tango.hardware import check_threads
    from tango.probe import choose, recorded_options

    check_threads(threads)
    if device == "cpu":
        runtime, precision = choose(path, runtime, precision)
    elif runtime == "auto":  # a CPU probe says nothing about other devices: today's rule
        runtime = "onnx" if (path / ONNX_FILE).exists() else "torch"
    if options and runtime != "openvino":
        raise ValueError(f"runtime options {sorted(options)} are OpenVINO's; runtime {runtime} takes none")
    if runtime == "onnx":
        return OnnxRuntime(path / ONNX_FILE, threads)
    if runtime == "openvino":
        from tango.openvino import IR_FILE, OpenVinoRuntime

        if not (path / IR_FILE).exists():
            raise ValueError(
                f"{path} has no {IR_FILE}; make one with `tango export {path} --out DIR "
                "--format openvino`, or use runtime='torch'"
            )
        precision = "fp32" if precision == "auto" else precision
        if options is None:
            options = recorded_options(path, runtime, precision) if device == "cpu" else {}
        return OpenVinoRuntime(path, threads, precision, **options)
    return TorchRuntime(path, threads, precision, device)


class Tier:
    """A text classifier with its tokenizer. Build one with :meth:`from_pretrained`.

    Example
    -------
    >>> tier = Tier.from_pretrained("path/to/model_dir")           # doctest: +SKIP
    >>> tier.predict(["a gorgeous, witty film", "a dull mess"])      # doctest: +SKIP
    array(['positive', 'negative'], dtype='<U8')
    """

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
        if (path / "tango_linear.json").exists():  # a scikit-learn tier (tango.linear)
            from tango.linear import LinearTier

            linear = LinearTier.from_pretrained(path, batch_size=batch_size, max_tokens=max_tokens)
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


def recorded_inputs(path: Path) -> str | None:
    """ "texts" or "pairs", as the tier's training (or its export) recorded; None when unknown."""
    for record in ("tango_train.json", "tango_export.json"):
        file = path / record
        if file.exists():
            inputs = json.loads(file.read_text()).get("inputs")
            if inputs in ("texts", "pairs"):
                return inputs
    return None


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
