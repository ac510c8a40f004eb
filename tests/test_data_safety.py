"""Regression tests for issue #11: `tango run` never deletes what it did not write, resumes only
the same job, locks its output, and gives one-line errors. One test (or more) per numbered case."""

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from tiny_models import SCORING_TEXTS, build_tiny_classifier, two_tiny_tiers, write_scoring_jsonl
from tolerances import assert_close, assert_same_where_clear, clear_of

from tango.cascade import Cascade
from tango.cli import cli
from tango.engines.local import score_file
from tango.locks import OutputLock
from tango.tiers import Tier

TEXTS = SCORING_TEXTS


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    return two_tiny_tiers(tmp_path_factory.mktemp("safety"))


@pytest.fixture(scope="module")
def cascade(tier_dirs):
    return Cascade([Tier.from_pretrained(d, precision="fp32") for d in tier_dirs], thresholds=0.9)


write_jsonl = write_scoring_jsonl


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def run_cli(tier_dirs, *args):
    base = ["run", "--tier1", str(tier_dirs[0]), "--tier2", str(tier_dirs[1]), "--threshold", "0.9", "-q"]
    return CliRunner().invoke(cli, base + [str(a) for a in args])


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# 1. --errors never deletes an existing file without --overwrite, and never the input
def test_errors_path_naming_the_input_is_refused_and_nothing_is_touched(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    before = snapshot(tmp_path)
    result = run_cli(
        tier_dirs, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--errors", tmp_path / "in.jsonl"
    )
    assert result.exit_code == 1 and "is the input file" in result.output
    assert snapshot(tmp_path) == before


def test_existing_errors_file_not_written_by_tango_is_kept(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    (tmp_path / "notes.jsonl").write_text("mine\n")
    for extra in ([], ["--overwrite"]):
        result = run_cli(
            tier_dirs,
            "-i",
            tmp_path / "in.jsonl",
            "-o",
            tmp_path / "o.jsonl",
            "--errors",
            tmp_path / "notes.jsonl",
            *extra,
        )
        assert result.exit_code == 1 and "never replaces a file it did not write" in result.output
    assert (tmp_path / "notes.jsonl").read_text() == "mine\n"
    assert not (tmp_path / "o.jsonl").exists()


# 2. --overwrite checks everything first, and never replaces the input
def test_overwrite_of_the_input_is_refused(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    before = snapshot(tmp_path)
    result = run_cli(tier_dirs, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "in.jsonl", "--overwrite")
    assert result.exit_code == 1 and "is the input file" in result.output
    os.link(tmp_path / "in.jsonl", tmp_path / "hardlink.jsonl")  # the same file under another name
    result = run_cli(tier_dirs, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "hardlink.jsonl", "--overwrite")
    assert result.exit_code == 1 and "is the input file" in result.output
    assert (tmp_path / "in.jsonl").read_bytes() == before["in.jsonl"]


def test_overwrite_with_a_bad_column_keeps_the_previous_output(cascade, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "prev.jsonl", progress=False)
    before = (tmp_path / "prev.jsonl").read_bytes()
    with pytest.raises(ValueError, match="no column 'typo'"):
        score_file(
            cascade,
            tmp_path / "in.jsonl",
            tmp_path / "prev.jsonl",
            text_column="typo",
            overwrite=True,
            progress=False,
        )
    assert (tmp_path / "prev.jsonl").read_bytes() == before


def test_overwrite_replaces_the_output_and_its_own_errors_file(cascade, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "i loved it"}\n{"text": ""}\n')
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    assert len(read_jsonl(tmp_path / "o.jsonl.errors.jsonl")) == 1
    (tmp_path / "in.jsonl").write_text('{"text": "i loved it"}\n{"text": "awful"}\n')
    summary = score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", overwrite=True, progress=False)
    assert summary.rows_out == 2 and len(read_jsonl(tmp_path / "o.jsonl")) == 2
    assert not (tmp_path / "o.jsonl.errors.jsonl").exists()  # the old run's errors are gone with it


# 3. --resume continues only the same job
@pytest.fixture
def interrupted(cascade, tmp_path, monkeypatch):
    """A run stopped after its first chunk (of 10 rows) by an error in the model."""
    write_jsonl(tmp_path / "in.jsonl", 40)
    calls = {"n": 0}
    original = Cascade.predict_detailed

    def crash_on_second_chunk(self, texts, progress=False):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return original(self, texts, progress)

    monkeypatch.setattr(Cascade, "predict_detailed", crash_on_second_chunk)
    with pytest.raises(RuntimeError, match="power cut"):
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.csv", chunk_size=10, progress=False)
    monkeypatch.setattr(Cascade, "predict_detailed", original)
    assert (tmp_path / "o.csv.progress.json").exists()
    return tmp_path


def test_resume_of_the_same_job_finishes_it(cascade, interrupted):
    summary = score_file(
        cascade, interrupted / "in.jsonl", interrupted / "o.csv", chunk_size=10, resume=True, progress=False
    )
    rows = (interrupted / "o.csv").read_text().splitlines()
    assert summary.rows_out == 40 and len(rows) == 41 and rows[1].startswith("r0,")
    manifest = json.loads((interrupted / "o.csv.run.json").read_text())
    assert manifest["summary"]["rows_out"] == 40 and not (interrupted / "o.csv.progress.json").exists()


@pytest.mark.parametrize(
    "change", ["shorter input", "other input", "touched input", "probabilities", "threshold", "model"]
)
def test_resume_refuses_a_different_job_and_says_what_differs(
    cascade, tier_dirs, interrupted, change, tmp_path_factory
):
    source, kwargs, model = interrupted / "in.jsonl", {}, cascade
    if change == "shorter input":
        write_jsonl(source, 30)
    elif change == "other input":
        write_jsonl(interrupted / "other.jsonl", 40, start=100)
        source = interrupted / "other.jsonl"
    elif change == "touched input":
        stat = os.stat(source)
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    elif change == "probabilities":
        kwargs["probabilities"] = True
    elif change == "threshold":
        model = Cascade(cascade.tiers, thresholds=0.5)
    else:  # the alias now resolves to another model: same name, other files
        other = build_tiny_classifier(tmp_path_factory.mktemp("other"), seed=7)
        model = Cascade([cascade.tiers[0], Tier.from_pretrained(other, precision="fp32")], thresholds=0.9)
    before = (interrupted / "o.csv").read_bytes()
    expected = {
        "shorter input": "input.size",
        "other input": "input.path",
        "touched input": "input.mtime_ns",
        "probabilities": "options.probabilities",
        "threshold": "model.thresholds",
        "model": "model.tiers[2]",
    }
    with pytest.raises(
        ValueError, match=r"cannot resume .*" + expected[change].replace("[", r"\[").replace("]", r"\]")
    ):
        score_file(model, source, interrupted / "o.csv", chunk_size=10, resume=True, progress=False, **kwargs)
    assert (interrupted / "o.csv").read_bytes() == before


def test_resume_from_stdin_is_refused(tier_dirs, tmp_path):
    result = run_cli(tier_dirs, "-i", "-", "--format", "jsonl", "-o", tmp_path / "o.jsonl", "--resume")
    assert result.exit_code == 1 and "cannot resume from stdin" in result.output


# 4. one run at a time per output
def test_a_second_run_on_a_locked_output_fails_and_touches_nothing(cascade, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    before = snapshot(tmp_path)
    with OutputLock(tmp_path / "o.jsonl.lock"):  # as a run in progress holds it
        for kwargs in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(ValueError, match="being written by another tango run"):
                score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False, **kwargs)
        assert {k: v for k, v in snapshot(tmp_path).items() if k != "o.jsonl.lock"} == before
    assert not (tmp_path / "o.jsonl.lock").exists()


def test_two_processes_on_one_output_never_mix_rows(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 3000)
    tiers = ["--tier1", str(tier_dirs[0]), "--tier2", str(tier_dirs[1]), "--threshold", "0.9"]
    paths = ["-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    command = [sys.executable, "-m", "tango", "run", *tiers, *paths, "--chunk-size", "50", "-q"]
    first = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "o.jsonl.progress.json").exists():
        time.sleep(0.02)
    second = subprocess.run(command + ["--overwrite"], capture_output=True, text=True)
    assert first.wait() == 0
    assert second.returncode == 1 and "being written by another tango run" in second.stderr
    ids = [row["id"] for row in read_jsonl(tmp_path / "o.jsonl")]
    assert ids == [f"r{i}" for i in range(3000)]


# 5. answers do not depend on batch or chunk composition
def test_answers_do_not_depend_on_batch_or_chunk_size(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 203)
    outputs = []
    for batch_size, chunk_size in ((32, 1024), (1, 7), (5, 64), (64, 50)):
        tiers = [Tier.from_pretrained(d, precision="fp32", batch_size=batch_size) for d in tier_dirs]
        out = tmp_path / f"o_{batch_size}_{chunk_size}.jsonl"
        score_file(Cascade(tiers, thresholds=0.9), tmp_path / "in.jsonl", out, chunk_size=chunk_size,
                   probabilities=True, progress=False)  # fmt: skip
        outputs.append(read_jsonl(out))
    first = outputs[0]
    tier1 = Tier.from_pretrained(tier_dirs[0], precision="fp32").predict_proba(
        [json.loads(line)["text"] for line in open(tmp_path / "in.jsonl")]
    )
    clear = clear_of(tier1.max(axis=1), 0.9)  # routing can flip only for rows at the threshold
    for other in outputs[1:]:
        assert [r["id"] for r in other] == [r["id"] for r in first]
        decisions = [[(r["label"], r["tier"]) for r in rows] for rows in (other, first)]
        assert_same_where_clear(*decisions, clear)
        assert_close([r["confidence"] for r in other], [r["confidence"] for r in first])


# 6. long CSV texts are truncated, not dropped
def test_a_csv_text_longer_than_the_csv_field_limit_is_scored(cascade, tmp_path):
    long_text = "good " * 40_000  # 200,000 characters
    (tmp_path / "in.csv").write_text(f'id,text\na,"{long_text}"\nb,awful\n')
    summary = score_file(cascade, tmp_path / "in.csv", tmp_path / "o.jsonl", progress=False)
    assert summary.rows_out == 2 and summary.errors == 0 and summary.truncated >= 1


# 7. JSON texts that are not strings are reported
def test_json_numbers_and_booleans_as_text_are_bad_rows(cascade, tmp_path):
    (tmp_path / "in.jsonl").write_text(
        '{"id": 1, "text": 42}\n{"id": 2, "text": true}\n{"id": 3, "text": "ok"}\n'
    )
    summary = score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    errors = read_jsonl(tmp_path / "o.jsonl.errors.jsonl")
    assert summary.rows_out == 1 and [e["error"] for e in errors] == [
        "expected a string, found 42",
        "expected a string, found true",
    ]
    assert read_jsonl(tmp_path / "o.jsonl")[0]["id"] == "3"  # numeric ids are fine


# 8. one-line errors for bad paths, before any model loads
@pytest.mark.parametrize(
    "case", ["output under a file", "read-only directory", "input is a directory", "missing input"]
)
def test_bad_paths_give_one_line_errors_before_models_load(tmp_path, case):
    write_jsonl(tmp_path / "in.jsonl", 2)
    (tmp_path / "plain_file").write_text("x")
    (tmp_path / "dir.csv").mkdir()
    inputs = {"input is a directory": tmp_path / "dir.csv", "missing input": tmp_path / "nope.jsonl"}
    outputs = {
        "output under a file": tmp_path / "plain_file" / "o.jsonl",
        "read-only directory": "/proc/o.jsonl",
    }
    source, output = inputs.get(case, tmp_path / "in.jsonl"), outputs.get(case, tmp_path / "o.jsonl")
    # tier names that resolve to nothing: the path error must come first
    result = CliRunner().invoke(
        cli,
        ["run", "--tier1", "no-such-tier", "--tier2", "no-such-tier", "-i", str(source), "-o", str(output)],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot resolve model" not in result.output
    message = {
        "output under a file": "is not a directory",
        "read-only directory": "is not writable",
        "input is a directory": "is a directory",
        "missing input": "no such file",
    }[case]
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_os_errors_while_writing_are_one_line(tmp_path):
    from tango.cli import _one_line

    error = PermissionError(13, "Permission denied", "/x/o.jsonl")
    assert _one_line(error) == "Permission denied: /x/o.jsonl"


# 9. the smaller cases
def test_errors_equal_to_output_is_refused(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 2)
    result = run_cli(
        tier_dirs, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--errors", tmp_path / "o.jsonl"
    )
    assert result.exit_code == 1 and "must differ from the output" in result.output


def test_a_duplicated_column_in_the_header_is_refused(cascade, tmp_path):
    (tmp_path / "in.csv").write_text("id,text,text\n1,good,bad\n")
    with pytest.raises(ValueError, match="column 'text' appears 2 times"):
        score_file(cascade, tmp_path / "in.csv", tmp_path / "o.jsonl", progress=False)
    assert not (tmp_path / "o.jsonl").exists()


def test_batch_size_zero_is_refused_without_creating_files(tier_dirs, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 2)
    result = run_cli(tier_dirs, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "o.jsonl", "--batch-size", "0")
    assert result.exit_code == 2 and "--batch-size" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    tier = Tier.from_pretrained(tier_dirs[0], batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        tier.predict(["good"])


def test_a_failure_before_the_first_chunk_leaves_no_files(cascade, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", 5)
    monkeypatch.setattr(
        Cascade, "predict_detailed", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    with pytest.raises(RuntimeError):
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_tuple_of_two_texts_is_two_rows(cascade):
    assert cascade.predict(("good film", "dull mess")).shape == (2,)
    assert cascade.predict([("good film", "dull mess")]).shape == (1,)


def test_a_cascade_needs_a_list_of_tiers():
    with pytest.raises(TypeError, match=r"Cascade\(\['distil', 'large'\]\)"):
        Cascade("distil").predict(["good"])


def test_pairs_given_to_a_single_text_tier_are_refused(tier_dirs, tmp_path):
    import shutil

    tier_dir = tmp_path / "tier"
    shutil.copytree(tier_dirs[0], tier_dir)
    (tier_dir / "tango_train.json").write_text(json.dumps({"inputs": "texts"}))
    tier = Tier.from_pretrained(tier_dir)
    with pytest.raises(TypeError, match="trained on single texts but was given text pairs"):
        tier.predict([("a man", "a woman")])
    (tier_dir / "tango_train.json").write_text(json.dumps({"inputs": "pairs"}))
    with pytest.raises(TypeError, match="trained on text pairs but was given single texts"):
        Tier.from_pretrained(tier_dir).predict(["a man"])


def test_empty_texts_are_refused_by_the_api_as_by_the_cli(cascade):
    with pytest.raises(ValueError, match="row 1 is empty"):
        cascade.predict(["good", "  "])


def test_the_input_id_column_is_the_default_output_id(cascade, tmp_path):
    (tmp_path / "in.csv").write_text("id,text\nx7,good film\nx9,awful\n")
    score_file(cascade, tmp_path / "in.csv", tmp_path / "o.jsonl", progress=False)
    assert [row["id"] for row in read_jsonl(tmp_path / "o.jsonl")] == ["x7", "x9"]
    (tmp_path / "in2.csv").write_text("key,text\nx7,good film\n")
    score_file(cascade, tmp_path / "in2.csv", tmp_path / "o2.jsonl", progress=False)
    assert read_jsonl(tmp_path / "o2.jsonl")[0]["id"] == 2  # no id column: the line number


def test_int8_answers_do_not_depend_on_batch_mates_or_padding(tiny_model_dir, tmp_path):
    from tango.export import export_tier

    export_tier(tiny_model_dir, tmp_path / "int8", int8=True, min_agreement=0.0)
    assert (
        json.loads((tmp_path / "int8" / "tango_export.json").read_text())["activation_scales"] == "per-token"
    )
    tier = Tier.from_pretrained(tmp_path / "int8")
    texts = [f"{TEXTS[i % len(TEXTS)]} " + "good " * (i % 13) for i in range(40)]
    together = tier.logits(texts)
    tier.batch_size = 1
    alone = tier.logits(texts)
    tier.batch_size = 7
    mixed = tier.logits(texts[::-1])[::-1]
    assert_close(alone, together)  # per-token scales: only the fp32 sums reorder
    assert_close(mixed, together)
