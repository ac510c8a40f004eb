"""The rows of a CSV, TSV or JSON-lines file, from its bytes: what :mod:`tango.data` reads records from.

The file is read one physical line at a time (constant memory) and each line is decoded as
strict UTF-8, so one bad byte costs one row, not the file. TSV follows the GLUE files: one row
per physical line, split on tabs; a field wholly wrapped in double quotes is unquoted (``""`` ->
``"``) as in MRPC, while stray quotes stay literal as in QNLI. CSV follows RFC 4180 (quoted
fields may span lines; a row reports the line where it starts). JSON lines: one object per line.
Blank lines are not rows and are skipped. A row that cannot be parsed is a :class:`Row` with its
``error``, never dropped.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CSV_FIELD_LIMIT = 2**31 - 1  # the largest the csv module takes on every platform


FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass
class _Line:
    number: int
    text: str  # decoded, without its line ending
    utf8: bool  # False when strict decoding failed (text then holds replacement characters)
    data: bytes | None = None  # the line's bytes (without its ending) when they are not UTF-8


def _lines(binary: IO[bytes]) -> Iterator[_Line]:
    """Physical lines, decoded one at a time so that a bad byte spoils only its own line."""
    for number, raw in enumerate(binary, start=1):
        raw = raw.rstrip(b"\r\n")
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
        try:
            yield _Line(number, raw.decode("utf-8"), True)
        except UnicodeDecodeError:
            yield _Line(number, raw.decode("utf-8", errors="replace"), False, raw)


@dataclass
class Row:
    """One row as parsed: its fields (a list, or a JSON object), its raw text, what is wrong."""

    line: int
    fields: list[str] | dict | None  # None when the row could not be parsed
    raw: str
    error: str | None = None
    raw_bytes: bytes | None = None  # exact bytes of a row that is not UTF-8


def _tsv_field(field: str) -> str:
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _tsv_rows(lines: Iterator[_Line]) -> Iterator[Row]:
    for line in lines:
        if not line.text.strip():
            continue
        fields = [_tsv_field(f) for f in line.text.split("\t")]
        yield Row(line.number, fields, line.text, None if line.utf8 else "not UTF-8", line.data)


_field_limit_lock = threading.Lock()
_field_limit_users = 0  # tango CSV readers running now
_field_limit_before = 0  # the process's own limit, given back when the last one ends


@contextlib.contextmanager
def long_csv_fields() -> Iterator[None]:
    """Lift csv's 131,072-character field limit while a tango CSV reader runs, so that a long text
    is truncated by the tokenizer instead of dropped as malformed. The limit is process-wide in
    the csv module; it is raised only while some tango reader is active (counted, so readers may
    overlap) and the process gets its own value back when the last one ends."""
    global _field_limit_users, _field_limit_before
    with _field_limit_lock:
        if _field_limit_users == 0:
            _field_limit_before = csv.field_size_limit()
            csv.field_size_limit(max(_field_limit_before, CSV_FIELD_LIMIT))
        _field_limit_users += 1
    try:
        yield
    finally:
        with _field_limit_lock:
            _field_limit_users -= 1
            if _field_limit_users == 0:
                csv.field_size_limit(_field_limit_before)


def _csv_rows(lines: Iterator[_Line]) -> Iterator[Row]:
    """RFC 4180 rows; a row spanning several lines reports the line where it starts."""
    spans: list[_Line] = []

    def feed() -> Iterator[str]:
        for line in lines:
            spans.append(line)
            yield line.text + "\n"

    with long_csv_fields():
        yield from _csv_records(csv.reader(feed(), strict=True), spans)


def _csv_records(reader: Iterator[list[str]], spans: list[_Line]) -> Iterator[Row]:
    while True:
        try:
            fields, error = next(reader), None
        except StopIteration:
            return
        except csv.Error as problem:  # the reader goes on with the next line
            fields, error = [], f"malformed CSV: {problem}"
        span, spans[:] = list(spans), []
        raw = "\n".join(line.text for line in span)
        if not error and (not fields or (len(fields) == 1 and not fields[0].strip())):
            continue
        exact = None
        if not all(line.utf8 for line in span):
            error = "not UTF-8"
            exact = b"\n".join(line.data if line.data is not None else line.text.encode() for line in span)
        yield Row(span[0].number, fields, raw, error, exact)


def _jsonl_rows(lines: Iterator[_Line]) -> Iterator[Row]:
    for line in lines:
        if not line.text.strip():
            continue
        if not line.utf8:
            yield Row(line.number, None, line.text, "not UTF-8", line.data)
            continue
        try:
            value = json.loads(line.text)
        except json.JSONDecodeError:
            yield Row(line.number, None, line.text, "malformed JSON")
            continue
        if isinstance(value, dict):
            yield Row(line.number, value, line.text)
        else:
            yield Row(line.number, None, line.text, f"expected a JSON object, found {value!r:.40}")


def resolve_format(path: str | Path, format: str | None) -> str:
    """``format`` checked, or the format the file's extension names."""
    if format:
        if format not in set(FORMATS.values()):
            raise ValueError(f"unknown format {format!r}; choose csv, tsv or jsonl")
        return format
    suffix = Path(str(path)).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its extension; "
            "pass format='csv', 'tsv' or 'jsonl' (--format on the command line)"
        )
    return FORMATS[suffix]


def open_input(path: str | Path) -> IO[bytes]:
    """The file's bytes, or stdin's for ``"-"`` (which the caller must not close)."""
    if str(path) == "-":
        return sys.stdin.buffer
    return open(path, "rb")  # noqa: SIM115 - closed by the generator that owns it


def parse_rows(binary: IO[bytes], format: str) -> Iterator[Row]:
    """The rows of ``binary`` in ``format``, one :class:`Row` per row, bad ones included."""
    parse = {"csv": _csv_rows, "tsv": _tsv_rows, "jsonl": _jsonl_rows}[format]
    return parse(_lines(binary))
