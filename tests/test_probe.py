"""The runtime of a tier is chosen once: the probe records, ``runtime="auto"`` follows the record.

These tests check the mechanism on tiny models; they never assert a speed.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier

from tango.cli import cli
from tango.export import CHECK_SENTENCES
from tango.probe import RECORD_FILE, choose, probe_tier, read_record, recorded_options
from tango.tiers import OnnxRuntime, Tier, TorchRuntime, bf16_supported


@pytest.fixture
def onnx_and_torch_dir(tiny_model_dir, tiny_onnx_dir, tmp_path):
    """One directory holding the same classifier as PyTorch weights and as model.onnx."""
    directory = tmp_path / "both"
    shutil.copytree(tiny_onnx_dir, directory)
    shutil.copy2(tiny_model_dir / "model.safetensors", directory)
    return directory


def rewrite(directory, change) -> None:
    """Edit the probe record in place (to test the choice, not the clock)."""
    record = json.loads((directory / RECORD_FILE).read_text())
    change(record)
    (directory / RECORD_FILE).write_text(json.dumps(record))


def test_the_record_holds_each_runtime_with_its_speed_and_agreement(onnx_and_torch_dir):
    record = probe_tier(onnx_and_torch_dir, rows=40)
    assert json.loads((onnx_and_torch_dir / RECORD_FILE).read_text()) == record
    measured = {(m["runtime"], m["precision"]) for m in record["runtimes"]}
    expected = {("torch", "fp32"), ("onnx", "auto")}
    if bf16_supported():
        expected |= {("torch", "bf16"), ("torch", "bf16-autocast")}
    assert measured == expected
    for m in record["runtimes"]:
        assert m["rows_per_s"] > 0 and 0 <= m["agreement"] <= 1 and m["error"] is None
        assert m["passed"] == (m["agreement"] >= 0.995)
    assert record["rows"] == 40 and "repeated to 40 rows" in record["data"]  # no data file given
    assert record["threads"] == 1 and {"torch", "onnxruntime"} <= set(record["versions"])
    assert record["machine"]["cpu"] and record["date"]
    assert (record["chosen"]["runtime"], record["chosen"]["precision"]) in measured


def test_auto_follows_the_fastest_passing_record(onnx_and_torch_dir):
    probe_tier(onnx_and_torch_dir, rows=20)

    def make_fastest(runtime, precision):
        def change(record):
            for m in record["runtimes"]:
                fastest = (m["runtime"], m["precision"]) == (runtime, precision)
                m["rows_per_s"] = 1e6 if fastest else 10.0

        return change

    rewrite(onnx_and_torch_dir, make_fastest("torch", "fp32"))
    tier = Tier.from_pretrained(onnx_and_torch_dir)  # model.onnx is there, but torch was faster
    assert isinstance(tier.runtime, TorchRuntime) and tier.runtime.precision == "fp32"
    rewrite(onnx_and_torch_dir, make_fastest("onnx", "auto"))
    assert isinstance(Tier.from_pretrained(onnx_and_torch_dir).runtime, OnnxRuntime)
    # precision="auto" on PyTorch follows the record too
    rewrite(onnx_and_torch_dir, make_fastest("torch", "fp32"))
    assert Tier.from_pretrained(onnx_and_torch_dir, runtime="torch").runtime.precision == "fp32"


def test_a_runtime_failing_agreement_is_never_chosen(tiny_model_dir, tmp_path):
    """An IR of *another* model (seed 1) beside seed 0's weights: a real, low agreement."""
    pytest.importorskip("openvino")
    from tango.openvino import export_openvino

    other = build_tiny_classifier(tmp_path / "other", seed=1)
    export_openvino(other, tmp_path / "other-ir", min_agreement=0.0)
    directory = tmp_path / "mixed"
    shutil.copytree(tiny_model_dir, directory)
    for name in ("openvino_model.xml", "openvino_model.bin"):
        shutil.copy2(tmp_path / "other-ir" / name, directory)
    texts = CHECK_SENTENCES + ["the film was good", "awful boring mess", "i loved it", "the team lost"]
    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\tpositive\n" for t in texts))
    record = probe_tier(directory, data=data)
    openvino = [m for m in record["runtimes"] if m["runtime"] == "openvino"]
    assert openvino and all(not m["passed"] and m["agreement"] < 0.995 for m in openvino)

    def openvino_fastest(record):
        for m in record["runtimes"]:
            m["rows_per_s"] = 1e9 if m["runtime"] == "openvino" else 1.0

    rewrite(directory, openvino_fastest)
    assert choose(directory, "auto", "auto")[0] == "torch"
    assert isinstance(Tier.from_pretrained(directory).runtime, TorchRuntime)


def test_without_a_valid_record_the_default_rule_holds(onnx_and_torch_dir, tiny_model_dir, tmp_path):
    assert choose(onnx_and_torch_dir, "auto", "auto") == ("onnx", "auto")  # no record yet
    autocast = "bf16-autocast" if bf16_supported() else "fp32"
    assert choose(tiny_model_dir, "auto", "auto") == ("torch", autocast)
    probe_tier(onnx_and_torch_dir, rows=20)
    assert read_record(onnx_and_torch_dir) is not None
    rewrite(onnx_and_torch_dir, lambda r: r["machine"].update(cpu="another CPU"))  # speeds don't travel
    assert read_record(onnx_and_torch_dir) is None
    assert choose(onnx_and_torch_dir, "auto", "auto") == ("onnx", "auto")
    probe_tier(onnx_and_torch_dir, rows=20)
    (onnx_and_torch_dir / "model.onnx").write_bytes(b"")  # a re-export voids the record
    assert read_record(onnx_and_torch_dir) is None


def test_probe_reads_the_data_file_and_says_when_it_is_short(tiny_model_dir, tmp_path):
    directory = shutil.copytree(tiny_model_dir, tmp_path / "tier")
    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\tnegative\n" for t in CHECK_SENTENCES[:12]))
    record = probe_tier(directory, data=data, rows=1000)
    assert record["rows"] == 12 and "the file has only 12" in record["data"]


def test_an_export_without_its_source_cannot_be_probed(tiny_onnx_dir, tmp_path):
    directory = shutil.copytree(tiny_onnx_dir, tmp_path / "orphan")
    rewrite_export = json.loads((directory / "tango_export.json").read_text())
    rewrite_export["source"] = str(tmp_path / "gone")
    (directory / "tango_export.json").write_text(json.dumps(rewrite_export))
    with pytest.raises(ValueError, match="no PyTorch weights"):
        probe_tier(directory, rows=10)


def test_cli_probe_prints_the_table_and_the_choice(tiny_model_dir, tmp_path):
    directory = shutil.copytree(tiny_model_dir, tmp_path / "tier")
    result = CliRunner().invoke(cli, ["probe", str(directory), "--rows", "20"])
    assert result.exit_code == 0, result.output
    assert "runtimes on 20 rows of built-in sentences" in result.output
    assert "torch" in result.output and "--runtime auto now loads torch" in result.output
    assert (directory / RECORD_FILE).exists()


def test_openvino_is_measured_with_and_without_snippets_and_auto_takes_the_faster(
    tiny_model_dir, tiny_openvino_dir, tmp_path
):
    pytest.importorskip("openvino")
    import tango.openvino as openvino

    directory = shutil.copytree(tiny_openvino_dir, tmp_path / "ir")
    rewrite_export = json.loads((directory / "tango_export.json").read_text())
    rewrite_export["source"] = str(tiny_model_dir)  # the fp32 reference the probe compares with
    (directory / "tango_export.json").write_text(json.dumps(rewrite_export))
    record = probe_tier(directory, rows=20)
    precisions = ["fp32", "bf16"] if openvino.bf16_supported() else ["fp32"]
    measured = [(m["runtime"], m["precision"], m["options"]) for m in record["runtimes"]]
    assert measured == [("openvino", p, o) for p in precisions for o in ({}, {"snippets": False})]
    assert all("snippets off" in m["description"] for m in record["runtimes"] if m["options"])

    def fastest(snippets_off: bool):
        def change(record):
            for m in record["runtimes"]:
                wanted = m["precision"] == "fp32" and bool(m["options"]) == snippets_off
                m["rows_per_s"], m["passed"] = (1e6 if wanted else 10.0), True

        return change

    rewrite(directory, fastest(snippets_off=True))
    assert recorded_options(directory, "openvino", "fp32") == {"snippets": False}
    tier = Tier.from_pretrained(directory)
    assert tier.runtime.precision == "fp32" and tier.runtime.snippets is False
    assert Tier.from_pretrained(directory, runtime_options={}).runtime.snippets is True  # asked for
    rewrite(directory, fastest(snippets_off=False))
    assert Tier.from_pretrained(directory).runtime.snippets is True
    with pytest.raises(ValueError, match="OpenVINO's; runtime torch takes none"):
        Tier.from_pretrained(tiny_model_dir, runtime_options={"snippets": False})
