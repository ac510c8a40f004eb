"""Tiers built from a config's [tier.NAME] recipes (`tango build`, issue #30): train, export and
probe as one re-runnable command, replacing the bash recipes."""

import json

import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier, sentiment_rows, write_tsv

from tango.cli import cli
from tango.recipes import read_recipes
from tango.registry import tango_home


def write_config(tmp_path, tier: str, extra: str = "") -> str:
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'data_root = "data"\n\n[rows.tiny]\ntrain = "train.tsv"\nlabels = "sst2"\n{extra}\n{tier}'
    )
    return str(config)


@pytest.fixture
def recipe_dir(tmp_path):
    (tmp_path / "data").mkdir()
    write_tsv(tmp_path / "data" / "train.tsv", sentiment_rows(120, seed=3))
    start = build_tiny_classifier(tmp_path / "start", seed=0)
    return tmp_path, start


def test_build_trains_exports_and_probes_once(recipe_dir):
    tmp_path, start = recipe_dir
    tier = f'[tier.tiny-built]\nuses = "tiny"\nmodel = "{start}"\nepochs = 1\nbatch_size = 32\nbf16 = false\n'
    config = write_config(tmp_path, tier + 'exports = ["onnx"]\n')
    dry = CliRunner().invoke(cli, ["build", config, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("would run") == 3 and not (tango_home() / "models" / "tiny-built").exists()
    result = CliRunner().invoke(cli, ["build", config])
    assert result.exit_code == 0, result.output
    out = tango_home() / "models" / "tiny-built"
    record = json.loads((out / "tango_train.json").read_text())
    assert record["train"].endswith("train.tsv") and record["config"]["epochs"] == 1
    assert json.loads((tango_home() / "models" / "tiny-built-onnx" / "tango_export.json").read_text())[
        "check"
    ]
    assert (tango_home() / "models" / "tiny-built-onnx" / "tango_runtimes.json").is_file()
    assert (tango_home() / "logs" / "tiny-built.log").stat().st_size > 0
    again = CliRunner().invoke(cli, ["build", config])  # re-runnable: every step is done
    assert again.exit_code == 0 and again.output.count("done ") == 3 and "0 step(s) run" in again.output


def test_an_early_exit_recipe_trains_and_calibrates_through_its_own_commands(recipe_dir):
    tmp_path, start = recipe_dir
    write_tsv(tmp_path / "data" / "dev.tsv", sentiment_rows(60, seed=4))
    tier = f'[tier.tiny-ee]\nuses = "tiny"\nmodel = "{start}"\nearly_exit = "sweet"\nexits = "1"\n'
    tier += 'pooling = "cls"\nepochs = 1\nbf16 = false\ncalibrate_dev = "dev.tsv"\n'
    config = write_config(tmp_path, tier)
    dry = CliRunner().invoke(cli, ["build", config, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"tango early-exit train {start} --mode sweet" in dry.output
    assert "tango early-exit calibrate" in dry.output and "--dev" in dry.output
    result = CliRunner().invoke(cli, ["build", config])
    assert result.exit_code == 0, result.output
    out = tango_home() / "models" / "tiny-ee"
    manifest = json.loads((out / "early_exit.json").read_text())
    assert manifest["mode"] == "sweet" and manifest["exits"] == [1, 2] and manifest["pooling"] == "cls"
    assert len(manifest["temperatures"]) == 2 and (out / "calibration" / "report.json").is_file()
    again = CliRunner().invoke(cli, ["build", config])
    assert again.exit_code == 0 and again.output.count("done ") == 2 and "0 step(s) run" in again.output


def test_a_failed_step_names_its_log(recipe_dir):
    tmp_path, start = recipe_dir
    (tmp_path / "data" / "empty.tsv").write_text("sentence\tlabel\n")
    config = write_config(tmp_path, f'[tier.tiny-bad]\nmodel = "{start}"\ntrain = "empty.tsv"\nepochs = 1\n')
    result = CliRunner().invoke(cli, ["build", config])
    assert result.exit_code == 1 and "tango train failed" in result.output and "tiny-bad.log" in result.output
    assert not (tango_home() / "models" / "tiny-bad" / "tango_train.json").exists()


@pytest.mark.parametrize(
    "table, message",
    [
        (
            '[tier.x]\nuses = "tiny"\nmodel = "minilm"\nepoch = 1\n',
            "['epoch'] not among tango train's options",
        ),
        ('[tier.x]\nuses = "other"\nmodel = "minilm"\n', "there is no [rows.other]"),
        (
            '[tier.x]\nuses = "tiny"\nmodel = "minilm"\nexports = ["tflite"]\n',
            "exports ['tflite'] are not among",
        ),
        ('[tier.x]\ntrain = "t.tsv"\n', "needs 'model'"),
        (
            '[tier.x]\nuses = "tiny"\nmodel = "minilm"\nearly_exit = "joint"\nteacher = "t"\n',
            "['teacher'] train tiers (tango train), not early-exit models",
        ),
        (
            '[tier.x]\nuses = "tiny"\nmodel = "minilm"\nexits = "1,2"\n',
            "['exits'] apply to early-exit models: set early_exit = MODE",
        ),
        (
            '[tier.x]\nuses = "tiny"\nmodel = "minilm"\ncalibrate_dev = "dev.tsv"\n',
            "['calibrate_dev'] apply to early-exit models",
        ),
        (
            '[tier.x]\nuses = "tiny"\nmodel = "minilm"\nearly_exit = "joint"\nexit = "1"\n',
            "['exit'] not among tango early-exit train's options",
        ),
    ],
)
def test_bad_recipes_are_refused_naming_the_table(tmp_path, table, message):
    config = write_config(tmp_path, table)
    with pytest.raises(ValueError, match="tiny.toml, \\[tier.x\\]") as error:
        read_recipes(config)
    assert message in str(error.value)


def test_the_committed_configs_read():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    recipes = {name: r for path in configs.glob("*.toml") for name, r in read_recipes(path).items()}
    assert {"mpnet-base-sst2-g30k", "minilm-l6-sst2-g30k-imdb", "mpnet-base-agnews", "minilm-l6-mrpc"} <= set(
        recipes
    )
    assert recipes["minilm-l6-sst2-g30k-imdb"].train["group_column"] == "containment"
    imdb = recipes["mpnet-base-imdb-pool4k"].steps(Path("home"))[0].args  # long steps, frequent saves
    assert imdb[imdb.index("--checkpoint-every") + 1] == "10"
    assert imdb[imdb.index("--max-length") + 1] == "256"
    # the IMDB transformer tiers train on one seeded budget of reviews, the same for both
    student = recipes["minilm-l6-imdb-pool4k"].steps(Path("home"))[0].args
    assert imdb[imdb.index("--train-rows") + 1] == student[student.index("--train-rows") + 1] == "2000"
    assert "--train-rows" not in recipes["linear-imdb-pool4k"].steps(Path("home"))[0].args
