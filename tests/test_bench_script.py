"""benchmarks/bench.py's reading of results: the issues' targets and the spread across runs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "studies"))
bench_script = pytest.importorskip("bench")


def row(system, accuracy, rows_per_s, **extra):
    return {"system": system, "accuracy": accuracy, "rows_per_s": rows_per_s, **extra}


def test_early_exit_target_takes_the_fastest_knob_that_exits_early_and_stays_accurate():
    by = {
        "tier1-pytorch-bf16": row("tier1-pytorch-bf16", 0.90, 400.0),
        # fastest, but 3 points below the plain tier: does not qualify
        "minilm-l6-sst2-ee-joint@0.8": row("minilm-l6-sst2-ee-joint@0.8", 0.87, 900.0, mean_exit_layer=2.0),
        "minilm-l6-sst2-ee-joint@0.9": row("minilm-l6-sst2-ee-joint@0.9", 0.885, 600.0, mean_exit_layer=3.2),
        # accurate, but leaves too late
        "minilm-l6-sst2-ee-joint@0.99": row("minilm-l6-sst2-ee-joint@0.99", 0.90, 700.0, mean_exit_layer=4.0),
    }
    (check,) = bench_script.early_exit_checks(by)
    name, value, met = check
    assert "minilm-l6-sst2-ee-joint@0.9:" in value and "1.50x" in value
    assert met  # 600 / 400 = 1.5 >= 1.4
    by["minilm-l6-sst2-ee-joint@0.9"]["rows_per_s"] = 500.0  # 1.25x: missed
    assert not bench_script.early_exit_checks(by)[0][2]


def test_early_exit_target_says_when_no_knob_qualifies():
    by = {
        "tier2-pytorch-bf16": row("tier2-pytorch-bf16", 0.93, 60.0),
        "mpnet-base-sst2-ee-joint@0.9": row("mpnet-base-sst2-ee-joint@0.9", 0.88, 120.0, mean_exit_layer=6.0),
    }
    (check,) = bench_script.early_exit_checks(by)
    assert "no knob qualifies" in check[1] and check[2] is False


def run(date, tier2, chosen, accuracy_drop, speedup, bound):
    tier2_row = row("tier2", 0.93, tier2)
    chosen_row = row(
        "chosen",
        0.93 + accuracy_drop / 100,
        chosen,
        rows_per_s_min=chosen * 0.9,
        rows_per_s_max=chosen * 1.1,
        speedup=speedup,
        analytic_speedup=bound,
        escalated=[0.2],
    )
    tier1_row = row("tier1", 0.90, tier2 * 4, speedup=4.0)
    return {"machine": {"date": date}, "systems": [tier1_row, tier2_row, chosen_row]}


def test_runs_table_shows_each_run_and_the_spread():
    runs = [run("d1", 100, 310, -0.4, 3.1, 3.2), run("d2", 80, 200, -0.6, 2.5, 2.6)]
    table = bench_script.runs_table(runs)
    assert "| 1 | d1 |" in table and "| yes |" in table  # 3.1x within 0.5 pt
    assert "| 2 | d2 |" in table and "| **no** |" in table  # 2.5x, -0.6 pt
    assert "speedup 2.50x-3.10x" in table and "-0.60 to -0.40 pt" in table
    assert "Tier 1 alone ran at 4.00x-4.00x tier 2" in table


def test_runs_with_the_reference_show_it_beside_the_ceiling_and_the_target_quotes_it():
    runs = [run("d1", 100, 310, -0.4, 3.1, 3.2), run("d2", 80, 200, -0.6, 2.5, 2.6)]
    for k, r in enumerate(runs):
        r["systems"].append(row("tangobert-reference", 0.93, 40.0))
        r["systems"].append(row("tier2-pipeline", 0.93, 10.0))
        r["ceilings"] = [
            {"versus": "tangobert-reference", "ratio": 8.5 - k},
            {"versus": "tier2", "ratio": 3.3},
        ]
    runs[1]["ceilings"] = []  # a run measured before ceilings were recorded
    table = bench_script.runs_table(runs)
    assert "| 1 | 40.0 | 7.8x, -0.40 pt | 8.50x |" in table
    assert "| 2 | 40.0 | 5.0x, -0.60 pt | - |" in table
    by = {r["system"]: r for r in runs[0]["systems"]}
    checks = dict((name, value) for name, value, _ in bench_script.peer_checks(by, {}, runs[0]["ceilings"]))
    assert checks[">= 8x the TangoBERT reference at >= its accuracy"] == (
        "7.8x, -0.40 pt (the most any threshold gives with these tiers: 8.50x)"
    )


def speed_row(tier: str, label: str, runtime: str, rate: float, **extra) -> dict:
    """A tier-speed script's timed row: rows/s median rate, min-max one either side."""
    return {
        "system": f"{tier}, {label}",
        "tier": tier,
        "runtime": runtime,
        "rows_per_s": rate,
        "rows_per_s_min": rate - 1,
        "rows_per_s_max": rate + 1,
        **extra,
    }


def test_openvino_table_compares_each_configuration_with_the_tiers_first():
    bench_openvino = pytest.importorskip("bench_openvino")
    machine = {"cpu": "a CPU", "threads": 2, "date": "today"}

    def system(tier, label, rate, agreement=1.0):
        return speed_row(tier, label, f"openvino ({label})", rate, agreement_with_first=agreement)

    result = {
        "machine": machine,
        "command": "python benchmarks/studies/bench_openvino.py",
        "data": {"source": "dev.tsv", "rows": 10, "copies": 2},
        "settings": {"repeats": 5},
        "systems": [
            system("a", "1 stream", 100.0),
            system("a", "streams, snippets off", 150.0, 0.99),
            system("b", "1 stream", 10.0),
            system("b", "streams", 12.0),
        ],
    }
    lines = bench_openvino.markdown(result).splitlines()
    assert (
        "| a | streams, snippets off | openvino (streams, snippets off) | 150 (149-151) | 1.50x | 99.00% |"
        in lines
    )
    assert "| b | streams | openvino (streams) | 12 (11-13) | 1.20x | 100.00% |" in lines


def test_escalated_table_gives_each_way_its_per_row_cost():
    bench_escalated = pytest.importorskip("bench_escalated")
    result = {
        "machine": {"cpu": "a CPU", "threads": 2, "date": "today"},
        "command": "python benchmarks/studies/bench_escalated.py",
        "data": {"source": "dev.tsv", "rows": 800, "escalated": 80, "share": 0.1},
        "tiers": {"tier1": "t1", "tier2": "t2: openvino"},
        "settings": {"repeats": 7},
        "mean_tokens": {"escalated": 26.5, "every row": 25.2},
        "systems": [
            {
                "system": "least padding, streams",
                "batches": 4,
                "padding_efficiency": 0.84,
                "ms": 350.0,
                "ms_min": 340.0,
                "ms_max": 360.0,
                "per_row_vs_alone": 1.26,
            },
        ],
    }
    table = bench_escalated.markdown(result)
    assert "the 80 of 800 rows of dev.tsv" in table and "mean 26.5 tokens, against 25.2" in table
    assert "| least padding, streams | 4 | 0.84 | 350 (340-360) | 1.26x |" in table


def test_first_token_table_compares_each_tier_with_its_whole_twin():
    bench_first_token = pytest.importorskip("bench_first_token")

    def system(tier, label, rate, agreement=None):
        kept = {} if agreement is None else {"agreement_with_whole": agreement}
        return speed_row(tier, label, "openvino (x)", rate, **kept)

    result = {
        "machine": {"cpu": "a CPU", "threads": 2, "date": "today"},
        "command": "python benchmarks/studies/bench_first_token.py",
        "data": {"source": "dev.tsv", "rows": 10, "copies": 2},
        "settings": {"repeats": 5},
        "systems": [
            system("a", "whole last layer", 100.0),
            system("a", "first token", 113.0, 1.0),
            system("b", "whole last layer", 10.0),
            system("b", "first token", 10.9, 0.9994),
        ],
    }
    lines = bench_first_token.markdown(result).splitlines()
    assert "| a | whole last layer | openvino (x) | 100 (99-101) | 1.00x | - |" in lines
    assert "| a | first token | openvino (x) | 113 (112-114) | 1.13x | 100.00% |" in lines
    assert "| b | first token | openvino (x) | 11 (10-12) | 1.09x | 99.94% |" in lines


def test_headline_gives_the_spread_against_a_peer_over_the_runs():
    def run(chosen, reference):
        return {"systems": [row("chosen", 0.92, chosen), row("tangobert-reference", 0.92, reference)]}

    runs = [run(800.0, 100.0), run(770.0, 100.0), run(900.0, 100.0)]
    assert bench_script._spread_over_runs(runs, "tangobert-reference") == ", 7.7x-9.0x over 3 runs"
    assert bench_script._spread_over_runs(runs[:1], "tangobert-reference") == ""  # one run: no spread


def test_every_series_comes_from_a_config_and_names_its_rows_and_tiers():
    series = bench_script.load_series()
    assert list(series)[:2] == ["sst2", "sst2-dev"] and {"ag_news", "mrpc"} <= set(series)
    for name, spec in series.items():
        assert spec["config"].startswith("configs/") and {"file", "tier1", "tier2"} <= set(spec), name
        assert (bench_script.DATA / spec["file"]).suffix in (".tsv", ".csv", ".jsonl")
    assert series["sst2"]["sweep"] == () and series["ag_news"]["dev_split"] == (0.1, 0)


def test_a_series_defined_twice_is_refused(tmp_path):
    import click

    (tmp_path / "a.toml").write_text('[series.x]\nfile = "a.tsv"\ntier1 = "t1"\ntier2 = "t2"\n')
    (tmp_path / "b.toml").write_text('[series.x]\nfile = "b.tsv"\ntier1 = "t1"\ntier2 = "t2"\n')
    with pytest.raises(click.ClickException, match="defined twice"):
        bench_script.load_series(tmp_path)


def test_a_series_of_runs_is_one_json_with_its_earlier_runs(tmp_path, monkeypatch):
    """run_series --runs 3: SERIES.json (the last run, the earlier under earlier_runs) and its
    pictures; no per-run file stays in results; _runs gives the three back in order."""

    def fake_run(name, repeats, log, out, limit, result_name, **overrides):
        k = int(result_name.rsplit("run", 1)[1])
        for suffix in (".json", ".md", ".png", ".html", "_reliability_tier1.png"):
            (out / f"{result_name}{suffix}").write_text(str(k))
        return {"dataset": name, "run": k}

    monkeypatch.setattr(bench_script, "run_dataset", fake_run)
    monkeypatch.setattr(bench_script, "markdown", lambda result, out: f"run {result['run']}\n")
    bench_script.run_series("sst2", runs=3, repeats=1, out=tmp_path, limit=None, series="s")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["s.html", "s.json", "s.md", "s.png", "s_reliability_tier1.png"]
    assert [run["run"] for run in bench_script._runs(tmp_path, "s")] == [1, 2, 3]
    assert (tmp_path / "s.png").read_text() == "3" and (tmp_path / "s.md").read_text() == "run 3\n"


def _system(rate: float, **extra: object) -> dict:
    spread = {"rows_per_s_min": rate - 1, "rows_per_s_max": rate + 1}
    return {"rows_per_s": rate, **spread, "seconds": 12000 / rate, "escalated": 0.3, **extra}


def test_the_distributed_report_says_how_ids_were_checked_and_two_nodes_against_one():
    bench_distributed = pytest.importorskip("bench_distributed")
    passes = {"index": 5.0, "scoring": 40.0, "check": 2.5}
    result = {
        "rows": 12000,
        "command": "python benchmarks/bench_distributed.py",
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "date": "today",
            "ray": "2",
            "torch": "2",
            "onnxruntime": "1",
            "openvino": "2026",
        },  # fmt: skip
        "settings": {
            "escalate": 0.3,
            "calibration_rows": 2000,
            "cpus": 2,
            "repeats": 5,
            "warmup": True,
            "shape": "fused",
            "ray_batch": 1024,
            "read_cpus": 0.25,
            "data": "train.tsv",
            "tier1": "a",
            "tier2": "b",
            "threshold": 0.9,
            "ids": "line",
            "min_actors": True,
        },  # fmt: skip
        "systems": {
            "local": _system(400.0),
            "ray, one node": _system(200.0, passes=passes),
            "ray, two nodes": _system(180.0, passes=passes),
        },
    }
    report = bench_distributed.markdown(result)
    assert "Two one-CPU nodes against one two-CPU node (median rows/s): 0.90x." in report
    assert "id fingerprints, no group-by" in report and "all started at once" in report
    result["settings"]["ids"] = "column"
    assert "groups by id" in bench_distributed.markdown(result)


def test_the_processes_report_compares_each_layout_with_one_two_thread_process():
    bench_processes = pytest.importorskip("bench_processes")
    runs = {
        "one process, 2 threads": [200.0, 210.0, 190.0],
        "two processes, 1 thread each": [190.0, 180.0, 200.0],
    }
    systems = {
        name: bench_processes.summarise(
            [{"rows": 4000, "scoring_seconds": 4000 / r, "escalated": 0.3} for r in rates]
        )
        for name, rates in runs.items()
    }
    result = {
        "rows": 4000,
        "command": "python benchmarks/bench_processes.py",
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "date": "today",
            "torch": "2",
            "onnxruntime": "1",
            "openvino": "2026",
        },
        "settings": {
            "repeats": 3,
            "warmup": True,
            "data": "train.tsv",
            "tier1": "a",
            "tier2": "b",
            "threshold": 0.9,
        },
        "systems": systems,
    }
    report = bench_processes.markdown(result)
    assert "| two processes, 1 thread each | 190.0 | 180.0-200.0 | 0.95x | 30.0% |" in report


def three_tier_pool(n=4000, seed=0):
    """Synthetic logits of three tiers over an ``n``-row pool (two classes): each tier right more
    often and more confident where it is right, the last tier the most accurate."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    logits = []
    for accuracy in (0.80, 0.88, 0.93):
        right = rng.random(n) < accuracy
        gap = np.where(right, rng.gamma(3.0, 1.0, n), rng.gamma(1.0, 0.7, n))
        winner = np.where(right, y, 1 - y)
        z = np.zeros((n, 2))
        z[np.arange(n), winner] = gap
        logits.append(z)
    return logits, y


@pytest.mark.filterwarnings("ignore:the fitted temperature")  # the flipped labels below carry no signal
def test_three_tier_series_judges_each_seed_on_rows_its_gates_never_saw():
    import numpy as np

    series = pytest.importorskip("three_tier_series")
    logits, y = three_tier_pool()
    calibration, evaluation = series.split(len(y), 3)
    assert len(calibration) == series.CALIBRATION_ROWS and len(evaluation) == len(y) - series.CALIBRATION_ROWS
    assert not set(calibration) & set(evaluation)
    costs = [0.0001, 0.002, 0.01]
    outcome = series.seed_outcomes(logits, y, costs, 3)
    for key in ("2 tiers, labelled", "2 tiers, label-free", "3 tiers, labelled", "3 tiers, label-free"):
        record = outcome[key]
        assert record["reached"][0] == 1.0 and 0.0 <= record["reached"][-1] <= 1.0
        assert len(record["thresholds"]) == len(record["reached"]) - 1
    last_right = (logits[2][evaluation].argmax(1) == y[evaluation]).mean()
    assert outcome["alone"][2] == pytest.approx(last_right)
    # the label-free gate never reads a label: other labels on the pool give the same thresholds
    flipped = series.seed_outcomes(logits, 1 - y, costs, 3)
    assert flipped["3 tiers, label-free"]["thresholds"] == outcome["3 tiers, label-free"]["thresholds"]
    assert flipped["3 tiers, labelled"]["thresholds"] != outcome["3 tiers, labelled"]["thresholds"]
    # the ceiling escalates the fewest rows that keep the drop within target: one row fewer misses
    first, last, truth = logits[1][evaluation], logits[2][evaluation], y[evaluation]
    share = series.fewest_escalated(first, last, truth)
    order = np.argsort(np.abs(first[:, 0] - first[:, 1]), kind="stable")
    k = round(share * len(truth))

    def drop(escalated):
        final = first.argmax(1).copy()
        final[order[:escalated]] = last.argmax(1)[order[:escalated]]
        return 100 * ((last.argmax(1) == truth).mean() - (final == truth).mean())

    assert drop(k) <= series.MAX_DROP + 1e-9 and (k == 0 or drop(k - 1) > series.MAX_DROP)


def test_three_tier_series_reports_every_system_over_seeds_with_its_speed(tmp_path):
    series = pytest.importorskip("three_tier_series")
    logits, y = three_tier_pool()
    costs = [0.0001, 0.002, 0.01]
    seeds = [series.seed_outcomes(logits, y, costs, s) for s in range(3)]
    stats = series.summary(seeds)
    per_row = {"linear alone": 0.0001, "MiniLM-L6 alone": 0.002, "MPNet-base alone": 0.01}
    per_row.update({f"{c}, {g}": 0.005 for c in series.CASCADES for g in series.GATES})
    series.add_speeds(seeds, stats, per_row)
    for s in seeds:  # the cost model: shares reaching each tier times its cost, against the last tier
        r = s["3 tiers, labelled"]["reached"]
        cost = r[0] * 0.0001 + r[1] * 0.002 + r[2] * 0.01
        assert s["3 tiers, labelled"]["speedup"] == pytest.approx(0.01 / cost)
    assert stats["2 tiers, label-free"]["median_seed_timed_speedup"] == pytest.approx(2.0)
    cell = {"accuracy": 0.9, "escalated": 0.2, "rows_per_s": 300.0, "vs_tier2": 3.0}
    stats["runtime_x_gate"] = {f"{r} x {g}": cell for r in ("pipeline", "tango") for g in ("rule", "gate")}
    stats["timed_rows_last_accuracy"] = 0.92
    stats["deferral"] = {"auroc": {"maxprob": 0.85}, "beats_maxprob": False}
    tiers = [{"name": n, "runtime": "r", "rows_per_s": 1 / per_row[f"{n} alone"]} for n in series.NAMES]
    result = {
        "protocol": "p", "command": "c", "machine": {"cpu": "cpu", "date": "d", "threads": 2},
        "pool": {"source": "pool", "rows": 4000}, "tiers": tiers, "summary": stats, "seeds": seeds,
        "settings": {"seeds": 3, "calibration_rows": 2000, "timed_rows": 1000, "max_drop": 0.5,
                     "confidence_level": 0.9, "repeats": 5},
    }  # fmt: skip
    table = series.markdown(result, "three_tiers_fair_test")
    for system in ("linear alone", "MPNet-base alone", "| 2 tiers | labelled", "| 3 tiers | label-free"):
        assert system in table
    assert "Three tiers against two, per seed" in table and "3.00x, +2.00 pt, 20.0% on" in table
    series.plot(result, tmp_path / "seeds.png")
    assert (tmp_path / "seeds.png").stat().st_size > 1000


def test_bench_three_tiers_takes_at_most_the_evaluation_rows_asked_for():
    import numpy as np

    from tango.data import LabelledData

    script = pytest.importorskip("bench_three_tiers")
    pool = LabelledData([f"row {i}" for i in range(100)], np.arange(100) % 2, ["a", "b"])
    calibration, evaluation = script.split_pool(pool, 30, 20, seed=0)
    assert len(calibration) == 30 and len(evaluation) == 20
    assert not set(calibration.texts) & set(evaluation.texts)
    assert len(script.split_pool(pool, 30, None, seed=0)[1]) == 70


def test_new_text_series_rewrites_every_series_as_committed_and_reports_a_pick_by_speed():
    import copy
    import json

    series = pytest.importorskip("new_text_series")
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    committed_series = sorted(results.glob("new_text_sst2*.json"))
    assert len(committed_series) >= 3  # series 1, 2 and 5
    for path in committed_series:  # each as committed
        assert series.markdown(json.loads(path.read_text())) == path.with_suffix(".md").read_text(), path
    committed = json.loads((results / "new_text_sst2_series2.json").read_text())
    later = copy.deepcopy(committed)  # series 5's shape: a pick by speed, the 2x2 in rounds of its own
    for k, record in enumerate(later["variants"].values()):
        record["sentences_ceiling_escalated"] = 0.25 + 0.01 * k
        record["sentences_speed"] = series.sentences_speed(record, 0.001, 0.005)
    picked = later["variants"][later["picked_variant"]]
    escalated = picked["sentences_ceiling_escalated"]
    assert picked["sentences_speed"] == pytest.approx(0.005 / (0.001 + escalated * 0.005))
    for cell in picked["runtime_x_gate"].values():
        cell["vs_tier2"] = 7.0
    table = series.markdown(later)
    assert "Picked on the held-out sentences: speed against tier 2" in table
    assert table.count("| 7.00x, ") == 4  # every 2x2 cell against the tier 2 of its own rounds


def test_a_series_leaves_out_only_optional_forms_that_are_not_registered(tmp_path, monkeypatch):
    import json

    series = pytest.importorskip("new_text_series")
    monkeypatch.setattr(series, "HOME", tmp_path)
    failed = tmp_path / "models" / "t1-ov-int8"
    failed.mkdir(parents=True)
    (failed / "tango_export.json").write_text(json.dumps({"check": {"agreement": 0.99}}))
    spec = {"variants": {"A": "t1-ov", "A8": "t1-ov-int8", "B8": "t2-ov-int8"}, "optional": ("A8", "B8")}
    kept, left_out = series.usable_variants(spec)  # nothing is registered in the tests' private home
    assert kept == {"A": "t1-ov"}
    assert "failed its export check (agreement with fp32 0.99" in left_out["A8"]
    assert left_out["B8"] == "t2-ov-int8 was not built"


def test_three_tier_series_rewrites_its_committed_results_as_committed():
    import json

    series = pytest.importorskip("three_tier_series")
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    paths = sorted(results.glob("three_tiers_fair_*.json"))
    assert paths
    for path in paths:
        assert series.markdown(json.loads(path.read_text()), path.stem) == path.with_suffix(".md").read_text()


def test_deferral_features_ceiling_follows_the_ranking_it_is_given():
    import json

    import numpy as np

    study = pytest.importorskip("deferral_features")
    # 200 rows: tier 2 always right; tier 1 wrong on rows 0..19. Escalating those first recovers
    # tier 2's accuracy within 0.5 pt (1 row) after 19 rows; a ranking that puts them last needs
    # every other row escalated first.
    y = np.zeros(200, dtype=int)
    last = np.tile([2.0, 0.0], (200, 1))
    first = last.copy()
    first[:20] = [0.0, 1.0]
    wrong_first = np.r_[np.ones(20), np.zeros(180)]
    assert study.fewest_escalated(first, last, y, wrong_first) == 19 / 200
    assert study.fewest_escalated(first, last, y, -wrong_first) == 199 / 200
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    committed = json.loads((results / "deferral_features.json").read_text())
    assert study.markdown(committed) == (results / "deferral_features.md").read_text()
