"""The Ray engine (tango.engines.ray) on a local Ray cluster that this module starts.

Every run is compared with the local engine's own output (``score_file``), not with hard-coded
columns, so the two engines stay in step when the row format changes. Faults are real: an
actor process SIGKILLs itself mid-batch, and a driver process is SIGKILLed mid-job.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'tango[ray]' (or .[dev])")
pytest.importorskip("ray.data", reason="ray is installed without Ray Data: pip install 'ray[data]'")

from click.testing import CliRunner  # noqa: E402
from deadlines import Deadline  # noqa: E402
from tiny_models import build_tiny_classifier  # noqa: E402
from tolerances import FP32_REORDERED, assert_close, assert_same_where_clear, clear_of  # noqa: E402

from tango.cascade import Cascade  # noqa: E402
from tango.cli import cli  # noqa: E402
from tango.engines.local import score_file  # noqa: E402
from tango.engines.ray import (  # noqa: E402
    Stage,
    Tier1Scorer,
    Tier2Scorer,
    check_exactly_once,
    checkpointing_available,
    read_output,
    score,
)
from tango.engines.ray import output as output_module  # noqa: E402
from tango.engines.ray.fingerprint import index_totals  # noqa: E402
from tango.tiers import Tier  # noqa: E402

real_id_faults = output_module.id_faults
ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.97  # the tiny tiers send a good share of rows to tier 2 at this threshold
# Two CPUs for the whole cluster: each actor takes a quarter, read/write tasks a quarter,
# so the checkpoint filter's actor (one CPU) still fits when a run resumes.
SMALL = dict(
    tier1=Stage(1, 0.25, 16),
    tier2=Stage(1, 0.25, 16),
    read_cpus=0.25,
    block_rows=40,
    progress=False,
)
WORDS = ["the film was good", "awful boring mess", "i loved it", "news about the stock market"]
WORDS += ["the team lost the game", "a wonderful , funny story", "not bad at all", "worst plot ever"]


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local Ray whose workers import this checkout's tango (not an installed one)."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "TANGO_THREADS": "1"}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_tiers")
    return build_tiny_classifier(root / "t1", seed=0), build_tiny_classifier(root / "t2", seed=1)


@pytest.fixture(scope="module")
def cascade(tier_dirs):
    tiers = [Tier.from_pretrained(d, precision="fp32") for d in tier_dirs]
    return Cascade(tiers, thresholds=THRESHOLD)


def write_csv_input(path: Path, n: int) -> None:
    """Quoting (commas, doubled quotes, a field spanning lines), unicode, and two bad rows."""
    rows = ["id,text"]
    for i in range(n):
        text = WORDS[i % len(WORDS)]
        variants = [
            f"{text} {i}",
            f'"{text}, with a comma {i}"',
            f'"she said ""{text}"" {i}"',
            f'"{text}\nacross two lines {i}"',
            f"{text} café ☃ 映画 🎬 {i}",
        ]
        rows.append(f"r{i:04d}-é,{variants[i % len(variants)]}")
    rows.insert(7, "bad,row,three fields")
    rows.insert(12, 'empty,""')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_jsonl_input(path: Path, n: int) -> None:
    """JSON lines keyed by line number (no id column), unicode, and four kinds of bad row."""
    lines = [
        json.dumps({"text": f"{WORDS[i % len(WORDS)]} ünï ☃ {i}"}, ensure_ascii=i % 2 == 0) for i in range(n)
    ]
    lines.insert(3, "{not json")
    lines.insert(9, json.dumps({"text": ["a", "list"]}))
    lines.insert(15, json.dumps({"other": "no text field"}))
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(
        data + b'{"text": "caf\xe9 latin-1"}\n' + json.dumps({"text": "last row"}).encode() + b"\n"
    )


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def assert_same_rows(ray_rows: list[dict], local_rows: list[dict]) -> None:
    """Same columns, ids, labels and tiers in the same order; numbers within float tolerance."""
    assert len(ray_rows) == len(local_rows) > 0
    assert list(ray_rows[0]) == list(local_rows[0])
    for mine, theirs in zip(ray_rows, local_rows, strict=True):
        for column, value in theirs.items():
            if column.startswith("p_") or column == "confidence":
                assert float(mine[column]) == pytest.approx(float(value), abs=FP32_REORDERED), (
                    column,
                    theirs,
                )
            else:
                assert mine[column] == value, (column, theirs)


@pytest.fixture(scope="module")
def onnx_dirs(tier_dirs, tmp_path_factory):
    """The tiers in fp32 ONNX: what `tango run` loads, the same in both engines on any CPU."""
    from tango.export import export_tier

    root = tmp_path_factory.mktemp("ray_onnx")
    for directory in tier_dirs:
        export_tier(directory, root / directory.name)
    return [root / directory.name for directory in tier_dirs]


def test_tango_run_engine_ray_on_csv_matches_the_local_engine(cluster, onnx_dirs, tmp_path):
    """`tango run --engine ray` vs `tango run`: quoting, multi-line fields, unicode, bad rows."""
    source = tmp_path / "in.csv"
    write_csv_input(source, 150)
    common = ["--tier1", str(onnx_dirs[0]), "--tier2", str(onnx_dirs[1]), "--threshold", str(THRESHOLD)]
    common += ["-i", str(source), "--id-column", "id", "--probabilities", "-q"]
    local = CliRunner().invoke(cli, ["run", *common, "-o", str(tmp_path / "local.csv")])
    assert local.exit_code == 0, local.output
    ray_args = ["--engine", "ray", "-o", str(tmp_path / "shards"), "--output-format", "csv"]
    ray_args += ["--merge", str(tmp_path / "merged.csv"), "--tier1-cpus", "0.25", "--tier2-cpus", "0.25"]
    ray_args += ["--tier1-batch", "16", "--tier2-batch", "16"]
    with Deadline(300):
        result = CliRunner().invoke(cli, ["run", *common, *ray_args])
    assert result.exit_code == 0, result.output

    merged = read_rows(tmp_path / "merged.csv")
    assert_same_rows(merged, read_rows(tmp_path / "local.csv"))
    assert len({row["tier"] for row in merged}) == 2, "both tiers must answer some rows"
    assert (tmp_path / "merged.csv.errors.jsonl").read_bytes() == (
        tmp_path / "local.csv.errors.jsonl"
    ).read_bytes()
    shards = read_output({"output": str(tmp_path / "shards"), "output_format": "csv", "line_ids": False})
    assert sorted(shards["id"].to_pylist()) == sorted(row["id"] for row in merged)
    # The errors dataset went through its own sink: the local errors file's lines, in any order.
    written = b"".join(path.read_bytes() for path in (tmp_path / "shards.errors").iterdir())
    local_errors = (tmp_path / "local.csv.errors.jsonl").read_bytes()
    assert sorted(written.splitlines()) == sorted(local_errors.splitlines()) and local_errors

    # The exactly-once check is real: a shard written twice is caught, and a shard lost.
    shard = next((tmp_path / "shards").glob("*.csv"))
    shutil.copy(shard, shard.with_name("copy_" + shard.name))
    settings = json.loads((tmp_path / "shards.tango" / "run.json").read_text())["settings"]
    with pytest.raises(ValueError, match=r"output ids appear more than once \(a row was written twice\)"):
        check_exactly_once(ray, settings)
    shard.unlink()
    shard.with_name("copy_" + shard.name).unlink()
    with pytest.raises(ValueError, match="input ids missing from the output"):
        check_exactly_once(ray, settings)
    # and an existing output is never overwritten by accident, nor a finished run resumed
    with pytest.raises(ValueError, match="already exists"):
        score(Cascade(list(map(Tier.from_pretrained, onnx_dirs))), str(source), str(tmp_path / "shards"))
    result = CliRunner().invoke(cli, ["run", *common, *ray_args, "--resume"])
    assert result.exit_code == 1 and "looks complete" in result.output


def killing_tier1(marker: Path, after: int) -> type:
    """A tier-1 actor that SIGKILLs its own process once, in its ``after``-th batch."""

    class KillOnceTier1(Tier1Scorer):
        calls = 0

        def __call__(self, batch):
            KillOnceTier1.calls += 1
            if KillOnceTier1.calls >= after and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(batch)

    return KillOnceTier1


def test_a_glob_of_jsonl_files_matches_the_local_engine_with_a_tier1_actor_killed(
    cluster, cascade, tmp_path, monkeypatch
):
    """Two inputs by glob; a tier-1 actor dies mid-batch.

    Ids are <file>:<line>; each file's rows and errors equal the local engine's on that file
    (the merged errors name their file, as there are several).
    """
    (tmp_path / "in").mkdir()
    write_jsonl_input(tmp_path / "in" / "a.jsonl", 60)
    write_jsonl_input(tmp_path / "in" / "b.jsonl", 20)
    marker = tmp_path / "killed"
    with Deadline(300):
        summary = score(
            cascade,
            str(tmp_path / "in" / "*.jsonl"),
            str(tmp_path / "shards"),
            merge=str(tmp_path / "merged.jsonl"),
            actor_classes=(killing_tier1(marker, after=2), Tier2Scorer),
            **SMALL,
        )
    assert marker.exists(), "the tier-1 actor was never killed"
    assert summary.resume_mode == "checkpoint" and summary.files == 2
    assert (summary.rows_out, summary.errors) == (61 + 21, 8)  # the killed batch was retried, once
    assert not (tmp_path / "shards.tango" / "checkpoint").exists(), "a complete run keeps no checkpoint"
    merged = read_rows(tmp_path / "merged.jsonl")
    errors = read_rows(tmp_path / "merged.jsonl.errors.jsonl")
    assert [row["id"] for row in merged][:2] == ["a.jsonl:1", "a.jsonl:2"]
    for name in ("a", "b"):
        local = tmp_path / f"{name}.local.jsonl"
        score_file(cascade, tmp_path / "in" / f"{name}.jsonl", local, progress=False)
        mine = [dict(row, id=int(row["id"].split(":")[1])) for row in merged if row["id"].startswith(name)]
        assert_same_rows(mine, read_rows(local))
        path = str(tmp_path / "in" / f"{name}.jsonl")
        theirs = read_rows(tmp_path / f"{name}.local.jsonl.errors.jsonl")
        assert [dict(e, path=path) for e in theirs] == [e for e in errors if e["path"] == path]

    # The index ran after the scoring pass, and its write tasks summed its totals as they wrote
    # it: the same totals as the index read back, so the run's check did not read it again.
    assert list(summary.passes)[:2] == ["scoring", "index"]  # the index after the scoring pass
    run = json.loads((tmp_path / "shards.tango" / "run.json").read_text())
    import pyarrow.dataset as pads

    written_index = pads.dataset(tmp_path / "shards.tango" / "index", format="parquet").to_table()
    assert run["index_totals"] == index_totals(written_index) and run["index_totals"]["bad"] == 8

    # Ids tango made (<file>:<line>) are checked by count and fingerprint, without the group-by;
    # a shard written twice or lost still fails the check, and the group-by names the fault.
    settings = run["settings"]
    group_bys = []
    monkeypatch.setattr(output_module, "id_faults", lambda *a: group_bys.append(1) or real_id_faults(*a))
    assert check_exactly_once(ray, settings).rows_out == 82 and not group_bys
    assert check_exactly_once(ray, settings, run["index_totals"]).rows_out == 82 and not group_bys
    one_more = dict(run["index_totals"], inputs=83)  # totals that do not match the output
    with pytest.raises(ValueError, match="exactly-once check failed"):
        check_exactly_once(ray, settings, one_more)
    group_bys.clear()
    shard = next(path for path in (tmp_path / "shards").iterdir() if not path.name.startswith("."))
    shutil.copy(shard, shard.with_name("copy_" + shard.name))
    with pytest.raises(ValueError, match=r"output ids appear more than once"):
        check_exactly_once(ray, settings)
    shard.unlink()
    shard.with_name("copy_" + shard.name).unlink()
    with pytest.raises(ValueError, match="input ids missing from the output"):
        check_exactly_once(ray, settings)
    assert len(group_bys) == 2  # the two faults; the wrong totals before them were cleared


DRIVER = """
import os, sys, time, ray
from tango.cascade import Cascade
from tango.engines.ray import Stage, Tier1Scorer, Tier2Scorer, score
from tango.tiers import Tier

class SlowTier1(Tier1Scorer):
    def __call__(self, batch):
        time.sleep(0.5)
        return super().__call__(batch)

address, t1, t2, source, output, threshold = sys.argv[1:]
env = {"PYTHONPATH": os.environ["PYTHONPATH"], "TANGO_THREADS": "1"}
ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
cascade = Cascade([Tier.from_pretrained(t, precision="fp32") for t in (t1, t2)], thresholds=float(threshold))
score(cascade, source, output, output_format="parquet", tier1=Stage(1, 0.25, 10), tier2=Stage(1, 0.25, 10),
      read_cpus=0.25, block_rows=10, progress=False, actor_classes=(SlowTier1, Tier2Scorer))
"""


@pytest.mark.skipif(not checkpointing_available(), reason="this Ray has no Ray Data checkpointing")
def test_a_killed_driver_resumes_and_every_row_lands_once(cluster, cascade, tier_dirs, tmp_path):
    source = tmp_path / "in.csv"
    write_csv_input(source, 200)
    output = tmp_path / "shards"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TANGO_THREADS="1")
    args = [cluster, *map(str, tier_dirs), str(source), str(output), str(THRESHOLD)]
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - a pipe could fill and stall the driver
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and driver.poll() is None:
        if len(list(output.glob("*.parquet"))) >= 3 and any(
            (tmp_path / "shards.tango").rglob("checkpoint/*")
        ):
            break
        time.sleep(0.2)
    alive = driver.poll() is None
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    log.close()
    assert alive, f"the driver ended before it was killed: {(tmp_path / 'driver.log').read_text()[-2000:]}"
    before = {path.name for path in output.glob("*.parquet")}
    assert 3 <= len(before) < 20, "killed mid-job: some blocks written (10 rows each), not all"
    run = json.loads((tmp_path / "shards.tango" / "run.json").read_text())
    # killed while scoring: the index (written after the scoring pass) and the check still to come
    assert not run.get("indexed") and not run.get("scored") and not run.get("complete")

    merge = str(tmp_path / "m.csv")
    with Deadline(300):
        summary = score(
            cascade, str(source), str(output), output_format="parquet", resume=True, merge=merge, **SMALL
        )
    local = score_file(cascade, source, tmp_path / "local.csv", progress=False)
    assert_same_rows(read_rows(tmp_path / "m.csv"), read_rows(tmp_path / "local.csv"))
    assert (summary.rows_out, summary.errors) == (local.rows_out, local.errors)
    assert before & {path.name for path in output.glob("*.parquet")}, "the resume rewrote every shard"


# --- issue #29: never a silent hang, never a drift from the local engine ------------------------


def test_a_plan_the_cluster_cannot_schedule_fails_at_once(cluster, cascade, tmp_path):
    write_jsonl_input(tmp_path / "in.jsonl", 10)
    with (
        Deadline(60),
        pytest.raises(ValueError, match="needs 3 CPUs at once .* has 2: it would wait forever"),
    ):
        score(cascade, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), tier1=Stage(1, 1.0, 16),
              tier2=Stage(1, 1.0, 16), read_cpus=1.0, progress=False)  # fmt: skip
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tango").exists()


def test_a_missing_column_fails_before_anything_runs(cluster, cascade, tmp_path):
    (tmp_path / "in.csv").write_text("id,review\n1,fine\n")
    with Deadline(60), pytest.raises(ValueError, match=r"has no column 'text'"):
        score(cascade, str(tmp_path / "in.csv"), str(tmp_path / "out"), text_column="text", **SMALL)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tango").exists()


def test_empty_and_header_only_shards_are_valid_input(cluster, cascade, tmp_path):
    (tmp_path / "in").mkdir()
    write_csv_input(tmp_path / "in" / "a.csv", 30)
    (tmp_path / "in" / "b.csv").write_text("id,text\n")  # header only, as Spark writes empty partitions
    (tmp_path / "in" / "c.csv").write_bytes(b"")  # zero bytes
    with Deadline(300):
        summary = score(cascade, str(tmp_path / "in" / "*.csv"), str(tmp_path / "shards"), id_column="id",
                        merge=str(tmp_path / "merged.jsonl"), errors_dir=str(tmp_path / "bad"),
                        **SMALL)  # fmt: skip
    local = score_file(
        cascade, tmp_path / "in" / "a.csv", tmp_path / "local.jsonl", id_column="id", progress=False
    )
    assert summary.files == 3 and (summary.rows_in, summary.rows_out) == (local.rows_in, local.rows_out)
    assert_same_rows(read_rows(tmp_path / "merged.jsonl"), read_rows(tmp_path / "local.jsonl"))
    # errors_dir (--errors) is where the bad rows go, each naming its file since there are several
    path = str(tmp_path / "in" / "a.csv")
    theirs = [dict(e, path=path) for e in read_rows(tmp_path / "local.jsonl.errors.jsonl")]
    assert read_rows(tmp_path / "merged.jsonl.errors.jsonl") == theirs
    written = [json.loads(line) for f in (tmp_path / "bad").iterdir() for line in f.read_text().splitlines()]
    assert sorted(written, key=lambda e: e["line"]) == theirs and not (tmp_path / "shards.errors").exists()


def test_on_error_fail_stops_before_anything_is_scored(cluster, cascade, tmp_path):
    """The index pass finds the bad row (file, line, field) before any model loads."""
    write_jsonl_input(tmp_path / "in.jsonl", 10)
    with Deadline(120), pytest.raises(ValueError) as raised:
        score(cascade, str(tmp_path / "in.jsonl"), str(tmp_path / "out"), on_error="fail", **SMALL)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'in.jsonl'}: line 4, field -: malformed JSON. Nothing was scored")
    assert "\n" not in message and not (tmp_path / "out").exists()  # the index ran alone, first


def test_a_bf16_autocast_tier_answers_on_ray_exactly_as_locally(cluster, tier_dirs, tmp_path):
    """The runtime that used to drift (sent as bf16 cast once): every row equal to the local engine's."""
    from tango.hardware import bf16_supported

    precision = "bf16-autocast" if bf16_supported() else "fp32"
    tiers = [Tier.from_pretrained(d, runtime="torch", precision=precision) for d in tier_dirs]
    cascade = Cascade(tiers, thresholds=THRESHOLD)
    write_jsonl_input(tmp_path / "in.jsonl", 60)
    with Deadline(300):
        score(cascade, str(tmp_path / "in.jsonl"), str(tmp_path / "shards"), probabilities=True,
              merge=str(tmp_path / "merged.jsonl"), **SMALL)  # fmt: skip
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "local.jsonl", probabilities=True, progress=False)
    merged, local = read_rows(tmp_path / "merged.jsonl"), read_rows(tmp_path / "local.jsonl")
    assert [row["id"] for row in merged] == [row["id"] for row in local]
    # Ray batches tier 2's rows otherwise than the local engine: bf16 sums reorder (docs/run.md's
    # bound), so decisions are compared where tier 1's confidence is clear of the threshold.
    tolerance = 2e-2 if precision != "fp32" else FP32_REORDERED
    lines = (tmp_path / "in.jsonl").read_bytes().split(b"\n")
    texts = [json.loads(lines[int(row["id"]) - 1])["text"] for row in local]  # ids are line numbers
    clear = clear_of(tiers[0].predict_proba(texts).max(axis=1), THRESHOLD, tolerance)
    decisions = [[(r["label"], r["tier"]) for r in rows] for rows in (merged, local)]
    assert_same_where_clear(*decisions, clear)
    confidence = [[r["confidence"] for r in rows] for rows in (merged, local)]
    assert_close(*confidence, tolerance)


def test_fused_tiers_score_as_the_local_engine_and_a_clean_input_skips_the_errors_pass(
    cluster, cascade, tmp_path
):
    """--fuse-tiers: one pool of whole-cascade actors; every row as the local engine's. Input
    without a bad row leaves no errors output (the index's totals say so: no errors pass)."""
    rows = [json.dumps({"id": f"f{i}", "text": f"{WORDS[i % len(WORDS)]} {i}"}) for i in range(90)]
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    fused = dict(SMALL, tier2=Stage(), fuse_tiers=True, tier1=Stage(2, 0.5, 16))
    with Deadline(300):
        summary = score(cascade, str(tmp_path / "in.jsonl"), str(tmp_path / "shards"), id_column="id",
                        probabilities=True, merge=str(tmp_path / "merged.jsonl"), **fused)  # fmt: skip
    score_file(cascade, tmp_path / "in.jsonl", tmp_path / "local.jsonl", id_column="id", probabilities=True,
               progress=False)  # fmt: skip
    merged = read_rows(tmp_path / "merged.jsonl")
    assert_same_rows(merged, read_rows(tmp_path / "local.jsonl"))
    assert len({row["tier"] for row in merged}) == 2, "both tiers must answer some rows"
    assert summary.rows_out == 90 and summary.errors == 0
    assert not (tmp_path / "shards.errors").exists()
    with pytest.raises(ValueError, match="fuse_tiers runs one pool .* tier2 does not apply"):
        score(cascade, str(tmp_path / "in.jsonl"), str(tmp_path / "other"), **dict(fused, tier2=Stage(2)))


def test_fuse_tiers_refuses_tier2_sizes_on_the_command_line(tier_dirs, tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "fine"}) + "\n")
    args = [
        "run",
        "--tier1",
        str(tier_dirs[0]),
        "--tier2",
        str(tier_dirs[1]),
        "-i",
        str(tmp_path / "in.jsonl"),
    ]
    args += ["-o", str(tmp_path / "out"), "--engine", "ray", "--fuse-tiers", "--tier2-cpus", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--tier2-cpus does not apply to --fuse-tiers" in result.output
    result = CliRunner().invoke(cli, ["run", *args[1:7], "-o", str(tmp_path / "o.jsonl"), "--fuse-tiers"])
    assert result.exit_code == 2 and "--fuse-tiers does not apply to the local engine" in result.output
