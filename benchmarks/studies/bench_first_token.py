"""The last layer on the first token alone against the whole last layer, per OpenVINO tier.

`tango export --format openvino` cuts a BERT or MPNet classifier's last layer to the first token
(`tango.first_token`): keys and values for every token, everything else for the one token the
classifier reads. This script measures what the cut is worth. For each OpenVINO tier it exports
the whole-last-layer twin (`--whole-last-layer`: same source, same int8 calibration file and
rows; cached under ~/.cache/tango/studies/whole-last-layer/), then scores the same rows end to
end (tokenization included) through `Tier.logits` with both, on the tier's recorded runtime and
options, timed interleaved round-robin (a warm-up round, then REPEATS rounds, median (min-max)
rows/s). The twins' predictions are compared (the same arithmetic, but bf16 and int8 round a
shorter sum differently, so a row near the boundary may flip).

    python benchmarks/studies/bench_first_token.py      # the SST-2 h16k tiers on SST-2 dev, twice over

Writes benchmarks/results/first_token.{json,md}; python benchmarks/docs.py puts it in docs/models.md.
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
TWINS = Path.home() / ".cache" / "tango" / "studies" / "whole-last-layer"


@click.command()
@tier_speed_options(TIERS, DATA / "sst2" / "dev.tsv", REPEATS)
def main(tiers: str, data: str, copies: int, repeats: int) -> None:
    """Time each OpenVINO tier against its whole-last-layer twin, interleaved."""
    from docs_section import rows_result, timed_rows, write_results

    from tango.bench import interleave
    from tango.data import load_labelled
    from tango.export import read_export_record
    from tango.registry import resolve
    from tango.tiers import Tier

    texts = list(load_labelled(data).texts) * copies
    systems, forms = {}, []
    for name in tiers.split(","):
        path = resolve(name)
        if read_export_record(path).get("last_layer") != "first token":
            raise click.ClickException(
                f"{name} was exported whole: re-export it (tango export --format openvino)"
            )
        twin = whole_twin(path, data)
        first_token = Tier.from_pretrained(path, threads=THREADS)
        whole = Tier.from_pretrained(
            twin,
            threads=THREADS,
            runtime="openvino",
            precision=first_token.runtime.precision,
            runtime_options={"snippets": first_token.runtime.snippets},
        )
        predicted = {}
        for label, tier in (("whole last layer", whole), ("first token", first_token)):
            system = f"{name}, {label}"
            predicted[label] = tier.logits(texts).argmax(1)
            systems[system] = lambda tier=tier: tier.logits(texts)
            forms.append(
                {"system": system, "tier": name, "ir": str(tier.path), "runtime": tier.runtime.description}
            )
        forms[-1]["agreement_with_whole"] = float(
            (predicted["first token"] == predicted["whole last layer"]).mean()
        )
    timings = interleave(systems, repeats, lambda message: click.echo(message, err=True))
    result = {
        **rows_result("bench_first_token.py", THREADS, data, len(texts) // copies, copies, repeats),
        "systems": timed_rows(forms, timings, len(texts)),
    }
    write_results("first_token", result, markdown(result))


def whole_twin(path: Path, check_data: str) -> Path:
    """The tier exported again with its whole last layer, from the same source with the same
    int8 calibration rows; reused when an earlier run made it from the same source."""
    from tango.export import read_export_record
    from tango.openvino import CALIBRATION_ROWS, export_openvino

    record = read_export_record(path)
    twin = TWINS / path.name
    made = read_export_record(twin)
    if (made.get("source"), made.get("int8")) == (record["source"], record["int8"]):
        return twin
    calibration = record.get("calibration") or {}
    click.echo(f"exporting {twin} (whole last layer)", err=True)
    export_openvino(
        record["source"],
        twin,
        int8=record["int8"],
        check_data=check_data,
        calibration_data=calibration.get("source"),
        calibration_rows=calibration.get("rows", CALIBRATION_ROWS),
        first_token=False,
    )
    return twin


def markdown(result: dict) -> str:
    """The table: each tier whole and cut, the cut's gain, and how many predictions it kept."""
    from docs_section import rows_caption

    lines = [
        rows_caption("first_token", result),
        "",
        "| tier | last layer | runtime | rows/s median (min-max) | vs whole | same predictions |",
        "|---|---|---|---|---|---|",
    ]
    whole: dict[str, float] = {}
    for row in result["systems"]:
        base = whole.setdefault(row["tier"], row["rows_per_s"])
        agreement = row.get("agreement_with_whole")
        lines.append(
            f"| {row['tier']} | {row['system'].split(', ', 1)[1]} | {row['runtime']} | "
            f"{row['rows_per_s']:.0f} ({row['rows_per_s_min']:.0f}-{row['rows_per_s_max']:.0f}) | "
            f"{row['rows_per_s'] / base:.2f}x | {'-' if agreement is None else f'{agreement:.2%}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
