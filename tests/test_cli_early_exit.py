"""`tango early-exit train|calibrate|run` (tango/cli/early_exit.py): a multi-exit model trained,
calibrated and scored with by its own commands, found by directory or registered name; the
cascade commands send it here, and these send a cascade back."""

from __future__ import annotations

import json
import re
import shlex

import click
import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier, sentiment_rows, write_scoring_jsonl, write_tsv
from tolerances import FP32_REORDERED, assert_close

from tango.cli import cli
from tango.cli.early_exit import early_exit
from tango.confidence import softmax
from tango.early_exit import EarlyExitClassifier
from tango.jobs import load_early_exit
from tango.registry import registered_dir


@pytest.fixture(scope="module")
def ee_model(tmp_path_factory):
    """A two-layer multi-exit model trained by `tango early-exit train` on a tiny encoder,
    registered as ``ee-tiny``; (its directory, the training file, the command's output)."""
    root = tmp_path_factory.mktemp("ee-cli")
    base = build_tiny_classifier(root / "base", seed=0)
    train = write_tsv(root / "train.tsv", sentiment_rows(300, seed=0))
    out = root / "ee"
    args = ["early-exit", "train", str(base), "--train", str(train), "--labels", "sst2", "--out", str(out)]
    args += ["--name", "ee-tiny", "--mode", "joint", "--exits", "1", "--calibration-rows", "100"]
    result = CliRunner().invoke(
        cli, [*args, "--epochs", "6", "--batch-size", "16", "--lr", "1e-2", "--no-bf16"]
    )
    assert result.exit_code == 0, result.output
    return out, train, result.output


def test_train_writes_registers_and_holds_out_rows(ee_model):
    out, train, output = ee_model
    model = EarlyExitClassifier.from_pretrained(out)
    assert model.exits_ == (1, 2) and model.labels == ["negative", "positive"]
    assert model.model.pooling == "mean"
    manifest = json.loads((out / "early_exit.json").read_text())
    assert manifest["mode"] == "joint" and manifest["train_examples"] == 200, "100 rows held out"
    assert registered_dir("ee-tiny") == out
    assert "held out 100 calibration rows of 300" in output and "kept out of training" in output
    held = json.loads((out / "tango_train.json").read_text())["calibration_rows"]
    assert held["file"] == str(train) and held["rows"] == 100


def test_calibrate_and_run_by_registered_name(ee_model, tmp_path):
    out, _, _ = ee_model
    import shutil

    model_dir = tmp_path / "ee"
    shutil.copytree(out, model_dir)
    from tango.registry import register

    register("ee-tiny-copy", model_dir)  # calibration writes into the model: a copy of the shared one
    dev = write_tsv(tmp_path / "dev.tsv", sentiment_rows(120, seed=1))
    calibrated = CliRunner().invoke(cli, ["early-exit", "calibrate", "ee-tiny-copy", "--dev", str(dev)])
    assert calibrated.exit_code == 0, calibrated.output
    assert f"saved to {model_dir}" in calibrated.output
    temperatures = json.loads((model_dir / "early_exit.json").read_text())["temperatures"]
    assert len(temperatures) == 2 and temperatures != [1.0, 1.0]
    assert (model_dir / "calibration" / "report.json").is_file()

    write_scoring_jsonl(tmp_path / "in.jsonl", 30)
    texts = [json.loads(line)["text"] for line in (tmp_path / "in.jsonl").read_text().splitlines()]
    model = load_early_exit(str(model_dir), batch_size=8)  # as the CLI loads it
    first = model.exit_logits(texts)[0] / model.temperatures[0]  # exit 1, calibrated: (N, K)
    confidence = softmax(first).max(axis=1)
    threshold = float(np.round(np.median(confidence), 4))  # about half the rows leave at exit 1
    inout = ["-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--probabilities"]
    args = ["early-exit", "run", "ee-tiny-copy", *inout, "--threshold", str(threshold), "--batch-size", "8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    model.threshold = threshold
    expected = model.predict_detailed(texts)
    assert [row["id"] for row in rows] == [f"r{i}" for i in range(30)]
    assert [row["label"] for row in rows] == expected.labels.tolist()
    assert [row["exit_layer"] for row in rows] == expected.exit_layer.tolist()
    assert set(expected.exit_layer.tolist()) == {1, 2}, "rows leave at both exits"
    probabilities = [[row["p_negative"], row["p_positive"]] for row in rows]
    assert_close(probabilities, expected.probabilities, FP32_REORDERED)  # as written: 6 decimals
    assert "mean exit layer" in result.output


def test_the_cascade_commands_send_it_here(ee_model, tmp_path):
    out, train, _ = ee_model
    runner = CliRunner()
    calibrate = runner.invoke(cli, ["calibrate", "ee-tiny", "--dev", str(train)])
    assert calibrate.exit_code == 2 and "tango early-exit calibrate ee-tiny --dev FILE" in calibrate.output
    run = runner.invoke(cli, ["run", "--cascade", str(out), "-i", str(train), "-o", str(tmp_path / "o.csv")])
    assert run.exit_code == 2 and f"tango early-exit run {out}" in run.output
    train_again = runner.invoke(
        cli, ["train", "ee-tiny", "--train", str(train), "--out", str(tmp_path / "t")]
    )
    assert train_again.exit_code == 2 and "tango early-exit train ee-tiny" in train_again.output
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "t").exists()
    # named as a tier, its encoder would load with an untrained head: refused, not scored
    as_tier = runner.invoke(
        cli,
        ["run", "--tier1", "ee-tiny", "--tier2", str(out), "-i", str(train), "-o", str(tmp_path / "t.csv")],
    )
    assert as_tier.exit_code == 1 and "is an early-exit model" in as_tier.output
    assert "tango early-exit run" in as_tier.output and not (tmp_path / "t.csv").exists()


def test_these_commands_send_a_cascade_back(tmp_path):
    from tango.cascade import Cascade
    from tango.tiers import Tier

    tiers = [Tier.from_pretrained(build_tiny_classifier(tmp_path / f"t{k}", seed=k)) for k in range(2)]
    Cascade(tiers, thresholds=0.9).save_pretrained(tmp_path / "cascade")
    dev = write_tsv(tmp_path / "dev.tsv", sentiment_rows(20, seed=1))
    runner = CliRunner()
    calibrate = runner.invoke(cli, ["early-exit", "calibrate", str(tmp_path / "cascade"), "--dev", str(dev)])
    assert calibrate.exit_code == 2, calibrate.output
    assert "is not an early-exit model" in calibrate.output
    assert f"tango calibrate {tmp_path / 'cascade'}" in calibrate.output
    args = ["early-exit", "run", str(tmp_path / "cascade"), "-i", str(dev), "-o", str(tmp_path / "o.csv")]
    run = runner.invoke(cli, args)
    assert run.exit_code == 2 and f"tango run --cascade {tmp_path / 'cascade'}" in run.output
    assert not (tmp_path / "o.csv").exists()


def test_run_checks_its_files_before_the_model_loads(tmp_path):
    """A missing input fails on the path, not on the (missing) model."""
    args = [
        "early-exit",
        "run",
        "no-such-model",
        "-i",
        str(tmp_path / "none.csv"),
        "-o",
        str(tmp_path / "o.csv"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "none.csv" in result.output and "no-such-model" not in result.output


def test_the_python_api_refuses_what_a_multi_exit_training_does_not_take(tmp_path):
    from tango.jobs import train_exits

    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(40, seed=0))
    with pytest.raises(TypeError, match=r"takes no \['teacher'\]"):
        train_exits("minilm", str(train), str(tmp_path / "out"), teacher="mpnet-base-sst2")


def help_examples(command: click.Command) -> list[str]:
    """The `tango ...` lines of a command's --help examples, continuation lines joined."""
    text = (command.help or "").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("tango ")]


@pytest.mark.parametrize(
    "name", ["early-exit", *(f"early-exit {sub}" for sub in ("train", "calibrate", "run"))]
)
def test_every_help_example_parses(name):
    """Each command shows examples, and every option an example uses exists."""
    command = early_exit if name == "early-exit" else early_exit.commands[name.split()[1]]
    examples = help_examples(command)
    assert examples, f"tango {name} --help shows no example"
    for example in examples:
        words = shlex.split(example)[1:]
        assert words[0] == "early-exit" and words[1] in early_exit.commands, example
        sub = early_exit.commands[words[1]]
        known = {opt for param in sub.params for opt in param.opts + param.secondary_opts}
        used = {word for word in words[2:] if re.match(r"-{1,2}[a-z]", word)}
        assert used <= known, f"{example}: unknown options {sorted(used - known)}"
