"""The unlabelled in-domain text of benchmarks/PROTOCOL.md: IMDB's training reviews cut into
sentences (``<br />`` removed), split once into two disjoint seeded halves (seed 0):
``imdb-sentences-distillation.jsonl`` (tier 1 learns from its teacher's answers on them) and
``imdb-sentences-calibration.jsonl`` (the label-free gate's rows). The [tier.*] recipes of
configs/sst2.toml read them from ``$TANGO_HOME/data``.

    python benchmarks/imdb_sentences.py      # once, before tango build configs/sst2.toml
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@click.command()
@click.option("--imdb", default=str(DATA / "imdb" / "train.jsonl"), show_default=True, help="IMDB reviews.")
def main(imdb: str) -> None:
    """Write the two halves into $TANGO_HOME/data (skipped when they are there)."""
    from tango.data import load_texts
    from tango.registry import tango_home
    from tango.sentences import sentences_of

    out = tango_home() / "data"
    if (out / "imdb-sentences-calibration.jsonl").exists():
        click.echo(f"already there: {out}/imdb-sentences-*.jsonl")
        return
    out.mkdir(parents=True, exist_ok=True)
    sentences = list(sentences_of(load_texts(imdb)))
    order = np.random.default_rng(0).permutation(len(sentences))
    half = len(sentences) // 2
    for name, part in (("distillation", order[:half]), ("calibration", order[half:])):
        with open(out / f"imdb-sentences-{name}.jsonl", "w") as file:
            file.writelines(json.dumps({"text": sentences[i]}) + "\n" for i in sorted(part))
    click.echo(f"{len(sentences)} IMDB sentences, {half} for distillation -> {out}")


if __name__ == "__main__":
    main()
