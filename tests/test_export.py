"""ONNX export: the graph agrees with PyTorch, and the directory is a tier that loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tango.cli import cli
from tango.export import CHECK_SENTENCES, export_tier
from tango.registry import registered
from tango.tiers import Tier


def test_fp32_export_matches_pytorch(tiny_model_dir, tiny_onnx_dir):
    record = json.loads((tiny_onnx_dir / "tango_export.json").read_text())
    assert record["check"]["passed"] and record["check"]["max_abs_diff"] < 1e-4
    assert {"config.json", "model.onnx", "tokenizer.json"} <= {p.name for p in tiny_onnx_dir.iterdir()}
    torch_tier = Tier.from_pretrained(tiny_model_dir, runtime="torch", precision="fp32")
    onnx_tier = Tier.from_pretrained(tiny_onnx_dir)
    texts = CHECK_SENTENCES + ["a", "the film " * 20]  # lengths the check did not see
    np.testing.assert_allclose(onnx_tier.logits(texts), torch_tier.logits(texts), atol=1e-4)


def test_int8_export_keeps_predictions_on_labelled_check_data(tiny_model_dir, tmp_path):
    data = tmp_path / "check.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(CHECK_SENTENCES)))
    check = export_tier(tiny_model_dir, tmp_path / "int8", int8=True, check_data=data, name="tiny-int8")
    assert check.passed and check.rows == len(CHECK_SENTENCES) and check.agreement >= 0.995
    assert check.onnx_accuracy is not None
    assert json.loads((tmp_path / "int8" / "tango_export.json").read_text())["int8"] is True
    assert registered()["tiny-int8"]["runtime"] == "onnx"


def test_a_failed_check_raises_writes_its_report_and_registers_nothing(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("tango.export.FP32_TOLERANCE", -1.0)
    with pytest.raises(ValueError, match="failed its self-check"):
        export_tier(tiny_model_dir, tmp_path, name="bad-export")
    assert not json.loads((tmp_path / "tango_export.json").read_text())["check"]["passed"]
    assert "bad-export" not in registered()


def test_cli_export_prints_the_check(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_model_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "100.00% of 16 predictions equal" in result.output


def test_smoothing_changes_no_fp32_output(tiny_model_dir):
    import torch

    from tango.export import _load, _smooth

    model, tokenizer = _load(tiny_model_dir)
    batch = tokenizer(CHECK_SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
        after = _smooth(model, tokenizer)(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
