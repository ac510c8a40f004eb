"""The last layer cut to the first token gives the model's own logits, and the export uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tolerances import assert_close
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tango.first_token import first_token_classifier, supports
from tests.tiny_models import build_tiny_classifier

SENTENCES = [
    "good",
    "the film was a wonderful mess of a story",
    "bad acting , dull plot and the worst day",
    "i loved it",
]


def _load(directory: Path):
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(directory)


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
@pytest.mark.parametrize("layers", [1, 3])
def test_same_logits_as_the_whole_model_on_padded_rows(tmp_path: Path, model_type: str, layers: int) -> None:
    model, tokenizer = _load(build_tiny_classifier(tmp_path, seed=3, layers=layers, model_type=model_type))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).min() < batch["attention_mask"].shape[1]  # padding is there
    with torch.no_grad():
        whole = model(**batch).logits
        cut = first_token_classifier(model)(**batch)
        again = model(**batch).logits
    assert_close(cut.numpy(), whole.numpy())  # the cut layer sums in another order
    torch.testing.assert_close(again, whole)  # the wrapper left the model as it was
    assert len(model.base_model.encoder.layer) == layers


def test_a_row_scores_the_same_alone_and_padded(tmp_path: Path) -> None:
    model, tokenizer = _load(build_tiny_classifier(tmp_path, seed=4, layers=2))
    cut = first_token_classifier(model)
    with torch.no_grad():
        padded = cut(**tokenizer(SENTENCES, padding=True, return_tensors="pt"))
        alone = cut(**tokenizer(SENTENCES[:1], return_tensors="pt"))
    assert_close(alone[0].numpy(), padded[0].numpy())


def test_architectures_it_does_not_know_are_refused(tmp_path: Path) -> None:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    sizes = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(dim=32, n_heads=2, hidden_dim=64, n_layers=1)
    )
    relative = BertForSequenceClassification(
        BertConfig(num_hidden_layers=1, position_embedding_type="relative_key", **sizes)
    )
    plain = BertForSequenceClassification(BertConfig(num_hidden_layers=1, **sizes))
    tokens = BertForTokenClassification(BertConfig(num_hidden_layers=1, **sizes))
    assert supports(plain)
    assert not supports(tokens)
    assert not supports(distil)
    assert not supports(relative)
    with pytest.raises(ValueError, match="no first-token form for DistilBertForSequenceClassification"):
        first_token_classifier(distil)
    with pytest.raises(ValueError, match="BertForTokenClassification .model type 'bert'.; known"):
        first_token_classifier(tokens)


def test_openvino_export_runs_the_feed_forward_on_one_token(tiny_openvino_dir: Path) -> None:
    """The IR's feed-forward matmuls: every layer's on all tokens but the last's, on the first."""
    ov = pytest.importorskip("openvino")
    from tango.openvino import IR_FILE

    graph = ov.Core().read_model(str(tiny_openvino_dir / IR_FILE))
    widths = [
        op.get_output_partial_shape(0)
        for op in graph.get_ordered_ops()
        if op.get_type_name() == "MatMul" and op.get_output_partial_shape(0).rank.get_length() == 3
    ]
    inner = max(shape[2].get_length() for shape in widths)  # the intermediate size
    ffn = [shape for shape in widths if shape[2].get_length() == inner]
    tokens = [shape[1] for shape in ffn]
    assert len(ffn) == 2  # the tiny model's two layers
    assert tokens[0].get_max_length() == -1  # any length
    assert tokens[-1].get_max_length() == 1  # the first token alone


def test_cli_exports_the_whole_last_layer_when_asked(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The default export records the cut; --whole-last-layer exports every token's last layer
    and says so; ONNX refuses the flag (it always exports the whole model)."""
    import json

    from click.testing import CliRunner

    pytest.importorskip("openvino")
    from tango.cli import cli

    def export(out: Path, *extra: str):
        args = ["export", str(tiny_model_dir), "--out", str(out), "--no-probe", *extra]
        return CliRunner().invoke(cli, args)

    cut, whole = tmp_path / "cut", tmp_path / "whole"
    assert export(cut, "--format", "openvino").exit_code == 0
    assert export(whole, "--format", "openvino", "--whole-last-layer").exit_code == 0
    assert json.loads((cut / "tango_export.json").read_text())["last_layer"] == "first token"
    assert json.loads((whole / "tango_export.json").read_text())["last_layer"] == "all tokens"
    refused = export(tmp_path / "onnx", "--whole-last-layer")
    assert refused.exit_code == 2 and "--whole-last-layer goes with --format openvino" in refused.output
    assert not (tmp_path / "onnx").exists()
