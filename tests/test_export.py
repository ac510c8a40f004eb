"""ONNX export: the graph agrees with PyTorch, and the directory is a tier that loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tolerances import TINY_ONNX_INT8_AGREEMENT

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
    check = export_tier(
        tiny_model_dir,
        tmp_path / "int8",
        int8=True,
        check_data=data,
        name="tiny-int8",
        min_agreement=TINY_ONNX_INT8_AGREEMENT,
    )
    assert check.passed and check.rows == len(CHECK_SENTENCES) and check.agreement >= TINY_ONNX_INT8_AGREEMENT
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


def test_the_check_never_reads_the_rows_the_tier_held_out(tiny_model_dir, tmp_path):
    """A recipe checks an export on the training file: the rows held out of training (every
    gate's and series' pool) stay unread, and the record says so."""
    import shutil

    from tiny_models import sentiment_rows, write_tsv

    from tango.data import load_labelled
    from tango.splits import carve_calibration_rows, record_training_file, rows_outside_held_out

    tier = shutil.copytree(tiny_model_dir, tmp_path / "tier")
    rows = sentiment_rows(300, 5)
    rows.texts[:] = [f"{i} {t}" for i, t in enumerate(rows.texts)]
    path = write_tsv(tmp_path / "train.tsv", rows)
    columns = {"text_column": None, "text_pair_column": None, "label_column": None}
    _, held = carve_calibration_rows(load_labelled(path), path, 100, 0, columns)
    record_training_file(tier, path, held)
    outside = rows_outside_held_out(tier, path, ["negative", "positive"])
    assert len(outside) == 200 and not set(outside.texts) & set(held.load().texts)
    check = export_tier(tier, tmp_path / "onnx", check_data=path, check_rows=1000, name="tiny-held")
    assert check.rows == 200 and "without the 100 rows held out of training" in check.source
    copy = write_tsv(tmp_path / "copy.tsv", rows)  # known by its bytes, not its name
    assert len(rows_outside_held_out(tier, copy, ["negative", "positive"])) == 200
    other = write_tsv(tmp_path / "other.tsv", sentiment_rows(300, 6))  # another file: every row may
    assert len(rows_outside_held_out(tier, other, ["negative", "positive"])) == 300
