"""The run's index and its errors: every input row's id, place and fault, and the bad rows' sink.

A Ray Data execution ends in one sink, so bad rows cannot leave the scoring pipeline by a
second door. A first, cheap execution reads every input without scoring (the datasource's
``index`` shape: no text) and writes the index as Parquet under ``<OUTPUT>.tango/index/``. The
bad rows are the index rows that are not ok: a dataset of their own, written by their own sink
(:func:`errors_sink_class`) to the errors destination (``--errors``, default
``<OUTPUT>.errors/``) in the local engine's errors format. The exactly-once check and
``--merge`` read the index back as a dataset; the index's write tasks also sum its totals (rows,
bad rows, the good ids' fingerprint) as they write it, so the check of a run with ids tango made
reads only the output back. With ``--on-error fail`` the index pass stops at
the first bad row, before any model loads. Its cost: every input is parsed twice (here, and by
the scoring pass), never scored twice.
"""

from __future__ import annotations

import json
from typing import Any

from tango.data import RowError
from tango.engines.ray.fingerprint import add_totals, index_totals
from tango.engines.ray.read import datasource_class, file_number, index_schema
from tango.engines.ray.storage import fs_of, has_files, remove
from tango.writers import error_line


def index_dir(settings: dict[str, Any]) -> str:
    return f"{settings['sidecar']}/index"


def write_index(ray: Any, settings: dict[str, Any], paths: list[str]) -> dict[str, int]:
    """Parse every input (no scoring) into the index; an interrupted index is written again.

    Returns the index's totals (input rows, bad rows, the good ids' fingerprint) as its write
    tasks summed them, so the exactly-once check need not read the index back."""
    fs, where = fs_of(index_dir(settings), settings.get("filesystem"))
    remove(index_dir(settings), settings.get("filesystem"))
    source = datasource_class()(paths, settings=settings, rows="index")
    cpus = settings["read_cpus"]
    sink = index_sink_class()(where, filesystem=fs)
    ray.data.read_datasource(source, num_cpus=cpus).write_datasink(sink, ray_remote_args={"num_cpus": cpus})
    return sink.totals


def index_sink_class() -> type:
    """The index's Ray Data sink, built on first use (Ray is imported only here)."""
    from ray.data.block import BlockAccessor
    from ray.data.datasource import BlockBasedFileDatasink

    class TangoIndex(BlockBasedFileDatasink):
        """The index as Parquet files, a file per block; each write task returns its rows' totals
        (:func:`~tango.engines.ray.fingerprint.index_totals`) and the driver adds them up."""

        def __init__(self, path: str, **kwargs: Any) -> None:
            super().__init__(path, file_format="parquet", **kwargs)
            self.totals = add_totals([])

        def write_block_to_file(self, block: Any, file: Any) -> None:
            import pyarrow.parquet as pq

            pq.write_table(block.to_arrow(), file)

        def write(self, blocks: Any, ctx: Any) -> dict[str, int]:
            blocks = list(blocks)
            super().write(blocks, ctx)
            return add_totals(index_totals(BlockAccessor.for_block(block).to_arrow()) for block in blocks)

        def on_write_complete(self, write_result: Any) -> None:
            super().on_write_complete(write_result)
            self.totals = add_totals(part for part in write_result.write_returns if part)

    return TangoIndex


def index_dataset(ray: Any, settings: dict[str, Any]) -> Any:
    """The index as a Ray dataset (no file at all: every input was empty)."""
    if not has_files(index_dir(settings), settings.get("filesystem")):
        return ray.data.from_arrow(index_schema().empty_table())
    fs, where = fs_of(index_dir(settings), settings.get("filesystem"))
    return ray.data.read_parquet(where, filesystem=fs, num_cpus=settings["read_cpus"])


def _rows_where(batch: Any, ok: bool) -> Any:
    import pyarrow.compute as pc

    return batch.filter(batch["ok"] if ok else pc.invert(batch["ok"]))


def good_rows(index: Any, cpus: float) -> Any:
    """The index rows of good input rows (the ids to find in the output)."""
    return index.map_batches(_rows_where, fn_kwargs={"ok": True}, batch_format="pyarrow", num_cpus=cpus)


def bad_rows(index: Any, cpus: float) -> Any:
    """The index rows of bad input rows: the errors dataset."""
    return index.map_batches(_rows_where, fn_kwargs={"ok": False}, batch_format="pyarrow", num_cpus=cpus)


def error_paths(settings: dict[str, Any]) -> dict[int, str] | None:
    """File number -> path, for error lines that name their file (only when there are several)."""
    if len(settings["files"]) < 2:
        return None
    return {file_number(key): path for path, (key, _) in settings["files"].items()}


def error_lines(table: Any, paths: dict[int, str] | None) -> bytes:
    """Bad index rows as lines of the local engine's errors file (``tango.writers.error_line``);
    with several inputs each line starts with the file it came from."""
    lines = []
    for row in table.select(["file", "line", "field", "error", "raw", "raw_bytes"]).to_pylist():
        error = RowError(row["line"], row["field"], row["error"], row["raw"], row["raw_bytes"])
        line = error_line(error)
        if paths is not None:
            line = json.dumps({"path": paths[row["file"]], **json.loads(line)}, ensure_ascii=False) + "\n"
            line = line.encode()
        lines.append(line)
    return b"".join(lines)


def errors_sink_class() -> type:
    """The errors' own Ray Data sink, built on first use (Ray is imported only here)."""
    from ray.data.datasource import BlockBasedFileDatasink

    class TangoErrors(BlockBasedFileDatasink):
        """Bad rows as JSON-lines files in the local engine's errors format, one file per block."""

        def __init__(self, path: str, *, paths: dict[int, str] | None, **kwargs: Any) -> None:
            super().__init__(path, file_format="jsonl", **kwargs)
            self.paths = paths

        def write_block_to_file(self, block: Any, file: Any) -> None:
            file.write(error_lines(block.to_arrow(), self.paths))

    return TangoErrors


def write_errors(ray: Any, settings: dict[str, Any], bad: int) -> None:
    """The errors dataset through its own sink (``on_error="write"``; nothing for ``skip``, nor
    when the index's totals count no ``bad`` row: a Ray Data execution costs seconds)."""
    filesystem = settings.get("filesystem")
    remove(settings["errors"], filesystem)
    if settings["on_error"] != "write" or not bad:
        return
    fs, where = fs_of(settings["errors"], filesystem)
    errors = bad_rows(index_dataset(ray, settings), settings["read_cpus"])
    sink = errors_sink_class()(where, paths=error_paths(settings), filesystem=fs)
    errors.write_datasink(sink, ray_remote_args={"num_cpus": settings["read_cpus"]})
