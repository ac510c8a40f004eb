"""Calibration rows carved from a training file, never trained on, and found again later.

A gate's threshold is only as good as the rows that chose it. Dev sets are small (872 rows for
SST-2: half a point is four rows), so ``tango train --calibration-rows N`` keeps N seeded rows of
the training file out of training and records which in the tier's ``tango_train.json``;
``tango calibrate`` without ``--dev`` reloads exactly those rows. The rows depend only on the
file's contents, N, the seed and the grouping, so every tier trained on the same file with the
same settings holds out the same rows, and none of them has seen any.

**Groups** (``--group-column COL`` or ``--group-column containment``) hold out whole groups: every
row of a group is held out or none is. ``containment`` groups a file of phrases (SST-2's training
file holds every phrase of its sentences) by the longest row each row lies inside, word for word,
so a held-out sentence leaves training together with every phrase of it, and the calibration
rows are the held-out full sentences (each group's root): new text, like a dev set. (A short
phrase found in several sentences belongs to one group only, so the held-out phrases are not all
new; they are kept out of training and out of calibration.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tango.data import LabelledData, load_labelled, split_rows
from tango.modeldir import TRAIN_FILE, training_record

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


CONTAINMENT = "containment"  # --group-column value: group phrases with the row they lie inside


def containment_groups(texts: list) -> np.ndarray:
    """Group id per row: the longest row that contains it word for word (itself if none does).

    Rows are taken longest first; a row no earlier row contains starts a group and registers every
    contiguous run of its words, so a later row inside it (a phrase of the sentence) joins its
    group. Containment is transitive, so only group roots need registering: about L^2/2 runs per
    root of L words (SST-2's 67k rows: ~10k roots, a few seconds).
    """
    words = [_words(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(words[i]))
    owner: dict[tuple[str, ...], int] = {}
    groups = np.empty(len(texts), dtype=np.int64)
    for i in order:
        root = owner.get(words[i])
        if root is None:
            root = i
            tokens = words[i]
            for start in range(len(tokens)):
                for end in range(start + 1, len(tokens) + 1):
                    owner.setdefault(tokens[start:end], root)
        groups[i] = root
    return groups


def _words(text: Any) -> tuple[str, ...]:
    return tuple((" ".join(text) if isinstance(text, tuple) else str(text)).lower().split())


def column_groups(path: str | Path, column: str, columns: dict[str, str | None]) -> np.ndarray:
    """Group id per row from a column of the file (rows read as ``load_labelled`` reads them)."""
    from tango.data import Record, read_records

    values: dict[str, int] = {}
    groups = []
    text, pair = columns.get("text_column") or "text", columns.get("text_pair_column")
    for item in read_records(path, text, pair, columns.get("label_column"), id_column=column):
        if isinstance(item, Record):
            groups.append(values.setdefault(str(item.id), len(values)))
    return np.asarray(groups, dtype=np.int64)


def row_groups(data: LabelledData, path: str | Path, spec: str | None, columns: dict) -> np.ndarray | None:
    """The groups ``spec`` names for the rows of ``path`` (None: every row on its own)."""
    if spec is None:
        return None
    groups = containment_groups(data.texts) if spec == CONTAINMENT else column_groups(path, spec, columns)
    if len(groups) != len(data):
        raise ValueError(f"{path}: read {len(groups)} values of {spec!r} for {len(data)} rows")
    return groups


def held_out_by_group(groups: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Whole groups, in a seeded order, until at least ``rows`` rows are held out. Sorted indices."""
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    taken = order[: int(np.searchsorted(np.cumsum(counts[order]), rows)) + 1]
    return np.flatnonzero(np.isin(inverse, taken))


@dataclass(frozen=True)
class HeldOutRows:
    """Which rows of which file were kept out of training, and how to read them again."""

    file: str  # absolute path when carved
    sha256: str  # of the whole file: a changed file cannot pass for the one carved
    rows: int  # held out (with groups: at least this many, whole groups)
    of: int  # rows in the file
    seed: int
    columns: dict[str, str | None]  # text_column, text_pair_column, label_column as given
    groups: str | None = None  # None, "containment" or a column: rows held out by whole groups
    held: int | None = None  # rows kept out of training (groups make it a little more than ``rows``)
    group_count: int | None = None  # groups held out (with containment: the calibration rows)

    def indices(self, groups: np.ndarray | None = None) -> np.ndarray:
        """The row indices kept out of training, sorted; ``groups`` (per row) when grouped."""
        if self.groups is None:
            return np.sort(np.random.default_rng(self.seed).permutation(self.of)[: self.rows])
        if groups is None:
            raise ValueError(f"the rows of {self.file} were held out by {self.groups!r}: give the groups")
        return held_out_by_group(groups, self.rows, self.seed)

    def calibration_indices(self, groups: np.ndarray | None = None) -> np.ndarray:
        """The held-out rows that calibrate: all of them, or with ``containment`` each held-out
        group's root (the full sentence, which no training row contains)."""
        held = self.indices(groups)
        if self.groups != CONTAINMENT:
            return held
        return held[groups[held] == held]

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
        groups = row_groups(data, self.file, self.groups, self.columns)
        calibration = self.calibration_indices(groups)
        by = f", whole groups by {self.groups}" if self.groups else ""
        source = (
            f"{self.file}: {len(calibration)} calibration rows held out of training (seed {self.seed}{by})"
        )
        rest = np.setdiff1d(np.arange(len(data)), self.indices(groups))
        return replace(data.subset(calibration), source=source), data.subset(rest)


def carve_calibration_rows(
    data: LabelledData,
    path: str | Path,
    rows: int,
    seed: int,
    columns: dict[str, str | None],
    groups: str | None = None,
    per_row: np.ndarray | None = None,
) -> tuple[LabelledData, HeldOutRows | None]:
    """Split ``data`` (all of ``path``) into training rows and ``rows`` held-out calibration rows
    (with ``groups``: whole groups, at least ``rows`` rows; see :func:`containment_groups`).
    ``per_row``: the groups already computed for ``data`` (else computed here)."""
    if rows == 0:
        return data, None
    if not 0 < rows < len(data):
        raise ValueError(f"--calibration-rows must be between 0 and {len(data) - 1} for {path}, got {rows}")
    if per_row is None:
        per_row = row_groups(data, path, groups, columns)
    held = HeldOutRows(
        str(Path(path).resolve()), file_sha256(path), rows, len(data), seed, dict(columns), groups
    )
    indices = held.indices(per_row)
    if groups is not None:
        held = replace(held, held=len(indices), group_count=len(np.unique(per_row[indices])))
    keep = np.setdiff1d(np.arange(len(data)), indices)
    by = f", whole groups by {groups}" if groups else ""
    source = f"{data.source or path} without {len(indices)} calibration rows (seed {seed}{by})"
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
    """The calibration rows a tier's training kept out, from its ``tango_train.json`` (an
    exported tier's from its source's)."""
    record = training_record(tier_path).get("calibration_rows")
    return HeldOutRows(**record) if record else None


def rows_outside_held_out(tier_path: str | Path, path: str | Path, label_names: list[str]) -> LabelledData:
    """The labelled rows of ``path`` that may check or calibrate an export of ``tier_path``: all of
    them, less the rows the tier held out of its training when ``path`` is that training file.

    An export's check and NNCF's calibration read rows of a file; a recipe passes the training
    file, whose held-out rows are the calibration and evaluation pool of every gate and series.
    Reading them there would touch that pool before any gate does."""
    held = held_out_rows(tier_path)
    if held is None or not Path(path).is_file() or file_sha256(path) != held.sha256:
        return load_labelled(path, label_names=label_names)
    rest = held.load_with_rest(label_names)[1]
    kept_out = held.held or held.rows
    return replace(rest, source=f"{path} without the {kept_out} rows held out of training")


def trained_on(tier_path: str | Path, held: HeldOutRows) -> bool:
    """Whether a tier's training may have seen ``held``'s rows (same file, not held out)."""
    record = training_record(tier_path)
    if not record:
        return False  # a tier from elsewhere (the hub): nothing recorded, nothing to check
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
                f"rows; train it with --calibration-rows {held.rows} --calibration-seed {held.seed}"
                + (f" --group-column {held.groups}" if held.groups else "")
                + ", or pass --dev FILE"
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
    group_column: str | None = None,
    train_rows: int | None = None,
) -> TrainingRows:
    """Read ``train_path``; hold out its calibration rows; take the dev rows from ``dev_path`` or,
    without one, a seeded ``dev_fraction`` of the rest; then, with ``train_rows``, train on a
    sample of that many of the rows left (seeded by ``seed``: a budget where rows are long and the
    CPU slow). Each part's ``source`` says which rows it holds."""
    columns = dict(columns or {})
    whole = load_labelled(train_path, label_names=label_names, **columns)
    if calibration_rows is None:
        calibration_rows = default_calibration_rows(len(whole))
    per_row = row_groups(whole, train_path, group_column, columns) if calibration_rows else None
    data, held = carve_calibration_rows(
        whole, train_path, calibration_rows, calibration_seed, columns, group_column, per_row
    )
    dev = load_labelled(dev_path, label_names=data.label_names, **columns) if dev_path else None
    if dev is None and dev_fraction:
        kept, dev_rows = split_rows(len(data), dev_fraction, seed)
        split = f"seeded split (dev_fraction={dev_fraction}, seed={seed})"
        data, dev = (
            replace(data.subset(rows), source=f"{train_path} {part} of {split}")
            for part, rows in (("train", kept), ("dev", dev_rows))
        )
    if train_rows is not None:
        data = training_sample(data, train_rows, seed)
    calibration = whole.subset(held.calibration_indices(per_row)) if held else None
    return TrainingRows(data, dev, calibration, held)


def training_sample(data: LabelledData, rows: int, seed: int) -> LabelledData:
    """``rows`` of ``data`` in a seeded sample (file order kept), its ``source`` saying so.

    Raises ValueError when ``data`` has fewer rows: training on all of them would not be the
    budget asked for, and the record would say otherwise."""
    if rows > len(data):
        raise ValueError(
            f"--train-rows {rows} is more than the {len(data)} rows left to train on in {data.source}"
        )
    picked = np.sort(np.random.default_rng(seed).permutation(len(data))[:rows])
    source = f"{data.source}: a sample of {rows} of its {len(data)} rows (seed {seed})"
    return replace(data.subset(picked), source=source)
