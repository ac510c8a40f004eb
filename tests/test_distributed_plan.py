"""The Ray engine's plan, checked without starting Ray (issue #29): resources that cannot be
scheduled are refused at once, each tier's exact runtime travels to the actors and must
reproduce the driver's answers, and options of the other engine are refused."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier, sentiment_rows

from tango.cli import cli
from tango.engines.ray.fingerprint import fingerprint
from tango.engines.ray.index import error_lines
from tango.engines.ray.plan import DEFAULT_READ_CPUS, Stage, TierSpec, check_resources
from tango.engines.ray.read import ShardReader, read_stream_records
from tango.hardware import bf16_supported
from tango.linear import fit_linear
from tango.tiers import Tier


def test_a_plan_bigger_than_the_cluster_is_refused_with_its_sizes():
    with pytest.raises(ValueError, match=r"needs 3 CPUs at once .*1 \(tier-1 actor\).*has 2: it would wait"):
        check_resources(2.0, Stage(cpus=1.0), Stage(cpus=1.0), 1.0, resuming=False)
    with pytest.raises(ValueError, match=r"checkpoint filter \(resume\)"):
        check_resources(2.0, Stage(cpus=0.5), Stage(cpus=0.5), 0.5, resuming=True)


def test_a_plan_that_fits_the_cluster_but_not_its_nodes_is_refused():
    """Two 1-CPU nodes hold 2 CPUs, but not two 0.75-CPU actors beside a 0.5-CPU read task."""
    with pytest.raises(ValueError, match=r"each part on one node, but the Ray nodes have 1, 1 CPUs"):
        check_resources(2.0, Stage(cpus=0.75), Stage(cpus=0.75), 0.5, False, node_cpus=[1.0, 1.0])
    check_resources(2.0, Stage(cpus=0.75), Stage(cpus=0.75), 0.25, False, node_cpus=[1.0, 1.0])
    check_resources(2.0, Stage(cpus=0.75), Stage(cpus=0.75), 0.5, False, node_cpus=[2.0])
    check_resources(2.0, Stage(), Stage(), DEFAULT_READ_CPUS, True, node_cpus=[0.0, 1.0, 1.0])


def test_the_id_fingerprint_is_order_free_and_sees_a_row_lost_doubled_or_foreign():
    """The exactly-once check's fast path: equal multisets of ids, equal fingerprints; a line id
    read back as an integer or as text is the same id."""
    ids = list(range(1, 1001))
    assert fingerprint(ids) == fingerprint(reversed(ids)) == fingerprint([str(i) for i in ids])
    assert fingerprint([]) == (0, 0)
    changed = [ids[:-1], ids + [7], ids[:-1] + [7], ids[:-1] + [1001 + 1], ids[:-2] + [999, 999]]
    assert len({fingerprint(ids), *(fingerprint(other) for other in changed)}) == 1 + len(changed)
    assert all(0 <= half < 2**64 for half in fingerprint(ids))


def test_a_pool_started_at_its_fewest_actors_must_fit_all_of_them():
    """min_actors start together, so each one counts in the plan (here two fused 0.75-CPU actors
    fit two 1-CPU nodes beside a 0.25 task, and three do not fit at all)."""
    check_resources(2.0, Stage(2, 0.75, min_actors=2), Stage(), 0.25, False, [1.0, 1.0], fused=True)
    with pytest.raises(
        ValueError, match=r"needs 2.5 CPUs at once \(0.75 \(cascade actor \(fused\)\) \+ 0.75"
    ):
        check_resources(2.0, Stage(3, 0.75, min_actors=3), Stage(), 0.25, False, [1.0, 1.0], fused=True)
    with pytest.raises(ValueError, match="min_actors <= actors"):
        Stage(actors=1, min_actors=2)


def test_the_default_plan_fits_two_cpus_resume_included():
    check_resources(2.0, Stage(), Stage(), DEFAULT_READ_CPUS, resuming=True)
    assert Stage().threads == 1 and Stage(cpus=4).threads == 4


@pytest.fixture(scope="module")
def tier_dir(tmp_path_factory):
    return build_tiny_classifier(tmp_path_factory.mktemp("plan") / "t", seed=3)


@pytest.mark.parametrize(
    "form", ["torch fp32", "torch bf16 autocast", "torch bf16 weights", "onnx", "openvino", "linear"]
)
def test_each_runtime_travels_exactly_and_answers_as_on_the_driver(form, tier_dir, tiny_onnx_dir, request):
    if form.startswith("torch bf16") and not bf16_supported():
        pytest.skip("no fast bf16 on this CPU")
    if form == "openvino":
        directory = request.getfixturevalue("tiny_openvino_dir")
        tier = Tier.from_pretrained(
            directory, runtime="openvino", precision="fp32", runtime_options={"snippets": False}
        )
    elif form == "onnx":
        tier = Tier.from_pretrained(tiny_onnx_dir, runtime="onnx")
    elif form == "linear":
        rows = sentiment_rows(80, 1)
        tier = fit_linear(rows.texts, rows.labels, rows.label_names, vectorizer={"n_features": 2**10})
        tier.save_pretrained(request.getfixturevalue("tmp_path") / "linear")
        tier = Tier.from_pretrained(request.getfixturevalue("tmp_path") / "linear")
    else:
        precision = {
            "torch fp32": "fp32",
            "torch bf16 autocast": "bf16-autocast",
            "torch bf16 weights": "bf16",
        }
        tier = Tier.from_pretrained(tier_dir, runtime="torch", precision=precision[form])
    spec = TierSpec.of(tier)
    shipped = json.loads(json.dumps(spec.__dict__))  # what reaches an actor is plain data
    loaded = TierSpec(**shipped).load(threads=1)
    assert loaded.runtime.description == tier.runtime.description
    texts = sentiment_rows(20, 2).texts
    np.testing.assert_array_equal(loaded.predict_proba(texts), tier.predict_proba(texts))


def test_a_worker_whose_tier_answers_otherwise_is_refused(tier_dir):
    tier = Tier.from_pretrained(tier_dir, runtime="torch", precision="fp32")
    spec = TierSpec.of(tier)
    spec.expected = (np.asarray(spec.expected)[:, ::-1]).tolist()  # as a drifted runtime would answer
    with pytest.raises(ValueError, match="answers a sample batch .* away from the driver's"):
        spec.load(threads=1)


@pytest.mark.parametrize("content", [b"", b"id,text\n"])
def test_empty_and_header_only_shards_are_valid_and_rowless(tmp_path, content):
    path = tmp_path / "shard.csv"
    path.write_bytes(content)
    with open(path, "rb") as file:
        columns = {"text": "text", "pair": None, "label": None, "id": "id"}
        assert list(read_stream_records(file, str(path), columns, None)) == []


@pytest.mark.parametrize(
    "extra, refused",
    [
        (["--engine", "ray", "--chunk-size", "64"], "--chunk-size does not apply to --engine ray"),
        (["--engine", "ray", "--threads", "2"], "--threads does not apply to --engine ray"),
        (["--merge", "m.jsonl"], "--merge does not apply to the local engine"),
        (["--tier2-actors", "3"], "--tier2-actors does not apply to the local engine"),
    ],
)
def test_options_of_the_other_engine_are_refused(tier_dir, tmp_path, extra, refused):
    (tmp_path / "in.jsonl").write_text('{"text": "fine"}\n')
    args = ["run", "--tier1", str(tier_dir), "--tier2", str(tier_dir), "-i", str(tmp_path / "in.jsonl")]
    result = CliRunner().invoke(cli, args + ["-o", str(tmp_path / "out.jsonl"), *extra])
    assert result.exit_code == 2 and refused in result.output, result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_errors_names_a_directory_only_with_the_ray_engine(tier_dir, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "fine"}\n')
    args = ["run", "--tier1", str(tier_dir), "--tier2", str(tier_dir), "-i", str(tmp_path / "in.jsonl")]
    result = CliRunner().invoke(cli, args + ["-o", str(tmp_path / "out.jsonl"), "--errors", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory: the local engine writes one file" in result.output


SETTINGS = {"text_column": "text", "pair_column": None, "id_column": "id", "format": None}
SETTINGS |= {"line_ids": False, "block_rows": 2, "on_error": "write"}


def test_the_index_shape_keeps_every_row_and_the_good_shape_only_the_good(tmp_path):
    """What the Ray reader yields without Ray: ids, lines, and each bad row's file, line and field."""
    path = tmp_path / "in.csv"
    path.write_bytes(b'id,text\na,fine\nb,""\nc,"two\nlines"\nd,x,y\n')
    files = {str(path): ["00000-in.csv", "in.csv"]}
    with open(path, "rb") as stream:
        good = [t.to_pylist() for t in ShardReader(SETTINGS, files, "good").blocks(stream, str(path))]
    assert [[(r["id"], r["line"], r["text"]) for r in t] for t in good] == [
        [("a", 2, "fine"), ("c", 4, "two\nlines")]
    ]
    with open(path, "rb") as stream:
        (index,) = ShardReader(SETTINGS, files, "index").blocks(stream, str(path))
    assert index.column("id").to_pylist() == ["a", None, "c", None]
    assert index.column("line").to_pylist() == [2, 3, 4, 6] and index.column("file").to_pylist() == [0] * 4
    bad = index.slice(1, 1)  # the row of line 3
    assert (
        error_lines(bad, None) == b'{"line": 3, "field": "text", "error": "empty text", "raw": "b,\\"\\""}\n'
    )
    assert error_lines(bad, {0: str(path)}).startswith(b'{"path": "' + str(path).encode())
    with (
        open(path, "rb") as stream,
        pytest.raises(ValueError, match=r"in.csv: line 3, field text: empty text\. Nothing was scored"),
    ):
        list(ShardReader({**SETTINGS, "on_error": "fail"}, files, "index").blocks(stream, str(path)))


def test_a_ray_tango_starts_keeps_idle_workers_and_a_running_cluster_keeps_its_settings(monkeypatch):
    """Ray refuses a system config when it connects to a cluster: only a Ray tango starts gets one."""
    from tango.engines.ray.plan import KEEP_IDLE_WORKERS
    from tango.engines.ray.run import own_ray_settings

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert own_ray_settings(None) == {"_system_config": KEEP_IDLE_WORKERS}
    assert own_ray_settings("auto") == own_ray_settings("ray://head:10001") == {}
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert own_ray_settings(None) == {}
