"""Ray engine vs local engine on one machine, and tier-1 pool scaling (docs/distributed.md).

Scores the same N rows (default: the first 20,000 sentences of SST-2 train) with
``tango run``'s local engine and with the Ray engine at a tier-1 pool of 1 and of 2 actors.
Each timed run is end to end: loading the tiers, reading, scoring, writing, and for Ray the
actor start-up and the exactly-once check (the Ray cluster itself is started once, untimed).
Systems run round-robin (local, ray-1, ray-2, local, ...) after one untimed warm-up round, so a
slow spell on the machine hits every system alike; the report gives median and min-max.

    python benchmarks/bench_distributed.py                        # 20k rows, 3 repeats
    python benchmarks/bench_distributed.py --rows 200 --repeats 1 --no-warmup --no-docs   # smoke

Writes benchmarks/results/distributed.{json,md} and the figures section of docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from docs_section import fill_section

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DOCS = ROOT.parent / "docs" / "distributed.md"
DATA = ROOT.parent.parent / "shared" / "data" / "sst2" / "train.tsv"


def machine(cpus: int) -> dict[str, Any]:
    """bench.py's machine record plus Ray's version and the CPUs given to Ray."""
    import ray
    from bench import machine as base  # benchmarks/ is this script's directory

    record = base()
    record.update(ray=ray.__version__, ray_cpus=cpus)
    return record


def write_input(source: Path, rows: int, target: Path) -> int:
    """The first ``rows`` good sentences of a tango-readable file, as JSON lines with ids."""
    from tango.data import Record, guess_columns, read_records

    column = guess_columns(source, label=False)[0]
    written = 0
    with open(target, "w", encoding="utf-8") as out:
        for item in read_records(source, column):
            if not isinstance(item, Record):
                continue
            out.write(json.dumps({"id": f"s{written:06d}", "text": item.text}, ensure_ascii=False) + "\n")
            written += 1
            if written == rows:
                break
    return written


def load(tier1: str, tier2: str, threshold: float, threads: int, batch_size: int):
    from tango.cascade import Cascade
    from tango.tiers import Tier

    tiers = [Tier.from_pretrained(name, threads=threads, batch_size=batch_size) for name in (tier1, tier2)]
    return Cascade(tiers, thresholds=threshold)


def run_local(settings: dict[str, Any], source: Path, work: Path) -> dict[str, Any]:
    from tango.engines.local import score_file

    start = time.perf_counter()
    cascade = load(settings["tier1"], settings["tier2"], settings["threshold"], settings["cpus"], 32)
    summary = score_file(
        cascade, source, work / "local.jsonl", id_column="id", overwrite=True, progress=False
    )
    seconds = time.perf_counter() - start
    escalated = 1 - summary.tier_answered[0] / summary.rows_out
    return {"seconds": seconds, "rows": summary.rows_out, "escalated": escalated}


def run_ray(settings: dict[str, Any], source: Path, work: Path, actors: int) -> dict[str, Any]:
    from tango.engines.ray import Stage, score

    start = time.perf_counter()
    cascade = load(settings["tier1"], settings["tier2"], settings["threshold"], 1, 32)
    summary = score(
        cascade,
        str(source),
        str(work / f"ray{actors}"),
        id_column="id",
        overwrite=True,
        progress=False,
        tier1=Stage(actors, settings["tier1_cpus"], settings["ray_batch"]),
        tier2=Stage(settings["tier2_actors"], settings["tier2_cpus"], settings["ray_batch"]),
        read_cpus=settings["read_cpus"],
    )
    seconds = time.perf_counter() - start
    first = min(summary.tiers, key=int) if summary.tiers else None
    escalated = 1 - summary.tiers.get(first, 0) / summary.rows_out if summary.rows_out else 0.0
    return {"seconds": seconds, "rows": summary.rows_out, "escalated": escalated}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["rows"] / run["seconds"] for run in runs]
    return {
        "rows_per_s": statistics.median(rates),
        "rows_per_s_min": min(rates),
        "rows_per_s_max": max(rates),
        "seconds": statistics.median(run["seconds"] for run in runs),
        "escalated": runs[-1]["escalated"],
        "runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"{result['rows']:,} rows of {Path(s['data']).name}; tiers {s['tier1']} -> {s['tier2']} at "
        f"threshold {s['threshold']}.",
        f"{m['cpu']}, {m['cores']} cores ({m['ray_cpus']} given to Ray and to the local engine's threads); "
        f"ray {m['ray']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}; median (min-max) of "
        f"{s['repeats']} round-robin runs{' after a warm-up round' if s['warmup'] else ''}; {m['date']}.",
        f"Ray stages: tier 1 {s['tier1_cpus']} CPU per actor, tier 2 {s['tier2_actors']} actor(s) x "
        f"{s['tier2_cpus']} CPU, batches of {s['ray_batch']} rows, read/write tasks {s['read_cpus']} CPU.",
        "",
        "| system | rows/s (median) | min-max | seconds (median) | vs local | escalated |",
        "|---|---|---|---|---|---|",
    ]
    local = result["systems"]["local"]["rows_per_s"]
    for name, row in result["systems"].items():
        lines.append(
            f"| {name} | {row['rows_per_s']:,.1f} "
            f"| {row['rows_per_s_min']:,.1f}-{row['rows_per_s_max']:,.1f} | {row['seconds']:.1f} "
            f"| {row['rows_per_s'] / local:.2f}x | {row['escalated']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def update_docs(table: str) -> None:
    """Replace the figures between the markers in docs/distributed.md with this run's table."""
    fill_section(DOCS, "bench_distributed", table)


@click.command()
@click.option(
    "--data", type=click.Path(exists=True), default=str(DATA), show_default=True, help="Rows to score."
)
@click.option("--rows", type=int, default=20_000, show_default=True, help="How many rows of --data.")
@click.option("--tier1", default="minilm-l6-sst2-distilled", show_default=True, help="Tier-1 model.")
@click.option("--tier2", default="mpnet-base-sst2", show_default=True, help="Tier-2 model.")
@click.option("--threshold", type=float, default=0.9, show_default=True, help="Tier-1 confidence threshold.")
@click.option("--cpus", type=int, default=None, help="CPUs for Ray and local threads (default: all cores).")
@click.option(
    "--tier1-cpus",
    type=float,
    default=None,
    help="CPUs per tier-1 actor (default: (cpus - read) / (2 + tier-2 actors)).",
)
@click.option("--tier2-actors", type=int, default=1, show_default=True, help="Tier-2 pool size.")
@click.option("--tier2-cpus", type=float, default=None, help="CPUs per tier-2 actor (default: as tier 1).")
@click.option("--ray-batch", type=int, default=256, show_default=True, help="Rows per actor batch.")
@click.option("--read-cpus", type=float, default=0.25, show_default=True, help="CPUs per read/write task.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed rounds (round-robin).")
@click.option("--warmup/--no-warmup", default=True, show_default=True, help="One untimed round first.")
@click.option("--docs/--no-docs", "docs", default=True, show_default=True, help="Update docs/distributed.md.")
def main(
    data: str, rows: int, repeats: int, warmup: bool, docs: bool, cpus: int | None, **options: Any
) -> None:
    """Time local vs Ray (tier-1 pool 1 and 2) on the same rows; write results and docs figures."""
    import ray

    cpus = cpus or os.cpu_count() or 1
    share = (cpus - options["read_cpus"]) / (2 + options["tier2_actors"])  # pool 2 + tier 2 fit
    options["tier1_cpus"] = options["tier1_cpus"] or round(share, 3)
    options["tier2_cpus"] = options["tier2_cpus"] or round(share, 3)
    needed = (
        2 * options["tier1_cpus"] + options["tier2_actors"] * options["tier2_cpus"] + options["read_cpus"]
    )
    if needed > cpus + 1e-9:
        raise click.ClickException(
            f"the tier-1 pool of 2 and the tier-2 pool need {needed:g} CPUs but Ray has {cpus}: "
            "lower --tier1-cpus/--tier2-cpus (fractions are fine; threads are max(1, int(cpus)))"
        )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = dict(options, data=data, cpus=cpus, repeats=repeats, warmup=warmup)
    work = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    try:
        source = work / "input.jsonl"
        count = write_input(Path(data), rows, source)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        systems = {
            "local": lambda: run_local(settings, source, work),
            "ray, tier-1 pool 1": lambda: run_ray(settings, source, work, 1),
            "ray, tier-1 pool 2": lambda: run_ray(settings, source, work, 2),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
        for round_ in range(repeats + warmup):
            for name, run in systems.items():
                measured = run()
                click.echo(
                    f"round {round_}: {name}: {measured['rows'] / measured['seconds']:,.1f} rows/s", err=True
                )
                if round_ >= warmup:
                    runs[name].append(measured)
        result = {
            "rows": count,
            "settings": settings,
            "machine": machine(cpus),
            "systems": {name: summarise(r) for name, r in runs.items()},
        }
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (RESULTS / "distributed.md").write_text("### Ray engine vs local engine\n\n" + table)
    if docs:
        update_docs(table)
    click.echo(table)


if __name__ == "__main__":
    main()
