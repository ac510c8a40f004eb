"""Reading a Ray run's inputs: tango's own reader inside a Ray datasource, one read task per file.

Each file is read whole by one task through :mod:`tango.data` (CSV rows may span lines), so
every row and every bad row is found with the same line, field and message as on the local
engine. The datasource reads in one of two shapes: ``rows="good"``, the rows to score
(``id, line, text[, text_pair]``), or ``rows="index"``, every row's id, place and fault without
its text (the run's index: the errors dataset, the exactly-once check and ``--merge`` read it).
Read tasks write nothing themselves. Local inputs are checked on the driver first.

Why not ``ray.data.read_binary_files`` (or ``read_text``) with this parser in a ``flat_map``:
Ray Data's checkpoint filter runs on the read operator's own output and looks the id column up
there, and a binary read's blocks are ``{bytes, path}``; a resumed run then fails with
``KeyError: 'Field "id" does not exist in schema'`` (tried on ray 2.60.0). A binary read also
holds a whole file as one value, where this reader streams it; ``read_text`` loses line numbers
and splits CSV fields that span lines. docs/distributed.md says more.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tango.data import Record, RowError, _duplicate_columns, _header, _missing_columns, _records
from tango.engines.ray.plan import ID
from tango.formats import parse_rows, resolve_format


class _Lines:
    """Physical lines of a pyarrow input stream (which has no readline) for tango.data."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[bytes]:
        rest = b""
        while block := self.stream.read(1 << 20):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            yield from (line + b"\n" for line in lines)
        if rest:
            yield rest

    def close(self) -> None:
        self.stream.close()


class _Peeked:
    """A byte-line iterator with its first line read back in front (for the empty-file check)."""

    def __init__(self, first: bytes, rest: Iterator[bytes], stream: Any) -> None:
        self.first, self.rest, self.stream = first, rest, stream

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        yield from self.rest

    def close(self) -> None:
        self.stream.close()


def read_stream_records(
    binary: Any, path: str, columns: dict[str, str | None], format: str | None
) -> Iterator[Record | RowError]:
    """``tango.data.read_records`` over an open byte stream: same checks, rows and errors.

    An empty file (0 bytes) is a valid shard without rows, as a header-only CSV is: exports
    from Spark or Hive write both.
    """
    format = resolve_format(path, format)
    lines = iter(binary)
    first = next(lines, None)
    if first is None:
        binary.close()
        return iter(())
    binary = _Peeked(first, lines, binary)
    rows = parse_rows(binary, format)
    header, found, ahead = _header(path, rows, format)
    _missing_columns(path, [c for c in columns.values() if c], found)
    _duplicate_columns(path, [c for c in columns.values() if c], header)
    return _records(binary, ahead, rows, columns, header, 0)


def file_key(index: int, path: str) -> str:
    """A stable, unique, file-system-safe key for an input file: its place in the sorted list, and name."""
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in os.path.basename(path))[:60]
    return f"{index:05d}-{name}"


def name_files(paths: list[str]) -> dict[str, list[str]]:
    """Each input file -> [its key, its name in derived ids], fixed once per run on the driver."""
    ordered = sorted(paths)
    prefix = os.path.commonpath(ordered) if len(ordered) > 1 else ""
    return {
        path: [file_key(i, path), os.path.relpath(path, prefix) if prefix else path]
        for i, path in enumerate(ordered)
    }


ROWS = ("good", "index")
INDEX_BLOCK_ROWS = 65536  # index rows are small (no text): larger blocks, fewer files


def index_schema() -> Any:
    """The index's columns: every input row's id (null for a bad row), file number in the sorted
    input list, line, whether it is good, and for a bad row what is wrong and its raw text."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("file", pa.int64()),
            ("line", pa.int64()),
            ("ok", pa.bool_()),
            ("field", pa.string()),
            ("error", pa.string()),
            ("raw", pa.string()),
            ("raw_bytes", pa.binary()),
        ]
    )


class ShardReader:
    """One run's CSV/TSV/JSONL files as Arrow blocks, in one of the two shapes of ``ROWS``.

    Plain Python: Ray's datasource class can only be built once Ray is imported, so it stays a
    shell around this. ``good`` blocks hold ``block_rows`` rows (the unit Ray writes and
    checkpoints); bad rows are left out of them. ``index`` blocks hold every row; with
    ``on_error="fail"`` the first bad row stops the read, naming file, line and field.
    """

    def __init__(self, settings: dict[str, Any], files: dict[str, list[str]], rows: str) -> None:
        if rows not in ROWS:
            raise ValueError(f"rows must be one of {ROWS}, got {rows!r}")
        self.settings, self.rows = settings, rows
        self.names = {path: name for path, (_, name) in files.items()}
        self.numbers = {path: file_number(key) for path, (key, _) in files.items()}

    def blocks(self, stream: Any, path: str) -> Iterator[Any]:
        """One file's rows as blocks, in input order."""
        s = self.settings
        columns = {"text": s["text_column"], "pair": s["pair_column"], "label": None, "id": s["id_column"]}
        size = s["block_rows"] if self.rows == "good" else INDEX_BLOCK_ROWS
        kept: list[Record | RowError] = []
        for item in read_stream_records(_Lines(stream), path, columns, s["format"]):
            if isinstance(item, RowError):
                self._refuse(item, path)
                if self.rows == "good":
                    continue
            kept.append(item)
            if len(kept) == size:
                yield self._table(kept, path)
                kept = []
        if kept:
            yield self._table(kept, path)

    def _refuse(self, item: RowError, path: str) -> None:
        """With ``on_error="fail"`` the index read stops at a bad row, before anything is scored."""
        if self.settings["on_error"] == "fail" and self.rows == "index":
            raise ValueError(
                f"{path}: line {item.line}, field {item.field or '-'}: {item.message}. "
                "Nothing was scored; fix the file and rerun with --resume, or use --on-error write"
            )

    def _id(self, item: Record, path: str) -> int | str:
        if self.settings["id_column"]:
            return item.id  # type: ignore[return-value]
        if self.settings["line_ids"]:
            return item.line
        return f"{self.names[path]}:{item.line}"

    def _table(self, items: list[Record | RowError], path: str) -> Any:
        return self._good(items, path) if self.rows == "good" else self._index(items, path)

    def _good(self, rows: list[Record], path: str) -> Any:
        import pyarrow as pa

        pairs = self.settings["pair_column"] is not None
        data = {
            ID: pa.array(
                [self._id(r, path) for r in rows], pa.int64() if self.settings["line_ids"] else pa.string()
            ),
            "text": [r.text[0] if pairs else r.text for r in rows],
            "line": pa.array([r.line for r in rows], pa.int64()),
        }
        if pairs:
            data["text_pair"] = [r.text[1] for r in rows]
        return pa.table(data)

    def _index(self, items: list[Record | RowError], path: str) -> Any:
        import pyarrow as pa

        bad = [isinstance(item, RowError) for item in items]
        columns = {
            "id": [None if b else str(self._id(item, path)) for item, b in zip(items, bad, strict=True)],
            "file": [self.numbers[path]] * len(items),
            "line": [item.line for item in items],
            "ok": [not b for b in bad],
            "field": [item.field if b else None for item, b in zip(items, bad, strict=True)],
            "error": [item.message if b else None for item, b in zip(items, bad, strict=True)],
            "raw": [item.raw if b else None for item, b in zip(items, bad, strict=True)],
            "raw_bytes": [item.raw_bytes if b else None for item, b in zip(items, bad, strict=True)],
        }
        return pa.table(columns, schema=index_schema())


def datasource_class() -> type:
    """The Ray datasource of tango's reader, built on first use: Ray is imported only here."""
    from ray.data.datasource import FileBasedDatasource

    class TangoRecords(FileBasedDatasource):
        """A :class:`ShardReader` as a Ray Data ``FileBasedDatasource``: one read task per file."""

        def __init__(
            self, paths: list[str], *, settings: dict[str, Any], rows: str = "good", **kwargs: Any
        ) -> None:
            super().__init__(paths, filesystem=settings.get("filesystem"), **kwargs)
            self.files = settings.get("files") or name_files(self._paths())
            self.reader = ShardReader(settings, self.files, rows)

        def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
            yield from self.reader.blocks(f, path)

    return TangoRecords


def file_number(key: str) -> int:
    """A file's place in the run's sorted input list, from its key (``NNNNN-name``)."""
    return int(key.split("-", 1)[0])


def file_keys(settings: dict[str, Any], paths: list[str]) -> dict[str, str]:
    """Each input file, as Ray lists them (directories expanded) -> its key; listed once per run."""
    if not settings.get("files"):
        settings["files"] = datasource_class()(paths, settings=settings).files
    return {path: key for path, (key, _) in settings["files"].items()}


def expand_inputs(inputs: str | Sequence[str]) -> list[str]:
    """Input paths: local globs expanded and sorted; directories and URIs left to Ray."""
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    found: list[str] = []
    for path in map(str, paths):
        if "://" not in path and glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise ValueError(f"no input file matches {path!r}")
            found.extend(matches)
        else:
            found.append(path)
    return found


def check_inputs(paths: list[str], columns: dict[str, str | None], format: str | None) -> None:
    """Every local input file readable, with the columns asked for, before Ray starts anything.

    A missing column or an unreadable file fails here in one line instead of inside a read task
    after the actors have loaded; empty (0-byte) and header-only files are valid shards. Remote
    URIs are checked by the read tasks.
    """
    for path in paths:
        if "://" in path or Path(path).is_dir():
            continue
        if not Path(path).is_file():
            raise ValueError(f"input {path}: no such file")
        if Path(path).stat().st_size == 0:
            continue
        with open(path, "rb") as file:
            records = read_stream_records(file, path, {**columns, "label": None}, format)
            next(iter(records), None)  # the header and its columns are checked on the first read
