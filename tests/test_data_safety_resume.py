"""Regression tests for issue #26 (data safety, round two): resume verifies what it trusts, locks
are per file, companions tango did not write are never touched, a resume reproduces the
uninterrupted run, and the smaller cases. One test (or more) per numbered case."""

import base64
import errno
import json
import os
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import (
    SCORING_TEXTS,
    sentiment_rows,
    two_tiny_tiers,
    write_scoring_jsonl,
)

from tango.cascade import Cascade
from tango.cli import cli
from tango.engines import local as scoring
from tango.engines.local import score_file
from tango.linear import fit_linear
from tango.runfiles import RunFiles
from tango.tiers import Tier

TEXTS = SCORING_TEXTS


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    return two_tiny_tiers(tmp_path_factory.mktemp("safety2"))


@pytest.fixture(scope="module")
def cascade(tier_dirs):
    return Cascade([Tier.from_pretrained(d, precision="fp32") for d in tier_dirs], thresholds=0.9)


write_jsonl = write_scoring_jsonl


def read_ids(path):
    return [json.loads(line)["id"] for line in open(path)]


def interrupt(cascade, source, output, monkeypatch, chunk_size=10, after=1):
    """Run until ``after`` chunks are committed, then fail the next one as a crash would."""
    calls = {"n": 0}
    original = Cascade.predict_detailed

    def crash(self, texts, progress=False):
        calls["n"] += 1
        if calls["n"] == after + 1:
            raise RuntimeError("power cut")
        return original(self, texts, progress)

    monkeypatch.setattr(Cascade, "predict_detailed", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        score_file(cascade, source, output, chunk_size=chunk_size, progress=False)
    monkeypatch.setattr(Cascade, "predict_detailed", original)


# 1. resume checks the committed bytes of the output before trusting them
@pytest.mark.parametrize("damage", ["shortened", "edited"])
def test_resume_refuses_an_output_changed_after_the_crash(cascade, tmp_path, monkeypatch, damage):
    write_jsonl(tmp_path / "in.jsonl", 40)
    out = tmp_path / "o.jsonl"
    interrupt(cascade, tmp_path / "in.jsonl", out, monkeypatch, after=2)
    data = out.read_bytes()
    if damage == "shortened":  # as `truncate -s -100 o.jsonl`
        out.write_bytes(data[:-100])
    else:  # the same length, one byte changed in the middle
        middle = len(data) // 2
        out.write_bytes(
            data[:middle] + (b"X" if data[middle : middle + 1] != b"X" else b"Y") + data[middle + 1 :]
        )
    damaged = out.read_bytes()
    message = {"shortened": "was shortened after the run stopped", "edited": "was edited after the run"}
    with pytest.raises(ValueError, match=message[damage]) as caught:
        score_file(cascade, tmp_path / "in.jsonl", out, resume=True, progress=False)
    assert str(out) in str(caught.value) and "--overwrite" in str(caught.value)
    assert out.read_bytes() == damaged  # nothing cut, nothing padded with NUL bytes


def test_a_resumed_run_writes_the_bytes_of_an_uninterrupted_one(cascade, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", 57)
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "straight.jsonl", chunk_size=10, progress=False)
    interrupt(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", monkeypatch, after=3)
    with open(tmp_path / "o.jsonl", "ab") as file:
        file.write(b'{"id": "torn')  # a torn write after the last commit is cut away
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", resume=True, progress=False)
    assert (tmp_path / "o.jsonl").read_bytes() == (tmp_path / "straight.jsonl").read_bytes()


# 2. the lock belongs to the file, whatever name reaches it
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_two_names_of_one_output_cannot_be_written_at_once(cascade, tmp_path, link):
    write_jsonl(tmp_path / "in.jsonl", 5)
    x, y = tmp_path / "x.jsonl", tmp_path / "y.jsonl"
    score_file(cascade, tmp_path / "in.jsonl", x, progress=False)
    (os.symlink if link == "symbolic" else os.link)(x, y)
    before = x.read_bytes()
    with RunFiles.plan(tmp_path / "in.jsonl", x).run_lock():  # a run writing x.jsonl holds it
        with pytest.raises(ValueError, match="being written by another tango run"):
            score_file(cascade, tmp_path / "in.jsonl", y, overwrite=True, progress=False)
    assert x.read_bytes() == before


def test_an_output_that_is_another_runs_errors_file_is_locked(cascade, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    first = RunFiles.plan(tmp_path / "in.jsonl", tmp_path / "a.jsonl", tmp_path / "bad.jsonl")
    with first.run_lock():
        with pytest.raises(ValueError, match="being written by another tango run"):
            score_file(cascade, tmp_path / "in.jsonl", tmp_path / "bad.jsonl", progress=False)
    assert not (tmp_path / "bad.jsonl").exists()


def test_an_output_linked_to_the_input_is_refused(cascade, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    os.symlink(tmp_path / "in.jsonl", tmp_path / "o.jsonl")
    before = (tmp_path / "in.jsonl").read_bytes()
    with pytest.raises(ValueError, match="is the input file"):
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", overwrite=True, progress=False)
    assert (tmp_path / "in.jsonl").read_bytes() == before


# 3. companion files tango did not write are never deleted or replaced
@pytest.mark.parametrize(
    "companion, content",
    [("o.jsonl.lock", "notes\n"), ("o.jsonl.run.json", "{}"), ("o.jsonl.progress.json", '{"a": 1}')],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_companions_the_user_wrote_are_kept(cascade, tmp_path, companion, content, overwrite):
    write_jsonl(tmp_path / "in.jsonl", 5)
    (tmp_path / companion).write_text(content)
    with pytest.raises(ValueError, match="tango did not write it"):
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", overwrite=overwrite, progress=False)
    assert (tmp_path / companion).read_text() == content
    assert not (tmp_path / "o.jsonl").exists()


def test_a_stale_lock_tango_left_is_taken_over(cascade, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 5)
    (tmp_path / "o.jsonl.lock").write_text("tango run pid 4242\n")  # a kill -9 leaves this
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    assert len(read_ids(tmp_path / "o.jsonl")) == 5 and not (tmp_path / "o.jsonl.lock").exists()


# 4. a resume keeps the interrupted run's batch plan
def test_resume_keeps_the_recorded_chunk_size_and_refuses_another(cascade, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", 40)
    out = tmp_path / "o.jsonl"
    interrupt(cascade, tmp_path / "in.jsonl", out, monkeypatch, chunk_size=7)
    with pytest.raises(ValueError, match=r"options.chunk_size: 7 -> 500"):
        score_file(cascade, tmp_path / "in.jsonl", out, resume=True, chunk_size=500, progress=False)
    other = Cascade(
        [Tier.from_pretrained(t.path, precision="fp32", batch_size=5) for t in cascade.tiers], 0.9
    )
    with pytest.raises(ValueError, match=r"batch_size: 32 -> 5"):
        score_file(other, tmp_path / "in.jsonl", out, resume=True, progress=False)
    seen = []
    original = Cascade.predict_detailed
    monkeypatch.setattr(
        Cascade,
        "predict_detailed",
        lambda self, texts, progress=False: seen.append(len(texts)) or original(self, texts, progress),
    )
    score_file(cascade, tmp_path / "in.jsonl", out, resume=True, progress=False)  # no chunk size given
    assert seen == [7, 7, 7, 7, 5] and read_ids(out) == [f"r{i}" for i in range(40)]


def test_run_md_states_the_batch_independence_bound_that_holds():
    text = (Path(__file__).parents[1] / "docs" / "run.md").read_text()
    assert "2e-6" not in text  # the old promise, not true for bf16 and int8 tiers
    assert "Same answers regardless of batching" not in text


# 5. the whole input is fingerprinted: a same-size edit in the middle is caught
def test_a_same_size_edit_in_the_middle_of_the_input_is_refused(cascade, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", 2000, pad=" " + "x" * 100)  # > 2 x 64 KiB
    source = tmp_path / "in.jsonl"
    interrupt(cascade, source, tmp_path / "o.jsonl", monkeypatch, chunk_size=100)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    at = data.index(b"x", middle)
    data[at : at + 1] = b"y"
    stat = os.stat(source)
    source.write_bytes(bytes(data))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    with pytest.raises(ValueError, match=r"input.sha256"):
        score_file(cascade, source, tmp_path / "o.jsonl", resume=True, progress=False)


# 6. truncation is counted at the tier that answered, not only at tier 1
def test_truncation_is_counted_for_rows_answered_by_tier_2(tier_dirs, tmp_path):
    rows = sentiment_rows(60, 0)
    linear = fit_linear(rows.texts, rows.labels, rows.label_names, vectorizer={"n_features": 2**10})
    cascade = Cascade([linear, Tier.from_pretrained(tier_dirs[1], precision="fp32")], thresholds=2.0)
    long_text = " ".join(["good film"] * 2000)  # far past the tiny model's 64 positions
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"text": long_text}) + "\n" + json.dumps({"text": "short"}) + "\n"
    )
    summary = score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    assert summary.tier_answered == [0, 2] and summary.truncated == 1
    result = cascade.predict_detailed([long_text, "short"])
    assert result.truncated.tolist() == [True, False]


def test_truncation_survives_a_shared_tokenizer(tier_dirs):
    tiers = [Tier.from_pretrained(d, precision="fp32") for d in tier_dirs]  # same vocabulary
    assert tiers[0].tokenizer_fingerprint == tiers[1].tokenizer_fingerprint
    result = Cascade(tiers, thresholds=2.0).predict_detailed([" ".join(["good"] * 500), "fine"])
    assert result.tier.tolist() == [1, 1] and result.truncated.tolist() == [True, False]
    assert result.stats.tiers[1].truncated == 1


# 7. a cascade directory loads only its own tiers
def test_a_cascade_json_pointing_outside_its_directory_is_refused(cascade, tier_dirs, tmp_path, monkeypatch):
    cascade.save_pretrained(tmp_path / "c")
    manifest_path = tmp_path / "c" / "cascade.json"
    manifest = json.loads(manifest_path.read_text())

    def with_path(path):
        edited = json.loads(json.dumps(manifest))
        edited["tiers"][1]["path"] = path
        manifest_path.write_text(json.dumps(edited))

    with_path(str(tier_dirs[1]))  # an absolute path elsewhere
    with pytest.raises(ValueError, match=r"tiers\[1\].path.*outside the cascade directory"):
        Cascade.from_pretrained(tmp_path / "c", precision="fp32")
    loaded = Cascade.from_pretrained(tmp_path / "c", precision="fp32", allow_external_tiers=True)
    assert loaded.predict(TEXTS).shape == (len(TEXTS),)
    with_path("../../somewhere")
    with pytest.raises(ValueError, match="outside the cascade directory"):
        Cascade.from_pretrained(tmp_path / "c", precision="fp32")

    from tango import registry

    local_only = registry.resolve

    def no_network(name, *args, **kwargs):
        assert Path(name).is_dir(), f"a cascade directory must not resolve {name} by name"
        return local_only(name, *args, **kwargs)

    monkeypatch.setattr(registry, "resolve", no_network)
    with_path("sentence-transformers/all-MiniLM-L6-v2")  # shaped like a hub id
    with pytest.raises(ValueError, match=r"tiers\[1\].path.*is not a directory"):
        Cascade.from_pretrained(tmp_path / "c", precision="fp32")


# 8. the advice after --on-error fail works
def _with_bad_line(path, n, bad_at):
    lines = [json.dumps({"id": f"r{i}", "text": f"{TEXTS[i % len(TEXTS)]} {i}"}) for i in range(n)]
    lines[bad_at - 1] = json.dumps({"id": f"r{bad_at - 1}", "text": ""})  # an empty text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("how", ["fixed", "on-error write"])
def test_after_on_error_fail_the_advised_resume_works(tier_dirs, tmp_path, how):
    source, out = tmp_path / "in.jsonl", tmp_path / "o.jsonl"
    _with_bad_line(source, 30, bad_at=15)
    base = ["run", "--tier1", str(tier_dirs[0]), "--tier2", str(tier_dirs[1]), "--threshold", "0.9", "-q"]
    base += ["-i", str(source), "-o", str(out), "--chunk-size", "10"]
    failed = CliRunner().invoke(cli, base + ["--on-error", "fail"])
    assert failed.exit_code == 1 and "line 15" in failed.output
    assert "Fix that line and rerun the same command with --resume" in failed.output
    assert read_ids(out) == [f"r{i}" for i in range(14)]  # every row before the bad one
    if how == "fixed":
        _with_bad_line(source, 30, bad_at=15)
        text = source.read_text().replace('"text": ""', '"text": "now fixed"')
        source.write_text(text)
        resumed = CliRunner().invoke(cli, base + ["--on-error", "fail", "--resume"])
        assert resumed.exit_code == 0, resumed.output
        assert read_ids(out) == [f"r{i}" for i in range(30)]
    else:
        resumed = CliRunner().invoke(cli, base + ["--on-error", "write", "--resume"])
        assert resumed.exit_code == 0, resumed.output
        assert read_ids(out) == [f"r{i}" for i in range(30) if i != 14]
        assert [e["line"] for e in map(json.loads, open(str(out) + ".errors.jsonl"))] == [15]
    manifest = json.loads((tmp_path / "o.jsonl.run.json").read_text())
    assert manifest["summary"]["rows_in"] == 30 and not (tmp_path / "o.jsonl.progress.json").exists()


def test_after_on_error_fail_lines_before_the_bad_one_must_not_change(cascade, tmp_path):
    source = tmp_path / "in.jsonl"
    _with_bad_line(source, 30, bad_at=15)
    with pytest.raises(ValueError, match="line 15"):
        score_file(cascade, source, tmp_path / "o.jsonl", on_error="fail", chunk_size=10, progress=False)
    source.write_text(source.read_text().replace('"r3"', '"R3"'))
    with pytest.raises(ValueError, match=r"lines 1-14 of .* changed"):
        score_file(cascade, source, tmp_path / "o.jsonl", on_error="write", resume=True, progress=False)


# 9. the smaller cases
@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one_is_a_one_line_error(tier_dirs, tmp_path, threads):
    write_jsonl(tmp_path / "in.jsonl", 3)
    args = ["run", "--tier1", str(tier_dirs[0]), "--tier2", str(tier_dirs[1]), "--threads", threads]
    result = CliRunner().invoke(
        cli, args + ["-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 2 and "--threads" in result.output and "Traceback" not in result.output
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        Tier.from_pretrained(tier_dirs[0], threads=0)


@pytest.mark.parametrize(
    "content, field",
    [
        ("{not json", "not valid JSON"),
        ('{"tiers": "tier0"}', "field 'tiers'"),
        ('{"tiers": [{"path": "tier0"}, {"path": "tier1"}], "thresholds": "0.9"}', "field 'thresholds'"),
        ('{"tiers": [{"path": "tier0"}, {"path": "tier1"}], "thresholds": ["0.9"]}', "field 'thresholds'"),
        (
            '{"tiers": [{"path": "tier0"}, {"path": "tier1"}], "thresholds": [0.9], "temperatures": [1]}',
            "field 'temperatures'",
        ),  # fmt: skip
        ('{"tiers": ["tier0", "tier1"], "thresholds": [0.9]}', r"field 'tiers\[0\]'"),
    ],
)
def test_a_malformed_cascade_json_names_the_file_and_the_field(cascade, tmp_path, content, field):
    cascade.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "cascade.json").write_text(content)
    with pytest.raises(ValueError, match=field) as caught:
        Cascade.from_pretrained(tmp_path / "c")
    assert "cascade.json" in str(caught.value)


def test_a_string_threshold_is_refused(cascade):
    with pytest.raises(TypeError, match="thresholds must be numbers"):
        Cascade(cascade.tiers, thresholds="0.9").predict(TEXTS)


def test_the_errors_file_keeps_the_exact_bytes_of_a_non_utf8_line(cascade, tmp_path):
    bad = b'{"id": "b", "text": "caf\xe9 au lait \xff"}'
    (tmp_path / "in.jsonl").write_bytes(b'{"id": "a", "text": "fine"}\n' + bad + b"\n")
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", progress=False)
    (error,) = map(json.loads, open(tmp_path / "o.jsonl.errors.jsonl", encoding="utf-8"))
    assert error["error"] == "not UTF-8" and "\ufffd" in error["raw"]
    assert base64.b64decode(error["raw_base64"]) == bad


def test_a_full_disk_names_the_path_and_the_resume_finishes(cascade, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in.jsonl", 30)
    calls = {"n": 0}
    original = scoring._append

    def full_on_third(file, data):
        calls["n"] += 1
        if calls["n"] == 3:
            file.write(data[: len(data) // 2])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(file, data)

    monkeypatch.setattr(scoring, "_append", full_on_third)
    with pytest.raises(OSError) as caught:
        score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", chunk_size=10, progress=False)
    from tango.cli import _one_line

    message = _one_line(caught.value)
    assert message.startswith("No space left on device") and str(tmp_path / "o.jsonl") in message
    assert "--resume" in message
    monkeypatch.setattr(scoring, "_append", original)
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "o.jsonl", resume=True, progress=False)
    assert read_ids(tmp_path / "o.jsonl") == [f"r{i}" for i in range(30)]


# 10. training checkpoints load without unpickling code
class _Planted:
    def __reduce__(self):
        return (os.makedirs, ("/tmp/tango-planted-checkpoint-ran",))


def test_a_training_checkpoint_is_loaded_without_running_pickled_code(tmp_path):
    import torch

    from tango.checkpoints import Checkpoint

    marker = "/tmp/tango-planted-checkpoint-ran"
    if os.path.isdir(marker):
        os.rmdir(marker)
    path = tmp_path / "state.pt"
    torch.save({"step": 1, "planted": _Planted()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(ValueError, match="not a checkpoint tango can load safely"):
        Checkpoint(path).load(None, None, None)
    assert not os.path.exists(marker)
