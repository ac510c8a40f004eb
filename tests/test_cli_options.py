"""Options that do not apply to what a command is doing are refused before anything loads."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tango.cli import cli


@pytest.fixture
def early_exit_dir(tmp_path):
    """Only the marker file: a refusal must come before the model is read."""
    model = tmp_path / "ee"
    model.mkdir()
    (model / "early_exit.json").write_text("{}")
    return model


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\na good film\t1\na bad film\t0\n")
    return path


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--guarantee", "0.02"], "--guarantee does not apply"),
        (["--min-speedup", "2"], "--min-speedup does not apply"),
        (["--max-escalation", "0.1"], "--max-escalation does not apply"),
        (["--dev-fraction", "0.5"], "--dev-fraction does not apply"),
        (["--delta", "0.05"], "--delta does not apply"),
        (["--tier1", "distil", "--runtime", "onnx"], "--tier1, --runtime do not apply"),
        (["--guarantee", "0.02", "--max-escalation", "0.1"], "--max-escalation, --guarantee do not apply"),
    ],
)
def test_calibrate_refuses_cascade_options_on_an_early_exit_model(early_exit_dir, labelled, extra, named):
    result = CliRunner().invoke(cli, ["calibrate", str(early_exit_dir), "--dev", str(labelled), *extra])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "early-exit model" in result.output and "early_exit.json" in result.output


def test_calibrate_refuses_test_on_an_early_exit_model(early_exit_dir, labelled):
    args = ["calibrate", str(early_exit_dir), "--dev", str(labelled), "--test", str(labelled)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--test does not apply" in result.output


def test_calibrate_takes_defaults_it_does_not_use(early_exit_dir, labelled):
    """Options left at their defaults are not refused: the early-exit model is then read (and,
    here being only a marker file, fails for that reason)."""
    result = CliRunner().invoke(cli, ["calibrate", str(early_exit_dir), "--dev", str(labelled)])
    assert result.exit_code != 0
    assert "does not apply" not in result.output


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--teacher", "mpnet-base-sst2"], "--teacher does not apply to --early-exit training"),
        (["--layers", "2"], "--layers does not apply to --early-exit training"),
        (["--resume", "--layers", "2", "--teacher", "t"], "--teacher, --layers do not apply"),
    ],
)
def test_train_early_exit_refuses_tier_options(tmp_path, labelled, extra, named):
    args = ["train", "minilm", "--train", str(labelled), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--early-exit", "joint", *extra])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra", [["--exits", "1,2"], ["--pooling", "mean"], ["--device", "cuda"]])
def test_train_refuses_early_exit_options_without_early_exit(tmp_path, labelled, extra):
    args = ["train", "minilm", "--train", str(labelled), "--out", str(tmp_path / "out"), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"{extra[0]} does not apply to training a tier" in result.output


@pytest.mark.parametrize("resume", ["--resume", "--no-resume"])
def test_train_early_exit_takes_resume(tmp_path, labelled, resume):
    """Early-exit training checkpoints and resumes as a tier's does: both flags get past the
    checks (and it then fails here only because MODEL does not resolve)."""
    args = ["train", "no-such-model", "--train", str(labelled), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--early-exit", "joint", resume])
    assert result.exit_code == 1
    assert "does not apply" not in result.output and "no-such-model" in result.output
