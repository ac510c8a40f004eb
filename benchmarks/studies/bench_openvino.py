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

    python benchmarks/studies/bench_openvino.py         # the SST-2 h16k tiers on SST-2 dev, twice over

Writes benchmarks/results/openvino_configs.{json,md}; python benchmarks/docs.py puts it in docs/models.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from docs_section import tier_speed_options  # noqa: E402

THREADS = 2
REPEATS = 5
ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: results/ and the shared helpers
DATA = ROOT.parent.parent / "shared" / "data"
TIERS = ("minilm-l6-sst2-distilled-h16k-ov", "mpnet-base-sst2-h16k-ov-int8")
CONFIGS = {  # label -> OpenVinoRuntime options; the runtime and precision are the tier's recorded ones
    "1 stream": {"streams": 1},
    "streams": {},
    "streams, snippets off": {"snippets": False},
}


@click.command()
@tier_speed_options(TIERS, DATA / "sst2" / "dev.tsv", REPEATS)
def main(tiers: str, data: str, copies: int, repeats: int) -> None:
    """Time each OpenVINO tier in each configuration, interleaved."""
    from docs_section import rows_result, timed_rows, write_results

    from tango.bench import interleave
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
    result = {
        **rows_result("bench_openvino.py", THREADS, data, len(texts) // copies, copies, repeats),
        "configs": CONFIGS,
        "systems": timed_rows(forms, timings, len(texts)),
    }
    write_results("openvino_configs", result, markdown(result))


def markdown(result: dict) -> str:
    """The table: each tier in each configuration, its gain over one stream, its agreement."""
    from docs_section import rows_caption

    lines = [
        rows_caption("openvino_configs", result),
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
