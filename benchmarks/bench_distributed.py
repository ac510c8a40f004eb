"""Ray engine vs local engine, on one node and on two nodes of the same total CPUs (docs/distributed.md).

Scores the same N rows (default: the first 10,000 sentences of SST-2 train) three ways: the local
engine (one process, CPUS threads), the Ray engine on a one-node cluster (one worker node of CPUS
CPUs) and on a two-node cluster (two worker nodes of CPUS/2 CPUs each); both clusters have a
head node without CPUs, so the node split is the only difference. The threshold is chosen where
tier 2 matters: the quantile of tier 1's confidence on other rows of the file (the next
``--calibration-rows`` rows, never scored) that escalates ``--escalate`` of them (default 30%);
the run records it and the share the scored rows actually escalated.

Each timed run is end to end: loading the tiers, reading, scoring, writing, and for Ray the
actor start-up and the exactly-once check; starting and stopping a Ray cluster is not timed.
Systems run round-robin after one untimed warm-up round, round r starting with system r mod 3
(a slow spell on the machine hits every system alike); the report gives median and min-max.

    python benchmarks/bench_distributed.py                                   # 10k rows, 5 rounds
    python benchmarks/bench_distributed.py --rows 200 --repeats 1 --no-warmup --out /tmp/smoke  # smoke

Writes benchmarks/results/distributed.{json,md} (or --out); `python benchmarks/docs.py` copies
the Markdown into docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DATA = ROOT.parent.parent / "shared" / "data" / "sst2" / "train.tsv"
TIER1, TIER2 = "minilm-l6-sst2-g30k-imdb-ov", "mpnet-base-sst2-g30k-ov-int8"
LAYOUTS = {"ray, one node": [2], "ray, two nodes": [1, 1]}  # worker nodes' CPUs, in CPUS / 2 units


def read_rows(source: Path, rows: int, calibration: int) -> tuple[list[str], list[str]]:
    """The first ``rows`` good texts of a tango-readable file (scored) and the next
    ``calibration`` (for the threshold only)."""
    from tango.data import Record, guess_columns, read_records

    column = guess_columns(source, label=False)[0]
    texts: list[str] = []
    for item in read_records(source, column):
        if isinstance(item, Record):
            texts.append(item.text)  # type: ignore[arg-type]
            if len(texts) == rows + calibration:
                break
    if len(texts) < rows + calibration:
        raise click.ClickException(f"{source} has {len(texts)} good rows, fewer than {rows} + {calibration}")
    return texts[:rows], texts[rows:]


def write_input(texts: list[str], target: Path, ids: str) -> None:
    """JSON lines of the texts; with ``ids="column"`` each row has its own ``id`` too (else tango
    numbers the lines, and the Ray run's exactly-once check needs no group-by)."""
    with open(target, "w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            row = {"id": f"s{i:06d}", "text": text} if ids == "column" else {"text": text}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def id_column(settings: dict[str, Any]) -> str | None:
    return "id" if settings.get("ids", "column") == "column" else None


def load(settings: dict[str, Any], threads: int) -> Any:
    from tango.cascade import Cascade
    from tango.tiers import Tier

    tiers = [Tier.from_pretrained(settings[name], threads=threads) for name in ("tier1", "tier2")]
    return Cascade(tiers, thresholds=settings["threshold"])


def choose_threshold(settings: dict[str, Any], calibration: list[str]) -> float:
    """Tier 1's confidence quantile on rows never scored: ``escalate`` of them fall below it."""
    from tango.confidence import confidence
    from tango.tiers import Tier

    tier1 = Tier.from_pretrained(settings["tier1"], threads=settings["cpus"])
    scores = confidence(tier1.predict_proba(calibration))
    return round(float(np.quantile(scores, settings["escalate"])), 6)


def run_local(settings: dict[str, Any], source: Path, work: Path) -> dict[str, Any]:
    from tango.engines.local import score_file

    cascade = load(settings, settings["cpus"])
    summary = score_file(
        cascade, source, work / "local.jsonl", id_column=id_column(settings), overwrite=True, progress=False
    )
    return {"rows": summary.rows_out, "escalated": 1 - summary.tier_answered[0] / summary.rows_out}


def stages(settings: dict[str, Any], node_cpus: list[float]) -> dict[str, Any]:
    """The Ray run's pools on these worker nodes. Fused: one whole-cascade actor per node, with
    the node's CPUs less one read/write task's (so its runtime threads are the node's cores), all
    started at once (Ray Data would not grow the pool on 2 CPUs); a pool per tier: the
    --tier1-*/--tier2-* sizes."""
    from tango.engines.ray import Stage

    if settings["shape"] == "fused":
        cpus = min(node_cpus) - settings["read_cpus"]
        nodes = len(node_cpus)
        return {"fuse_tiers": True, "tier1": Stage(nodes, cpus, settings["ray_batch"], min_actors=nodes)}
    return {
        "tier1": Stage(settings["tier1_actors"], settings["tier1_cpus"], settings["ray_batch"]),
        "tier2": Stage(settings["tier2_actors"], settings["tier2_cpus"], settings["ray_batch"]),
    }


def run_ray(settings: dict[str, Any], source: Path, work: Path, node_cpus: list[float]) -> dict[str, Any]:
    from tango.engines.ray import score

    cascade = load(settings, 1)
    summary = score(
        cascade,
        str(source),
        str(work / "ray"),
        id_column=id_column(settings),
        overwrite=True,
        progress=False,
        read_cpus=settings["read_cpus"],
        **stages(settings, node_cpus),
    )
    first = summary.tiers.get("1", 0)
    escalated = 1 - first / summary.rows_out if summary.rows_out else 0.0
    return {"rows": summary.rows_out, "escalated": escalated, "passes": summary.passes}


@contextmanager
def no_cluster() -> Iterator[None]:
    yield


@contextmanager
def ray_cluster(worker_cpus: list[float]) -> Iterator[None]:
    """A local Ray cluster (untimed): a head without CPUs and worker nodes of these CPUs, set as
    tango sets a Ray it starts itself (idle worker processes kept, ``KEEP_IDLE_WORKERS``)."""
    import ray
    from ray.cluster_utils import Cluster

    from tango.engines.ray.plan import KEEP_IDLE_WORKERS

    head = {"num_cpus": 0, "_system_config": dict(KEEP_IDLE_WORKERS)}  # as tango's own Ray keeps
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for cpus in worker_cpus:
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    env = {"TANGO_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


def round_robin(
    systems: dict[str, tuple[Callable[[], Any], Callable[[], dict[str, Any]]]], repeats: int, warmup: bool
) -> dict[str, list[dict[str, Any]]]:
    """Each system's timed runs: ``(setup, run)`` pairs, only ``run`` timed, round r starting with
    system r mod n (as tango.bench.interleave orders them), after an untimed warm-up round."""
    names = list(systems)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(-1 if warmup else 0, repeats):
        start_at = r % len(names)
        for name in names[start_at:] + names[:start_at]:
            setup, run = systems[name]
            with setup():
                started = time.perf_counter()
                measured = run()
                measured["seconds"] = time.perf_counter() - started
            click.echo(f"round {r}: {name}: {measured['rows'] / measured['seconds']:,.1f} rows/s", err=True)
            if r >= 0:
                runs[name].append(measured)
    return runs


def rates_summary(rates: list[float]) -> dict[str, float]:
    """Median, least and most rows/s of a system's runs."""
    return {
        "rows_per_s": statistics.median(rates),
        "rows_per_s_min": min(rates),
        "rows_per_s_max": max(rates),
    }


def rate_cells(row: dict[str, Any]) -> str:
    """A report row's median rows/s and min-max, as two table cells."""
    return f"{row['rows_per_s']:,.1f} | {row['rows_per_s_min']:,.1f}-{row['rows_per_s_max']:,.1f}"


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["rows"] / run["seconds"] for run in runs]
    passes = {
        name: statistics.median(run["passes"][name] for run in runs) for name in runs[0].get("passes", {})
    }
    return {
        "passes": passes,
        **rates_summary(rates),
        "seconds": statistics.median(run["seconds"] for run in runs),
        "escalated": runs[-1]["escalated"],
        "runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    quantile = f"tier 1's {s['escalate']:.0%} confidence quantile on {s['calibration_rows']:,} other rows"
    layout = f"{s['cpus']} on one node, or {s['cpus'] / 2:g} on each of two; the head node has none"
    versions = f"ray {m['ray']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, openvino {m['openvino']}"
    rounds = f"{s['repeats']} round-robin runs{' after a warm-up round' if s['warmup'] else ''}"
    at_once = ", all started at once" if s.get("min_actors") else ""
    pools = (
        "one pool of whole-cascade actors (fused): one actor per worker node with the node's CPUs less "
        f"a read/write task's, running round(CPUs) threads{at_once}"
        if s.get("shape") == "fused"
        else f"tier 1 {s['tier1_actors']} actor(s) x {s['tier1_cpus']:g} CPU, tier 2 {s['tier2_actors']} "
        f"actor(s) x {s['tier2_cpus']:g} CPU (one thread each)"
    )
    stages = f"{pools}, batches of {s['ray_batch']} rows, read/write tasks {s['read_cpus']:g} CPU"
    lines = [
        "### Ray engine vs local engine, one node and two",
        "",
        f"{result['rows']:,} rows of {Path(s['data']).name}; tiers {s['tier1']} -> {s['tier2']} at threshold "
        f"{s['threshold']} ({quantile} of the file).",
        f"{m['cpu']}, {m['cores']} cores; {s['cpus']} CPUs in every system: the local engine's threads, or "
        f"the worker nodes of a Ray cluster ({layout}); {versions}; median (min-max) of {rounds}; "
        f"{m['date']}.",
        f"Ray stages: {stages}. {ids_line(s)}{cluster_line(s)} Command: `{result['command']}`.",
        "",
        "| system | rows/s (median) | min-max | seconds (median) | vs local | escalated |",
        "|---|---|---|---|---|---|",
    ]
    local = result["systems"]["local"]["rows_per_s"]
    for name, row in result["systems"].items():
        lines.append(
            f"| {name} | {rate_cells(row)} | {row['seconds']:.1f} "
            f"| {row['rows_per_s'] / local:.2f}x | {row['escalated']:.1%} |"
        )
    systems = result["systems"]
    if "ray, one node" in systems and "ray, two nodes" in systems:
        ratio = systems["ray, two nodes"]["rows_per_s"] / systems["ray, one node"]["rows_per_s"]
        lines += ["", f"Two one-CPU nodes against one two-CPU node (median rows/s): {ratio:.2f}x."]
    return "\n".join(lines + passes_table(result)) + "\n"


def cluster_line(settings: dict[str, Any]) -> str:
    """How the clusters and passes were set, where the series recorded it."""
    said = []
    if settings.get("keep_idle_workers"):
        said.append(" Clusters keep idle worker processes for a minute, as a Ray tango starts itself does.")
    if settings.get("index_beside_scoring"):
        said.append(" The index pass runs beside the scoring pass (its seconds in brackets below).")
    if settings.get("index_after_scoring"):
        said.append(" The index pass runs after the scoring pass, on the worker processes it left idle.")
    return "".join(said)


def ids_line(settings: dict[str, Any]) -> str:
    """How the rows are identified, hence how the Ray run checks that each landed once."""
    if settings.get("ids", "column") == "column":
        return "Ids: the input's id column (the exactly-once check groups by id)."
    return "Ids: line numbers (the exactly-once check compares counts and id fingerprints, no group-by)."


BESIDE = "index (beside scoring)"  # the index pass when it runs beside the scoring pass


def passes_table(result: dict[str, Any]) -> list[str]:
    """Where a Ray run's seconds go (median per pass), and the rows from which it would reach
    0.8x the local engine if every pass but scoring stayed fixed and scoring kept its rate. An
    index run beside the scoring pass is shown in brackets: its seconds are inside scoring's."""
    local = result["systems"]["local"]["rows_per_s"]
    lines = [
        "",
        "| system | index s | scoring s | check s | other s | rows for 0.8x local (extrapolated) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["systems"].items():
        if not row.get("passes"):
            continue
        p = row["passes"]
        fixed = row["seconds"] - p["scoring"]
        per_row = 1 / (0.8 * local) - p["scoring"] / result["rows"]
        needed = f"{fixed / per_row:,.0f}" if per_row > 0 else "never (scoring alone is slower)"
        other = fixed - p.get("index", 0.0) - p["check"]
        index = f"({p[BESIDE]:.1f})" if BESIDE in p else f"{p.get('index', 0.0):.1f}"
        seconds = " | ".join(f"{s:.1f}" for s in (p["scoring"], p["check"], other))
        lines.append(f"| {name} | {index} | {seconds} | {needed} |")
    return lines


def machine(cpus: int) -> dict[str, Any]:
    """tango's machine record plus the versions of Ray and OpenVINO."""
    import ray

    from tango.hardware import machine as base

    try:
        import openvino

        ov = openvino.__version__.split("-")[0]
    except ImportError:
        ov = "-"
    return {**base(cpus), "ray": ray.__version__, "openvino": ov}


def command_line() -> str:
    """This run's command as given: the options set on the command line (read from click)."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    words = ["python", "benchmarks/bench_distributed.py"]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE:
            value = ctx.params[param.name]
            if isinstance(value, bool):
                words.append(param.opts[0] if value else param.secondary_opts[0])
            else:
                words += [param.opts[0], str(value)]
    return shlex.join(words)


def systems_of(settings: dict[str, Any], source: Path, work: Path) -> dict[str, Any]:
    """The three systems as (untimed setup, timed run) pairs."""
    half = settings["cpus"] / 2
    systems: dict[str, Any] = {"local": (no_cluster, lambda: run_local(settings, source, work))}
    for name, units in LAYOUTS.items():
        layout = [units_ * half for units_ in units]
        systems[name] = (
            lambda layout=layout: ray_cluster(layout),
            lambda layout=layout: run_ray(settings, source, work, layout),
        )
    return systems


@click.command()
@click.option("--data", type=click.Path(exists=True), default=str(DATA), show_default=True, help="Rows.")
@click.option("--rows", type=int, default=10_000, show_default=True, help="Rows of --data to score.")
@click.option("--calibration-rows", type=int, default=2_000, show_default=True, help="Next rows: threshold.")
@click.option("--escalate", type=float, default=0.3, show_default=True, help="Share of rows sent to tier 2.")
@click.option("--tier1", default=TIER1, show_default=True, help="Tier-1 model.")
@click.option("--tier2", default=TIER2, show_default=True, help="Tier-2 model.")
@click.option("--cpus", type=int, default=2, show_default=True, help="CPUs of every system (even).")
@click.option(
    "--shape",
    type=click.Choice(["fused", "split"]),
    default="fused",
    show_default=True,
    help="Ray pools: one of whole-cascade actors (fused), or one per tier (split, sized below).",
)
@click.option("--tier1-actors", type=int, default=1, show_default=True, help="Tier-1 pool size.")
@click.option("--tier1-cpus", type=float, default=0.75, show_default=True, help="CPUs per tier-1 actor.")
@click.option("--tier2-actors", type=int, default=1, show_default=True, help="Tier-2 pool size.")
@click.option("--tier2-cpus", type=float, default=0.75, show_default=True, help="CPUs per tier-2 actor.")
@click.option("--ray-batch", type=int, default=1024, show_default=True, help="Rows per actor batch.")
@click.option("--read-cpus", type=float, default=0.25, show_default=True, help="CPUs per read/write task.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed rounds (round-robin).")
@click.option("--warmup/--no-warmup", default=True, show_default=True, help="One untimed round first.")
@click.option(
    "--ids",
    type=click.Choice(["line", "column"]),
    default="line",
    show_default=True,
    help="Row ids: line numbers tango makes (checked by fingerprint), or an id column (checked by group-by).",
)
@click.option("--out", type=click.Path(file_okay=False), default=str(RESULTS), show_default=True)
@click.option(
    "--name", default="distributed", show_default=True, help="Results file name (NAME.json, NAME.md)."
)
@click.option(
    "--markdown-only",
    is_flag=True,
    help="Only rewrite NAME.md from the NAME.json in --out (after a change to the report's layout).",
)
def main(
    data: str,
    rows: int,
    calibration_rows: int,
    repeats: int,
    warmup: bool,
    out: str,
    name: str,
    markdown_only: bool,
    **options: Any,
) -> None:
    """Time local vs Ray on one node vs Ray on two nodes, same rows, same CPUs; write the results."""
    if markdown_only:
        result = json.loads((Path(out) / f"{name}.json").read_text())
        (Path(out) / f"{name}.md").write_text(markdown(result))
        return
    if not 0 < options["escalate"] < 1 or options["cpus"] % 2:
        raise click.ClickException("--escalate must be in (0, 1) and --cpus even (two nodes of cpus/2)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = command_line()
    settings = dict(options, data=data, repeats=repeats, warmup=warmup, calibration_rows=calibration_rows)
    settings["min_actors"] = True  # fused pools start one actor per node (see stages())
    settings["keep_idle_workers"] = True  # clusters set as tango sets its own Ray (see ray_cluster())
    settings["index_after_scoring"] = True  # tango's run does so unless --on-error fail
    texts, calibration = read_rows(Path(data), rows, calibration_rows)
    settings["threshold"] = choose_threshold(settings, calibration)
    click.echo(f"threshold {settings['threshold']} (tier 1's {options['escalate']:.0%} quantile)", err=True)
    work = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    try:
        source = work / "input.jsonl"
        write_input(texts, source, options["ids"])
        runs = round_robin(systems_of(settings, source, work), repeats, warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "rows": len(texts),
        "settings": settings,
        "command": command,
        "machine": machine(options["cpus"]),
        "systems": {name: summarise(r) for name, r in runs.items()},
    }
    write_results(result, Path(out), name, markdown)


def write_results(
    result: dict[str, Any], out: Path, name: str, report: Callable[[dict[str, Any]], str]
) -> None:
    """NAME.json and its report NAME.md in ``out``; the report on stdout too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(report(result))
    click.echo(report(result))


if __name__ == "__main__":
    main()
