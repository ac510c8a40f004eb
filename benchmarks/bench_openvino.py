"""OpenVINO's CPU settings for a tier: one stream, throughput streams, and streams without snippets.

Each tier scores the same rows end to end (tokenization included) through `Tier.logits` in three
configurations of `OpenVinoRuntime`, timed interleaved round-robin (a warm-up round, then
REPEATS rounds, median (min-max) rows/s):

- `streams=1`: one request on all the threads (OpenVINO's LATENCY hint);
- the default: OpenVINO's throughput streams, a batch in flight on each;
- the streams with `snippets=False`: the CPU plugin's generated kernels for fused subgraphs (in
  these models the fused attention) replaced by its plain MatMul/Softmax kernels.

Each configuration's predictions are compared with the first one's (streams give the same
numbers; the attention kernels round bf16 differently, so a row near the boundary may flip).

    python benchmarks/bench_openvino.py         # the SST-2 h16k tiers on SST-2 dev, twice over

Writes benchmarks/results/openvino_configs.{json,md} and docs/models.md's table.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

THREADS = 2
REPEATS = 5
ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
TIERS = ("minilm-l6-sst2-distilled-h16k-ov", "mpnet-base-sst2-h16k-ov-int8")
CONFIGS = {  # label -> OpenVinoRuntime options; the runtime and precision are the tier's recorded ones
    "1 stream": {"streams": 1},
    "streams": {},
    "streams, snippets off": {"snippets": False},
}


@click.command()
@click.option("--tiers", default=",".join(TIERS), show_default=True, help="OpenVINO tiers, comma-separated.")
@click.option("--data", default=str(DATA / "sst2" / "dev.tsv"), show_default=True, help="Rows to score.")
@click.option("--copies", default=2, show_default=True, help="Score the rows this many times over per round.")
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed rounds after the warm-up.")
@click.option("--docs/--no-docs", default=True, show_default=True, help="Rewrite docs/models.md's table.")
def main(tiers: str, data: str, copies: int, repeats: int, docs: bool) -> None:
    """Time each OpenVINO tier in each configuration, interleaved."""
    from docs_section import write_results

    from tango.bench import interleave, machine
    from tango.data import load_labelled
    from tango.tiers import Tier

    texts = list(load_labelled(data).texts) * copies
    systems, forms = {}, []
    for name in tiers.split(","):
        first = None
        for label, options in CONFIGS.items():
            tier = Tier.from_pretrained(name, threads=THREADS, runtime_options=options)
            predicted = tier.logits(texts).argmax(1)
            first = predicted if first is None else first
            system = f"{name}, {label}"
            systems[system] = lambda tier=tier: tier.logits(texts)
            forms.append(
                {
                    "system": system,
                    "tier": name,
                    "runtime": tier.runtime.description,
                    "agreement_with_first": float((predicted == first).mean()),
                }
            )
    timings = interleave(systems, repeats, lambda message: click.echo(message, err=True))
    rows = []
    for form in forms:
        timing = timings[form["system"]]
        rows.append(
            {
                **form,
                "rows_per_s": len(texts) / timing.median,
                "rows_per_s_min": len(texts) / timing.max,
                "rows_per_s_max": len(texts) / timing.min,
                "seconds": timing.seconds,
            }
        )
    result = {
        "command": shlex.join(["python", "benchmarks/bench_openvino.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "data": {"source": data, "rows": len(texts) // copies, "copies": copies},
        "settings": {"repeats": repeats, "warm_up_rounds": 1, "order": "round-robin", "threads": THREADS},
        "configs": CONFIGS,
        "systems": rows,
    }
    page = ROOT.parent / "docs" / "models.md" if docs else None
    write_results("openvino_configs", result, markdown(result), page)


def markdown(result: dict) -> str:
    """The table: each tier in each configuration, its gain over one stream, its agreement."""
    m = result["machine"]
    lines = [
        f"`benchmarks/results/openvino_configs.json`: {result['data']['rows']} rows of "
        f"{Path(result['data']['source']).name} x{result['data']['copies']}, tokenization included; "
        f"{m['cpu']}, {m['threads']} threads; median (min-max) of {result['settings']['repeats']} "
        f"interleaved rounds after a warm-up; {m['date']}. Command: `{result['command']}`.",
        "",
        "| tier | configuration | runtime | rows/s median (min-max) | vs 1 stream | same predictions |",
        "|---|---|---|---|---|---|",
    ]
    first: dict[str, float] = {}
    for row in result["systems"]:
        base = first.setdefault(row["tier"], row["rows_per_s"])
        lines.append(
            f"| {row['tier']} | {row['system'].split(', ', 1)[1]} | {row['runtime']} | "
            f"{row['rows_per_s']:.0f} ({row['rows_per_s_min']:.0f}-{row['rows_per_s_max']:.0f}) | "
            f"{row['rows_per_s'] / base:.2f}x | {row['agreement_with_first']:.2%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
