"""Reading a Ray run's inputs: tango's own reader inside a Ray datasource, one read task per file.

Each file is read whole by one task through :mod:`tango.data` (CSV rows may span lines), so bad
rows are found with the same line, field and message as on the local engine. They never enter
the dataset: the task writes them to ``<OUTPUT>.errors/<key>.errors.jsonl`` in the local errors
format, and the file's ids in input order to ``<OUTPUT>.tango/inputs/<key>.parquet`` (the
exactly-once check and ``--merge`` read them). Local inputs are checked on the driver first.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tango.data import (
    Record,
    RowError,
    _duplicate_columns,
    _format,
    _header,
    _missing_columns,
    _records,
    _rows,
)
from tango.engines.ray.plan import ID
from tango.engines.ray.storage import write_bytes, write_parquet
from tango.writers import error_line


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
    format = _format(path, format)
    lines = iter(binary)
    first = next(lines, None)
    if first is None:
        binary.close()
        return iter(())
    binary = _Peeked(first, lines, binary)
    rows = _rows(binary, format)
    header, found, ahead = _header(path, rows, format)
    _missing_columns(path, [c for c in columns.values() if c], found)
    _duplicate_columns(path, [c for c in columns.values() if c], header)
    return _records(binary, ahead, rows, columns, header, 0)


def file_key(index: int, path: str) -> str:
    """A stable, unique, file-system-safe name for an input file's shards and markers."""
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


class ShardReader:
    """Rows ``{id, text[, text_pair], line}`` of one run's CSV/TSV/JSONL files as Arrow blocks.

    Plain Python: Ray's datasource class can only be built once Ray is imported, so it stays a
    shell around this. Blocks hold ``block_rows`` good rows (the unit Ray writes and
    checkpoints); after a file's last block its bad rows and its id list are written under the
    run's side directories.
    """

    def __init__(self, settings: dict[str, Any], files: dict[str, list[str]]) -> None:
        self.settings = settings
        self.keys = {path: key for path, (key, _) in files.items()}
        self.names = {path: name for path, (_, name) in files.items()}

    def blocks(self, stream: Any, path: str) -> Iterator[Any]:
        """One file's good rows as blocks, in input order; its bad rows and id list written aside."""
        s = self.settings
        columns = {"text": s["text_column"], "pair": s["pair_column"], "label": None, "id": s["id_column"]}
        ids, lines, oks, bad, block = [], [], [], [], []
        for item in read_stream_records(_Lines(stream), path, columns, s["format"]):
            if isinstance(item, RowError):
                self._refuse(item, path)
                bad.append(item)
                ids.append(None), lines.append(item.line), oks.append(False)
                continue
            id_ = self._id(item, path)
            ids.append(str(id_)), lines.append(item.line), oks.append(True)
            block.append((id_, item))
            if len(block) == s["block_rows"]:
                yield self._block(block)
                block = []
        if block:
            yield self._block(block)
        self._write_aside(self.keys[path], bad, {"id": ids, "line": lines, "ok": oks})

    def _refuse(self, item: RowError, path: str) -> None:
        """With ``on_error="fail"`` a bad row stops the run, naming where it is and how to go on."""
        if self.settings["on_error"] == "fail":
            raise ValueError(
                f"{path}: line {item.line}, field {item.field or '-'}: {item.message}. "
                "Rows scored before it are in the output; fix the file and rerun with "
                "--resume, or use --on-error write"
            )

    def _write_aside(self, key: str, bad: list[RowError], listed: dict[str, list]) -> None:
        """The file's error rows (``on_error="write"``) and its id list, once it is read to its end."""
        import pyarrow as pa

        s = self.settings
        if s["on_error"] == "write":
            write_bytes(f"{s['errors']}/{key}.errors.jsonl", b"".join(error_line(r) for r in bad))
        table = pa.table(
            {
                "id": pa.array(listed["id"], pa.string()),
                "line": pa.array(listed["line"], pa.int64()),
                "ok": pa.array(listed["ok"], pa.bool_()),
            }
        )
        write_parquet(f"{s['sidecar']}/inputs/{key}.parquet", table)

    def _id(self, item: Record, path: str) -> int | str:
        if self.settings["id_column"]:
            return item.id
        if self.settings["line_ids"]:
            return item.line
        return f"{self.names[path]}:{item.line}"

    def _block(self, rows: list[tuple[int | str, Record]]) -> Any:
        import pyarrow as pa

        pairs = self.settings["pair_column"] is not None
        data = {
            ID: pa.array([i for i, _ in rows], pa.int64() if self.settings["line_ids"] else pa.string()),
            "text": [r.text[0] if pairs else r.text for _, r in rows],
            "line": pa.array([r.line for _, r in rows], pa.int64()),
        }
        if pairs:
            data["text_pair"] = [r.text[1] for _, r in rows]
        return pa.table(data)


def datasource_class() -> type:
    """The Ray datasource of tango's reader, built on first use: Ray is imported only here."""
    from ray.data.datasource import FileBasedDatasource

    class TangoRecords(FileBasedDatasource):
        """A :class:`ShardReader` as a Ray Data ``FileBasedDatasource``: one read task per file."""

        def __init__(self, paths: list[str], *, settings: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(paths, **kwargs)
            self.files = settings.get("files") or name_files(self._paths())
            self.reader = ShardReader(settings, self.files)

        def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
            yield from self.reader.blocks(f, path)

    return TangoRecords


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
