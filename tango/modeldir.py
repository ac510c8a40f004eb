"""The files inside a tier directory, and the readers of the records tango keeps there.

A leaf: it imports nothing from tango, so every room (runtimes, tiers, export, probe, training)
can read a directory without importing another room. Writers stay with the job that writes the
record (``tango.export.record_export``, ``tango.probe.probe_tier``, training); the names and
readers are here, once.

| file | written by | says |
|---|---|---|
| ``config.json``, ``model.safetensors``, tokenizer files | training, ``save_pretrained`` | the model |
| ``model.onnx`` | ``tango export`` | the ONNX graph (fp32 or int8) |
| ``openvino_model.xml`` / ``.bin`` | ``tango export --format openvino`` | the OpenVINO IR |
| ``tango_train.json`` | ``tango train`` | data, settings, held-out rows, inputs |
| ``tango_export.json`` | ``tango export`` | source, recipe, self-check, inputs |
| ``tango_runtimes.json`` | ``tango probe`` | each runtime's speed and agreement, here |
| ``tango_linear.json`` + ``linear.npz`` | ``tango train linear`` | a linear tier (its marker) |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ONNX_FILE = "model.onnx"
IR_FILE = "openvino_model.xml"  # optimum-intel's names, so its tools read our directories too
TRAIN_FILE = "tango_train.json"
EXPORT_FILE = "tango_export.json"  # what an export records: source, recipe, self-check
RUNTIMES_FILE = "tango_runtimes.json"  # what tango probe measured
LINEAR_FILE = "tango_linear.json"  # marks a linear (scikit-learn) tier
EARLY_EXIT_FILE = "early_exit.json"  # marks an early-exit model (tango.early_exit), not a tier
MODEL_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    ONNX_FILE,
    IR_FILE,
    "openvino_model.bin",
)


def read_json_record(directory: str | Path, name: str) -> dict[str, Any]:
    """``directory/name`` as a dict ({} when the file is not there)."""
    file = Path(directory) / name
    return json.loads(file.read_text()) if file.exists() else {}


def read_export_record(directory: str | Path) -> dict[str, Any]:
    """An exported tier's ``tango_export.json`` ({} for a directory no export wrote)."""
    return read_json_record(directory, EXPORT_FILE)


def recorded_inputs(path: Path) -> str | None:
    """ "texts" or "pairs", as the tier's training (or its export) recorded; None when unknown."""
    for record in (TRAIN_FILE, EXPORT_FILE):
        inputs = read_json_record(path, record).get("inputs")
        if inputs in ("texts", "pairs"):
            return inputs
    return None


def training_record(tier: str | Path) -> dict[str, Any]:
    """The tier's ``tango_train.json``, or, for an exported tier, its export source's ({} when
    neither was written by tango train): an export keeps what its training held out."""
    record = read_json_record(tier, TRAIN_FILE)
    source = read_export_record(tier).get("source")
    if not record and source and Path(source).is_dir():
        record = read_json_record(source, TRAIN_FILE)
    return record


def training_file(tier: Path) -> Path | None:
    """The file the tier was trained on (its ``tango_train.json``, or its export source's), if
    that file is still there."""
    for directory in (tier, Path(read_export_record(tier).get("source", tier))):
        train = read_json_record(directory, TRAIN_FILE).get("train")
        if train and Path(train).is_file():
            return Path(train)
    return None


def has_ir(path: Path) -> bool:
    """The directory holds an OpenVINO IR."""
    return (path / IR_FILE).exists()


def has_torch_weights(path: Path) -> bool:
    """The directory holds PyTorch weights."""
    return any(path.glob("model*.safetensors")) or (path / "pytorch_model.bin").exists()


def model_files(path: Path) -> dict[str, int]:
    """Sizes of the directory's model files: a re-export changes them and voids a probe record."""
    return {name: (path / name).stat().st_size for name in MODEL_FILES if (path / name).exists()}


def is_linear(path: Path) -> bool:
    """The directory is a linear tier (its marker file is there)."""
    return (path / LINEAR_FILE).exists()


def refuse_early_exit(path: Path, name: str | Path) -> None:
    """A ValueError when ``path`` holds an early-exit model: loaded as a tier, its encoder would
    load with an untrained classification head and answer without a word of warning."""
    if (Path(path) / EARLY_EXIT_FILE).is_file():
        raise ValueError(
            f"{name} is an early-exit model ({path} holds {EARLY_EXIT_FILE}), not a tier: "
            "load it with tango.EarlyExitClassifier.from_pretrained, or score with `tango early-exit run`"
        )
