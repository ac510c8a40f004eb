"""One parametrised check over every tier runtime, plus name resolution."""

import numpy as np
import pytest
from tiny_models import build_tiny_classifier
from tolerances import (
    FP32_REORDERED,
    INT8_DOT_PRODUCTS,
    INT8_SATURATES,
    TINY_ONNX_INT8_AGREEMENT,
    assert_close,
    assert_same_labels,
)

from tango.registry import register, resolve
from tango.tiers import Tier

TEXTS = [
    "the film was good",
    "awful boring mess",
    "i loved it",
    "what a waste of time really",
    "news about the stock market",
    "the team lost the game",
    "why ?",
    "a",
] * 4
PAIRS = [("a man and a woman", "they are at the market"), ("the game", "the team lost")] * 3


@pytest.fixture(scope="module")
def int8_dir(tiny_model_dir, tmp_path_factory):
    from tango.export import export_tier

    out = tmp_path_factory.mktemp("int8")
    export_tier(tiny_model_dir, out, int8=True, min_agreement=TINY_ONNX_INT8_AGREEMENT)
    return out


# (fixture, runtime, precision, tolerance on logits vs PyTorch fp32, minimum argmax agreement)
RUNTIMES = {
    "torch-fp32": (
        "tiny_model_dir",
        "torch",
        "fp32",
        FP32_REORDERED,
        1.0,
    ),  # other batches than the reference
    "torch-bf16": ("tiny_model_dir", "torch", "bf16", 0.5, 0.8),  # bf16 weights and activations
    "torch-bf16-autocast": ("tiny_model_dir", "torch", "bf16-autocast", 0.25, 0.8),
    "onnx-fp32": ("tiny_onnx_dir", "onnx", "auto", FP32_REORDERED, 1.0),
    "onnx-int8": ("int8_dir", "onnx", "auto", 1.0, 0.8),  # logits span about +-8 here
    "openvino-fp32": ("tiny_openvino_dir", "openvino", "fp32", FP32_REORDERED, 1.0),
    "openvino-int8": ("tiny_openvino_int8_dir", "openvino", "fp32", 3.0, 0.8),  # static scales
}


@pytest.fixture(params=sorted(RUNTIMES), scope="module")
def case(request, tiny_model_dir):
    fixture, runtime, precision, tolerance, agreement = RUNTIMES[request.param]
    tier = Tier.from_pretrained(
        request.getfixturevalue(fixture), runtime=runtime, precision=precision, batch_size=5
    )
    reference = Tier.from_pretrained(tiny_model_dir, runtime="torch", precision="fp32")
    return tier, reference, tolerance, agreement


def test_shapes_and_probabilities(case):
    tier = case[0]
    logits = tier.logits(TEXTS)
    assert logits.shape == (len(TEXTS), 2) and logits.dtype == np.float32
    np.testing.assert_allclose(tier.predict_proba(TEXTS).sum(axis=1), 1.0, rtol=1e-6)
    assert set(tier.predict(TEXTS)) <= {"negative", "positive"}


def expect_saturation(request) -> None:
    """An int8 case on a CPU without VNNI/AMX: expected to fail (tolerances.INT8_SATURATES)."""
    if "int8" in request.node.callspec.params["case"] and not INT8_DOT_PRODUCTS:
        request.applymarker(pytest.mark.xfail(reason=INT8_SATURATES, strict=False))


def test_matches_pytorch_fp32_on_the_same_weights(case, request):
    expect_saturation(request)
    tier, reference, tolerance, agreement = case
    for texts in (TEXTS, PAIRS):
        expected, got = reference.logits(texts), tier.logits(texts)
        assert np.abs(expected - got).max() <= tolerance
        if agreement == 1.0:  # fp32: every row whose label is clear of a tie keeps it
            assert_same_labels(got, expected, tolerance)
        else:
            assert (expected.argmax(1) == got.argmax(1)).mean() >= agreement


def test_input_order_survives_length_sorting(case):
    tier = case[0]
    one_by_one = np.concatenate([tier.logits([t]) for t in TEXTS[:8]])
    assert_close(tier.logits(TEXTS[:8]), one_by_one, max(case[2], FP32_REORDERED))


def test_empty_and_single_inputs(case):
    tier = case[0]
    assert tier.logits([]).shape == (0, 2)
    assert tier.predict("i loved it").shape == (1,)
    assert tier.predict([("a man", "a woman")]).shape == (1,)
    assert tier.predict(("good film", "dull mess")).shape == (2,)  # a tuple of texts is rows


def test_save_and_load_round_trip(case, tmp_path, request):
    expect_saturation(request)
    tier = case[0]
    tier.save_pretrained(tmp_path / "copy")
    again = Tier.from_pretrained(tmp_path / "copy", runtime="auto", precision="fp32")
    assert type(again.runtime) is type(tier.runtime)
    assert_close(again.logits(TEXTS), case[1].logits(TEXTS), max(case[2], FP32_REORDERED))


def test_padding_efficiency_and_truncation_are_reported(tiny_model_dir):
    tier = Tier.from_pretrained(tiny_model_dir, precision="fp32", max_length=6)
    encodings = tier.tokenize(["the film was good and fun and great", "i loved it"])
    assert encodings.truncated == 1 and encodings.lengths.tolist() == [6, 5]
    assert tier.padding_efficiency(encodings) == pytest.approx(11 / 12)  # one batch padded to 6
    assert tier.padding_efficiency(tier.tokenize([])) == 1.0


def test_bad_options_are_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="runtime must be one of"):
        Tier.from_pretrained(tiny_model_dir, runtime="tpu")
    with pytest.raises(ValueError, match="has no model.onnx"):
        Tier.from_pretrained(tiny_model_dir, runtime="onnx")
    with pytest.raises(ValueError, match="has no openvino_model.xml.*--format openvino"):
        Tier.from_pretrained(tiny_model_dir, runtime="openvino")
    with pytest.raises(ValueError, match="precision must be one of"):
        Tier.from_pretrained(tiny_model_dir, precision="int4")
    with pytest.raises(TypeError, match="list of strings"):
        Tier.from_pretrained(tiny_model_dir).predict([1, 2])


def test_names_resolve_directory_then_alias_then_hub(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TANGO_HOME", str(tmp_path))
    monkeypatch.setenv("TANGO_OFFLINE", "1")
    assert resolve(tiny_model_dir) == tiny_model_dir
    with pytest.raises(ValueError) as error:
        resolve("distil")
    message = str(error.value)
    assert (
        "alias 'distil'" in message and "minilm-l6-sst2" in message and "no tiers are registered" in message
    )
    register("minilm-l6-sst2", tiny_model_dir, role="tier")
    assert resolve("distil") == tiny_model_dir  # the alias falls back to the registered tier
    assert resolve("minilm-l6-sst2") == tiny_model_dir
    with pytest.raises(ValueError, match="local tiers registered here: minilm-l6-sst2"):
        resolve("no-such-model")


def test_shared_tokenizer_fingerprint(tiny_model_dir, tmp_path):
    other = Tier.from_pretrained(build_tiny_classifier(tmp_path / "b", seed=3, layers=1))
    tier = Tier.from_pretrained(tiny_model_dir)
    assert tier.tokenizer_fingerprint == other.tokenizer_fingerprint
    assert (
        tier.tokenizer_fingerprint != Tier.from_pretrained(tiny_model_dir, max_length=8).tokenizer_fingerprint
    )
    # kept between calls, and never stale: a changed limit or tokenizer is fingerprinted anew
    before = tier.tokenizer_fingerprint
    short = Tier.from_pretrained(tiny_model_dir, max_length=8)
    tier.max_length = 8
    assert tier.tokenizer_fingerprint == short.tokenizer_fingerprint
    tier.max_length = other.max_length
    assert tier.tokenizer_fingerprint == before
    from transformers import AutoTokenizer

    tier.tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tier.tokenizer.add_tokens(["zzyzx"])  # gives other ids
    assert tier.tokenizer_fingerprint != before


def test_bf16_casts_the_weights_once_and_autocast_keeps_them_fp32(tiny_model_dir):
    import torch

    cast = Tier.from_pretrained(tiny_model_dir, runtime="torch", precision="bf16")
    autocast = Tier.from_pretrained(tiny_model_dir, runtime="torch", precision="bf16-autocast")
    assert {p.dtype for p in cast.runtime.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in autocast.runtime.model.parameters()} == {torch.float32}
    assert cast.logits(TEXTS).dtype == np.float32  # bf16 logits come back as float32
    assert "bf16 weights" in repr(cast) and "bf16 autocast" in repr(autocast)
