"""Does the gate keep its accuracy target on rows it has not seen? (docs/calibration.md, #13)

Scores a pool of labelled rows that no tier was trained on (the calibration rows the tiers'
training held out) once with every tier, then, for each of ``--splits`` seeded resplits of the pool
into calibration rows and evaluation rows, chooses thresholds for ``--max-drop`` with

- the in-sample rule: the fastest thresholds whose drop on the calibration rows is within target
  (temperatures fitted on the same rows), and
- the certified rule: temperatures on 30% of the calibration rows, thresholds certified on the
  other 70% at ``--confidence-level`` (tango.thresholds.certify),

and measures each choice's drop against the last tier on the evaluation rows. The speedup is the
cost model's (every tier's measured seconds per row on the pool), not a timing.

    python benchmarks/studies/gate_resplits.py --name sst2 --tiers gate-minilm-sst2,gate-mpnet-sst2
    python benchmarks/studies/gate_resplits.py --name ag_news --tiers gate-minilm-ag,gate-mpnet-ag

Writes benchmarks/results/gate_NAME.{json,md,png}; `python benchmarks/docs.py` then fills docs/calibration.md.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: results/ and the shared helpers
RESULTS = ROOT / "results"
CACHE = Path.home() / ".cache" / "tango" / "studies"


def pool_logits(tier_names: list[str]) -> tuple[list[np.ndarray], np.ndarray, list[float], dict]:
    """Every tier's logits on the held-out pool (cached), its labels, costs and provenance."""
    from tango.splits import calibration_rows_for, held_out_rows
    from tango.tiers import Tier
    from tango.tuning import align_labels, score_tiers

    tiers = [Tier.from_pretrained(name) for name in tier_names]
    pool, overlap = calibration_rows_for([t.path for t in tiers], tiers[0].labels)
    labels = align_labels(pool, tiers[0].labels)
    logits, costs = [], []
    for tier in tiers:  # each tier scored once per pool, cached
        key = hashlib.sha256(repr([str(tier.path), pool.source]).encode()).hexdigest()[:16]
        cache = CACHE / f"{key}.npz"
        if not cache.exists():
            (z,), (cost,) = score_tiers([tier], pool.texts)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, logits=z, cost=np.asarray(cost))
        saved = np.load(cache, allow_pickle=False)
        logits.append(saved["logits"])
        costs.append(float(saved["cost"]))
    held = held_out_rows(tiers[0].path)
    source = {
        "pool": pool.source,
        "pool_rows": len(pool),
        "pool_inside_training_rows": overlap,
        "tiers": [str(t.path) for t in tiers],
        "runtimes": [t.runtime.description for t in tiers],
        "held_out": held.to_dict() if held else None,
        "tier_accuracy": [float((z.argmax(1) == labels).mean()) for z in logits],
        "seconds_per_row": costs,
    }
    return logits, labels, costs, source


def evaluate_gate(gate, logits, labels, costs, rows, kind: str = "maxprob") -> dict[str, float]:
    """The chosen gate's drop (points), speedup (cost model) and reach on ``rows``."""
    from tango.confidence import confidence
    from tango.thresholds import answering_tier

    confs = [
        confidence(s.predict_proba(z[rows]), kind)
        for z, s in zip(logits[:-1], gate.scalers[:-1], strict=True)
    ]
    correct = [z[rows].argmax(1) == labels[rows] for z in logits]
    answered = answering_tier(confs, gate.thresholds)
    final = np.choose(answered, correct)
    reached = [float(np.mean(answered >= k)) for k in range(len(logits))]
    cost = float(np.dot(reached, costs))
    return {
        "drop": float(100 * (correct[-1].mean() - final.mean())),
        "accuracy": float(final.mean()),
        "last_tier_accuracy": float(correct[-1].mean()),
        "speedup": costs[-1] / cost,
        "reached": reached,
    }


def run_splits(logits, labels, costs, splits: int, calibration_rows: int, max_drop: float, level: float):
    from tango.tuning import Target, fit_gate

    results = []
    for seed in range(splits):
        order = np.random.default_rng(1000 + seed).permutation(len(labels))
        calib, held = np.sort(order[:calibration_rows]), np.sort(order[calibration_rows:])
        sub = [z[calib] for z in logits]
        row = {"seed": 1000 + seed}
        for rule, confidence_level in (("in-sample", None), ("certified", level)):
            goal = Target(max_drop=max_drop, confidence_level=confidence_level, seed=seed)
            gate = fit_gate(sub, labels[calib], costs, goal)
            row[rule] = {"thresholds": gate.thresholds, **evaluate_gate(gate, logits, labels, costs, held)}
        results.append(row)
    return results


def summarise(results: list[dict], max_drop: float) -> dict[str, dict[str, float]]:
    summary = {}
    for rule in ("in-sample", "certified"):
        drops = np.array([r[rule]["drop"] for r in results])
        speedups = np.array([r[rule]["speedup"] for r in results])
        escalated = np.array([r[rule]["reached"][-1] for r in results])
        summary[rule] = {
            "within_target": float(np.mean(drops <= max_drop + 1e-9)),
            "drop_median": float(np.median(drops)),
            "drop_p10": float(np.percentile(drops, 10)),
            "drop_p90": float(np.percentile(drops, 90)),
            "drop_max": float(drops.max()),
            "speedup_median": float(np.median(speedups)),
            "speedup_p10": float(np.percentile(speedups, 10)),
            "speedup_p90": float(np.percentile(speedups, 90)),
            "reach_last_median": float(np.median(escalated)),
        }
    return summary


def markdown(name: str, summary: dict, meta: dict) -> str:
    tiers = " -> ".join(Path(t).name for t in meta["source"]["tiers"])
    accuracy = ", ".join(f"{a:.2%}" for a in meta["source"]["tier_accuracy"])
    lines = [
        f"#### {name}: {tiers}",
        "",
        f"{meta['splits']} seeded resplits of {meta['source']['pool_rows']:,} held-out rows "
        f"({meta['source']['pool']}) into {meta['calibration_rows']:,} calibration rows and "
        f"{meta['source']['pool_rows'] - meta['calibration_rows']:,} evaluation rows; target: at most "
        f"{meta['max_drop']} point below the last tier; certified at confidence {meta['confidence_level']}. "
        f"Tier accuracy on the pool: {accuracy}; {meta['source']['pool_inside_training_rows']:.0%} of pool "
        "rows appear inside training rows. Speedup from the cost model (measured seconds per row "
        f"{', '.join(f'{1000 * c:.2f} ms' for c in meta['source']['seconds_per_row'])}), not a timing. "
        f"{meta['machine']}; {meta['date']}.",
        "",
        "| rule | evaluation drop within target | drop, median (p10-p90, max) | speedup, median (p10-p90) "
        "| rows reaching the last tier |",
        "|---|---|---|---|---|",
    ]
    for rule, s in summary.items():
        lines.append(
            f"| {rule} | {s['within_target']:.0%} of {meta['splits']} | {s['drop_median']:+.2f} "
            f"({s['drop_p10']:+.2f} to {s['drop_p90']:+.2f}, {s['drop_max']:+.2f}) | "
            f"{s['speedup_median']:.2f}x ({s['speedup_p10']:.2f}-{s['speedup_p90']:.2f}) | "
            f"{s['reach_last_median']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def plot(name: str, results: list[dict], max_drop: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for rule, color in (("in-sample", "tab:red"), ("certified", "tab:blue")):
        ax.scatter(
            [r[rule]["speedup"] for r in results],
            [r[rule]["drop"] for r in results],
            s=14,
            color=color,
            label=rule,
            alpha=0.7,
        )
    ax.axhline(max_drop, color="black", linestyle="--", linewidth=1, label=f"target {max_drop}")
    ax.set(xlabel="speedup over the last tier (cost model)", ylabel="drop on evaluation rows (points)")
    ax.set_title(f"{name}: one point per resplit")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


@click.command()
@click.option("--name", required=True, help="Data set name for the result files (e.g. sst2).")
@click.option("--tiers", required=True, help="Tier names, cheapest first, comma-separated.")
@click.option("--splits", type=int, default=50, show_default=True)
@click.option("--calibration-rows", type=int, default=2000, show_default=True)
@click.option("--max-drop", type=float, default=0.5, show_default=True)
@click.option("--confidence-level", type=float, default=0.9, show_default=True)
def main(name, tiers, splits, calibration_rows, max_drop, confidence_level) -> None:
    """Old (in-sample) vs certified threshold rule over seeded resplits of held-out rows."""
    import torch

    import tango

    logits, labels, costs, source = pool_logits(tiers.split(","))
    results = run_splits(logits, labels, costs, splits, calibration_rows, max_drop, confidence_level)
    summary = summarise(results, max_drop)
    meta = {
        "splits": splits,
        "calibration_rows": calibration_rows,
        "max_drop": max_drop,
        "confidence_level": confidence_level,
        "source": source,
        "machine": f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}, "
        f"torch {torch.__version__}, tango {getattr(tango, '__version__', '?')}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"gate_{name}"
    stem.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "summary": summary, "splits": results}, indent=1)
    )
    table = markdown(name, summary, meta) + f"\n![{name} resplits](../benchmarks/results/gate_{name}.png)\n"
    stem.with_suffix(".md").write_text(table)
    plot(name, results, max_drop, stem.with_suffix(".png"))
    click.echo(table)


if __name__ == "__main__":
    main()
