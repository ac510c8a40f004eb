"""The fair three-tier series of benchmarks/PROTOCOL.md versions 4, 6 and 8 (issue #27 item 4).

Three tiers trained to their best on the rows outside a held-out pool (linear, MiniLM-L6
distilled from MPNet-base, MPNet-base), each in its fastest form, score the pool once. For each
of SEEDS seeds the pool splits into calibration rows (gates fitted there, labelled and label-free,
for the two-tier and the three-tier cascade) and evaluation rows (which judge them). Each tier
alone and the median seeds' cascades are then timed interleaved round-robin on TIMED_ROWS[data]
evaluation rows (warm-up, REPEATS rounds, 2 threads, tokenization included), with the runtime x
gate systems of the two-tier cascade; the per-row costs convert every seed's shares to a speedup.

    tango build configs/ag_news.toml linear-ag-pool4k mpnet-base-ag-pool4k minilm-l6-ag-pool4k
    python benchmarks/three_tier_series.py --data ag_news   # -> results/three_tiers_fair_ag_news_v8.*
    python benchmarks/docs.py                               # its section in docs/benchmarks.md

No row that chooses a threshold or temperature judges it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "studies"))

from gate_resplits import evaluate_gate  # noqa: E402
from new_text_series import fewest_escalated, runtime_x_gate, spread, two_by_two, two_by_two_lines  # noqa: E402

THREADS = 2
REPEATS = 5
SEEDS = 20
MAX_DROP = 0.5
LEVEL = 0.9
CALIBRATION_ROWS = 2000
# evaluation rows timed per data set: IMDB's reviews run to 256 tokens (AG News's ~50), so fewer
# rows keep its series under an hour on 2 AVX2 cores (PROTOCOL.md, version 8's IMDB amendment)
TIMED_ROWS = {"ag_news": 1000, "imdb": 100}
# series -> (its protocol version, the suffix of its results' names). Series 4 (results
# three_tiers_fair_ag_news.*) ran as `--data ag_news` before tango's three-tier testing order
# changed (commit ff0625d); series 6 (*_nested) with every leg of the nested order run to its end
# and the label-free gates' approximate bound (commit dc7f1b6). The code has only version 8's
# order and bounds now, so neither is offered again.
SERIES = {
    "8": (
        "benchmarks/PROTOCOL.md, version 8, 2026-12-06 "
        "(nested legs end at their anchors; exact label-free bound)",
        "_v8",
    )
}
DATA = {
    "ag_news": ("configs/ag_news.toml", ("linear-ag-pool4k", "minilm-l6-ag-pool4k", "mpnet-base-ag-pool4k")),
    "imdb": ("configs/imdb.toml", ("linear-imdb-pool4k", "minilm-l6-imdb-pool4k", "mpnet-base-imdb-pool4k")),
}
CASCADES = {"2 tiers": (1, 2), "3 tiers": (0, 1, 2)}  # tier positions, cheapest first
GATES = ("labelled", "label-free")
NAMES = ("linear", "MiniLM-L6", "MPNet-base")


def fastest_form(name: str, config: str):
    """A tier in its OpenVINO form where it has one (int8 first; `tango probe`'s record picks the
    precision), else as trained (the linear tier)."""
    from tango.registry import registered_dir
    from tango.tiers import Tier

    for suffix in ("-ov-int8", "-ov", ""):
        if path := registered_dir(name + suffix):
            return Tier.from_pretrained(path, threads=THREADS)
    raise click.ClickException(f"tier {name} is not built: tango build {config} {name}")


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed ``seed``'s calibration rows and evaluation rows of an ``n``-row pool."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:CALIBRATION_ROWS]), np.sort(order[CALIBRATION_ROWS:])


def fitted_gate(logits: list[np.ndarray], labels: np.ndarray, costs: list[float], kind: str, seed: int):
    """The gate of one cascade on its calibration rows: labelled, or certified on disagreement
    with the last tier (its answers as labels, its temperature 1)."""
    from tango.tuning import Target, fit_gate

    labelled = kind == "labelled"
    truth = labels if labelled else logits[-1].argmax(1)
    goal = Target(max_drop=MAX_DROP, confidence_level=LEVEL, seed=seed)
    return fit_gate(logits, truth, costs, goal, fit_last=labelled)


def seed_outcomes(logits: list[np.ndarray], labels: np.ndarray, costs: list[float], seed: int) -> dict:
    """Every cascade's gates fitted on seed ``seed``'s calibration rows, judged on its evaluation
    rows, and the tiers alone there."""
    calibration, evaluation = split(len(labels), seed)
    out: dict[str, Any] = {"seed": seed}
    out["alone"] = [float((z[evaluation].argmax(1) == labels[evaluation]).mean()) for z in logits]
    first, last = logits[1][evaluation], logits[2][evaluation]
    out["agreement"] = float((first.argmax(1) == last.argmax(1)).mean())
    out["ceiling_escalated"] = fewest_escalated(first, last, labels[evaluation])
    for cascade, positions in CASCADES.items():
        z, c = [logits[k] for k in positions], [costs[k] for k in positions]
        for kind in GATES:
            gate = fitted_gate([x[calibration] for x in z], labels[calibration], c, kind, seed)
            record = evaluate_gate(gate, z, labels, c, evaluation)
            record["thresholds"] = [float(t) for t in gate.thresholds]
            record["temperatures"] = [float(s.temperature_) for s in gate.scalers]
            out[f"{cascade}, {kind}"] = record
    return out


def summary(seeds: list[dict]) -> dict[str, Any]:
    """Median and p10-p90 over seeds of every system's drop, shares and reach; seeds within target."""
    out: dict[str, Any] = {
        "alone_accuracy": [spread([s["alone"][k] for s in seeds]) for k in range(len(NAMES))],
        "agreement": spread([s["agreement"] for s in seeds]),
        "ceiling_escalated": spread([s["ceiling_escalated"] for s in seeds]),
    }
    for cascade in CASCADES:
        for kind in GATES:
            records = [s[f"{cascade}, {kind}"] for s in seeds]
            drops = [r["drop"] for r in records]
            by_reach = sorted(range(len(seeds)), key=lambda i: records[i]["reached"][-1])
            out[f"{cascade}, {kind}"] = {
                "drop": spread(drops),
                "within_target": float(np.mean([d <= MAX_DROP + 1e-9 for d in drops])),
                "reached": [
                    spread([r["reached"][k] for r in records]) for k in range(len(records[0]["reached"]))
                ],
                "median_seed": seeds[by_reach[len(seeds) // 2]]["seed"],
            }
    return out


def timed_systems(tiers: list, seeds: list[dict], stats: dict, texts: list) -> dict[str, Any]:
    """Every tier alone, each cascade's median seed, and the two-tier runtime x gate systems."""
    from tango.cascade import Cascade

    systems: dict[str, Any] = {
        f"{n} alone": (lambda t=t: t.logits(texts)) for n, t in zip(NAMES, tiers, strict=True)
    }
    for cascade, positions in CASCADES.items():
        for kind in GATES:
            record = seeds[stats[f"{cascade}, {kind}"]["median_seed"]][f"{cascade}, {kind}"]
            built = Cascade(
                [tiers[k] for k in positions], record["thresholds"], temperatures=record["temperatures"]
            )
            systems[f"{cascade}, {kind}"] = lambda c=built: c.predict_detailed(texts)
    gate = seeds[stats["2 tiers, labelled"]["median_seed"]]["2 tiers, labelled"]
    median_seed = {"threshold": gate["thresholds"][0], "temperature": gate["temperatures"][0]}
    systems.update(two_by_two([tiers[1], tiers[2]], "2 tiers", median_seed, texts))
    return systems


def add_speeds(seeds: list[dict], stats: dict, per_row: dict[str, float]) -> None:
    """Each seed's speedup against tier 3 alone from the measured per-row costs (shares reaching
    each tier x its cost), and each median seed's end-to-end timed speedup beside it."""
    costs = [per_row[f"{n} alone"] for n in NAMES]
    for cascade, positions in CASCADES.items():
        for kind in GATES:
            key = f"{cascade}, {kind}"
            for s in seeds:
                s[key]["speedup"] = costs[2] / float(np.dot(s[key]["reached"], [costs[k] for k in positions]))
            stats[key]["speedup"] = spread([s[key]["speedup"] for s in seeds])
            stats[key]["median_seed_timed_speedup"] = costs[2] / per_row[key]
    for kind in GATES:
        ratio = [s[f"3 tiers, {kind}"]["speedup"] / s[f"2 tiers, {kind}"]["speedup"] for s in seeds]
        stats[f"3 tiers vs 2 tiers, {kind}"] = spread(ratio)
    escalated = stats["ceiling_escalated"]["median"]
    stats["ceiling_speedup"] = costs[2] / (costs[1] + escalated * costs[2])


def deferral(logits: list[np.ndarray], labels: np.ndarray, texts: list) -> dict:
    """Tier 2's confidence signals as predictors of disagreement with tier 3 on seed 0's evaluation
    rows, the learned rule fitted on its calibration rows."""
    from tango.deferral import deferral_study, words

    calibration, evaluation = split(len(labels), 0)
    lengths = words(texts)
    fit = (logits[1][calibration], logits[2][calibration], lengths[calibration])
    judged = (logits[1][evaluation], logits[2][evaluation], labels[evaluation], lengths[evaluation])
    return deferral_study(fit, judged)


@click.command()
@click.option("--data", "data_name", type=click.Choice(sorted(DATA)), required=True,
              help="Which data set's tiers (their recipes: configs/<data>.toml).")  # fmt: skip
@click.option("--series", "series_key", type=click.Choice(sorted(SERIES)), default="8", show_default=True,
              help="Which series of PROTOCOL.md: its protocol version and results' names.")  # fmt: skip
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed rounds after the warm-up.")
def main(data_name: str, series_key: str, repeats: int) -> None:
    """Run the series and write benchmarks/results/three_tiers_fair_<data>[_nested].{json,md,png}."""
    from docs_section import write_results

    from tango.bench import interleave
    from tango.hardware import machine, set_torch_threads
    from tango.splits import calibration_rows_for
    from tango.tuning import align_labels, score_tiers

    set_torch_threads(THREADS)
    config, names = DATA[data_name]
    tiers = [fastest_form(name, config) for name in names]
    pool, overlap = calibration_rows_for([t.path for t in tiers], tiers[0].labels)
    labels = align_labels(pool, tiers[0].labels)
    logits, scoring_costs = score_tiers(tiers, pool.texts)  # the gates' cost input, as Cascade.fit's
    seeds = [seed_outcomes(logits, labels, scoring_costs, seed) for seed in range(SEEDS)]
    stats = summary(seeds)
    evaluation = split(len(labels), 0)[1][: TIMED_ROWS[data_name]]
    texts = [pool.texts[i] for i in evaluation]
    timings = interleave(
        timed_systems(tiers, seeds, stats, texts), repeats, lambda m: click.echo(m, err=True)
    )
    per_row = {name: timing.median / len(texts) for name, timing in timings.items()}
    add_speeds(seeds, stats, per_row)
    stats["timed_rows_last_accuracy"] = float(
        (timings["MPNet-base alone"].result.argmax(1) == labels[evaluation]).mean()
    )
    stats["runtime_x_gate"] = runtime_x_gate(
        "2 tiers",
        timings,
        list(tiers[0].labels),
        labels[evaluation],
        len(texts),
        reference="MPNet-base alone",
    )
    stats["deferral"] = deferral(logits, labels, pool.texts)
    result = {
        "protocol": SERIES[series_key][0],
        "command": shlex.join(["python", "benchmarks/three_tier_series.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "pool": {"source": pool.source, "rows": len(pool), "inside_training_rows": overlap},
        "settings": {"seeds": SEEDS, "calibration_rows": CALIBRATION_ROWS, "timed_rows": len(texts),
                     "max_drop": MAX_DROP, "confidence_level": LEVEL, "repeats": repeats, "threads": THREADS},
        "tiers": [{"name": n, "path": str(t.path), "runtime": t.runtime.description,
                   "rows_per_s": len(texts) / timings[f"{n} alone"].median,
                   "rows_per_s_min": len(texts) / timings[f"{n} alone"].max,
                   "rows_per_s_max": len(texts) / timings[f"{n} alone"].min}
                  for n, t in zip(NAMES, tiers, strict=True)],
        "timed": {name: timing.seconds for name, timing in timings.items()},
        "summary": stats,
        "seeds": seeds,
    }  # fmt: skip
    name = f"three_tiers_fair_{data_name}{SERIES[series_key][1]}"
    write_results(name, result, markdown(result, name))
    plot(result, Path(__file__).resolve().parent / "results" / f"{name}.png")


def markdown(result: dict, name: str) -> str:
    """The series' tables: systems over seeds, the runtime x gate split, tier 2's deferral."""
    st, m, s = result["settings"], result["machine"], result["summary"]
    tiers, last_rate = result["tiers"], result["tiers"][2]["rows_per_s"]
    lines = [
        f"#### Three tiers trained to their best: {' -> '.join(t['name'] for t in tiers)}",
        "",
        f"`benchmarks/results/{name}.json` ({result['protocol']}): {result['pool']['rows']:,} held-out rows "
        f"({result['pool']['source']}), {st['seeds']} seeded splits into {st['calibration_rows']:,} "
        f"calibration rows (gates fitted there) and {result['pool']['rows'] - st['calibration_rows']:,} "
        f"evaluation rows (judging only); max drop {st['max_drop']} pt against MPNet-base alone at level "
        f"{st['confidence_level']}. Speeds: {st['timed_rows']:,} evaluation rows of seed 0, {st['repeats']} "
        f"interleaved rounds after a warm-up, {m['threads']} threads, tokenization included; each seed's "
        f"speedup from the measured per-row costs. Tiers: "
        + "; ".join(f"{t['name']} {t['runtime']}" for t in tiers)
        + f". {m['cpu']}; {m['date']}. Command: `{result['command']}`.",
        "",
        "| system | gate | accuracy drop vs MPNet-base, pt: median (p10-p90) | seeds within 0.5 pt "
        "| speedup vs MPNet-base: median (p10-p90) | rows reaching tiers 1..N, median | median seed timed |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, t in enumerate(tiers):
        acc = s["alone_accuracy"][k]
        lines.append(
            f"| {t['name']} alone | - | {100 * (s['alone_accuracy'][2]['median'] - acc['median']):+.2f} "
            f"(accuracy {100 * acc['median']:.2f}%) | - | {t['rows_per_s'] / last_rate:.2f}x "
            f"({t['rows_per_s']:.0f} rows/s) | - | - |"
        )
    for cascade in CASCADES:
        for kind in GATES:
            g = s[f"{cascade}, {kind}"]
            reach = ", ".join(f"{100 * r['median']:.1f}%" for r in g["reached"])
            lines.append(
                f"| {cascade} | {kind} | {g['drop']['median']:+.2f} ({g['drop']['p10']:+.2f} to "
                f"{g['drop']['p90']:+.2f}) | {100 * g['within_target']:.0f}% | {g['speedup']['median']:.2f}x "
                f"({g['speedup']['p10']:.2f}-{g['speedup']['p90']:.2f}) | {reach} | "
                f"{g['median_seed_timed_speedup']:.2f}x |"
            )
    ratios = "; ".join(
        f"{kind} {r['median']:.2f}x ({r['p10']:.2f}-{r['p90']:.2f})"
        for kind in GATES
        for r in [s[f"3 tiers vs 2 tiers, {kind}"]]
    )
    timed = "; ".join(
        f"{key}: seed {g['median_seed']}, {result['seeds'][g['median_seed']][key]['speedup']:.2f}x "
        f"converted, {g['median_seed_timed_speedup']:.2f}x timed"
        for key in (f"{c}, {kind}" for c in CASCADES for kind in GATES)
        for g in [s[key]]
    )
    lines += [
        "",
        f"Three tiers against two, per seed, median (p10-p90): {ratios}.",
        "",
        "The last column times each cascade at the seed whose share of rows reaching MPNet-base is "
        "the median (a check of the conversion from shares to speed; with three tiers, not the seed "
        f"of median speed): {timed}.",
    ]
    title = (
        "Runtime x gate, two tiers (labelled gate at its median seed; speed against MPNet-base alone on "
        "tango's runtime in the same rounds, accuracy drop against MPNet-base alone, on the timed rows):"
    )
    lines += two_by_two_lines(s["runtime_x_gate"], title, s["timed_rows_last_accuracy"], last_rate)
    auroc = ", ".join(f"{k} {a:.3f}" for k, a in s["deferral"]["auroc"].items() if a is not None)
    lines += [
        "",
        "MiniLM-L6 against MPNet-base on the evaluation rows: agrees on "
        f"{100 * s['agreement']['median']:.1f}% "
        f"(median over seeds); ceiling within 0.5 pt (fewest rows escalated, least confident first, chosen "
        f"with the evaluation labels: a bound) {100 * s['ceiling_escalated']['median']:.1f}% escalated, "
        f"{s['ceiling_speedup']:.2f}x; AUROC for disagreement (seed 0): {auroc}; learned rule beats "
        f"max-probability: {s['deferral'].get('beats_maxprob')}.",
        "",
        f"![{name}](../benchmarks/results/{name}.png)",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """One point per seed and gated system: speedup against drop, the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    markers = {"labelled": "o", "label-free": "^"}
    colors = {"2 tiers": "tab:blue", "3 tiers": "tab:orange"}
    for cascade in CASCADES:
        for kind in GATES:
            key = f"{cascade}, {kind}"
            speedups, drops = (
                [s[key]["speedup"] for s in result["seeds"]],
                [s[key]["drop"] for s in result["seeds"]],
            )
            ax.scatter(
                speedups, drops, s=16, alpha=0.7, marker=markers[kind], color=colors[cascade], label=key
            )
    ax.axhline(MAX_DROP, color="black", linestyle="--", linewidth=1, label=f"target {MAX_DROP} pt")
    ax.set(xlabel="speedup against MPNet-base alone (measured per-row costs)",
           ylabel="drop on evaluation rows (points)")  # fmt: skip
    ax.set_title("one point per seed")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
