"""The table of docs/models.md: accuracy (PyTorch fp32, ONNX fp32, ONNX int8), training time and
ONNX int8 throughput of every tier that `tango build configs/*.toml` builds.

Throughput: the task's dev texts, tokenized and run by `Tier` (rows sorted by length, batches of
32), 2 intra-op threads, median of REPEATS timed passes after one warm-up. Run it on a quiet
machine: a second job on 2 cores halves the figures.

    python benchmarks/model_table.py [--models minilm-l6-sst2,mpnet-base-sst2]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import click

from tango.calibration import expected_calibration_error
from tango.confidence import softmax
from tango.data import LABEL_NAMES, load_labelled, split_rows
from tango.registry import resolve
from tango.tiers import Tier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
THREADS = 2
BATCH_SIZE = 32
REPEATS = 3
# task -> (dev file, dev fraction of a seeded split of that file or None, label names)
TASKS = {
    "sst2": ("sst2/dev.tsv", None, LABEL_NAMES["sst2"]),
    "agnews": ("ag_news/train_10k.tsv", 0.1, LABEL_NAMES["ag_news"]),
    "mrpc": ("mrpc/validation.tsv", None, LABEL_NAMES["mrpc"]),
}
MODELS = [
    "minilm-l6-sst2",
    "minilm-l2-sst2",
    "mpnet-base-sst2",
    "minilm-l6-sst2-distilled",
    "minilm-l6-agnews",
    "mpnet-base-agnews",
    "minilm-l6-mrpc",
    "mpnet-base-mrpc",
]


def dev_set(task: str):
    file, fraction, names = TASKS[task]
    data = load_labelled(DATA / file, label_names=names)
    if fraction:
        data = data.subset(split_rows(len(data), fraction, seed=0)[1])
    return data


def accuracy_and_ece(tier: Tier, data) -> tuple[float, float]:
    """Accuracy, and the expected calibration error of the uncalibrated probabilities."""
    logits = tier.logits(data.texts)
    return (
        float((logits.argmax(1) == data.labels).mean()),
        expected_calibration_error(softmax(logits), data.labels),
    )


def throughput(tier: Tier, texts: list) -> float:
    """Sentences/s of tokenize + infer over all ``texts``."""
    tier.logits(texts)  # warm-up: ONNX Runtime plans its kernels on the first shapes
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        tier.logits(texts)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def row(name: str) -> str:
    task = name.rsplit("-", 1)[-1] if not name.endswith("distilled") else "sst2"
    data = dev_set(task)
    record = json.loads((resolve(name) / "tango_train.json").read_text())
    # by directory: an int8 export that failed its self-check is not registered, but measured
    fp32, int8 = (
        Tier.from_pretrained(resolve(name).parent / f"{name}-{kind}", threads=THREADS, batch_size=BATCH_SIZE)
        for kind in ("onnx", "int8")
    )
    export = json.loads((int8.path / "tango_export.json").read_text())["check"]
    failed = "" if export["passed"] else f" (check failed: {export['agreement']:.2%} equal)"
    minutes = record["train_seconds"] / 60
    int8_accuracy, int8_ece = accuracy_and_ece(int8, data)
    return (
        f"| {name} | {task} | {record['dev_accuracy']:.2%} | "
        f"{accuracy_and_ece(fp32, data)[0]:.2%} | {int8_accuracy:.2%}{failed} | {int8_ece:.3f} | "
        f"{minutes:.1f} | {record['examples_per_second']:.0f} | "
        f"{throughput(fp32, data.texts):.0f} | {throughput(int8, data.texts):.0f} |"
    )


@click.command()
@click.option(
    "--models", default=",".join(MODELS), show_default=True, help="Comma-separated registered tier names."
)
def main(models: str) -> None:
    """Print the markdown table of docs/models.md."""
    print(
        "| tier | task | PyTorch fp32 | ONNX fp32 | ONNX int8 | int8 ECE | train min | train ex/s "
        "| ONNX fp32 sent/s | ONNX int8 sent/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in models.split(","):
        print(row(name), flush=True)


if __name__ == "__main__":
    main()
