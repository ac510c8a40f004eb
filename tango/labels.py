"""Labels as names or integer ids, mapped to ids by one rule (a leaf: imports nothing of tango).

Every place that reads labels (a labelled file, ``Cascade.fit``/``score``, the gate's evidence,
evaluation) maps them here, so ``"Positive"``, ``"positive"`` and ``"1"`` mean the same class
everywhere:

- an integer array holds ids into the classes, each checked to be one;
- a string matches a class name, case aside (names win over ids), else a string of digits is an
  id (``"1"`` read from a file);
- anything else is refused, naming the labels and the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["align_labels", "infer_label_names", "label_ids", "map_labels"]


def label_ids(labels: Sequence[str] | Sequence[int] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Labels given as names (case aside) or integer ids, as ids into ``classes``. (N,) int64."""
    classes = [str(name) for name in classes]
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be one label per row, got an array of shape {values.shape}")
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    if np.issubdtype(values.dtype, np.integer):
        bad = sorted({int(v) for v in values if not 0 <= v < len(classes)})
        if bad:
            raise ValueError(
                f"label ids {bad[:5]} are not ids of the classes {classes} (0..{len(classes) - 1})"
            )
        return values.astype(np.int64)
    if values.dtype.kind not in "US" and not all(isinstance(v, str) for v in values):
        raise TypeError(f"labels must be label names (str) or integer ids, got {type(values[0]).__name__}")
    index = {str(i): i for i in range(len(classes))}  # ids read from a file as text
    index.update({name.lower(): i for i, name in enumerate(classes)})  # names win over ids
    missing = sorted({str(v) for v in values if str(v).lower() not in index})
    if missing:
        raise ValueError(
            f"labels {missing[:5]} are not among the labels {classes} nor their ids "
            "(pass label_names= / --labels to match the data)"
        )
    return np.asarray([index[str(v).lower()] for v in values], dtype=np.int64)


def infer_label_names(raw: Sequence[str]) -> list[str]:
    """The classes of raw labels when nobody named them: ``0..max`` when every label is an
    integer id, else the sorted distinct names."""
    if raw and all(label.lstrip("-").isdigit() for label in raw):
        return [str(i) for i in range(max(int(label) for label in raw) + 1)]
    return sorted(set(raw))


def map_labels(raw: list[str], label_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Raw labels from a file as (ids into the names, the names); names inferred when None."""
    names = list(label_names) if label_names is not None else infer_label_names(raw)
    return label_ids(np.asarray(raw, dtype=str), names), names


def align_labels(ids: np.ndarray, names: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Ids into ``names`` (a labelled file's) as ids into ``classes`` (a model's)."""
    if list(names) == list(classes):
        return np.asarray(ids, dtype=np.int64)
    return label_ids(np.asarray([names[i] for i in ids], dtype=str), classes)
