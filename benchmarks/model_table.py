"""The table of docs/models.md: accuracy (PyTorch fp32, ONNX fp32, ONNX int8), training time and
ONNX int8 throughput of every tier that benchmarks/make_models.sh builds.

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
MODELS = ["minilm-l6-sst2", "minilm-l2-sst2", "mpnet-base-sst2", "minilm-l6-sst2-distilled",
          "minilm-l6-agnews", "mpnet-base-agnews", "minilm-l6-mrpc", "mpnet-base-mrpc"]


def dev_set(task: str):
    file, fraction, names = TASKS[task]
    data = load_labelled(DATA / file, label_names=names)
    if fraction:
        data = data.subset(split_rows(len(data), fraction, seed=0)[1])
    return data


def accuracy(tier: Tier, data) -> float:
    return float((tier.logits(data.texts).argmax(1) == data.labels).mean())


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
    fp32 = Tier.from_pretrained(f"{name}-onnx", threads=THREADS, batch_size=BATCH_SIZE)
    int8 = Tier.from_pretrained(f"{name}-int8", threads=THREADS, batch_size=BATCH_SIZE)
    minutes = record["train_seconds"] / 60
    return (f"| {name} | {task} | {record['dev_accuracy']:.2%} | {accuracy(fp32, data):.2%} | "
            f"{accuracy(int8, data):.2%} | {minutes:.1f} | {record['examples_per_second']:.0f} | "
            f"{throughput(fp32, data.texts):.0f} | {throughput(int8, data.texts):.0f} |")


@click.command()
@click.option("--models", default=",".join(MODELS), show_default=True,
              help="Comma-separated registered tier names.")
def main(models: str) -> None:
    """Print the markdown table of docs/models.md."""
    print("| tier | task | PyTorch fp32 | ONNX fp32 | ONNX int8 | train min | train ex/s "
          "| ONNX fp32 sent/s | ONNX int8 sent/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models.split(","):
        print(row(name), flush=True)


if __name__ == "__main__":
    main()
