"""How much two one-thread processes get out of this machine's CPUs, against one two-thread process.

The Ray benchmark (bench_distributed.py) compares a node of 2 CPUs (one whole-cascade actor with
2 runtime threads) with two nodes of 1 CPU (two actors, one thread each). On a machine whose two
vCPUs do not give two cores' worth of work to two processes, the two-node layout is capped below
the one-node one by the hardware, whatever Ray does. This script measures that cap without Ray:
the same cascade, tiers and threshold as bench_distributed.py, on the same rows, as

- one process, 1 thread, all rows;
- one process, 2 threads, all rows (the one-node layout's compute);
- two processes, 1 thread each, half the rows each, started together (the two-node layout's);
- the same with OpenVINO's threads pinned to cores, as OpenVINO does by default (tango pins only
  a process whose threads take every CPU it may use; here each process is made to believe so);

each process loads its cascade and scores a warm-up batch before a shared start signal (loading is
not timed); a system's time is its slowest process's. Systems run round-robin after an untimed
warm-up round; the report gives median and min-max rows/s.

    python benchmarks/bench_processes.py                       # 4,000 rows, 5 rounds
    python benchmarks/bench_processes.py --rows 200 --repeats 1 --no-warmup --out /tmp/smoke

Writes benchmarks/results/processes.{json,md} (or --out, --name); `python benchmarks/docs.py`
copies the Markdown into docs/distributed.md.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import bench_distributed as distributed
import click

SYSTEMS = {  # name: threads of each process (each scores an equal share of the rows), pinned or not
    "one process, 1 thread": ([1], False),
    "one process, 2 threads": ([2], False),
    "two processes, 1 thread each": ([1, 1], False),
    "two processes, 1 thread each, pinned": ([1, 1], True),
}


def _score(
    settings: dict[str, Any], texts: list[str], threads: int, pinned: bool, ready: Any, start: Any, out: Any
) -> None:
    """One process: load (untimed), warm up, wait for the start signal, score its rows."""
    if pinned:  # the process's threads then take "every CPU": OpenVINO's default pinning applies
        import tango.hardware

        tango.hardware.usable_cpus = lambda: threads
    os.environ["TANGO_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    cascade = distributed.load(settings, threads)
    cascade.predict_detailed(texts[:32])
    ready.put(os.getpid())
    start.wait()
    began = time.perf_counter()
    result = cascade.predict_detailed(texts)
    out.put((time.perf_counter() - began, int((result.tier > 0).sum())))


def run_system(
    settings: dict[str, Any], texts: list[str], threads: list[int], pinned: bool
) -> dict[str, Any]:
    """The system's processes started together on equal shares of ``texts``: seconds of the slowest."""
    spawn = multiprocessing.get_context("spawn")
    ready, out, start = spawn.Queue(), spawn.Queue(), spawn.Event()
    shares = [texts[k :: len(threads)] for k in range(len(threads))]
    workers = [
        spawn.Process(target=_score, args=(settings, share, n, pinned, ready, start, out))
        for share, n in zip(shares, threads, strict=True)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=300)
    start.set()
    results = [out.get(timeout=1800) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    seconds = max(took for took, _ in results)
    return {
        "scoring_seconds": seconds,
        "rows": len(texts),
        "escalated": sum(n for _, n in results) / len(texts),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["rows"] / run["scoring_seconds"] for run in runs]  # "seconds" counts the loading too
    return {**distributed.rates_summary(rates), "escalated": runs[-1]["escalated"], "runs": runs}


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    rounds = f"{s['repeats']} round-robin runs{' after a warm-up round' if s['warmup'] else ''}"
    lines = [
        "### One process of two threads, or two processes of one",
        "",
        f"{result['rows']:,} rows of {Path(s['data']).name}; the cascade {s['tier1']} -> {s['tier2']} at "
        f"threshold {s['threshold']} (as in the Ray benchmark), scored in-process after loading and a "
        f"warm-up batch (not timed); two processes score half the rows each, started together, and "
        f"take the slower one's time.",
        f"{m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}, openvino "
        f"{m['openvino']}; median (min-max) of {rounds}; {m['date']}. Command: `{result['command']}`.",
        "",
        "| system | rows/s (median) | min-max | vs one process, 2 threads | escalated |",
        "|---|---|---|---|---|",
    ]
    base = result["systems"]["one process, 2 threads"]["rows_per_s"]
    for name, row in result["systems"].items():
        ratio = row["rows_per_s"] / base
        lines.append(f"| {name} | {distributed.rate_cells(row)} | {ratio:.2f}x | {row['escalated']:.1%} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--data", type=click.Path(exists=True), default=str(distributed.DATA), show_default=True)
@click.option("--rows", type=int, default=4_000, show_default=True, help="Rows of --data to score.")
@click.option("--calibration-rows", type=int, default=2_000, show_default=True, help="Next rows: threshold.")
@click.option("--escalate", type=float, default=0.3, show_default=True, help="Share of rows sent to tier 2.")
@click.option("--tier1", default=distributed.TIER1, show_default=True, help="Tier-1 model.")
@click.option("--tier2", default=distributed.TIER2, show_default=True, help="Tier-2 model.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed rounds (round-robin).")
@click.option("--warmup/--no-warmup", default=True, show_default=True, help="One untimed round first.")
@click.option("--out", type=click.Path(file_okay=False), default=str(distributed.RESULTS), show_default=True)
@click.option(
    "--name", default="processes", show_default=True, help="Results file name (NAME.json, NAME.md)."
)
def main(
    data: str,
    rows: int,
    calibration_rows: int,
    repeats: int,
    warmup: bool,
    out: str,
    name: str,
    **options: Any,
) -> None:
    """Time one 2-thread process against two 1-thread processes on the same rows; write the results."""
    settings = dict(
        options, data=data, repeats=repeats, warmup=warmup, calibration_rows=calibration_rows, cpus=2
    )
    texts, calibration = distributed.read_rows(Path(data), rows, calibration_rows)
    settings["threshold"] = distributed.choose_threshold(settings, calibration)
    systems = {
        name: (distributed.no_cluster, lambda t=t, p=p: run_system(settings, texts, t, p))
        for name, (t, p) in SYSTEMS.items()
    }
    runs = distributed.round_robin(systems, repeats, warmup)
    result = {
        "rows": len(texts),
        "settings": settings,
        "command": distributed.command_line().replace("bench_distributed.py", "bench_processes.py"),
        "machine": distributed.machine(2),
        "systems": {name: summarise(r) for name, r in runs.items()},
    }
    distributed.write_results(result, Path(out), name, markdown)


if __name__ == "__main__":
    main()
