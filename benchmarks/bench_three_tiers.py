"""Does a linear first tier pay? linear -> MiniLM -> MPNet against MiniLM -> MPNet (#13).

Both cascades get their thresholds from the same calibration rows (``Cascade.fit`` with the same
``--max-drop`` at confidence 0.9), then score the same evaluation rows, timed interleaved
round-robin (a warm-up round, ``--repeats`` timed rounds) with the last tier alone. The rows are
the calibration rows the tiers' training held out (``tango train --calibration-rows``), split
seeded into calibration and evaluation rows, so no row chooses a threshold and judges it.

    python benchmarks/bench_three_tiers.py --name ag_news \\
        --tiers gate-linear-ag,gate-minilm-ag,gate-mpnet-ag
    python benchmarks/docs.py   # its section in benchmarks/README.md and docs/benchmarks.md

Writes benchmarks/results/three_tiers_NAME.{json,md}.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def systems_for(tiers, calibration, evaluation, max_drop: float, seed: int):
    """The last tier alone and the two calibrated cascades, as callables over the evaluation rows."""
    from tango.cascade import Cascade

    names = [calibration.label_names[i] for i in calibration.labels]
    two = Cascade(tiers[1:]).fit(calibration.texts, names, max_drop=max_drop, seed=seed)
    three = Cascade(tiers).fit(calibration.texts, names, max_drop=max_drop, seed=seed)
    last = tiers[-1]
    texts = evaluation.texts
    systems = {
        f"tier alone: {last.path.name}": lambda: (last.predict(texts), None),
        "2 tiers": lambda: (two.predict_detailed(texts).labels, two),
        "3 tiers": lambda: (three.predict_detailed(texts).labels, three),
    }
    return systems, {"2 tiers": two, "3 tiers": three}


def split_pool(pool, calibration_rows: int, evaluation_rows: int | None, seed: int):
    """Seeded calibration rows and, from the others, at most ``evaluation_rows`` evaluation rows
    (None: all of them); no row is in both."""
    order = np.random.default_rng(seed).permutation(len(pool))
    calibration = np.sort(order[:calibration_rows])
    return pool.subset(calibration), pool.subset(np.sort(order[calibration_rows:][:evaluation_rows]))


def row(name: str, timing, evaluation, cascade) -> dict:
    labels, _ = timing.result
    truth = np.asarray([evaluation.label_names[i] for i in evaluation.labels])
    rates = [len(evaluation) / s for s in timing.seconds]
    out = {
        "system": name,
        "rows_per_s_median": statistics.median(rates),
        "rows_per_s_min": min(rates),
        "rows_per_s_max": max(rates),
        "seconds": timing.seconds,
        "accuracy": float(np.mean(np.asarray(labels) == truth)),
    }
    if cascade is not None:
        out["thresholds"] = cascade.thresholds_
        out["reached"] = [t.fraction for t in cascade.predict_detailed(evaluation.texts).stats.tiers]
    return out


def markdown(name: str, rows: list[dict], meta: dict) -> str:
    base = rows[0]["rows_per_s_median"]
    two = next(r for r in rows if r["system"] == "2 tiers")["rows_per_s_median"]
    lines = [
        f"#### {name}: {' -> '.join(meta['tiers'])}",
        "",
        f"{meta['evaluation_rows']:,} evaluation rows, thresholds fitted on {meta['calibration_rows']:,} "
        f"other held-out rows for at most {meta['max_drop']} point below the last tier (certified at 0.9); "
        f"median (min-max) of {meta['repeats']} interleaved rounds after a warm-up, {meta['threads']} "
        f"threads, tokenization included. {meta['machine']['cpu']}; torch {meta['machine']['torch']}; "
        f"{meta['machine']['date']}.",
        "",
        "| system | rows/s median (min-max) | accuracy | vs last tier | vs 2 tiers "
        "| rows reaching tiers 1..N |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        reached = ", ".join(f"{f:.1%}" for f in r.get("reached", [])) or "-"
        rate = f"{r['rows_per_s_median']:.1f} ({r['rows_per_s_min']:.1f}-{r['rows_per_s_max']:.1f})"
        speed = f"{r['rows_per_s_median'] / base:.2f}x | {r['rows_per_s_median'] / two:.2f}x"
        lines.append(f"| {r['system']} | {rate} | {r['accuracy']:.2%} | {speed} | {reached} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--name", required=True)
@click.option("--tiers", required=True, help="linear,small,large: the three tiers, cheapest first.")
@click.option("--calibration-rows", type=int, default=2000, show_default=True)
@click.option("--evaluation-rows", type=int, default=None, help="At most this many of the other rows.")
@click.option("--max-drop", type=float, default=0.5, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def main(name, tiers, calibration_rows, evaluation_rows, max_drop, repeats, threads, seed) -> None:
    """Time linear -> small -> large against small -> large and the large tier alone."""
    from tango.bench import interleave
    from tango.hardware import machine
    from tango.splits import calibration_rows_for
    from tango.tiers import Tier, set_torch_threads

    set_torch_threads(threads)
    loaded = [Tier.from_pretrained(n, threads=threads) for n in tiers.split(",")]
    if len(loaded) != 3:
        raise click.UsageError("give three tiers, cheapest first")
    pool, overlap = calibration_rows_for([t.path for t in loaded], loaded[0].labels)
    calibration, evaluation = split_pool(pool, calibration_rows, evaluation_rows, seed)
    systems, cascades = systems_for(loaded, calibration, evaluation, max_drop, seed)
    timings = interleave(systems, repeats=repeats, log=lambda m: click.echo(m, err=True))
    rows = [row(n, timings[n], evaluation, cascades.get(n)) for n in systems]
    meta = {
        "tiers": [t.path.name for t in loaded],
        "runtimes": [getattr(t.runtime, "description", "linear (scikit-learn)") for t in loaded],
        "pool": pool.source,
        "pool_inside_training_rows": overlap,
        "calibration_rows": len(calibration),
        "evaluation_rows": len(evaluation),
        "split_seed": seed,
        "max_drop": max_drop,
        "repeats": repeats,
        "threads": threads,
        "machine": machine(threads),
        "command": " ".join(sys.argv),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"three_tiers_{name}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    table = markdown(name, rows, meta)
    stem.with_suffix(".md").write_text(table)
    click.echo(table)


if __name__ == "__main__":
    main()
