"""CPU speedup benchmark: tiers, cascades, early exit and the peers, in one run per data set.

A thin caller of `tango bench` (:func:`tango.bench.bench`) for the named data sets below: it
picks each tier's faster runtime (ONNX int8 or PyTorch bf16), adds the early-exit models to the
systems timed, and writes the docs. Every system scores the same rows end to end (tokenization
included) with the same threads; the systems are timed interleaved round-robin (a warm-up round,
then REPEATS rounds) and reported as median (min-max). Thresholds of the cascade are chosen by
2-fold cross-fitting on the benchmark rows (calibrate on one half, score the other), so the
chosen operating point is never judged on the rows that chose it.

    python benchmarks/bench.py                      # every data set below, then docs/benchmarks.md
    python benchmarks/bench.py --dataset sst2 --repeats 5

Writes benchmarks/results/<dataset>.{json,md,png,html} and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

THREADS = 2
REPEATS = 5  # timed rounds after the warm-up round (the rules: at least 5)
MAX_DROP = 0.5  # accuracy points below tier 2 alone that the chosen threshold may lose
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


def load_rows(spec: dict[str, Any], label_names: list[str]):
    from tango.data import load_labelled, split_rows

    data = load_labelled(DATA / spec["file"], label_names=label_names)
    if "dev_split" in spec:  # the same seeded split the tiers were trained without
        fraction, seed = spec["dev_split"]
        data = data.subset(split_rows(len(data), fraction, seed)[1])
    return data


def fastest_tier(name: str, data, repeats: int, log: Callable[[str], None]):
    """Load a tier on ONNX Runtime int8 and on PyTorch bf16; keep the faster (stated in rows)."""
    from tango.bench import interleave
    from tango.registry import registered
    from tango.tiers import Tier

    candidates = {"onnx int8": f"{name}-int8", "pytorch bf16": name}
    tiers = {}
    for runtime, model in candidates.items():
        if model in registered() or Path(model).is_dir():
            # bf16-autocast: what the published figures ran ("bf16" now casts the weights once)
            tiers[runtime] = Tier.from_pretrained(model, threads=THREADS, precision="bf16-autocast")
    if not tiers:
        raise click.ClickException(
            f"no tier named {name!r} or {name}-int8 is registered; build them "
            "with `bash benchmarks/make_models.sh`"
        )
    timings = interleave(
        {runtime: functools.partial(tier.logits, data.texts) for runtime, tier in tiers.items()}, repeats
    )
    speeds = {runtime: len(data) / timing.median for runtime, timing in timings.items()}
    for runtime, speed in speeds.items():
        log(f"  {candidates[runtime]} on {runtime}: {speed:.0f} rows/s")
    runtime = max(speeds, key=lambda r: speeds[r])
    return tiers[runtime], runtime, speeds


def early_exit_systems(names: list[str], batch1: tuple[str, ...] = ()) -> dict[str, tuple[Callable, dict]]:
    """Early-exit models at each policy knob, timed in the same rounds as the cascade."""
    from tango.early_exit import EarlyExitClassifier
    from tango.registry import resolve

    systems: dict[str, tuple[Callable, dict]] = {}
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
                knob = f"@{threshold}" if policy == "maxprob" else f"-patience{patience}"
                suffix = "-batch1" if batch_size == 1 else ""
                systems[f"early-exit-{mode}{knob}{suffix}"] = (
                    model.predict_detailed,
                    {"model": name, "batch_size": batch_size, "policy": policy, "runtime": "pytorch bf16"},
                )
    return systems


def run_dataset(
    name: str,
    repeats: int,
    log: Callable[[str], None],
    out: Path,
    limit: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One data set through tango.bench, cross-fitted, with the peers and the early-exit models."""
    import torch

    from tango.bench import bench
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
    result = bench(
        [t1, t2],
        data,
        max_drop=MAX_DROP,
        repeats=repeats,
        threads=THREADS,
        peers=True,
        extra_systems=early_exit_systems(spec.get("early_exit", []), spec.get("early_exit_batch1", ())),
        out=out,
        name=name,  # out/<name>.json, .md, .png, .html and the reliability diagram
        command=shlex.join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
        log=log,
    )
    result["dataset"] = name
    result["runtimes"] = {
        "tier1": {"chosen": r1, "rows_per_s": speeds1},
        "tier2": {"chosen": r2, "rows_per_s": speeds2},
    }
    return result


# --- reports ----------------------------------------------------------------------------------
def markdown(result: dict[str, Any], results_dir: Path = ROOT / "results") -> str:
    """A data set's section of docs/benchmarks.md: tango bench's table, early exit, the targets."""
    from tango.benchreport import markdown as bench_markdown

    if "systems" not in result:  # measured before tango bench: the section as it was written then
        return (results_dir / f"{result['dataset']}.md").read_text()
    lines = [
        f"### {result['dataset']} ({result['data']['scored']} rows)",
        "",
        f"Runtimes chosen: tier 1 {result['runtimes']['tier1']['chosen']}, tier 2 "
        f"{result['runtimes']['tier2']['chosen']}.",
        "",
        bench_markdown(result),
    ]
    exits = [r for r in result["systems"] if "mean_exit_layer" in r]
    if exits:
        lines += ["| early-exit system | batch | mean exit layer |", "|---|---|---|"]
        lines += [
            f"| {r['system']} | {r['settings']['batch_size']} | {r['mean_exit_layer']:.2f} |" for r in exits
        ]
        lines.append("")
    lines += [targets(result), ""]
    return "\n".join(lines)


def _versus(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Speed ratio and accuracy difference of row a over row b."""
    return f"{a['rows_per_s'] / b['rows_per_s']:.1f}x, {100 * (a['accuracy'] - b['accuracy']):+.2f} pt"


def targets(result: dict[str, Any]) -> str:
    """The issue's SST-2 targets, measured: met or missed, and by how much."""
    by = {r["system"]: r for r in result["systems"]}
    chosen = by["chosen"]
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


def write_docs(results: list[dict[str, Any]], out: Path) -> None:
    intro = (ROOT / "README.md").read_text()
    parts = [intro, "## Results", ""]
    for result in results:
        parts += [
            markdown(result, out),
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
    help="Where the JSON, Markdown, PNG and HTML results go.",
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
            name, repeats, lambda m: click.echo(m, err=True), out, limit, tier1=tier1, tier2=tier2
        )
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))  # with dataset and runtimes
        (out / f"{name}.md").write_text(markdown(result, out))
        click.echo(markdown(result, out))
    if out == ROOT / "results" and not limit:
        done = [json.loads((out / f"{n}.json").read_text()) for n in DATASETS if (out / f"{n}.json").exists()]
        write_docs(done, out)


if __name__ == "__main__":
    main()
