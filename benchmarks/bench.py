"""CPU speedup benchmark: tiers, cascades, early exit and the peers, in one run per data set.

Every system scores the same rows end to end (tokenization included) with the same thread
count, after a warm-up, and reports the median of REPEATS runs. Thresholds of the cascade are
chosen by 2-fold cross-fitting on the benchmark rows (calibrate on one half, score the other),
so the chosen operating point is never judged on the rows that chose it.

    python benchmarks/bench.py                      # every data set below, then docs/benchmarks.md
    python benchmarks/bench.py --dataset sst2 --repeats 5

Writes benchmarks/results/<dataset>.{json,md,png} and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

THREADS = 2
REPEATS = 3
MAX_DROP = 0.5  # accuracy points below tier 2 alone that the chosen threshold may lose
REFERENCE_THRESHOLD = 0.85  # the TangoBERT reference script's hard-coded threshold
SWEEP_ESCALATION = (0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6)  # cascade points measured end to end
EARLY_EXIT_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)  # maxprob, on per-exit calibrated probabilities
EARLY_EXIT_PATIENCE = (1, 2)  # PABEE
ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
DATASETS: dict[str, dict[str, Any]] = {
    "sst2": {
        "file": "sst2/dev.tsv",
        "tier1": "minilm-l6-sst2-distilled",
        "tier2": "mpnet-base-sst2",
        "early_exit": [
            "minilm-l6-sst2-ee-joint",
            "minilm-l6-sst2-ee-sweet",
            "mpnet-base-sst2-ee-joint",
            "mpnet-base-sst2-ee-sweet",
        ],
        "early_exit_batch1": ("minilm-l6-sst2-ee-joint", "minilm-l6-sst2-ee-sweet"),
    },
    "ag_news": {
        "file": "ag_news/train_10k.tsv",
        "dev_split": (0.1, 0),
        "tier1": "minilm-l6-agnews",
        "tier2": "mpnet-base-agnews",
        "early_exit": [],
    },
    "mrpc": {
        "file": "mrpc/validation.tsv",
        "tier1": "minilm-l6-mrpc",
        "tier2": "mpnet-base-mrpc",
        "early_exit": [],
    },
}

os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, threads and library versions."""
    import onnxruntime
    import torch
    import transformers

    import tango

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": THREADS,
        "isa": [f for f in ("avx512_vnni", "amx_int8", "amx_bf16") if f in flags],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "tango": tango.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def timed(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` runs after one warm-up run, and the last result."""
    result = run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def load_rows(spec: dict[str, Any], label_names: list[str]):
    from tango.data import load_labelled, split_rows

    data = load_labelled(DATA / spec["file"], label_names=label_names)
    if "dev_split" in spec:  # the same seeded split the tiers were trained without
        fraction, seed = spec["dev_split"]
        data = data.subset(split_rows(len(data), fraction, seed)[1])
    return data


def fastest_tier(name: str, data, repeats: int, log: Callable[[str], None]):
    """Load a tier on ONNX Runtime int8 and on PyTorch bf16; keep the faster (stated in rows)."""
    from tango.registry import registered
    from tango.tiers import Tier

    candidates = {"onnx int8": f"{name}-int8", "pytorch bf16": name}
    timings = {}
    for runtime, model in candidates.items():
        if model not in registered() and not Path(model).is_dir():
            continue
        # bf16-autocast: what the published figures ran ("bf16" now casts the weights once)
        tier = Tier.from_pretrained(model, threads=THREADS, precision="bf16-autocast")
        timings[runtime] = (timed(lambda t=tier: t.logits(data.texts), repeats)[0], tier)
        log(f"  {model} on {runtime}: {len(data) / timings[runtime][0]:.0f} rows/s")
    if not timings:
        raise click.ClickException(
            f"no tier named {name!r} or {name}-int8 is registered; build them "
            "with `bash benchmarks/make_models.sh`"
        )
    runtime = min(timings, key=lambda r: timings[r][0])
    return timings[runtime][1], runtime, {r: len(data) / s for r, (s, _) in timings.items()}


def accuracy(predicted: np.ndarray, data) -> float:
    return float((np.asarray(predicted) == np.asarray(data.label_names)[data.labels]).mean())


def row(
    system: str,
    settings: dict[str, Any],
    acc: float,
    seconds: float,
    n: int,
    escalated: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "system": system,
        "settings": settings,
        "accuracy": acc,
        "rows_per_s": n / seconds,
        "seconds": seconds,
        "escalated": escalated,
        **extra,
    }


def bench_tiers(t1, t2, data, repeats: int) -> tuple[list[dict], float, float]:
    rows, costs = [], []
    for system, tier in (("tier1", t1), ("tier2", t2)):
        seconds, predicted = timed(lambda t=tier: t.predict(data.texts), repeats)
        costs.append(seconds / len(data))
        rows.append(
            row(
                system,
                {
                    "model": tier.source,
                    "runtime": tier.runtime.description,
                    "padding_efficiency": tier.last_padding_efficiency_,
                },
                accuracy(predicted, data),
                seconds,
                len(data),
                0.0 if system == "tier1" else 1.0,
            )
        )
    return rows, costs[0], costs[1]


def bench_cascade_sweep(t1, t2, data, repeats: int, c1: float, c2: float) -> list[dict]:
    """End-to-end cascade at several thresholds (temperatures fitted on all rows: descriptive)."""
    from tango.cascade import Cascade
    from tango.confidence import confidence, softmax
    from tango.tuning import calibrate_cascade

    cascade = Cascade([t1, t2])
    calibrate_cascade(cascade, data)  # no target: temperatures only
    conf = confidence(softmax(t1.logits(data.texts), cascade.temperatures[0]), cascade.confidence)
    rows = []
    for fraction in SWEEP_ESCALATION:
        cascade.thresholds = [float(np.quantile(conf, fraction))]
        seconds, result = timed(lambda: cascade.predict_detailed(data.texts), repeats)
        f = result.stats.escalated[0]
        rows.append(
            row(
                f"cascade@{cascade.thresholds[0]:.4f}",
                {"temperatures": cascade.temperatures, "threshold_source": "sweep (in-sample temperatures)"},
                accuracy(result.labels, data),
                seconds,
                len(data),
                f,
                analytic_speedup=c2 / (c1 + f * c2),
            )
        )
    return rows


def bench_cascade_chosen(t1, t2, data, repeats: int, c1: float, c2: float) -> dict:
    """The calibrated operating point, cross-fitted: each half is scored with the other's choice."""
    from tango.cascade import Cascade
    from tango.data import split_rows
    from tango.tuning import calibrate_cascade

    halves = split_rows(len(data), 0.5, seed=0)
    seconds, correct, escalated, thresholds = 0.0, 0, 0, []
    for calibrate_on, score_on in (halves, halves[::-1]):
        cascade = Cascade([t1, t2])
        report = calibrate_cascade(cascade, data.subset(calibrate_on), max_drop=MAX_DROP)
        thresholds.append(report.threshold)
        part = data.subset(score_on)
        s, result = timed(lambda c=cascade, p=part: c.predict_detailed(p.texts), repeats)
        seconds += s
        correct += accuracy(result.labels, part) * len(part)
        escalated += result.stats.escalated[0] * len(part)
    f = escalated / len(data)
    return row(
        f"cascade@{np.mean(thresholds):.4f}",
        {
            "threshold_source": f"calibrated, max_drop {MAX_DROP} points, 2-fold cross-fitted",
            "thresholds": thresholds,
        },
        correct / len(data),
        seconds,
        len(data),
        f,
        analytic_speedup=c2 / (c1 + f * c2),
        chosen=True,
    )


def bench_reference(t1, t2, data, repeats: int) -> list[dict]:
    """TangoBERT's reference method and plain tier 2, as most users run them: HF pipelines, fp32."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(THREADS)
    pipes = [
        pipeline(
            "text-classification", model=str(_torch_dir(t)), device=-1, batch_size=32, dtype=torch.float32
        )
        for t in (t1, t2)
    ]
    inputs = [t if isinstance(t, str) else {"text": t[0], "text_pair": t[1]} for t in data.texts]

    def scores(pipe, rows):
        return pipe(rows, truncation=True) if rows else []

    def reference():
        first = scores(pipes[0], inputs)
        labels = [o["label"] for o in first]
        unsure = [i for i, o in enumerate(first) if o["score"] < REFERENCE_THRESHOLD]
        for i, o in zip(unsure, scores(pipes[1], [inputs[i] for i in unsure]), strict=True):
            labels[i] = o["label"]
        return labels, len(unsure) / len(inputs)

    seconds, (labels, escalated) = timed(reference, repeats)
    rows = [
        row(
            "tangobert-reference",
            {
                "runtime": "transformers pipeline, pytorch fp32",
                "batch_size": 32,
                "threshold": REFERENCE_THRESHOLD,
                "confidence": "uncalibrated maxprob",
            },
            accuracy(labels, data),
            seconds,
            len(data),
            escalated,
        )
    ]
    seconds, out = timed(lambda: scores(pipes[1], inputs), repeats)
    rows.append(
        row(
            "tier2-pipeline",
            {"runtime": "transformers pipeline, pytorch fp32", "batch_size": 32},
            accuracy([o["label"] for o in out], data),
            seconds,
            len(data),
            1.0,
        )
    )
    return rows


def _torch_dir(tier) -> Path:
    """The PyTorch weights behind a tier (an int8 export keeps its source in tango_export.json)."""
    info = tier.path / "tango_export.json"
    if (tier.path / "model.safetensors").exists() or not info.exists():
        return tier.path
    return Path(json.loads(info.read_text())["source"])


def bench_early_exit(names: list[str], data, repeats: int, batch1: tuple[str, ...] = ()) -> list[dict]:
    from tango.early_exit import EarlyExitClassifier
    from tango.registry import resolve

    rows = []
    for name in names:
        try:
            path = resolve(name)
        except ValueError:
            continue
        mode = json.loads((path / "early_exit.json").read_text()).get("mode", name)
        knobs = [("maxprob", threshold, 2) for threshold in EARLY_EXIT_THRESHOLDS]
        knobs += [("patience", None, patience) for patience in EARLY_EXIT_PATIENCE]
        for policy, threshold, patience in knobs:
            for batch_size in (32, 1):
                if batch_size == 1 and (threshold != EARLY_EXIT_THRESHOLDS[1] or name not in batch1):
                    continue  # batch size 1 is slow: one threshold on the small models shows the gap
                model = EarlyExitClassifier.from_pretrained(
                    path,
                    policy=policy,
                    threshold=threshold,
                    patience=patience,
                    precision="bf16",
                    batch_size=batch_size,
                )
                seconds, result = timed(lambda m=model: m.predict_detailed(data.texts), repeats)
                knob = f"@{threshold}" if policy == "maxprob" else f"-patience{patience}"
                rows.append(
                    row(
                        f"early-exit-{mode}{knob}",
                        {
                            "model": name,
                            "batch_size": batch_size,
                            "policy": policy,
                            "runtime": "pytorch bf16",
                        },
                        accuracy(result.labels, data),
                        seconds,
                        len(data),
                        None,
                        mean_exit_layer=result.mean_exit_layer,
                    )
                )
    return rows


def run_dataset(
    name: str, repeats: int, log: Callable[[str], None], limit: int | None = None, **overrides: Any
) -> dict[str, Any]:
    import torch

    from tango.tiers import Tier

    torch.set_num_threads(THREADS)
    spec = {**DATASETS[name], **{k: v for k, v in overrides.items() if v}}
    labels = Tier.from_pretrained(spec["tier1"], runtime="torch", threads=THREADS).labels
    data = load_rows(spec, labels)
    if limit:
        data = data.subset(np.arange(min(limit, len(data))))
    log(f"{name}: {len(data)} rows; choosing runtimes")
    t1, r1, speeds1 = fastest_tier(spec["tier1"], data, repeats, log)
    t2, r2, speeds2 = fastest_tier(spec["tier2"], data, repeats, log)
    rows, c1, c2 = bench_tiers(t1, t2, data, repeats)
    log("tiers done; cascade sweep")
    rows += bench_cascade_sweep(t1, t2, data, repeats, c1, c2)
    rows.append(bench_cascade_chosen(t1, t2, data, repeats, c1, c2))
    log("cascade done; reference pipelines")
    rows += bench_reference(t1, t2, data, repeats)
    log("reference done; early exit")
    rows += bench_early_exit(spec.get("early_exit", []), data, repeats, spec.get("early_exit_batch1", ()))
    tier2_speed = next(r["rows_per_s"] for r in rows if r["system"] == "tier2")
    for r in rows:
        r["speedup"] = r["rows_per_s"] / tier2_speed
    return {
        "dataset": name,
        "rows_scored": len(data),
        "machine": machine(),
        "repeats": repeats,
        "runtimes": {
            "tier1": {"chosen": r1, "rows_per_s": speeds1},
            "tier2": {"chosen": r2, "rows_per_s": speeds2},
        },
        "rows": rows,
    }


# --- reports ----------------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"### {result['dataset']} ({result['rows_scored']} rows)",
        "",
        f"{m['cpu']}, {m['threads']} threads, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"transformers {m['transformers']}; median of {result['repeats']} runs after a warm-up; {m['date']}.",
        f"Runtimes chosen: tier 1 {result['runtimes']['tier1']['chosen']}, tier 2 "
        f"{result['runtimes']['tier2']['chosen']}.",
        "",
        "| system | accuracy | rows/s | speedup vs tier2 | escalated | analytic bound | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        bound = r.get("analytic_speedup")
        notes = "**chosen**" if r.get("chosen") else ""
        if "mean_exit_layer" in r:
            notes = f"batch {r['settings']['batch_size']}, mean exit layer {r['mean_exit_layer']:.2f}"
        lines.append(
            f"| {r['system']} | {r['accuracy']:.2%} | {r['rows_per_s']:.1f} | {r['speedup']:.2f}x | "
            + (f"{r['escalated']:.1%}" if r["escalated"] is not None else "-")
            + " | "
            + (f"{bound:.2f}x ({r['speedup'] / bound:.0%})" if bound else "-")
            + f" | {notes} |"
        )
    lines += ["", targets(result), ""]
    return "\n".join(lines)


def _versus(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Speed ratio and accuracy difference of row a over row b."""
    return f"{a['rows_per_s'] / b['rows_per_s']:.1f}x, {100 * (a['accuracy'] - b['accuracy']):+.2f} pt"


def targets(result: dict[str, Any]) -> str:
    """The issue's SST-2 targets, measured: met or missed, and by how much."""
    by = {r["system"]: r for r in result["rows"]}
    chosen = next(r for r in result["rows"] if r.get("chosen"))
    tier2, ref, pipe = by["tier2"], by["tangobert-reference"], by["tier2-pipeline"]
    checks = [
        (
            "accuracy within 0.5 pt of tier 2 alone",
            f"{100 * (chosen['accuracy'] - tier2['accuracy']):+.2f} pt",
            chosen["accuracy"] >= tier2["accuracy"] - 0.005,
        ),
        (">= 3x tier-2-alone throughput", f"{chosen['speedup']:.2f}x", chosen["speedup"] >= 3),
        (
            ">= 8x the TangoBERT reference at >= its accuracy",
            _versus(chosen, ref),
            chosen["rows_per_s"] >= 8 * ref["rows_per_s"] and chosen["accuracy"] >= ref["accuracy"],
        ),
        (
            ">= 12x tier 2 through pipeline within 0.5 pt",
            _versus(chosen, pipe),
            chosen["rows_per_s"] >= 12 * pipe["rows_per_s"]
            and chosen["accuracy"] >= pipe["accuracy"] - 0.005,
        ),
        (
            "measured speedup >= 90% of the analytic bound",
            f"{chosen['speedup'] / chosen['analytic_speedup']:.0%}",
            chosen["speedup"] >= 0.9 * chosen["analytic_speedup"],
        ),
        (
            "padding efficiency >= 0.9",
            f"{by['tier1']['settings']['padding_efficiency']:.3f}",
            by["tier1"]["settings"]["padding_efficiency"] >= 0.9,
        ),
    ]
    lines = ["| target (chosen cascade) | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in checks]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    groups: dict[str, list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault(r["system"].split("@")[0], []).append(r)
    for name, rows in groups.items():
        rows = sorted(rows, key=lambda r: r["rows_per_s"])
        style = "o-" if len(rows) > 1 else "s"
        ax.plot([r["rows_per_s"] for r in rows], [100 * r["accuracy"] for r in rows], style, label=name)
    chosen = next(r for r in result["rows"] if r.get("chosen"))
    ax.annotate(
        "chosen",
        (chosen["rows_per_s"], 100 * chosen["accuracy"]),
        textcoords="offset points",
        xytext=(5, -12),
    )
    ax.set(
        xscale="log",
        xlabel="rows/s (log scale, end to end, 2 threads)",
        ylabel="accuracy (%)",
        title=f"{result['dataset']}: speed vs accuracy",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_docs(results: list[dict[str, Any]]) -> None:
    intro = (ROOT / "README.md").read_text()
    parts = [intro, "## Results", ""]
    for result in results:
        parts += [
            markdown(result),
            f"![{result['dataset']}](../benchmarks/results/{result['dataset']}.png)",
            "",
        ]
    (ROOT.parent / "docs" / "benchmarks.md").write_text("\n".join(parts))


@click.command()
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    type=click.Choice(sorted(DATASETS)),
    help="Data set(s) to run (default: all).",
)
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed runs after the warm-up.")
@click.option("--limit", type=int, default=None, help="Only the first N rows (a smoke test).")
@click.option("--tier1", default=None, help="Override the data set's tier-1 name.")
@click.option("--tier2", default=None, help="Override the data set's tier-2 name.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=str(ROOT / "results"),
    show_default=True,
    help="Where the JSON, Markdown and PNG results go.",
)
def main(
    datasets: tuple[str, ...],
    repeats: int,
    limit: int | None,
    tier1: str | None,
    tier2: str | None,
    out_dir: str,
) -> None:
    """Run the benchmark and write the results and docs/benchmarks.md."""
    out = Path(out_dir)
    out.mkdir(exist_ok=True, parents=True)
    for name in datasets or tuple(DATASETS):
        result = run_dataset(
            name, repeats, lambda m: click.echo(m, err=True), limit, tier1=tier1, tier2=tier2
        )
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        (out / f"{name}.md").write_text(markdown(result))
        plot(result, out / f"{name}.png")
        click.echo(markdown(result))
    if out == ROOT / "results" and not limit:
        done = [json.loads((out / f"{n}.json").read_text()) for n in DATASETS if (out / f"{n}.json").exists()]
        write_docs(done)


if __name__ == "__main__":
    main()
