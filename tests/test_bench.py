import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import WORDS, build_tiny_classifier

from tango.bench import bench, escalation_curve, interleave
from tango.bench.report import markdown
from tango.cli import cli
from tango.data import LabelledData

# random tiny tiers: temperatures may sit at the edge of their range, which tuning warns about
pytestmark = pytest.mark.filterwarnings("ignore:the fitted temperature:RuntimeWarning")


def make_rows(n, seed):
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    labels = [int("good" in t or "great" in t or "love" in t) for t in texts]
    return texts, labels


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return [build_tiny_classifier(root / f"t{k}", seed=k) for k in range(2)]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    texts, labels = make_rows(120, seed=3)
    path = tmp_path_factory.mktemp("bench_data") / "dev.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    return path


def test_interleave_runs_round_robin_and_does_not_time_the_warm_up(monkeypatch):
    calls = []
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr("tango.bench.timing.time.perf_counter", lambda: next(clock))

    def system(name):
        return lambda: calls.append(name) or name

    timings = interleave({"a": system("a"), "b": system("b"), "c": system("c")}, repeats=4)
    warm_up, rounds = calls[:3], calls[3:]
    assert warm_up == ["a", "b", "c"]
    assert [rounds[i : i + 3] for i in range(0, 12, 3)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    # every timed call reads the fake clock twice (start, stop): one second each; warm-up unread
    for name in "abc":
        assert timings[name].seconds == [1.0] * 4
        assert timings[name].result == name


def test_interleave_reports_median_min_and_max(monkeypatch):
    durations = iter([3.0, 1.0, 2.0, 10.0, 5.0])
    stamps = []
    for d in durations:
        stamps += [0.0, d]
    clock = iter(stamps)
    monkeypatch.setattr("tango.bench.timing.time.perf_counter", lambda: next(clock))
    timing = interleave({"only": lambda: None}, repeats=5)["only"]
    assert timing.seconds == [3.0, 1.0, 2.0, 10.0, 5.0]
    assert (timing.median, timing.min, timing.max) == (3.0, 1.0, 10.0)
    with pytest.raises(ValueError, match="repeats"):
        interleave({"only": lambda: None}, repeats=0)


def test_cli_bench_writes_every_output(tier_dirs, data_file, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--tiers", ",".join(str(d) for d in tier_dirs), "--data", str(data_file)]
    args += ["--repeats", "2", "--threads", "1", "--limit", "80", "--no-peers", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for name in ("results.json", "results.md", "results.png", "report.html"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    systems = {r["system"]: r for r in results["systems"]}
    assert {"tier1", "tier2", "chosen", "tangobert-rule"} <= set(systems)
    assert [r["kind"] for r in results["systems"]].count("sweep") >= 3
    for r in results["systems"]:
        assert len(r["seconds"]) == 2
        assert r["rows_per_s_min"] <= r["rows_per_s"] <= r["rows_per_s_max"]
        assert 0 <= r["accuracy"] <= 1
    assert systems["tier2"]["speedup"] == pytest.approx(1.0)
    assert systems["chosen"]["analytic_speedup"] > 0
    assert systems["tangobert-rule"]["settings"]["threshold"] == 0.85
    breakdown = results["breakdown"]
    assert {"tokenize_s", "tier1_s", "tier2_s", "route_s"} <= set(breakdown)
    assert breakdown["tokenize_s"] + breakdown["tier1_s"] + breakdown["tier2_s"] <= breakdown["seconds"]
    machine = results["machine"]
    assert machine["threads"] == 1 and {"cpu", "cores", "isa", "torch", "tango"} <= set(machine)
    data = results["data"]
    assert data["scored"] == 80 and data["calibration"]["mode"] == "cross-fitted"
    for fold in data["calibration"]["folds"]:  # never judged on the rows that chose it
        assert not set(fold["chooses"]) & set(fold["scores"])
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "| **chosen** |" in result.output


def test_calibration_fraction_rows_never_overlap_the_scored_rows(tier_dirs, data_file, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--tiers", ",".join(str(d) for d in tier_dirs), "--data", str(data_file)]
    args += ["--calibration-fraction", "0.5", "--repeats", "1", "--threads", "1", "--no-peers"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())["data"]
    calibration, scored = set(data["calibration"]["indices"]), set(data["scored_indices"])
    assert data["calibration"]["mode"] == "fraction"
    assert calibration and scored and not calibration & scored
    assert calibration | scored == set(range(120))
    assert data["scored"] == len(scored) == 60
    deferral = json.loads((out / "results.json").read_text())["deferral"]  # the learned rule too
    assert set(deferral["auroc"]) == {"maxprob", "margin", "entropy", "learned"} and deferral["rows"] == 60
    assert "beats_maxprob" in deferral and (out / "results_deferral.png").stat().st_size > 0
    assert "AUROC for disagreement" in (out / "results.md").read_text()


def test_bench_with_a_calibration_file_and_the_peers(tier_dirs, data_file):
    texts, labels = make_rows(40, seed=4)
    calibration = LabelledData(texts, np.asarray(labels), ["negative", "positive"], "memory")
    result = bench(
        [str(d) for d in tier_dirs],
        data_file,
        calibration_data=calibration,
        repeats=1,
        threads=1,
        limit=30,
        peers=True,
    )
    systems = {r["system"]: r for r in result["systems"]}
    assert {"tangobert-reference", "tier2-pipeline"} <= set(systems)
    # the pipeline runs the same weights as tier 2 in fp32: the same answers
    assert systems["tier2-pipeline"]["accuracy"] == pytest.approx(systems["tier2"]["accuracy"])
    assert result["data"]["calibration"] == {"mode": "file", "seed": 0, "source": "memory"}
    assert len(result["gates"]) == 1
    # the ceilings: no cascade measured here reaches a target with fewer rows escalated
    ceilings = {c["versus"]: c for c in result["ceilings"]}
    assert set(ceilings) == {"tier2", "tangobert-reference"}
    for c in ceilings.values():
        assert c["reached_accuracy"] >= c["accuracy"] - 1e-9
        for r in result["systems"]:
            if r["kind"] in ("sweep", "chosen", "rule") and r["accuracy"] >= c["accuracy"] - 1e-9:
                assert r["escalated"][0] >= c["escalated"] - 1e-9
    ref = ceilings["tangobert-reference"]
    costs = systems["tier1"]["seconds_median"] + ref["escalated"] * systems["tier2"]["seconds_median"]
    assert ref["ratio"] == pytest.approx(30 / costs / systems["tangobert-reference"]["rows_per_s"])
    assert "Ceiling of these tiers" in markdown(result)


def test_escalation_curve_counts_rows_right_escalating_the_least_confident_first():
    y = np.array([0, 1, 1, 0])
    first = np.array([[3.0, 0.0], [0.1, 0.0], [0.0, 2.0], [0.0, 0.5]])  # right, wrong, right, wrong
    last = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # wrong, right, right, right
    # confidence order: row 1 (0.52), row 3 (0.62), row 2 (0.88), row 0 (0.95)
    assert escalation_curve(first, last, y).tolist() == [2, 3, 4, 4, 3]
    # a temperature rescales every row alike: for two classes the order stays
    assert escalation_curve(first, last, y, temperature=3.0).tolist() == [2, 3, 4, 4, 3]


def test_bench_refuses_two_sources_of_thresholds(tier_dirs, data_file):
    with pytest.raises(ValueError, match="not both"):
        bench([str(d) for d in tier_dirs], data_file, calibration_data=data_file, calibration_fraction=0.5)
    with pytest.raises(ValueError, match="bound_on"):
        bench([str(d) for d in tier_dirs], data_file, bound_on="batch")


def test_bench_certifies_the_drop_on_the_rows_it_scores(tier_dirs, data_file):
    """bound_on="rows" passes the number of rows each gate is judged on; the default does not."""
    tiers = [str(d) for d in tier_dirs]
    result = bench(tiers, data_file, repeats=1, threads=1, limit=60, peers=False, bound_on="rows")
    assert result["settings"]["bound_on"] == "rows"
    assert [g["choice"]["new_rows"] for g in result["gates"]] == [30, 30]  # 2-fold cross-fitting
    assert all(len(g["tier_accuracy"]) == 2 and 0 <= min(g["tier_accuracy"]) for g in result["gates"])
    assert markdown(result).count("Rows that chose the thresholds (") == 2
    mean = bench(tiers, data_file, repeats=1, threads=1, limit=60, peers=False)
    assert mean["settings"]["bound_on"] == "population"
    assert [g["choice"]["new_rows"] for g in mean["gates"]] == [None, None]


def test_bench_three_tiers_bound_and_breakdown(tier_dirs, data_file, tmp_path_factory):
    third = build_tiny_classifier(tmp_path_factory.mktemp("bench3") / "t2", seed=2)
    result = bench([*map(str, tier_dirs), str(third)], data_file, repeats=1, threads=1, limit=40, peers=False)
    systems = {r["system"]: r for r in result["systems"]}
    costs = [systems[f"tier{k}"]["seconds_median"] for k in (1, 2, 3)]
    rule = systems["tangobert-rule"]
    assert len(rule["escalated"]) == 2 and rule["escalated"][1] <= rule["escalated"][0]
    expected = costs[2] / (costs[0] + rule["escalated"][0] * costs[1] + rule["escalated"][1] * costs[2])
    assert rule["analytic_speedup"] == pytest.approx(expected)
    assert systems["tier3"]["speedup"] == pytest.approx(1.0)
    assert {"tier1_s", "tier2_s", "tier3_s"} <= set(result["breakdown"])


def test_bench_without_a_sweep_and_with_per_row_exit_layers(tier_dirs, data_file):
    """sweep=() leaves the sweep out; an extra system's per-row exit layers land in the result."""

    class Exited:
        def __init__(self, labels, layers):
            self.labels, self.exit_layer = labels, np.asarray(layers)

    def fake_early_exit(texts):
        return Exited(["positive"] * len(texts), [1 + i % 3 for i in range(len(texts))])

    result = bench(
        [str(d) for d in tier_dirs],
        data_file,
        calibration_fraction=0.5,
        repeats=1,
        threads=1,
        peers=False,
        sweep=(),
        extra_systems={"exits": (fake_early_exit, {"model": "fake"})},
    )
    systems = {r["system"]: r for r in result["systems"]}
    assert not [name for name in systems if name.startswith("sweep")]
    assert result["settings"]["sweep_escalation"] == []
    exits = systems["exits"]
    assert exits["exit_layers"] == [1 + i % 3 for i in range(result["data"]["scored"])]
    assert exits["mean_exit_layer"] == pytest.approx(np.mean(exits["exit_layers"]))


def write_config(path, table: str) -> str:
    path.write_text('data_root = "."\n\n[bench.small]\n' + table)
    return f"{path}:small"


def test_a_config_table_gives_the_options_and_the_command_line_wins(tier_dirs, data_file, tmp_path):
    tiers = ", ".join(f'"{d}"' for d in tier_dirs)
    table = (
        f'tiers = [{tiers}]\ndata = "{data_file.name}"\nrepeats = 1\nthreads = 1\nlimit = 60\npeers = false\n'
    )
    (tmp_path / data_file.name).write_text(data_file.read_text())  # data paths: relative to data_root
    config = write_config(tmp_path / "c.toml", table + f'out = "{tmp_path / "out"}"\n')
    result = CliRunner().invoke(cli, ["bench", "--config", config, "--limit", "40"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["scored"] == 40 and results["settings"]["repeats"] == 1  # --limit won
    assert results["data"]["source"].startswith(str(tmp_path / data_file.name))
    assert "--config" in results["command"]  # the result names the recipe that made it
    bad = write_config(tmp_path / "bad.toml", table + "repeat = 3\n")
    refused = CliRunner().invoke(cli, ["bench", "--config", bad])
    assert refused.exit_code == 2 and "'repeat' is not a tango bench option" in refused.output
    assert "bad.toml, [bench.small]" in refused.output
    missing = CliRunner().invoke(cli, ["bench", "--config", f"{tmp_path / 'c.toml'}:other"])
    assert missing.exit_code == 2 and "no [bench.other] table; it has ['small']" in missing.output


def test_thresholds_from_the_rows_the_tiers_held_out(held_out_tiers, data_file, tmp_path):
    _, tiers = held_out_tiers
    args = ["bench", "--tiers", ",".join(map(str, tiers)), "--data", str(data_file), "--labels", "sst2"]
    args += ["--calibration-data", "held-out", "--repeats", "1", "--threads", "1", "--limit", "50"]
    result = CliRunner().invoke(cli, [*args, "--no-peers", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    calibration = results["data"]["calibration"]
    assert calibration["mode"] == "file" and "150 calibration rows" in calibration["source"]
    assert results["data"]["scored"] == 50  # every scored row: none chose the thresholds
    refused = CliRunner().invoke(cli, [*args[:5], "--calibration-data", "nope.tsv"])
    assert refused.exit_code == 2 and "no file 'nope.tsv'" in refused.output
