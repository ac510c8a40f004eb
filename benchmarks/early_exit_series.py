"""Early exit judged like the cascade: series 3 of benchmarks/PROTOCOL.md (version 3), and the
same again as series 8 (version 8: each calibration fits on 30% of its sentences, certifies on 70%).

Two joint early-exit models trained on the series-2 rows (MiniLM-L6, an exit after every layer;
MPNet-base, exits after layers 2, 4, ..., 12) are calibrated per seed on the same 2,000 held-out
full sentences as the series-2 labelled gate: one temperature per exit and the maxprob threshold
certified within 0.5 pt of the model's own last exit at level 0.9 (``tango.early_exit.calibration.fit_exits``,
what `tango early-exit calibrate --max-drop 0.5` does). SST-2 dev only judges. Each model's
exits score every row set once; the seeds then reuse those logits. The median seed's model, the
same model run to its last exit and tier 2 (OpenVINO int8) are timed on dev, interleaved
round-robin (warm-up, 5 rounds, 2 threads, tokenization included).

    tango build configs/sst2.toml minilm-l6-sst2-g30k-ee-joint mpnet-base-sst2-g30k-ee-joint
    python benchmarks/early_exit_series.py      # -> results/early_exit_new_text_v8.{json,md}

Series 3 (results early_exit_new_text.*) ran before version 8 split the calibration rows; the code
has only the split now, so a run is series 8.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from new_text_series import (  # noqa: E402
    LABELLED_ROWS,
    LEVEL,
    MAX_DROP,
    REPEATS,
    SEEDS,
    THREADS,
    TIER2,
    load,
    spread,
)

ROOT = Path(__file__).resolve().parent
MODELS = {
    "MiniLM-L6, exits 1-6": "minilm-l6-sst2-g30k-ee-joint",
    "MPNet-base, exits 2-12": "mpnet-base-sst2-g30k-ee-joint",
}
NAME = "early_exit_new_text_v8"  # series 3's results: early_exit_new_text.*
PROTOCOL = "benchmarks/PROTOCOL.md, version 8, 2026-12-06 (calibration split 30/70)"
CASCADE = "new_text_sst2_series2"  # the cascade this series sits beside (its pick, labelled gate)


def load_model(name: str) -> Any:
    from tango.early_exit import EarlyExitClassifier
    from tango.hardware import set_torch_threads
    from tango.registry import registered_dir

    path = registered_dir(name)
    if path is None:
        raise click.ClickException(f"no model {name}: tango build configs/sst2.toml {name}")
    set_torch_threads(THREADS)
    return EarlyExitClassifier.from_pretrained(path)


def rows(labels: list[str]) -> dict[str, Any]:
    """Dev (judges) and the held-out full sentences of tier 2's groups (the early-exit models were
    trained without the same groups: checked)."""
    from tango.data import load_labelled
    from tango.registry import registered_dir
    from tango.splits import held_out_rows

    dev = load_labelled(ROOT.parent.parent / "shared" / "data" / "sst2" / "dev.tsv", label_names=labels)
    held = held_out_rows(registered_dir(TIER2))
    for name in MODELS.values():
        if held_out_rows(registered_dir(name)).to_dict() != held.to_dict():
            raise click.ClickException(
                f"{name} did not hold out {TIER2}'s groups: rebuild it from [rows.sst2-g30k]"
            )
    sentences, _ = held.load_with_rest(labels)
    return {"dev": dev, "sentences": sentences}


def seed_series(
    model: Any, logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], tier2_accuracy: float
) -> dict:
    """Each seed's calibration (its 2,000 sentences) and the model it makes, judged on dev."""
    from tango.early_exit.calibration import exit_confidences, first_exits, fit_exits

    layers = np.asarray(model.exits_)
    rows_dev = np.arange(len(labels["dev"]))
    right = logits["dev"].argmax(axis=2) == labels["dev"]
    last_accuracy = float(right[-1].mean())
    seeds = []
    for seed in range(SEEDS):
        draw = np.random.default_rng(seed).permutation(len(labels["sentences"]))[:LABELLED_ROWS]
        fitted = fit_exits(logits["sentences"][:, draw], labels["sentences"][draw], layers.tolist(),
                           max_drop=MAX_DROP, confidence_level=LEVEL, seed=seed)  # fmt: skip
        temperatures = [float(s.temperature_) for s in fitted["scalers"]]
        first = first_exits(exit_confidences(fitted["scalers"], logits["dev"]), fitted["threshold"])
        accuracy = float(right[first, rows_dev].mean())
        seeds.append({
            "seed": seed, "temperatures": temperatures, "threshold": fitted["threshold"],
            "bound": fitted["drop_bound"], "accuracy": accuracy,
            "drop": 100 * (last_accuracy - accuracy), "drop_vs_tier2": 100 * (tier2_accuracy - accuracy),
            "mean_exit_layer": float(layers[first].mean()),
        })  # fmt: skip
    drops = [s["drop"] for s in seeds]
    order = np.argsort([s["mean_exit_layer"] for s in seeds])
    return {
        "last_exit_accuracy": last_accuracy,
        "seeds": seeds,
        "drop": spread(drops),
        "drop_vs_tier2": spread([s["drop_vs_tier2"] for s in seeds]),
        "mean_exit_layer": spread([s["mean_exit_layer"] for s in seeds]),
        "within": float(np.mean([d <= MAX_DROP for d in drops])),
        "median_seed": int(order[len(order) // 2]),
    }


def timed(models: dict[str, Any], series: dict[str, dict], tier2: Any, dev: list[str], repeats: int) -> dict:
    """The median seed's model, the same model to its last exit, and tier 2: interleaved."""
    import copy

    from tango.bench import interleave
    from tango.early_exit.calibration import NEVER_EARLY

    systems = {"tier 2 (OpenVINO int8)": lambda: tier2.logits(dev)}
    for label, model in models.items():
        chosen = series[label]["seeds"][series[label]["median_seed"]]
        early, full = copy.copy(model), copy.copy(model)
        early.temperatures, early.threshold = chosen["temperatures"], chosen["threshold"]
        full.temperatures, full.threshold = chosen["temperatures"], NEVER_EARLY
        systems[f"{label}: median seed"] = lambda m=early: m.predict_detailed(dev)
        systems[f"{label}: last exit"] = lambda m=full: m.predict_detailed(dev)
    timings = interleave(systems, repeats, lambda message: click.echo(message, err=True))
    return {name: {"rows_per_s": len(dev) / t.median, "min": len(dev) / t.max, "max": len(dev) / t.min,
                   "result": t.result} for name, t in timings.items()}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    speed = result["speed"]
    tier2 = speed["tier 2 (OpenVINO int8)"]["rows_per_s"]
    lines = [
        f"### Early exit judged like the cascade (series {result.get('series', '3')})",
        "",
        f"{result['protocol']}. Dev ({result['dev_rows']} rows) judges; each of {SEEDS} seeds fits the "
        f"exits' temperatures and certifies the threshold (within {MAX_DROP} pt of the model's last exit "
        f"at level {LEVEL}) on {LABELLED_ROWS:,} held-out full sentences. {m['cpu']}, {THREADS} threads, "
        f"{m['date']}; rows/s: median (min-max) of {result['repeats']} interleaved rounds on dev. "
        f"Command: `{result['command']}`.",
        "",
        "| model | last exit accuracy | drop vs last exit, median (p10-p90) | seeds within 0.5 pt | "
        "drop vs tier 2, median | mean exit layer | speedup vs own last exit | rows/s vs tier 2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, s in result["models"].items():
        early, full = speed[f"{label}: median seed"], speed[f"{label}: last exit"]
        d, layer = s["drop"], s["mean_exit_layer"]["median"]
        cells = [
            label,
            f"{s['last_exit_accuracy']:.2%}",
            f"{d['median']:+.2f} ({d['p10']:+.2f} to {d['p90']:+.2f})",
            f"{s['within']:.0%}",
            f"{s['drop_vs_tier2']['median']:+.2f}",
            f"{layer:.2f}",
            f"{early['rows_per_s'] / full['rows_per_s']:.2f}x",
            f"{early['rows_per_s'] / tier2:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| system | rows/s (median) | min-max |", "|---|---|---|"]
    for name, row in speed.items():
        lines.append(f"| {name} | {row['rows_per_s']:.1f} | {row['min']:.1f}-{row['max']:.1f} |")
    cascade = result.get("cascade")
    if cascade:
        lines += [
            "",
            f"Beside it, the cascade of series 2 ({cascade['variant']}, labelled gate, "
            f"`benchmarks/results/{CASCADE}.md`): {cascade['within']:.0%} of seeds within 0.5 pt of tier 2 "
            f"at a median {cascade['speedup']:.2f}x tier 2 (its own run's timing).",
        ]
    return "\n".join(lines) + "\n"


def cascade_figures() -> dict[str, Any] | None:
    """The series-2 pick's labelled gate, as its results file holds it."""
    path = ROOT / "results" / f"{CASCADE}.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    variant = result["picked_variant"]
    gate = result["variants"][variant]["labelled"]
    return {"variant": variant, "within": gate["within_target"], "speedup": gate["speedup"]["median"]}


@click.command()
@click.option("--repeats", type=int, default=REPEATS, show_default=True, help="Timed rounds.")
@click.option("--out", type=click.Path(file_okay=False), default=str(ROOT / "results"), show_default=True)
def main(repeats: int, out: str) -> None:
    """Run series 8 (PROTOCOL.md version 8) and write its results."""
    from tango.hardware import machine
    from tango.labels import label_ids
    from tango.quiet import quiet_libraries

    with quiet_libraries():
        models = {label: load_model(name) for label, name in MODELS.items()}
        names = list(next(iter(models.values())).classes_)
        data = rows(names)
        tier2 = load(TIER2)
        dev = list(data["dev"].texts)
        labels = {k: label_ids(data[k].labels, names) for k in ("dev", "sentences")}
        tier2_accuracy = float((tier2.logits(dev).argmax(1) == labels["dev"]).mean())
        series = {}
        for label, model in models.items():
            click.echo(f"{label}: exits on {len(data['sentences'])} sentences and dev", err=True)
            logits = {k: model.exit_logits(list(data[k].texts)) for k in ("sentences", "dev")}
            series[label] = seed_series(model, logits, labels, tier2_accuracy)
        speed = timed(models, series, tier2, dev, repeats)
    truth = np.asarray(names)[labels["dev"]]
    for label in models:  # the timed run's answers beside the simulated policy's (recorded, not assumed)
        ran = speed[f"{label}: median seed"]["result"]
        series[label]["median_seed_run"] = {
            "accuracy": float((np.asarray(ran.labels) == truth).mean()),
            "mean_exit_layer": float(ran.mean_exit_layer),
        }
    for row in speed.values():
        row.pop("result", None)
    result = {
        "series": "8",
        "protocol": PROTOCOL,
        "command": "python benchmarks/early_exit_series.py",
        "machine": machine(THREADS),
        "repeats": repeats,
        "dev_rows": len(dev),
        "held_out_sentences": len(data["sentences"]),
        "tier2_accuracy": tier2_accuracy,
        "models": series,
        "speed": speed,
        "cascade": cascade_figures(),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"{NAME}.json").write_text(json.dumps(result, indent=2))
    (Path(out) / f"{NAME}.md").write_text(markdown(result))
    click.echo(markdown(result))


if __name__ == "__main__":
    main()
