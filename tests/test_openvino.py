"""OpenVINO export and runtime: the IR agrees with PyTorch, int8 answers do not depend on batch mates."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("openvino")
pytest.importorskip("nncf")
from tolerances import TINY_INT8_AGREEMENT, assert_close, assert_same_labels

from tango.cli import cli  # noqa: E402
from tango.export import CHECK_SENTENCES  # noqa: E402
from tango.openvino import IR_FILE, KEEP_FP32, OpenVinoRuntime, export_openvino, require  # noqa: E402
from tango.registry import registered  # noqa: E402
from tango.tiers import Tier  # noqa: E402

# Lengths from 1 to ~40 tokens, so batches of 3 and 32 pad differently.
TEXTS = CHECK_SENTENCES + ["a", "why ?", "the film " * 20, "i loved it", "the team lost the game"] * 2


def labelled_file(path, rows: int):
    texts = (CHECK_SENTENCES * (rows // len(CHECK_SENTENCES) + 1))[:rows]
    path.write_text("sentence\tlabel\n" + "".join(f"{t} {i}\t{i % 2}\n" for i, t in enumerate(texts)))
    return path


def test_fp32_ir_matches_pytorch_and_loads_by_auto(tiny_model_dir, tiny_openvino_dir):
    record = json.loads((tiny_openvino_dir / "tango_export.json").read_text())
    assert record["format"] == "openvino" and record["check"]["passed"] and not record["int8"]
    assert record["check"]["max_abs_diff"] < 1e-4 and "openvino" in record["versions"]
    assert {IR_FILE, "openvino_model.bin", "config.json", "tokenizer.json"} <= {
        p.name for p in tiny_openvino_dir.iterdir()
    }
    tier = Tier.from_pretrained(tiny_openvino_dir)  # no model.onnx, no record: the IR
    assert isinstance(tier.runtime, OpenVinoRuntime)
    reference = Tier.from_pretrained(tiny_model_dir, runtime="torch", precision="fp32")
    assert_close(tier.logits(TEXTS), reference.logits(TEXTS))


def test_int8_ir_is_quantized_and_records_its_calibration(tiny_openvino_int8_dir, tiny_openvino_dir):
    record = json.loads((tiny_openvino_int8_dir / "tango_export.json").read_text())
    assert record["int8"] and record["check"]["passed"] and "nncf" in record["versions"]
    assert record["calibration"] == {"source": "built-in sentences", "first_row": 0, "rows": 16}
    assert "FakeQuantize" in (tiny_openvino_int8_dir / IR_FILE).read_text()
    assert record["quantization"]["fast_bias_correction"] is False
    assert "FakeQuantize" not in (tiny_openvino_dir / IR_FILE).read_text()
    assert "int8 IR" in repr(Tier.from_pretrained(tiny_openvino_int8_dir))


def test_int8_keeps_the_feed_forward_output_projections_fp32(tiny_openvino_int8_dir):
    from tango.openvino import core

    graph = core().read_model(str(tiny_openvino_int8_dir / IR_FILE))
    inputs = {  # a Linear's MatMul -> the op types feeding it (activation, weight)
        op.get_friendly_name(): [op.input_value(i).get_node().get_type_name() for i in range(2)]
        for op in graph.get_ordered_ops()
        if op.get_type_name() == "MatMul" and "aten::linear" in op.get_friendly_name()
    }
    kept = {name for name in inputs if re.match(KEEP_FP32, name)}
    assert len(kept) == 2  # one per layer of the tiny model, the last cut to its first token
    assert any("last_layer.output.dense/" in name for name in kept)
    assert all("FakeQuantize" not in inputs[name] and inputs[name][1] == "Constant" for name in kept)
    assert all(inputs[name][0] == "FakeQuantize" for name in set(inputs) - kept)


@pytest.mark.parametrize("fixture", ["tiny_openvino_dir", "tiny_openvino_int8_dir"])
def test_a_rows_answer_does_not_depend_on_its_batch_mates(fixture, request):
    directory = request.getfixturevalue(fixture)
    answers = []
    for batch_size in (1, 3, 32):
        tier = Tier.from_pretrained(directory, runtime="openvino", batch_size=batch_size)
        answers.append((tier.predict(TEXTS), tier.predict_proba(TEXTS)))
    for _, probabilities in answers[1:]:
        assert_same_labels(probabilities, answers[0][1])
        assert_close(probabilities, answers[0][1])


def test_runtime_settings_follow_threads_and_precision(tiny_openvino_dir):
    from tango.openvino import bf16_supported

    runtime = OpenVinoRuntime(tiny_openvino_dir, threads=1)
    compiled = runtime.compiled
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(compiled.get_property("PERFORMANCE_HINT")) in ("THROUGHPUT", "PerformanceMode.THROUGHPUT")
    assert compiled.get_property("NUM_STREAMS") == 1 == runtime.streams  # one thread: one stream
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    latency = OpenVinoRuntime(tiny_openvino_dir, threads=2, streams=1).compiled
    assert str(latency.get_property("PERFORMANCE_HINT")) in ("LATENCY", "PerformanceMode.LATENCY")
    assert latency.get_property("NUM_STREAMS") == 1 and latency.get_property("INFERENCE_NUM_THREADS") == 2
    two = OpenVinoRuntime(tiny_openvino_dir, threads=2, streams=2)
    assert two.compiled.get_property("NUM_STREAMS") == 2 == two.streams
    assert two.compiled.get_property("INFERENCE_NUM_THREADS") == 2  # the threads in all, not per stream
    with pytest.raises(ValueError, match="streams"):
        OpenVinoRuntime(tiny_openvino_dir, streams=0)
    if bf16_supported():
        bf16 = OpenVinoRuntime(tiny_openvino_dir, threads=1, precision="bf16")
        assert str(bf16.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    with pytest.raises(ValueError, match="fp32 or bf16"):
        OpenVinoRuntime(tiny_openvino_dir, precision="bf16-autocast")


def test_threads_are_pinned_only_when_they_take_every_cpu(tiny_openvino_dir, monkeypatch):
    """Fewer threads than CPUs: another process shares the machine, and OpenVINO would pin both
    processes' threads from the first core."""
    from tango.runtimes import openvino as ov_runtime

    if not ov_runtime._has_property("ENABLE_CPU_PINNING"):
        pytest.skip("this OpenVINO CPU plugin has no pinning property")
    monkeypatch.setattr("tango.hardware.usable_cpus", lambda: 4)
    for threads, streams in ((1, None), (3, 1)):
        runtime = OpenVinoRuntime(tiny_openvino_dir, threads=threads, streams=streams)
        assert runtime.compiled.get_property("ENABLE_CPU_PINNING") is False
        assert runtime.latency.get_property("ENABLE_CPU_PINNING") is False
    whole = OpenVinoRuntime(tiny_openvino_dir, threads=4)
    assert "ENABLE_CPU_PINNING" not in whole.config  # OpenVINO's own choice


def test_compiled_models_are_cached_per_cpu_and_give_the_same_answers(
    tiny_openvino_dir, tmp_path, monkeypatch
):
    """The second load imports the compiled model OpenVINO cached at the first (no compile), and
    scores as a runtime without a cache does; ``off`` turns the cache off."""
    from tango.runtimes.openvino import CACHE_ENV, compiled_cache_dir

    ids = np.array([[1, 5, 6, 7, 2]])
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    monkeypatch.setenv(CACHE_ENV, "off")
    assert compiled_cache_dir() is None
    plain = OpenVinoRuntime(tiny_openvino_dir, threads=1)
    assert plain.cache is None
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "compiled"))
    where = compiled_cache_dir()
    assert where is not None and where.parent == tmp_path / "compiled"  # one folder per CPU model
    first = OpenVinoRuntime(tiny_openvino_dir, threads=1)
    blobs = sorted(where.glob("*/*.blob"))
    assert blobs, "the first compile writes the cache"
    second = OpenVinoRuntime(tiny_openvino_dir, threads=1)
    assert sorted(where.glob("*/*.blob")) == blobs  # the second found its blobs there
    assert all(compiled.get_property("LOADED_FROM_CACHE") for compiled in (second.compiled, second.latency))
    assert not first.latency.get_property("LOADED_FROM_CACHE")
    unsnipped = OpenVinoRuntime(tiny_openvino_dir, threads=1, snippets=False)  # new settings: compiled
    assert not unsnipped.latency.get_property("LOADED_FROM_CACHE")
    expected = plain.run(_inputs_of(plain, batch))
    for runtime in (first, second):
        np.testing.assert_array_equal(runtime.run(_inputs_of(runtime, batch)), expected)
    monkeypatch.delenv(CACHE_ENV)
    assert compiled_cache_dir().is_relative_to(Path(os.environ["TANGO_HOME"]))


def _inputs_of(runtime, batch):
    return {name: batch[name] for name in runtime.input_names if name in batch}


def test_calibration_rows_come_after_the_check_rows_when_the_file_has_them(tiny_model_dir, tmp_path):
    data = labelled_file(tmp_path / "train.tsv", 40)
    # which rows calibrate is the point here; a random tiny model may lose a row of 10 to int8
    options = {"int8": True, "check_data": data, "calibration_rows": 20, "min_agreement": 0.0}
    check = export_openvino(tiny_model_dir, tmp_path / "a", check_rows=10, **options)
    assert check.rows == 10 and check.onnx_accuracy is not None
    calibration = json.loads((tmp_path / "a" / "tango_export.json").read_text())["calibration"]
    assert calibration == {"source": str(data), "first_row": 10, "rows": 20, "overlaps_check": False}
    from transformers import AutoConfig

    from tango.openvino import _calibration_texts

    config = AutoConfig.from_pretrained(tiny_model_dir)  # 30 + 20 > 40 rows: they must overlap
    texts, calibration = _calibration_texts(tiny_model_dir, config, data, 30, None, 20)
    assert len(texts) == 20 and calibration["first_row"] == 0 and calibration["overlaps_check"] is True


def test_a_failed_check_raises_and_registers_nothing(tiny_model_dir, tmp_path):
    (tmp_path / "tango_runtimes.json").write_text("{}")  # a probe of what was there before
    with pytest.raises(ValueError, match="failed its self-check"):
        export_openvino(tiny_model_dir, tmp_path, min_agreement=1.01, name="bad-openvino")
    assert not json.loads((tmp_path / "tango_export.json").read_text())["check"]["passed"]
    assert "bad-openvino" not in registered() and not (tmp_path / "tango_runtimes.json").exists()


def test_missing_packages_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # makes `import nncf` raise ImportError
    with pytest.raises(ValueError, match=r"pip install tango\[openvino\]"):
        require("nncf")


def test_cli_exports_registers_and_probes(tiny_model_dir, tmp_path):
    data = labelled_file(tmp_path / "check.tsv", 30)
    out = tmp_path / "ov"
    args = ["export", str(tiny_model_dir), "--out", str(out), "--format", "openvino", "--int8"]
    # the random tiny model's rows sit near its decision boundary, where int8 flips a few
    # (tolerances.TINY_INT8_AGREEMENT): the flow is what is tested
    loose = ["--min-agreement", str(TINY_INT8_AGREEMENT)]
    result = CliRunner().invoke(cli, [*args, "--check-data", str(data), "--name", "tiny-ov", *loose])
    assert result.exit_code == 0, result.output
    assert "of 30 predictions equal" in result.output and "--runtime auto now loads openvino" in result.output
    assert registered()["tiny-ov"]["runtime"] == "openvino"
    probe = json.loads((out / "tango_runtimes.json").read_text())
    assert probe["rows"] == 30 and "only 30" in probe["data"]
    assert all(m["runtime"] == "openvino" for m in probe["runtimes"])  # the IR is all it holds
    for wrong in (args[:-1], args[:-3]):  # fp32 OpenVINO, ONNX: nothing to calibrate
        refused = CliRunner().invoke(cli, [*wrong, "--calibration-data", str(data)])
        assert refused.exit_code != 0 and "goes with --format openvino --int8" in refused.output


def test_streams_keep_every_batch_in_order_and_the_answers_of_one_stream(tiny_openvino_dir, monkeypatch):
    """Many batches go to the streams and come back in order, each row's logits as on one
    stream; a few batches run one at a time on all the threads."""
    one = Tier.from_pretrained(tiny_openvino_dir, precision="fp32", batch_size=2)
    one.runtime = OpenVinoRuntime(tiny_openvino_dir, threads=2, streams=1)
    two = Tier.from_pretrained(tiny_openvino_dir, precision="fp32", batch_size=2)
    two.runtime = OpenVinoRuntime(tiny_openvino_dir, threads=2, streams=2)
    assert one.runtime.streams == 1 and one.runtime.compiled is one.runtime.latency
    calls = []
    for tier in (one, two):
        for method in ("run", "run_batches"):
            original = getattr(tier.runtime, method)
            monkeypatch.setattr(
                tier.runtime,
                method,
                lambda *a, _f=original, _n=method, _s=tier.runtime.streams: calls.append((_s, _n)) or _f(*a),
            )
    expected = one.logits(TEXTS)  # 13 batches of 2: one stream, one at a time
    assert set(calls) == {(1, "run")}
    calls.clear()
    assert_close(two.logits(TEXTS), expected)  # >= 2 batches per stream
    assert calls == [(2, "run_batches")]
    assert_close(two.logits(TEXTS[::-1]), expected[::-1])
    calls.clear()
    assert_close(two.logits(TEXTS[:5]), expected[:5])  # 3 batches: too few
    assert set(calls) == {(2, "run")}
    assert two.logits([]).shape == (0, len(two.labels))
    batches = [{name: np.asarray(v) for name, v in b.items()} for b in _padded(two, TEXTS)]
    assert len(two.runtime.run_batches(iter(batches))) == len(batches)  # a generator is enough


def _padded(tier, texts):
    from tango.batching import pad_batch

    encodings = tier.tokenize(texts)
    return [pad_batch(encodings, rows, tier.tokenizer.pad_token_id or 0) for rows in tier.plan(encodings)]


def test_snippets_off_compiles_without_them_and_keeps_the_answers(tiny_openvino_dir):
    """``snippets=False`` reaches both compiled models; fp32 logits stay those of the default."""
    default = OpenVinoRuntime(tiny_openvino_dir, threads=2, precision="fp32")
    plain = OpenVinoRuntime(tiny_openvino_dir, threads=2, precision="fp32", snippets=False)

    def layers(compiled) -> set[str]:  # what the CPU plugin runs, after its own fusions
        return {op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops()}

    for compiled in (default.compiled, default.latency):
        assert "Subgraph" in layers(compiled) and "Softmax" not in layers(compiled)  # fused attention
    for compiled in (plain.compiled, plain.latency):
        assert "Subgraph" not in layers(compiled) and "Softmax" in layers(compiled)
    assert "snippets off" in plain.description and "snippets" not in default.description
    tiers = []
    for runtime in (default, plain):
        tier = Tier.from_pretrained(tiny_openvino_dir, precision="fp32")
        tier.runtime = runtime
        tiers.append(tier)
    assert_close(tiers[1].logits(TEXTS), tiers[0].logits(TEXTS))
    assert not Tier.from_pretrained(tiny_openvino_dir, runtime_options={"snippets": False}).runtime.snippets


def test_threads_sharing_a_runtime_each_get_their_own_batch_back(tiny_openvino_dir):
    """``run`` keeps a request per thread: concurrent calls never read each other's output."""
    from concurrent.futures import ThreadPoolExecutor

    from tango.batching import pad_batch

    tier = Tier.from_pretrained(tiny_openvino_dir, precision="fp32", batch_size=1)
    encodings = tier.tokenize(TEXTS)
    batches = [pad_batch(encodings, np.array([k]), tier.tokenizer.pad_token_id) for k in range(len(TEXTS))]
    expected = np.concatenate([tier.runtime.run(b) for b in batches])
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = np.concatenate(list(pool.map(tier.runtime.run, batches)))
            np.testing.assert_array_equal(got, expected)


def test_streams_get_the_costliest_batches_first(tiny_openvino_dir, monkeypatch):
    """The streams take batches most padded tokens first, and each row still gets its own logits."""
    tier = Tier.from_pretrained(tiny_openvino_dir, precision="fp32", batch_size=2)
    tier.runtime = OpenVinoRuntime(tiny_openvino_dir, threads=2, streams=2)
    one = Tier.from_pretrained(tiny_openvino_dir, precision="fp32", batch_size=2)
    one.runtime = OpenVinoRuntime(tiny_openvino_dir, threads=2, streams=1)
    given = []
    original = tier.runtime.run_batches

    def spy(batches):
        batches = list(batches)
        given.extend(b["input_ids"].shape for b in batches)
        return original(iter(batches))

    monkeypatch.setattr(tier.runtime, "run_batches", spy)
    assert_close(tier.logits(TEXTS), one.logits(TEXTS))
    costs = [rows * length for rows, length in given]
    assert len(given) == len(tier.plan(tier.tokenize(TEXTS))) and costs == sorted(costs, reverse=True)
    assert costs[0] > costs[-1]  # the texts' lengths differ, so the order is a real one
