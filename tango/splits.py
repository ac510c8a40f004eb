"""Calibration rows carved from a training file, never trained on, and found again later.

A gate's threshold is only as good as the rows that chose it. Dev sets are small (872 rows for
SST-2: half a point is four rows), so ``tango train --calibration-rows N`` keeps N seeded rows of
the training file out of training and records which in the tier's ``tango_train.json``;
``tango calibrate`` without ``--dev`` reloads exactly those rows. The rows depend only on the
file's contents, N and the seed, so every tier trained on the same file with the same N and seed
holds out the same rows, and none of them has seen any.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tango.data import LabelledData, load_labelled, split_rows
from tango.modeldir import TRAIN_FILE

OVERLAP_WARNING = 0.05  # held-out rows found inside training rows above this: not new rows
OVERLAP_SAMPLE = 300
MIN_FILE_ROWS = 2000  # smaller files keep every row for training
MAX_CALIBRATION_ROWS = 3000


def default_calibration_rows(n: int) -> int:
    """A few thousand rows where the file allows it: min(3000, n / 5); none under 2,000 rows."""
    return 0 if n < MIN_FILE_ROWS else min(MAX_CALIBRATION_ROWS, n // 5)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class HeldOutRows:
    """Which rows of which file were kept out of training, and how to read them again."""

    file: str  # absolute path when carved
    sha256: str  # of the whole file: a changed file cannot pass for the one carved
    rows: int  # held out
    of: int  # rows in the file
    seed: int
    columns: dict[str, str | None]  # text_column, text_pair_column, label_column as given

    def indices(self) -> np.ndarray:
        """The held-out row indices, sorted."""
        return np.sort(np.random.default_rng(self.seed).permutation(self.of)[: self.rows])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load(self, label_names: list[str] | None = None) -> LabelledData:
        """Read the file again and return the held-out rows; refuse a file that changed."""
        return self.load_with_rest(label_names)[0]

    def load_with_rest(self, label_names: list[str] | None = None) -> tuple[LabelledData, LabelledData]:
        """The held-out rows and the rows that were trained on, read again from the file."""
        if not Path(self.file).is_file():
            raise ValueError(
                f"the calibration rows were carved from {self.file}, which is gone; pass --dev FILE"
            )
        if file_sha256(self.file) != self.sha256:
            raise ValueError(
                f"{self.file} changed since its calibration rows were carved; pass --dev FILE "
                "(rows the tiers were not trained on)"
            )
        data = load_labelled(self.file, label_names=label_names, **self.columns)
        if len(data) != self.of:
            raise ValueError(f"{self.file} now reads as {len(data)} rows, not {self.of}; pass --dev FILE")
        source = f"{self.file}: {self.rows} calibration rows held out of training (seed {self.seed})"
        rest = np.setdiff1d(np.arange(len(data)), self.indices())
        return replace(data.subset(self.indices()), source=source), data.subset(rest)


def carve_calibration_rows(
    data: LabelledData, path: str | Path, rows: int, seed: int, columns: dict[str, str | None]
) -> tuple[LabelledData, HeldOutRows | None]:
    """Split ``data`` (all of ``path``) into training rows and ``rows`` held-out calibration rows."""
    if rows == 0:
        return data, None
    if not 0 < rows < len(data):
        raise ValueError(f"--calibration-rows must be between 0 and {len(data) - 1} for {path}, got {rows}")
    held = HeldOutRows(str(Path(path).resolve()), file_sha256(path), rows, len(data), seed, dict(columns))
    keep = np.setdiff1d(np.arange(len(data)), held.indices())
    source = f"{data.source or path} without {rows} calibration rows (seed {seed})"
    return replace(data.subset(keep), source=source), held


def text_overlap(held: LabelledData, trained: LabelledData, seed: int = 0) -> float:
    """Fraction of (a sample of) held-out rows whose text appears inside some training row.

    Held-out rows are only new rows if their text is. SST-2's training file holds every phrase
    of its sentences, so nine in ten held-out rows there are pieces of training rows: a tier
    looks better on them than on new text, and a threshold chosen there is too bold.
    """
    if not len(held) or not len(trained):
        return 0.0
    picked = np.random.default_rng(seed).permutation(len(held))[:OVERLAP_SAMPLE]
    return float(np.mean(_inside(_flat([held.texts[i] for i in picked]), _corpus(trained))))


def new_text_rows(held: LabelledData, trained: LabelledData) -> np.ndarray:
    """Indices of the held-out rows whose text appears inside no training row: the new text.

    Thresholds chosen on these carry over to new sentences; on a file of phrases (SST-2) they are
    the held-out sentences whose phrases were not all trained on.
    """
    if not len(trained):
        return np.arange(len(held))
    inside = _inside(_flat(held.texts), _corpus(trained))
    return np.flatnonzero(~np.asarray(inside, dtype=bool))


def _flat(texts: list) -> list[str]:
    return [(" ".join(t) if isinstance(t, tuple) else str(t)).strip() for t in texts]


def _corpus(trained: LabelledData) -> str:
    return "\n".join(_flat(trained.texts))


def _inside(texts: list[str], corpus: str) -> list[bool]:
    return [text in corpus for text in texts]


def overlap_warning(overlap: float, source: str) -> str | None:
    """A line for the user when held-out rows are mostly pieces of training rows."""
    if overlap <= OVERLAP_WARNING:
        return None
    return (
        f"warning: {overlap:.0%} of the held-out rows of {source} appear inside training rows (a file of "
        "phrases, like SST-2's, or duplicates): tiers look better on them than on new text, so thresholds "
        "chosen there are too bold; calibrate with --dev on rows that are new text"
    )


def record_training_file(out_dir: str | Path, path: str | Path, held: HeldOutRows | None) -> None:
    """Add the training file's hash and the held-out rows to a tier's ``tango_train.json``."""
    record_path = Path(out_dir) / TRAIN_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record["train_sha256"] = held.sha256 if held else file_sha256(path)
    record["calibration_rows"] = held.to_dict() if held else None
    record_path.write_text(json.dumps(record, indent=2))


def held_out_rows(tier_path: str | Path) -> HeldOutRows | None:
    """The calibration rows a tier's training kept out, from its ``tango_train.json``."""
    record_path = Path(tier_path) / TRAIN_FILE
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text()).get("calibration_rows")
    return HeldOutRows(**record) if record else None


def trained_on(tier_path: str | Path, held: HeldOutRows) -> bool:
    """Whether a tier's training may have seen ``held``'s rows (same file, not held out)."""
    record_path = Path(tier_path) / TRAIN_FILE
    if not record_path.is_file():
        return False  # a tier from elsewhere (the hub): nothing recorded, nothing to check
    record = json.loads(record_path.read_text())
    own = record.get("calibration_rows")
    if own and HeldOutRows(**own) == held:
        return False
    return record.get("train_sha256") == held.sha256


def calibration_rows_for(tier_paths: list[Path], label_names: list[str]) -> tuple[LabelledData, float]:
    """The held-out rows recorded by tier 1, checked against every tier's training, and their
    :func:`text_overlap` with the rows that were trained on.

    Raises ValueError when tier 1 recorded none, or when another tier trained on them (its
    accuracy there would be inflated, and so would the drop the threshold is chosen for).
    """
    held = held_out_rows(tier_paths[0])
    if held is None:
        raise ValueError(
            f"tier 1 ({tier_paths[0]}) records no calibration rows: pass --dev FILE with labelled rows no "
            "tier was trained on, or train tier 1 with --calibration-rows N"
        )
    for k, path in enumerate(tier_paths[1:], start=2):
        if trained_on(path, held):
            raise ValueError(
                f"tier {k} ({path}) was trained on {held.file} without holding out tier 1's calibration "
                f"rows; train it with --calibration-rows {held.rows} --seed {held.seed}, or pass --dev FILE"
            )
    rows, trained = held.load_with_rest(label_names)
    return rows, text_overlap(rows, trained)


@dataclass
class TrainingRows:
    """The rows of one ``tango train``: what it trains on, scores after, and holds out."""

    train: LabelledData  # the rows the tier trains on
    dev: LabelledData | None  # --dev, else a seeded --dev-fraction of the file, else none
    calibration: LabelledData | None  # the held-out rows themselves
    held: HeldOutRows | None  # the calibration rows kept out of training


def training_rows(
    train_path: str | Path,
    *,
    dev_path: str | Path | None = None,
    dev_fraction: float | None = None,
    seed: int = 0,
    columns: dict[str, str | None] | None = None,
    label_names: list[str] | None = None,
    calibration_rows: int | None = None,
    calibration_seed: int = 0,
) -> TrainingRows:
    """Read ``train_path``; hold out its calibration rows; take the dev rows from ``dev_path`` or,
    without one, a seeded ``dev_fraction`` of the rest (each part's ``source`` says which)."""
    columns = dict(columns or {})
    whole = load_labelled(train_path, label_names=label_names, **columns)
    if calibration_rows is None:
        calibration_rows = default_calibration_rows(len(whole))
    data, held = carve_calibration_rows(whole, train_path, calibration_rows, calibration_seed, columns)
    dev = load_labelled(dev_path, label_names=data.label_names, **columns) if dev_path else None
    if dev is None and dev_fraction:
        train_rows, dev_rows = split_rows(len(data), dev_fraction, seed)
        split = f"seeded split (dev_fraction={dev_fraction}, seed={seed})"
        data, dev = (
            replace(data.subset(rows), source=f"{train_path} {part} of {split}")
            for part, rows in (("train", train_rows), ("dev", dev_rows))
        )
    calibration = whole.subset(held.indices()) if held else None
    return TrainingRows(data, dev, calibration, held)
