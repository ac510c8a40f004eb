"""OpenVINO streams: one request on all the threads against OpenVINO's throughput streams.

Each tier scores the same rows end to end (tokenization included) through `Tier.logits`, once
with `OpenVinoRuntime(streams=1)` (the latency configuration tiers used before) and once with
the default (OpenVINO's throughput streams, batches in flight on each), timed interleaved
round-robin: a warm-up round, then REPEATS rounds, median (min-max) rows/s. The two forms must
give the same predictions; their agreement is recorded.

    python benchmarks/bench_streams.py          # the SST-2 h16k tiers on SST-2 dev, twice over

Writes benchmarks/results/openvino_streams.{json,md} and docs/models.md's table.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

THREADS = 2
REPEATS = 5
ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
TIERS = ("minilm-l6-sst2-distilled-h16k-ov", "mpnet-base-sst2-h16k-ov-int8")


@click.command()
@click.option("--tiers", default=",".join(TIERS), show_default=True, help="OpenVINO tiers, comma-separated.")
@click.option("--data", default=str(DATA / "sst2" / "dev.tsv"), show_default=True, help="Rows to score.")
@click.option("--copies", default=2, show_default=True, help="Score the rows this many times over per round.")
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed rounds after the warm-up.")
@click.option("--docs/--no-docs", default=True, show_default=True, help="Rewrite docs/models.md's table.")
def main(tiers: str, data: str, copies: int, repeats: int, docs: bool) -> None:
    """Time each OpenVINO tier on one stream and on OpenVINO's throughput streams, interleaved."""
    from docs_section import fill_section

    from tango.bench import interleave, machine
    from tango.data import load_labelled
    from tango.openvino import OpenVinoRuntime
    from tango.tiers import Tier

    texts = list(load_labelled(data).texts) * copies
    systems, forms = {}, []
    for name in tiers.split(","):
        streams = Tier.from_pretrained(name, threads=THREADS)
        one = Tier.from_pretrained(name, threads=THREADS)
        one.runtime = OpenVinoRuntime(one.path, THREADS, streams.runtime.precision, streams=1)
        systems[f"{name}, 1 stream"] = lambda tier=one: tier.logits(texts)
        systems[f"{name}, {streams.runtime.streams} streams"] = lambda tier=streams: tier.logits(texts)
        agreement = float((one.logits(texts).argmax(1) == streams.logits(texts).argmax(1)).mean())
        forms.append({"tier": name, "runtime": streams.runtime.description, "agreement": agreement})
    timings = interleave(systems, repeats, lambda message: click.echo(message, err=True))
    rows = []
    for system, timing in timings.items():
        rows.append(
            {
                "system": system,
                "rows_per_s": len(texts) / timing.median,
                "rows_per_s_min": len(texts) / timing.max,
                "rows_per_s_max": len(texts) / timing.min,
                "seconds": timing.seconds,
            }
        )
    result = {
        "command": shlex.join(["python", "benchmarks/bench_streams.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "data": {"source": data, "rows": len(texts) // copies, "copies": copies},
        "settings": {"repeats": repeats, "warm_up_rounds": 1, "order": "round-robin", "threads": THREADS},
        "tiers": forms,
        "systems": rows,
    }
    out = ROOT / "results" / "openvino_streams"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    click.echo(table)
    if docs:
        fill_section(ROOT.parent / "docs" / "models.md", "openvino_streams", table)


def markdown(result: dict) -> str:
    """The table: each tier on one stream and on OpenVINO's streams, and the gain."""
    m = result["machine"]
    lines = [
        f"`benchmarks/results/openvino_streams.json`: {result['data']['rows']} rows of "
        f"{Path(result['data']['source']).name} x{result['data']['copies']}, tokenization included; "
        f"{m['cpu']}, {m['threads']} threads; median (min-max) of {result['settings']['repeats']} "
        f"interleaved rounds after a warm-up; {m['date']}. Command: `{result['command']}`.",
        "",
        "| system | rows/s median (min-max) | vs 1 stream | predictions equal |",
        "|---|---|---|---|",
    ]
    by_tier = {f["tier"]: f for f in result["tiers"]}
    for k in range(0, len(result["systems"]), 2):
        one, many = result["systems"][k], result["systems"][k + 1]
        agreement = by_tier[one["system"].split(",")[0]]["agreement"]
        for row, gain in ((one, "1.00x"), (many, f"{many['rows_per_s'] / one['rows_per_s']:.2f}x")):
            lines.append(
                f"| {row['system']} | {row['rows_per_s']:.0f} ({row['rows_per_s_min']:.0f}-"
                f"{row['rows_per_s_max']:.0f}) | {gain} | {agreement:.2%} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
