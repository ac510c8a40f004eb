"""OpenVINO for tiers: export to an IR directory (fp32, or int8 by NNCF) and run it on the CPU.

The IR comes straight from the PyTorch model (``openvino.convert_model`` on a traced wrapper that
returns the logits), saved without fp16 weight compression. int8 is NNCF post-training
quantization (``model_type=TRANSFORMER``: SmoothQuant, then static int8 scales per tensor for
activations and per channel for weights) calibrated on rows of the tier's data. Static scales
matter for a cascade: a row's answer must not depend on which rows share its batch, which
dynamic (per-batch) activation scales cannot promise.

optimum-intel is not used: it pins transformers below the installed 5.x and adds torchvision
(docs/architecture.md). ``openvino`` and ``nncf`` are an optional extra, imported only here.

The export directory is a tier: ``openvino_model.xml``/``.bin``, ``config.json``, tokenizer files
and ``tango_export.json`` (the self-check against PyTorch fp32, and for int8 which rows
calibrated it). ``Tier.from_pretrained`` runs it with :class:`OpenVinoRuntime`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tango.export import (
    CHECK_SENTENCES,
    MIN_AGREEMENT,
    ExportCheck,
    check_export,
    record_export,
)
from tango.first_token import first_token_classifier
from tango.first_token import supports as has_first_token_form
from tango.modeldir import EXPORT_FILE, IR_FILE, RUNTIMES_FILE, has_ir, recorded_inputs, training_file
from tango.registry import resolve
from tango.runtimes.openvino import OpenVinoRuntime, available, bf16_supported, core, require

# The runtime moved to tango.runtimes.openvino; these names stay importable from here.
__all__ = [
    "CALIBRATION_ROWS",
    "IR_FILE",
    "KEEP_FP32",
    "OpenVinoRuntime",
    "available",
    "bf16_supported",
    "core",
    "OpenVinoOptions",
    "export_openvino",
    "has_ir",
    "require",
]

CALIBRATION_ROWS = 300  # NNCF's default subset size
# MatMuls kept fp32 in int8: each layer's feed-forward output projection, which reads GELU outputs
# (BERT and MPNet node names, and tango.first_token's last_layer; the ONNX int8 recipe keeps the
# same ones, see tango/export.py).
KEEP_FP32 = r".*(layer\.\d+|last_layer)\.output\.dense/.*"


@dataclass(frozen=True)
class OpenVinoOptions:
    """How :func:`export_openvino` exports, as one value.

    ``int8`` quantizes with NNCF on ``calibration_rows`` rows of ``calibration_data`` (default:
    the ``check_data`` file, rows after the check's own where it has enough, else the tier's
    training file, else the built-in sentences). The check compares the IR with PyTorch fp32 on
    the first ``check_rows`` rows of ``check_data`` (default: built-in sentences), as the ONNX
    export does, and must agree on ``min_agreement`` of them; the tier is registered as ``name``.
    ``verbose`` shows OpenVINO's and NNCF's own messages and progress bars. ``first_token``
    computes the last layer for the first token alone where :mod:`tango.first_token` knows the
    architecture (BERT, MPNet): the same logits for less work; the record says whether it did.
    """

    int8: bool = False
    check_data: str | Path | None = None
    check_rows: int = 1000
    calibration_data: str | Path | None = None
    calibration_rows: int = CALIBRATION_ROWS
    min_agreement: float = MIN_AGREEMENT
    name: str | None = None
    verbose: bool = False
    first_token: bool = True


def export_openvino(
    model: str | Path, out_dir: str | Path, options: OpenVinoOptions | None = None, **keywords: Any
) -> ExportCheck:
    """Export ``model`` (a PyTorch tier directory or registered name) to an OpenVINO IR directory.

    ``options`` (an :class:`OpenVinoOptions`) or its fields as keywords say how (keywords override
    ``options``): fp32 or int8, the self-check's rows and agreement, int8's calibration rows. An
    export that fails the check raises ValueError and is not registered.
    """
    options = replace(options or OpenVinoOptions(), **keywords)
    ov = require("openvino")
    if options.calibration_data is not None and not options.int8:
        raise ValueError("calibration_data calibrates the int8 quantization: pass int8=True, or drop it")
    source = resolve(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUNTIMES_FILE).unlink(missing_ok=True)  # an earlier probe measured other files
    torch_model, tokenizer = _load(source)
    first_token = options.first_token and has_first_token_form(torch_model)
    with _quiet(options.verbose):
        graph = _convert(torch_model, tokenizer, first_token)
    calibration = None
    if options.int8:
        rows = (options.check_data, options.check_rows, options.calibration_data, options.calibration_rows)
        texts, calibration = _calibration_texts(source, torch_model.config, *rows)
        graph = _quantize(graph, tokenizer, texts, options.verbose)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:  # no half-written IR under the real name
        ov.save_model(graph, str(Path(tmp) / IR_FILE), compress_to_fp16=False)
        for item in Path(tmp).iterdir():
            shutil.move(item, out_dir / item.name)
    torch_model.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / EXPORT_FILE).write_text(json.dumps({"format": "openvino", "int8": options.int8}))

    check = check_export(
        source,
        out_dir,
        options.check_data,
        options.check_rows,
        options.int8,
        options.min_agreement,
        runtime="openvino",
        precision="fp32",
    )
    record = _export_record(source, out_dir, options, first_token, calibration, check)
    return record_export(out_dir, record, check, options.name, runtime="openvino")


def _export_record(
    source: Path,
    out_dir: Path,
    options: OpenVinoOptions,
    first_token: bool,
    calibration: dict[str, Any] | None,
    check: ExportCheck,
) -> dict[str, Any]:
    """What ``tango_export.json`` says of an OpenVINO export: source, form, versions, the check."""
    int8 = options.int8
    return {
        "source": str(source),
        "format": "openvino",
        "int8": int8,
        "activation_scales": "static" if int8 else None,
        "inputs": recorded_inputs(source),
        "last_layer": "first token" if first_token else "all tokens",
        "min_agreement": options.min_agreement,
        "ir_bytes": (out_dir / IR_FILE).with_suffix(".bin").stat().st_size,
        "versions": _versions(int8),
        "calibration": calibration,
        "quantization": _RECIPE if int8 else None,
        "check": asdict(check),
    }


def _load(source: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(source)


def _input_names(tokenizer, model) -> list[str]:
    """What the tokenizer gives and the model reads (MPNet has no token types)."""
    import inspect

    reads = inspect.signature(model.forward).parameters
    known = ("input_ids", "attention_mask", "token_type_ids")
    return [n for n in tokenizer.model_input_names if n in known and n in reads]


def _convert(model, tokenizer, first_token: bool) -> Any:
    """Trace ``model`` into an OpenVINO model: int64 inputs of dynamic batch and length, one
    output named ``logits``. ``first_token``: the last layer cut to the first token
    (:mod:`tango.first_token`; the caller checks the architecture is supported)."""
    import torch

    ov = require("openvino")
    names = _input_names(tokenizer, model)
    sample = tokenizer(
        ["a short example", "and a somewhat longer second example"], padding=True, return_tensors="pt"
    )

    class Logits(torch.nn.Module):  # named inputs -> logits only (the tracer binds by name)
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(input_ids, **{k: v for k, v in given.items() if v is not None}).logits

    module = first_token_classifier(model) if first_token else Logits()
    with torch.no_grad():
        graph = ov.convert_model(module, example_input={n: sample[n] for n in names})
    for port in graph.inputs:  # the tracer may add its own names beside ours; keep ours alone
        port.get_tensor().set_names(port.get_names() & set(names))
    graph.outputs[0].get_tensor().set_names({"logits"})
    return graph


def _quantize(graph: Any, tokenizer, texts: list, verbose: bool) -> Any:
    """NNCF post-training int8 with static scales, its statistics gathered one row at a time
    (unpadded, so padding positions never widen a range). SmoothQuant (``TRANSFORMER``'s default),
    full bias correction, the ``KEEP_FP32`` projections left in fp32: on a 2-layer MiniLM SST-2
    tier the defaults kept 99.31% of predictions, this 99.77% (docs/models.md)."""
    nncf = require("nncf")
    names = {port.any_name for port in graph.inputs}
    rows = [
        {n: v for n, v in tokenizer(*_pair(t), truncation=True, return_tensors="np").items() if n in names}
        for t in texts
    ]
    with _quiet(verbose):
        return nncf.quantize(
            graph,
            nncf.Dataset(rows),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(rows),
            fast_bias_correction=False,  # slower export, fewer flipped predictions (docs/models.md)
            ignored_scope=nncf.IgnoredScope(patterns=[KEEP_FP32], validate=False),
        )


_RECIPE = {
    "tool": "nncf.quantize",
    "model_type": "TRANSFORMER",
    "fast_bias_correction": False,
    "kept_fp32": KEEP_FP32,
}


def _pair(text: str | tuple[str, str]) -> tuple[str, ...]:
    return (text,) if isinstance(text, str) else tuple(text)


def _calibration_texts(
    source: Path,
    config,
    check_data: str | Path | None,
    check_rows: int,
    calibration_data: str | Path | None,
    rows: int,
) -> tuple[list, dict[str, Any]]:
    """The rows NNCF calibrates on, and a record of which they are (never the rows ``source``
    held out of training: :func:`tango.splits.rows_outside_held_out`)."""
    from tango.splits import rows_outside_held_out

    if rows < 1:
        raise ValueError(f"calibration_rows must be at least 1, got {rows}")
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    file = calibration_data or check_data or training_file(source)
    if file is None:
        builtin = CHECK_SENTENCES[:rows]
        return builtin, {"source": "built-in sentences", "first_row": 0, "rows": len(builtin)}
    data = rows_outside_held_out(source, file, labels)
    first = 0
    # The check reads the first check_rows rows of check_data: calibrate on others where there are.
    if calibration_data is None and check_data is not None and len(data.texts) >= check_rows + rows:
        first = check_rows
    texts: list = list(data.texts[first : first + rows])
    overlaps = calibration_data is None and check_data is not None and first < check_rows
    record = {"source": data.source or str(file), "first_row": first, "rows": len(texts)}
    return texts, {**record, "overlaps_check": overlaps}


def _versions(int8: bool) -> dict[str, str]:
    versions = {"openvino": require("openvino").get_version()}
    if int8:
        versions["nncf"] = require("nncf").__version__
    return versions


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Hide the tracer's warnings, NNCF's log and progress bars, and transformers' notes."""
    if verbose:
        yield
        return
    from transformers.utils import logging as hf_logging

    nncf_logger = logging.getLogger("nncf")
    level, hf_level = nncf_logger.level, hf_logging.get_verbosity()
    nncf_logger.setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        nncf_logger.setLevel(level)
        hf_logging.set_verbosity(hf_level)
