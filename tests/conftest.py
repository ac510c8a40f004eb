"""Fixtures shared by every test module.

- Every test session gets a private, empty ``$TANGO_HOME``: tests never read or write the user's
  model cache (``~/.cache/tango``), and what they register disappears with the session.
- ``tiny_model_dir``: a random-weight 2-layer BERT sequence classifier (hidden size 32, a ~130-word
  vocabulary from ``tiny_models.WORDS``, labels ``{0: "negative", 1: "positive"}``) saved as a
  PyTorch tier directory (``config.json``, ``model.safetensors``, tokenizer). Built in ~1 s.
- ``tiny_onnx_dir``: the same classifier exported by ``tango.export.export_tier`` (fp32 ONNX,
  fused graph, with its passed self-check in ``tango_export.json``).
- ``tiny_openvino_dir`` / ``tiny_openvino_int8_dir``: the same classifier exported to an OpenVINO
  IR, fp32 and NNCF int8 (skipped where ``openvino``/``nncf`` are not installed).

- ``held_out_tiers``: (train file, [tier 1, tier 2]) trained by ``tango train`` on one file, both
  holding out the same 150 calibration rows.

All are session-scoped and shared: copy them before changing their files.
Tests marked ``@pytest.mark.slow`` run only with ``pytest --runslow``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier, sentiment_rows, write_tsv

from tango.cli import cli

# Tiny models gain nothing from threads, and a second thread fights any other job on a 2-core box.
os.environ.setdefault("TANGO_THREADS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_tango_home(tmp_path_factory: pytest.TempPathFactory):
    patch = pytest.MonkeyPatch()
    patch.setenv("TANGO_HOME", str(tmp_path_factory.mktemp("tango_home")))
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """PyTorch in-process (training, reference logits) follows TANGO_THREADS too."""
    import torch

    torch.set_num_threads(int(os.environ["TANGO_THREADS"]))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer BERT classifier directory (negative/positive), PyTorch weights."""
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model_dir`` exported to fp32 ONNX (``model.onnx`` + config + tokenizer)."""
    from tango.export import export_tier

    out = tmp_path_factory.mktemp("tiny_onnx")
    export_tier(tiny_model_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_openvino_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model_dir`` exported to an fp32 OpenVINO IR."""
    pytest.importorskip("openvino")
    from tango.openvino import export_openvino

    out = tmp_path_factory.mktemp("tiny_openvino")
    export_openvino(tiny_model_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_openvino_int8_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model_dir`` exported to an OpenVINO IR quantized to int8 by NNCF."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from tolerances import TINY_INT8_AGREEMENT

    from tango.openvino import export_openvino

    out = tmp_path_factory.mktemp("tiny_openvino_int8")
    export_openvino(tiny_model_dir, out, int8=True, min_agreement=TINY_INT8_AGREEMENT)
    return out


@pytest.fixture(scope="session")
def held_out_tiers(tmp_path_factory):
    """Two tiny tiers trained by `tango train` on one file, each holding out the same 150 rows."""
    root = tmp_path_factory.mktemp("held")
    path = write_tsv(root / "train.tsv", sentiment_rows(500, 4))
    outs = []
    for k in range(2):
        start = build_tiny_classifier(root / f"start{k}", seed=k)
        out = root / f"tier{k + 1}"
        args = ["train", str(start), "--train", str(path), "--labels", "sst2", "--out", str(out)]
        args += ["--calibration-rows", "150", "--epochs", "1", "--batch-size", "32", "--no-bf16"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "held out 150 calibration rows of 500" in result.output
        outs.append(out)
    return path, outs
