"""A cascade's escalated rows on its last tier: how they are cut into batches, and on which streams.

A cascade sends its last tier few rows, and the hardest: tier 1's least confident, whose lengths
spread widely. This times tier 2 on exactly those rows (the ``--share`` least confident by tier
1, the share a cascade at the TangoBERT reference's accuracy escalates on SST-2 dev) in five
ways, interleaved round-robin with tier 2 on every row for the per-row yardstick:

- greedy batches of 32 (``tango.batching.plan_batches``), one at a time on all the threads;
- the same batches on OpenVINO's throughput streams;
- batches cut where padding costs least (``plan_least_padding``, what ``Tier.plan`` now does),
  one at a time on all the threads;
- those batches on the streams in length order;
- those batches on the streams, the costliest first (``longest_first``: what ``Tier.infer``
  now does when there are at least ``BATCHES_PER_STREAM`` per stream).

Tokenization is included in each; a warm-up round, then REPEATS rounds, median (min-max).

    python benchmarks/studies/bench_escalated.py        # the SST-2 h16k tiers on SST-2 dev

Writes benchmarks/results/escalated_batches.{json,md}; benchmarks/docs.py puts it in docs/architecture.md.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

THREADS = 2
REPEATS = 7
ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: results/ and the shared helpers
DATA = ROOT.parent.parent / "shared" / "data"


@click.command()
@click.option("--tier1", default="minilm-l6-sst2-distilled-h16k-ov", show_default=True)
@click.option("--tier2", default="mpnet-base-sst2-h16k-ov-int8", show_default=True)
@click.option("--data", default=str(DATA / "sst2" / "dev.tsv"), show_default=True, help="Rows to score.")
@click.option("--share", default=0.095, show_default=True, help="Share of rows escalated (least confident).")
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed rounds after the warm-up.")
def main(tier1: str, tier2: str, data: str, share: float, repeats: int) -> None:
    """Time tier 2 on tier 1's least confident rows, batched and run five ways, interleaved."""
    from docs_section import write_results

    from tango.batching import longest_first, pad_batch, padding_efficiency, plan_batches, plan_least_padding
    from tango.bench import interleave
    from tango.confidence import confidence, softmax
    from tango.data import load_labelled
    from tango.hardware import machine
    from tango.tiers import Tier

    texts = list(load_labelled(data).texts)
    first = Tier.from_pretrained(tier1, threads=THREADS)
    last = Tier.from_pretrained(tier2, threads=THREADS)
    runtime = last.runtime
    if getattr(runtime, "streams", 1) < 2:
        raise click.ClickException(f"{tier2} runs on {runtime.description}: no streams to compare")
    unsure = np.argsort(confidence(softmax(first.logits(texts)), "maxprob"), kind="stable")
    escalated = [texts[i] for i in unsure[: round(share * len(texts))]]
    pad_id = last.tokenizer.pad_token_id or 0
    planners = {
        "greedy batches of 32": lambda lengths: plan_batches(lengths, last.batch_size, last.max_tokens),
        "least padding": lambda lengths: plan_least_padding(lengths, last.batch_size, last.max_tokens),
    }

    def scorer(planner, streams: bool, costliest_first: bool):
        def score():
            encodings = last.tokenize(escalated)
            plan = planner(encodings.lengths)
            plan = longest_first(plan, encodings.lengths) if costliest_first else plan
            padded = (pad_batch(encodings, rows, pad_id) for rows in plan)
            return runtime.run_batches(padded) if streams else [runtime.run(b) for b in padded]

        return score

    ways = {  # label suffix -> (on the streams, costliest first)
        "one stream": (False, False),
        "streams": (True, False),
        "streams, costliest first": (True, True),
    }
    systems, forms = {}, []
    lengths = last.tokenize(escalated).lengths
    for label, planner in planners.items():
        plan = planner(lengths)
        for way, (streams, costliest_first) in ways.items():
            if costliest_first and label != "least padding":
                continue
            system = f"{label}, {way}"
            systems[system] = scorer(planner, streams, costliest_first)
            forms.append(
                {
                    "system": system,
                    "rows": len(escalated),
                    "batches": len(plan),
                    "padding_efficiency": padding_efficiency(lengths, plan),
                }
            )
    systems["every row (tier 2 alone)"] = lambda: last.logits(texts)
    everything = last.tokenize(texts)
    forms.append(
        {
            "system": "every row (tier 2 alone)",
            "rows": len(texts),
            "batches": len(last.plan(everything)),
            "padding_efficiency": last.padding_efficiency(everything),
        }
    )
    timings = interleave(systems, repeats, lambda message: click.echo(message, err=True))
    per_row_alone = timings["every row (tier 2 alone)"].median / len(texts)
    rows = []
    for form in forms:
        timing = timings[form["system"]]
        rows.append(
            {
                **form,
                "ms": 1000 * timing.median,
                "ms_min": 1000 * timing.min,
                "ms_max": 1000 * timing.max,
                "per_row_vs_alone": timing.median / form["rows"] / per_row_alone,
                "seconds": timing.seconds,
            }
        )
    result = {
        "command": shlex.join(["python", "benchmarks/studies/bench_escalated.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "data": {"source": data, "rows": len(texts), "escalated": len(escalated), "share": share},
        "tiers": {"tier1": first.runtime.description, "tier2": f"{tier2}: {runtime.description}"},
        "settings": {"repeats": repeats, "warm_up_rounds": 1, "order": "round-robin", "threads": THREADS},
        "mean_tokens": {"escalated": float(lengths.mean()), "every row": float(everything.lengths.mean())},
        "systems": rows,
    }
    write_results("escalated_batches", result, markdown(result))


def markdown(result: dict) -> str:
    """The table: each way's time on the escalated rows and its per-row cost against every row's."""
    from docs_section import command_now

    m, d = result["machine"], result["data"]
    lines = [
        f"`benchmarks/results/escalated_batches.json`: tier 2 ({result['tiers']['tier2']}) on the "
        f"{d['escalated']} of {d['rows']} rows of {Path(d['source']).name} that tier 1 is least "
        f"sure of (mean {result['mean_tokens']['escalated']:.1f} tokens, against "
        f"{result['mean_tokens']['every row']:.1f} for every row), tokenization included; {m['cpu']}, "
        f"{m['threads']} threads; median (min-max) of {result['settings']['repeats']} interleaved "
        f"rounds after a warm-up; {m['date']}. Command: `{command_now(result['command'])}`.",
        "",
        "| batches, run on | batches | padding efficiency | ms median (min-max) | per row vs every row |",
        "|---|---|---|---|---|",
    ]
    for row in result["systems"]:
        lines.append(
            f"| {row['system']} | {row['batches']} | {row['padding_efficiency']:.2f} | {row['ms']:.0f} "
            f"({row['ms_min']:.0f}-{row['ms_max']:.0f}) | {row['per_row_vs_alone']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
