"""benchmarks/bench.py's reading of results: the issues' targets and the spread across runs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
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
