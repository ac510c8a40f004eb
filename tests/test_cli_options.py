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


@pytest.mark.parametrize("extra", [[], ["--max-drop", "1"], ["--tier1", "distil", "--tier2", "large"]])
def test_calibrate_sends_an_early_exit_model_to_its_own_command(early_exit_dir, labelled, extra):
    result = CliRunner().invoke(cli, ["calibrate", str(early_exit_dir), "--dev", str(labelled), *extra])
    assert result.exit_code == 2, result.output
    assert "is an early-exit model" in result.output and "early_exit.json" in result.output
    assert f"tango early-exit calibrate {early_exit_dir} --dev FILE" in result.output


def test_run_sends_an_early_exit_model_to_its_own_command(early_exit_dir, labelled, tmp_path):
    args = ["run", "--cascade", str(early_exit_dir), "-i", str(labelled), "-o", str(tmp_path / "o.jsonl")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"tango early-exit run {early_exit_dir}" in result.output
    assert not (tmp_path / "o.jsonl").exists()


def test_train_sends_an_early_exit_model_to_its_own_command(early_exit_dir, labelled, tmp_path):
    args = ["train", str(early_exit_dir), "--train", str(labelled), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"tango early-exit train {early_exit_dir}" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "run"])
def test_the_old_early_exit_flag_names_the_new_commands(command, labelled, tmp_path):
    """The cascade verbs have no early-exit options; the flag they once took says where it went."""
    args = {
        "train": ["train", "minilm", "--train", str(labelled), "--out", str(tmp_path / "out")],
        "run": ["run", "-i", str(labelled), "-o", str(tmp_path / "o.jsonl")],
    }[command]
    result = CliRunner().invoke(cli, [*args, "--early-exit", "joint"])
    assert result.exit_code == 2, result.output
    assert "No such option '--early-exit': early-exit models have their own commands" in result.output
    assert "(`tango early-exit --help`)" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["train", "minilm", "--exits", "1,2"],
        ["train", "minilm", "--pooling", "mean"],
        ["train", "minilm", "--device", "cuda"],
        ["run", "--tiers", "a,b", "--policy", "patience"],
        ["run", "--tiers", "a,b", "--device", "cuda"],
        ["calibrate", "c", "--device", "cuda"],
    ],
)
def test_the_cascade_verbs_take_no_early_exit_options(args, labelled, tmp_path):
    extra = {
        "train": ["--train", str(labelled), "--out", str(tmp_path / "out")],
        "run": ["-i", str(labelled), "-o", str(tmp_path / "o.jsonl")],
        "calibrate": ["--dev", str(labelled)],
    }[args[0]]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 2 and f"No such option '{args[-2]}'" in result.output


@pytest.mark.parametrize(
    "extra", [["--teacher", "mpnet-base-sst2"], ["--layers", "2"], ["--unlabelled", "x.tsv"]]
)
def test_early_exit_train_takes_no_tier_options(tmp_path, labelled, extra):
    args = ["early-exit", "train", "minilm", "--train", str(labelled), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert f"No such option '{extra[0]}'" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("resume", ["--resume", "--no-resume"])
def test_early_exit_train_takes_resume(tmp_path, labelled, resume):
    """Early-exit training checkpoints and resumes as a tier's does: both flags get past the
    checks (and it then fails here only because MODEL does not resolve)."""
    args = ["early-exit", "train", "no-such-model", "--train", str(labelled), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--mode", "joint", resume])
    assert result.exit_code == 1
    assert "No such option" not in result.output and "no-such-model" in result.output
