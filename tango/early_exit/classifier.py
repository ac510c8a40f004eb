"""The user-facing early-exit estimator: texts in, labels / probabilities / exit layers out.

A model directory is a Hugging Face encoder directory (``config.json`` with ``id2label``,
tokenizer files, ``model.safetensors``) plus ``exit_heads.safetensors`` and ``early_exit.json``
(exits, labels, temperatures, policy, training record).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from tango._version import __version__
from tango.batching import Encodings, pad_tensors, plan_batches, tokenize
from tango.early_exit.model import MultiExitModel
from tango.early_exit.policy import ExitPolicy
from tango.early_exit.schedule import early_exit
from tango.hardware import bf16_supported
from tango.modeldir import EARLY_EXIT_FILE
from tango.texts import Texts, as_texts

MANIFEST = EARLY_EXIT_FILE
HEADS = "exit_heads.safetensors"
# bf16 = weights cast once when inference starts; bf16-autocast = fp32 weights, autocast per batch
PRECISIONS = ("fp32", "bf16", "bf16-autocast")
ROWS_IN_FLIGHT = 4096  # rows run breadth-first together: their hidden states are held at once


@dataclass
class EarlyExitResult:
    labels: np.ndarray  # (N,) label names
    probabilities: np.ndarray  # (N, K) calibrated at each row's exit; rows sum to 1
    confidence: np.ndarray  # (N,) top probability
    exit_layer: np.ndarray  # (N,) 1-based encoder layer at which each row left

    @property
    def mean_exit_layer(self) -> float:
        """Average layers run per row: the compute spent, in layers."""
        return float(self.exit_layer.mean()) if len(self.exit_layer) else 0.0


@dataclass
class EarlyExitClassifier:
    """A :class:`MultiExitModel` with its tokenizer, labels and exit policy.

    Examples
    --------
    >>> clf = EarlyExitClassifier.from_pretrained("runs/sst2-ee", threshold=0.95)  # doctest: +SKIP
    >>> clf.predict_detailed(["a gorgeous film"]).exit_layer  # doctest: +SKIP
    array([2])
    """

    model: MultiExitModel = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    labels: Sequence[str]
    policy: str = "maxprob"  # "maxprob" | "entropy" | "patience"
    threshold: float | None = None  # None = the policy's default (policy.DEFAULT_THRESHOLDS)
    patience: int = 2
    temperatures: Sequence[float] | None = None  # one per exit; None = 1.0
    batch_size: int = 32
    max_length: int = 256
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:1" ...
    precision: str = "fp32"  # "fp32" | "bf16" (weights cast once) | "bf16-autocast"
    metadata: dict[str, Any] = field(default_factory=dict)  # training record for early_exit.json

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.labels)

    @property
    def exits_(self) -> tuple[int, ...]:
        return self.model.exits

    # --- fitting ------------------------------------------------------------------------------

    def fit(
        self,
        texts: Texts,
        labels: Sequence[str] | Sequence[int] | np.ndarray,
        *,
        max_drop: float | None = None,
        report_dir: str | Path | None = None,
    ) -> EarlyExitClassifier:
        """One temperature per exit (and, with ``max_drop``, the threshold) from labelled rows.

        ``labels`` are names or ids, as in ``Cascade.fit``. Delegates to
        :func:`tango.early_exit.calibration.calibrate_early_exit`, which sets ``temperatures`` (and
        ``threshold``); the report is kept in ``calibration_``. Returns ``self``.
        """
        from tango.data import LabelledData
        from tango.early_exit.calibration import calibrate_early_exit
        from tango.labels import label_ids

        rows, classes = as_texts(texts), [str(label) for label in self.labels]
        y = label_ids(labels, classes)
        if len(rows) != len(y):
            raise ValueError(f"{len(rows)} texts but {len(y)} labels: give one label per text")
        dev = LabelledData(rows, y, classes)
        self.calibration_ = calibrate_early_exit(self, dev, max_drop=max_drop, report_dir=report_dir)
        return self

    # --- inference ----------------------------------------------------------------------------

    def predict(self, texts: Texts) -> np.ndarray:
        """(N,) label names."""
        return self.predict_detailed(texts).labels

    def predict_proba(self, texts: Texts) -> np.ndarray:
        """(N, K) calibrated probabilities at each row's exit; rows sum to 1."""
        return self.predict_detailed(texts).probabilities

    def predict_detailed(self, texts: Texts) -> EarlyExitResult:
        """Labels, probabilities, confidence and exit layer per row, in input order.

        The whole input (up to ``ROWS_IN_FLIGHT`` rows at a time, shortest first) runs
        breadth-first: each segment on every row still inside, re-batched into full batches of
        ``batch_size`` (see docs/early-exit.md). ``exit_layer`` is each row's 1-based exit layer.
        """
        policy, texts = self._policy(), as_texts(texts)
        num_rows, num_labels = len(texts), len(self.labels)
        probabilities = np.zeros((num_rows, num_labels), dtype=np.float32)
        exit_index = np.zeros(num_rows, dtype=np.int64)
        self._prepare()
        encodings = encode(self.tokenizer, texts, self.max_length)
        order = np.argsort(encodings.lengths, kind="stable")
        for start in range(0, num_rows, ROWS_IN_FLIGHT):
            rows = order[start : start + ROWS_IN_FLIGHT]
            batch = pad_tensors(encodings, rows, self.tokenizer.pad_token_id, self.device)
            with precision_context(self.device, self.precision):
                logits, index = early_exit(
                    self.model,
                    batch["input_ids"],
                    batch["attention_mask"],
                    policy,
                    batch.get("token_type_ids"),
                    batch_size=self.batch_size,
                )
            logits, index = logits.cpu(), index.cpu()
            for i in index.unique().tolist():  # calibrate each row with its own exit's temperature
                at_exit = index == i
                probabilities[rows[at_exit.numpy()]] = policy.probabilities(i, logits[at_exit]).numpy()
            exit_index[rows] = index.numpy()
        return EarlyExitResult(
            labels=self.classes_[probabilities.argmax(axis=1)] if num_rows else self.classes_[:0],
            probabilities=probabilities,
            confidence=probabilities.max(axis=1, initial=0.0),
            exit_layer=np.asarray(self.model.exits)[exit_index],
        )

    def exit_logits(self, texts: Texts) -> np.ndarray:
        """Raw logits of every exit, (E, N, K), no early stopping: for fitting temperatures."""
        texts = as_texts(texts)
        out = np.zeros((len(self.model.exits), len(texts), len(self.labels)), dtype=np.float32)
        for rows, batch in self._batches(texts):
            with torch.inference_mode(), precision_context(self.device, self.precision):
                logits = self.model(**batch)  # (E, b, K)
            out[:, rows] = logits.float().cpu().numpy()
        return out

    def _policy(self) -> ExitPolicy:
        temperatures = None if self.temperatures is None else tuple(self.temperatures)
        if temperatures is not None and len(temperatures) != len(self.model.exits):
            raise ValueError(f"temperatures needs one value per exit {self.model.exits}; got {temperatures}")
        return ExitPolicy(self.policy, self.threshold, self.patience, temperatures)

    def _prepare(self) -> None:
        """Check the knobs; move the model to its device and dtype, in eval mode.

        ``precision="bf16"`` casts the weights to bf16 here, once (a no-op on later calls), as
        tiers do at load: no per-batch casts. The cast is in place, so :meth:`save_pretrained`
        then writes bf16 weights; "fp32" casts back (the bf16 rounding stays).
        """
        if self.model.num_labels != len(self.labels):
            raise ValueError(f"{len(self.labels)} labels for a model with {self.model.num_labels}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.model.to(device=check_device(self.device), dtype=dtype).eval()

    def _batches(self, texts: Texts) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Length-sorted batches, each padded to its longest row: (original rows, tensors)."""
        self._prepare()
        encodings = encode(self.tokenizer, texts, self.max_length)
        for rows in plan_batches(encodings.lengths, self.batch_size):
            yield rows, pad_tensors(encodings, rows, self.tokenizer.pad_token_id, self.device)

    # --- directories --------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the encoder, tokenizer, exit heads and ``early_exit.json`` to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.model.encoder.config
        config.id2label = dict(enumerate(self.labels))
        config.label2id = {label: i for i, label in enumerate(self.labels)}
        self.model.encoder.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        heads = self.model.heads.state_dict()
        save_file({name: tensor.contiguous() for name, tensor in heads.items()}, path / HEADS)
        manifest = {
            "tango_version": __version__,
            "exits": list(self.model.exits),
            "pooling": self.model.pooling,
            "labels": list(self.labels),
            "temperatures": None if self.temperatures is None else list(self.temperatures),
            "policy": self.policy,
            "threshold": self.threshold,
            "patience": self.patience,
            "max_length": self.max_length,
            **self.metadata,
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        policy: str | None = None,
        threshold: float | None = None,
        patience: int | None = None,
        temperatures: Sequence[float] | None = None,
        precision: str = "fp32",
        batch_size: int = 32,
    ) -> EarlyExitClassifier:
        """Load a directory from :meth:`save_pretrained`; ``None`` knobs take the saved values.

        ``precision`` "bf16" casts the weights to bf16 once; "auto" = "bf16" where the device has
        fast bf16, else "fp32"; "bf16-autocast" keeps fp32 weights and casts them per batch.
        """
        path = Path(path)
        if not (path / MANIFEST).is_file():
            found = sorted(p.name for p in path.iterdir()) if path.is_dir() else "no such directory"
            raise ValueError(
                f"{path} is not an early-exit model: no {MANIFEST} (found: {found}). "
                "Train one with `tango early-exit train MODEL` or tango.early_exit.train_early_exit()."
            )
        manifest = json.loads((path / MANIFEST).read_text())
        model = MultiExitModel(
            AutoModel.from_pretrained(path, add_pooling_layer=False),
            manifest["exits"],
            len(manifest["labels"]),
            pooling=manifest.get("pooling", "cls"),  # directories from before pooling was saved
        )
        model.heads.load_state_dict(load_file(path / HEADS))
        own = {"exits", "pooling", "labels", "temperatures", "policy", "threshold", "patience", "max_length"}
        return cls(
            model=model,
            tokenizer=AutoTokenizer.from_pretrained(path),
            labels=manifest["labels"],
            policy=policy or manifest["policy"],
            threshold=manifest["threshold"] if threshold is None else threshold,
            patience=manifest["patience"] if patience is None else patience,
            temperatures=manifest["temperatures"] if temperatures is None else temperatures,
            batch_size=batch_size,
            max_length=manifest["max_length"],
            device=device,
            precision=auto_precision(device) if precision == "auto" else precision,
            metadata={k: v for k, v in manifest.items() if k not in own | {"tango_version"}},
        )


# --- helpers ---------------------------------------------------------------------------------


def encode(tokenizer: PreTrainedTokenizerBase, texts: Texts, max_length: int) -> Encodings:
    """Token ids of texts or pairs (a single one is wrapped), unpadded: the tiers' tokenizer path."""
    return tokenize(tokenizer, as_texts(texts), max_length)


def check_device(device: str) -> torch.device:
    """``device`` as a torch.device, with a clear error where it does not exist on this machine."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be like 'cpu', 'cuda' or 'cuda:1'; got {device!r}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {device!r}: this machine has no CUDA GPU (or torch was built without CUDA); "
                "use --device cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"device {device!r}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})"
            )
    elif parsed.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device; got {device!r}")
    return parsed


def auto_precision(device: str) -> str:
    """ "bf16" where the device has fast bf16 matrix units (CUDA with bf16, AMX/AVX-512 CPUs)."""
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if bf16_supported() else "fp32"


def precision_context(device: str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for "bf16-autocast" (training, and inference that asks for it), else nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if precision != "bf16-autocast":
        return contextlib.nullcontext()
    # No weight cache: it only grows across batch shapes (see tango.tiers.TorchRuntime.run).
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
