"""How much a row's answer moves with its batch mates, per runtime and precision.

Rows are batched by length and padded to the batch's longest row, so a row's batch mates change
the shapes its kernels see and the order in which they sum. This script scores the same rows with
each form of one tier (PyTorch fp32 and bf16 autocast, ONNX fp32 and int8, OpenVINO fp32 IR with
fp32 and bf16 inference, OpenVINO int8 IR with bf16 inference) at several batch sizes and in
shuffled order, and records, against the form's own batch-32 answer: the largest change of any
class probability, of the confidence, and the labels that flipped. docs/run.md states the bound
from here. Not a timing: nothing else needs to be quiet.

    python benchmarks/studies/batch_independence.py --tier ~/.cache/tango/models/minilm-l6-sst2-quick

Exports are cached under ~/.cache/tango/studies/batch-independence/. Writes
benchmarks/results/batch_independence.{json,md}; python benchmarks/docs.py puts it in docs/run.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

THREADS = 2
ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: results/ and the shared helpers
DATA = ROOT.parent.parent / "shared" / "data"
CACHE = Path.home() / ".cache" / "tango" / "studies" / "batch-independence"
BATCH_SIZES = (1, 8, 32, 64)
REFERENCE_BATCH = 32


def forms(source: Path, calibration: str) -> list[tuple[str, Path, dict]]:
    """(name, directory, Tier.from_pretrained options) of every form measured, exporting once."""
    from tango.export import export_tier
    from tango.hardware import bf16_supported
    from tango.openvino import export_openvino

    exports = {
        "onnx-fp32": lambda out: export_tier(source, out),
        "onnx-int8": lambda out: export_tier(source, out, int8=True, min_agreement=0.0),
        "ov-fp32": lambda out: export_openvino(source, out),
        "ov-int8": lambda out: export_openvino(
            source, out, int8=True, calibration_data=calibration, min_agreement=0.0
        ),
    }
    for name, export in exports.items():
        out = CACHE / f"{source.name}-{name}"
        if not (out / "config.json").exists():
            click.echo(f"exporting {name} -> {out}", err=True)
            export(out)
    found = [("pytorch fp32", source, {"runtime": "torch", "precision": "fp32"})]
    if bf16_supported():
        found.append(("pytorch bf16 autocast", source, {"runtime": "torch", "precision": "bf16-autocast"}))
    found += [
        ("onnxruntime fp32", CACHE / f"{source.name}-onnx-fp32", {"runtime": "onnx"}),
        ("onnxruntime int8 (per-token scales)", CACHE / f"{source.name}-onnx-int8", {"runtime": "onnx"}),
        ("openvino fp32", CACHE / f"{source.name}-ov-fp32", {"runtime": "openvino", "precision": "fp32"}),
    ]
    if bf16_supported():
        found += [
            ("openvino bf16", CACHE / f"{source.name}-ov-fp32", {"runtime": "openvino", "precision": "bf16"}),
            (
                "openvino int8 IR, bf16",
                CACHE / f"{source.name}-ov-int8",
                {"runtime": "openvino", "precision": "bf16"},
            ),
        ]
    found.append(
        (
            "openvino int8 IR, fp32",
            CACHE / f"{source.name}-ov-int8",
            {"runtime": "openvino", "precision": "fp32"},
        )
    )
    return found


def movement(tier, texts: list[str], seed: int) -> dict:
    """Each batch size and a shuffled order against the batch-32 answer in input order."""
    tier.batch_size = REFERENCE_BATCH
    reference = tier.predict_proba(texts)
    worst = {"max_abs_probability": 0.0, "max_abs_confidence": 0.0, "label_flips": 0, "runs": []}
    order = np.random.default_rng(seed).permutation(len(texts))
    for batch_size in BATCH_SIZES:
        for shuffled in (False, True):
            if batch_size == REFERENCE_BATCH and not shuffled:
                continue
            tier.batch_size = batch_size
            rows = [texts[i] for i in order] if shuffled else texts
            got = tier.predict_proba(rows)
            if shuffled:
                got = got[np.argsort(order)]
            delta = float(np.abs(got - reference).max())
            confidence = float(np.abs(got.max(1) - reference.max(1)).max())
            flips = int((got.argmax(1) != reference.argmax(1)).sum())
            worst["runs"].append(
                {"batch_size": batch_size, "shuffled": shuffled, "max_abs_probability": delta, "flips": flips}
            )
            worst["max_abs_probability"] = max(worst["max_abs_probability"], delta)
            worst["max_abs_confidence"] = max(worst["max_abs_confidence"], confidence)
            worst["label_flips"] = max(worst["label_flips"], flips)
    return worst


@click.command()
@click.option("--tier", "tier_dir", required=True, help="A fine-tuned PyTorch tier directory.")
@click.option("--data", default=str(DATA / "sst2" / "dev.tsv"), show_default=True, help="Rows scored.")
@click.option(
    "--calibration-data",
    default=str(DATA / "sst2" / "train.tsv"),
    show_default=True,
    help="Rows NNCF calibrates the OpenVINO int8 form on.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the shuffled order.")
def main(tier_dir: str, data: str, calibration_data: str, seed: int) -> None:
    """Measure how far each form's answers move with batch size and order."""
    import shlex
    import sys

    from docs_section import write_results

    from tango.data import load_labelled
    from tango.hardware import machine
    from tango.registry import resolve
    from tango.tiers import Tier

    source = resolve(tier_dir)
    texts = list(load_labelled(data).texts)
    measured = []
    for name, directory, options in forms(source, calibration_data):
        click.echo(f"scoring {name}", err=True)
        tier = Tier.from_pretrained(directory, threads=THREADS, **options)
        measured.append({"form": name, "runtime": tier.runtime.description, **movement(tier, texts, seed)})
    result = {
        "command": shlex.join(["python", "benchmarks/studies/batch_independence.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "tier": str(source),
        "data": {"source": data, "rows": len(texts)},
        "batch_sizes": list(BATCH_SIZES),
        "reference": f"the same form at batch size {REFERENCE_BATCH}, rows in input order",
        "forms": measured,
    }
    write_results("batch_independence", result, markdown(result))


def markdown(result: dict) -> str:
    from docs_section import command_now

    m = result["machine"]
    lines = [
        f"`benchmarks/results/batch_independence.json`: {result['data']['rows']} rows of "
        f"{Path(result['data']['source']).name} scored by each form of `{Path(result['tier']).name}` at "
        f"batch sizes {', '.join(map(str, result['batch_sizes']))}, in input and shuffled order, against "
        f"{result['reference']}; {m['cpu']} ({', '.join(m['isa']) or 'no AVX-512'}), {m['threads']} threads; "
        f"{m['date']}. Command: `{command_now(result['command'])}`.",
        "",
        "| form | runtime | largest change of a probability | of the confidence | labels flipped |",
        "|---|---|---|---|---|",
    ]
    rows = result["data"]["rows"]
    for form in result["forms"]:
        lines.append(
            f"| {form['form']} | {form['runtime']} | {form['max_abs_probability']:.1e} | "
            f"{form['max_abs_confidence']:.1e} | {form['label_flips']} of {rows} (worst run) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
