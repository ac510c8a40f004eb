import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier

from tango.cascade import Cascade
from tango.cli import cli
from tango.engines.local import score_file
from tango.tiers import Tier

SENTENCES = [
    "the film was good",
    "awful boring mess",
    "i loved it",
    "news about the stock market",
    "the team lost the game",
    "a wonderful , funny story",
]


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    return build_tiny_classifier(root / "t1", seed=0), build_tiny_classifier(root / "t2", seed=1)


@pytest.fixture(scope="module")
def cascade(tier_dirs):
    return Cascade([Tier.from_pretrained(d, precision="fp32") for d in tier_dirs], thresholds=0.9)


def write_jsonl(path, n):
    with open(path, "w") as file:
        for i in range(n):
            file.write(json.dumps({"id": f"r{i}", "text": f"{SENTENCES[i % len(SENTENCES)]} {i}"}) + "\n")


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def test_every_row_is_scored_or_reported_in_order(cascade, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "i loved it"}),
        "{not json",
        json.dumps({"id": "b", "text": ""}),
        json.dumps({"id": "c", "text": "awful boring mess"}),
        json.dumps({"id": "d", "text": ["x"]}),
    ]
    source.write_bytes(
        ("\n".join(lines) + "\n").encode()
        + b'{"id": "e", "text": "caf\xe9"}\n'
        + json.dumps({"id": "f", "text": "the team lost"}).encode()
        + b"\n"
    )
    summary = score_file(
        cascade, source, tmp_path / "out.jsonl", id_column="id", chunk_size=2, progress=False
    )
    out = read_jsonl(tmp_path / "out.jsonl")
    errors = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [row["id"] for row in out] == ["a", "c", "f"]
    assert [(e["line"], e["field"]) for e in errors] == [(2, None), (3, "text"), (5, "text"), (6, None)]
    assert "malformed JSON" in errors[0]["error"] and "UTF-8" in errors[3]["error"]
    assert summary.rows_out + summary.errors == summary.rows_in == 7
    expected = cascade.predict(["i loved it", "awful boring mess", "the team lost"])
    assert [row["label"] for row in out] == list(expected)
    assert not (tmp_path / "out.jsonl.progress.json").exists()


def test_csv_output_with_probabilities_and_line_numbers_as_ids(cascade, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('sentence,label\n"i loved it, truly",1\nawful boring mess,0\nragged,row,here\n')
    summary = score_file(
        cascade, source, tmp_path / "out.csv", text_column="sentence", probabilities=True, progress=False
    )
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "id,label,confidence,tier,p_negative,p_positive"
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "3"]
    assert summary.errors == 1 and summary.rows_out == 2


def test_missing_column_stops_before_scoring(cascade, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("review,label\ngood,1\n")
    with pytest.raises(ValueError, match=r"no column 'text'.*'review', 'label'"):
        score_file(cascade, source, tmp_path / "out.jsonl", progress=False)
    assert not (tmp_path / "out.jsonl").exists()


def test_fail_mode_commits_the_rows_before_the_bad_one(cascade, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "i loved it"}\n{"text": "awful"}\n{"text": ""}\n{"text": "good"}\n')
    with pytest.raises(ValueError, match=r"line 3, field text: empty text.*2 rows scored"):
        score_file(cascade, source, tmp_path / "out.jsonl", on_error="fail", progress=False)
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 2


def test_skip_mode_reports_each_skipped_row(cascade, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "i loved it"}\n{"text": ""}\n')
    summary = score_file(cascade, source, tmp_path / "out.jsonl", on_error="skip", progress=False)
    assert summary.skipped == 1 and summary.rows_out == 1
    assert "in.jsonl:2 [text]: empty text" in capsys.readouterr().err


def test_existing_output_is_never_clobbered(cascade, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 3)
    (tmp_path / "out.jsonl").write_text("precious\n")
    with pytest.raises(ValueError, match="already exists"):
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "out.jsonl", progress=False)
    with pytest.raises(ValueError, match="no run manifest"):
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "out.jsonl", resume=True, progress=False)
    assert (tmp_path / "out.jsonl").read_text() == "precious\n"


def test_cli_reads_stdin_and_prints_a_summary(tier_dirs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "run",
            "--tier1",
            str(tier_dirs[0]),
            "--tier2",
            str(tier_dirs[1]),
            "--threshold",
            "0.8",
            "-i",
            "-",
            "--format",
            "jsonl",
            "-o",
            str(tmp_path / "out.jsonl"),
        ],
        input='{"text": "i loved it"}\n{"text": "awful boring mess"}\n',
    )
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 2
    assert "rows in: 2" in result.output and "tier 1: answered" in result.output


def test_cli_names_the_local_choices_for_unknown_models(tmp_path, monkeypatch):
    monkeypatch.setenv("TANGO_HOME", str(tmp_path))
    monkeypatch.setenv("TANGO_OFFLINE", "1")
    (tmp_path / "in.jsonl").write_text('{"text": "hi"}\n')
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--tier1",
            "distil",
            "--tier2",
            "large",
            "-i",
            str(tmp_path / "in.jsonl"),
            "-o",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert result.exit_code == 1
    assert "cannot resolve model 'distil'" in result.output and "minilm-l6-sst2" in result.output


def test_kill_9_then_resume_scores_every_row_exactly_once(tier_dirs, tmp_path):
    n = 4000
    write_jsonl(tmp_path / "in.jsonl", n)
    command = [
        sys.executable,
        "-m",
        "tango",
        "run",
        "--tier1",
        str(tier_dirs[0]),
        "--tier2",
        str(tier_dirs[1]),
        "--threshold",
        "0.9",
        "--id-column",
        "id",
        "-i",
        str(tmp_path / "in.jsonl"),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--chunk-size",
        "50",
        "--batch-size",
        "8",
        "-q",
    ]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    progress = tmp_path / "out.jsonl.progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if progress.exists() and json.loads(progress.read_text() or "{}").get("rows_in", 0) >= 500:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = json.loads(progress.read_text())["rows_in"]
    assert 0 < done_before < n
    with open(tmp_path / "out.jsonl", "ab") as file:  # a torn write after the last commit
        file.write(b'{"id": "r0", "lab')
    subprocess.run(command + ["--resume"], check=True)
    ids = [row["id"] for row in read_jsonl(tmp_path / "out.jsonl")]
    assert ids == [f"r{i}" for i in range(n)]
    assert not progress.exists()
