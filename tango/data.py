"""Streaming readers for CSV, TSV and JSON lines, with file + line reports for bad rows.

``read_records`` yields one ``Record`` per good row and one ``RowError`` per bad row, so nothing
is dropped silently and a scorer can write the errors beside its output. It reads one physical
line at a time (constant memory) and decodes each as strict UTF-8, so one bad byte costs one row,
not the file. ``load_labelled`` builds on it to load a whole labelled file for training or
calibration, and refuses files with bad rows.

The formats themselves (TSV as the GLUE files write it, CSV per RFC 4180, JSON lines) are parsed
into rows by :mod:`tango.formats`; here rows become records: the asked-for columns, text stripped
of surrounding white space (SST-2 has a space before each tab), empty texts and labels refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from tango.formats import Row, open_input, parse_rows, resolve_format
from tango.labels import map_labels


@dataclass
class Record:
    """One good input row."""

    line: int  # 1-based physical line where the row starts (a CSV/TSV header is line 1)
    id: str | None  # value of the id column, if one was asked for
    text: str | tuple[str, str]  # a text, or a (text, text_pair) for pair tasks
    label: str | None  # raw label as written in the file, if a label column was asked for


@dataclass
class RowError:
    """One bad input row, kept so that it can be reported and written to an errors file."""

    line: int
    field: str | None  # the column at fault, if any
    message: str  # e.g. "malformed JSON", "empty text", "not UTF-8", "expected 2 fields, found 3"
    raw: str  # the raw row, decoded with errors="replace"
    raw_bytes: bytes | None = None  # the row's exact bytes, kept when they are not UTF-8


# --- records -------------------------------------------------------------------------------------


def _missing_columns(path: str | Path, wanted: list[str], found: Iterable[str]) -> None:
    missing = [column for column in wanted if column not in found]
    if missing:
        raise ValueError(
            f"{str(path)!r} has no column {missing[0]!r}; columns found: {', '.join(map(repr, found))}"
        )


def _record(row: Row, columns: dict[str, str | None], header: list[str] | None) -> Record | RowError:
    """Pick the asked-for columns out of a parsed row, or say what is wrong with it."""
    if row.error:
        return RowError(row.line, None, row.error, row.raw, row.raw_bytes)
    if header is not None:
        if len(row.fields) != len(header):
            return RowError(
                row.line, None, f"expected {len(header)} fields, found {len(row.fields)}", row.raw
            )
        values = dict(zip(header, row.fields, strict=True))
    else:
        values = row.fields
    picked: dict[str, str | None] = {}
    for role, column in columns.items():
        if column is None:
            picked[role] = None
            continue
        if column not in values:
            return RowError(row.line, column, "missing field", row.raw)
        value = values[column]
        must_be_text = role in ("text", "pair")
        if isinstance(value, (dict, list)) or value is None or (must_be_text and not isinstance(value, str)):
            found = json.dumps(value, ensure_ascii=False)
            return RowError(row.line, column, f"expected a string, found {found:.40}", row.raw)
        picked[role] = str(value).strip()
    for role in ("text", "pair"):
        if picked[role] is not None and not picked[role]:
            return RowError(row.line, columns[role], "empty text", row.raw)
    if picked["label"] is not None and not picked["label"]:
        return RowError(row.line, columns["label"], "empty label", row.raw)
    text = picked["text"] if picked["pair"] is None else (picked["text"], picked["pair"])
    return Record(row.line, picked["id"], text, picked["label"])


def _header(
    path: str | Path, rows: Iterator[Row], format: str
) -> tuple[list[str] | None, list[str], list[Row]]:
    """Column names, plus (for JSON lines) the rows read ahead to find the first object."""
    if format != "jsonl":
        first = next(rows, None)
        if first is None:
            raise ValueError(f"{str(path)!r} is empty: expected a header row")
        if first.error:
            raise ValueError(f"{str(path)!r} line {first.line}: header is {first.error}")
        header = [field.strip() for field in first.fields]
        return header, header, []
    ahead = []
    for row in rows:
        ahead.append(row)
        if row.fields is not None:
            return None, list(row.fields), ahead
    raise ValueError(f"{str(path)!r} holds no JSON object to take column names from")


def read_records(
    path: str | Path,
    text_column: str,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    format: str | None = None,
    skip_lines: int = 0,
    default_id_column: str | None = None,
) -> Records:
    """Stream the rows of a CSV, TSV or JSON-lines file (``"-"`` for stdin) as records.

    The header (or first JSON object) is checked here, before anything is yielded: a missing
    column, or an asked-for column that the header holds twice, raises ValueError naming the
    file, the column and the columns found. Without ``id_column``, ``default_id_column`` is used
    when the file has it (``tango run`` passes ``"id"``). ``skip_lines`` skips that many data
    rows (good or bad), to resume an interrupted run.

    >>> for item in read_records("dev.tsv", "sentence", label_column="label"):  # doctest: +SKIP
    ...     print(item.line, item.text, item.label)
    """
    format = resolve_format(path, format)
    binary = open_input(path)
    try:
        rows = parse_rows(binary, format)
        header, found, ahead = _header(path, rows, format)
        if id_column is None and default_id_column in found:
            id_column = default_id_column
        columns = {"text": text_column, "pair": text_pair_column, "label": label_column, "id": id_column}
        wanted = [c for c in columns.values() if c]
        _missing_columns(path, wanted, found)
        _duplicate_columns(path, wanted, header)
    except BaseException:
        if binary is not sys.stdin.buffer:
            binary.close()
        raise
    return Records(binary, ahead, rows, columns, header, format, skip_lines)


def _duplicate_columns(path: str | Path, wanted: list[str], header: list[str] | None) -> None:
    """A header naming a used column twice is ambiguous: refuse instead of picking one."""
    for column in wanted:
        if header is not None and header.count(column) > 1:
            raise ValueError(
                f"{str(path)!r} line 1: column {column!r} appears {header.count(column)} times in "
                "the header; rename the copies so that each column has one name"
            )


class Records:
    """The rows of one file as ``Record``/``RowError`` items, with the columns resolved.

    ``columns`` maps roles (text, pair, label, id) to the file's column names, ``format`` is
    the resolved input format. ``skip(n)`` (before iterating) passes over the first n data rows.
    """

    def __init__(
        self,
        binary: IO[bytes],
        ahead: list[Row],
        rows: Iterator[Row],
        columns: dict[str, str | None],
        header: list[str] | None,
        format: str,
        skip: int = 0,
    ) -> None:
        self.columns, self.format = columns, format
        self._binary, self._ahead, self._rows, self._header, self._skip = binary, ahead, rows, header, skip
        self._items: Iterator[Record | RowError] | None = None

    def skip(self, rows: int) -> None:
        if self._items is not None:
            raise RuntimeError("skip() must come before iterating")
        self._skip = rows

    def __iter__(self) -> Records:
        return self

    def __next__(self) -> Record | RowError:
        if self._items is None:
            self._items = _records(
                self._binary, self._ahead, self._rows, self.columns, self._header, self._skip
            )
        return next(self._items)

    def close(self) -> None:
        if self._items is not None:
            self._items.close()  # type: ignore[attr-defined]
        elif self._binary is not sys.stdin.buffer:
            self._binary.close()


def _records(
    binary: IO[bytes],
    ahead: list[Row],
    rows: Iterator[Row],
    columns: dict[str, str | None],
    header: list[str] | None,
    skip: int,
) -> Iterator[Record | RowError]:
    try:
        for number, row in enumerate(_chain(ahead, rows)):
            if number >= skip:
                yield _record(row, columns, header)
    finally:
        if binary is not sys.stdin.buffer:
            binary.close()


def _chain(first: list[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from first
    yield from rest


def columns_of(path: str | Path, format: str | None = None) -> list[str]:
    """The column names of a file: its header, or the keys of its first JSON object."""
    format = resolve_format(path, format)
    with open_input(path) as binary:
        return _header(path, parse_rows(binary, format), format)[1]


# --- labelled data for training and calibration --------------------------------------------------

# Column names tried, in order, when none are given (`tango train`, `tango run`, calibration):
# (text, text pair).
_TEXT_COLUMNS = [
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("sentence", None),
    ("text", None),
    ("review", None),
    ("content", None),
]
_LABEL_COLUMNS = ["label", "labels", "gold_label", "target"]


@dataclass
class LabelledData:
    """A whole labelled file in memory: what fine-tuning and calibration need."""

    texts: list[str] | list[tuple[str, str]]
    labels: np.ndarray  # (N,) int64 ids into label_names
    label_names: list[str]
    source: str = ""  # where the rows came from, for training records

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray) -> LabelledData:
        """The rows at ``indices`` (in that order), with the same label names."""
        return LabelledData(
            [self.texts[i] for i in indices], self.labels[indices], self.label_names, self.source
        )


def guess_columns(
    path: str | Path, format: str | None = None, *, label: bool = True
) -> tuple[str, str | None, str | None]:
    """(text, text pair, label) columns of a file, guessed from common names.

    With ``label=False`` (scoring) no label column is looked for, and a file without a known
    text column (or stdin, which cannot be peeked at) gets ``"text"``, so that reading it names
    the columns found. ``label=True`` raises ValueError when either cannot be guessed.
    """
    found = [] if str(path) == "-" else columns_of(path, format)
    text = next(((t, p) for t, p in _TEXT_COLUMNS if t in found and (p is None or p in found)), None)
    if not label:
        return (*(text or ("text", None)), None)
    label_column = next((c for c in _LABEL_COLUMNS if c in found), None)
    if text is None or label_column is None:
        raise ValueError(
            f"cannot guess the text and label columns of {str(path)!r} (columns: "
            f"{', '.join(found)}); pass text_column= and label_column= "
            "(--text-column/--label-column)"
        )
    return text[0], text[1], label_column


def load_labelled(
    path: str | Path,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    format: str | None = None,
) -> LabelledData:
    """Load a labelled file whole; columns are guessed from common names when not given.

    Labels may be names (``positive``) or ids (``1``); ``label_names`` fixes their order (pass the
    training set's names when loading its dev set). Any bad row makes this raise ValueError with
    the line numbers of the first ten.
    """
    if text_column is None or label_column is None:
        guessed = guess_columns(path, format)
        text_column = text_column or guessed[0]
        text_pair_column = text_pair_column or (guessed[1] if text_column == guessed[0] else None)
        label_column = label_column or guessed[2]
    texts, raw, bad = [], [], []
    for item in read_records(path, text_column, text_pair_column, label_column, format=format):
        if isinstance(item, RowError):
            bad.append(item)
        else:
            texts.append(item.text)
            raw.append(item.label)
    _refuse_bad_or_empty(path, bad, texts)
    labels, names = map_labels(raw, label_names)
    return LabelledData(texts, labels, names, str(path))


def load_texts(
    path: str | Path,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    format: str | None = None,
) -> list:
    """The texts (or text pairs) of an unlabelled file, whole; columns guessed when not given.
    Any bad row makes this raise ValueError with the line numbers of the first ten."""
    if text_column is None:
        text_column, guessed_pair, _ = guess_columns(path, format, label=False)
        text_pair_column = text_pair_column or guessed_pair
    texts, bad = [], []
    for item in read_records(path, text_column, text_pair_column, format=format):
        if isinstance(item, RowError):
            bad.append(item)
        else:
            texts.append(item.text)
    _refuse_bad_or_empty(path, bad, texts)
    return texts


def _refuse_bad_or_empty(path: str | Path, bad: list[RowError], texts: list) -> None:
    """A file loaded whole must be all good rows, and some: else name the first ten bad lines."""
    if bad:
        listed = "; ".join(f"line {e.line}: {e.message}" for e in bad[:10])
        raise ValueError(f"{str(path)!r} has {len(bad)} bad row(s): {listed}")
    if not texts:
        raise ValueError(f"{str(path)!r} has no rows")


def split_rows(n: int, dev_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into (train, dev) index arrays, each sorted."""
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must be between 0 and 1, got {dev_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_dev = max(1, round(n * dev_fraction))
    return np.sort(order[n_dev:]), np.sort(order[:n_dev])


# Label names of the shared data sets (their files hold ids), so trained tiers say "positive".
LABEL_NAMES: dict[str, list[str]] = {
    "sst2": ["negative", "positive"],
    "imdb": ["negative", "positive"],
    "ag_news": ["World", "Sports", "Business", "Sci/Tech"],
    "snli": ["entailment", "neutral", "contradiction"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qnli": ["entailment", "not_entailment"],
}


def parse_label_names(labels: str | None) -> list[str] | None:
    """``--labels``: a known data set's name (``sst2``), else names in id order, comma-separated."""
    if labels is None:
        return None
    return LABEL_NAMES.get(labels) or [name.strip() for name in labels.split(",")]
