"""Where a Ray run's files live: local paths or any URI a pyarrow file system opens.

Read tasks, actors and the driver may run on different machines, so every file of a run
(shards, errors, the ``<OUTPUT>.tango/`` bookkeeping) goes through these few calls rather than
``open``; whole files are written atomically, so a retried task rewrites them harmlessly.
"""

from __future__ import annotations

import io
import os
from typing import Any


def fs_of(path: str) -> tuple[Any, str]:
    """The file system that holds ``path`` and the path inside it (local paths made absolute)."""
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file atomically (temp + rename): a retried read task rewrites it harmlessly."""
    fs, local = fs_of(path)
    fs.create_dir(os.path.dirname(local), recursive=True)
    tmp = f"{local}.tmp{os.getpid()}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, local)


def write_parquet(path: str, table: Any) -> None:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(path, buffer.getvalue())


def read_bytes(path: str) -> bytes | None:
    """A whole file's bytes, or None where there is no such file."""
    import pyarrow.fs as pafs

    fs, local = fs_of(path)
    if fs.get_file_info(local).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(local) as stream:
        return stream.read()


def exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, local = fs_of(path)
    return fs.get_file_info(local).type != pafs.FileType.NotFound


def is_dir(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, local = fs_of(path)
    return fs.get_file_info(local).type == pafs.FileType.Directory


def remove(path: str) -> None:
    """Delete a file or a whole directory; nothing there is fine."""
    import pyarrow.fs as pafs

    fs, local = fs_of(path)
    kind = fs.get_file_info(local).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(local)
    elif kind == pafs.FileType.File:
        fs.delete_file(local)


def has_files(path: str) -> bool:
    """A file, or a directory with anything in it (an empty directory holds no run)."""
    import pyarrow.fs as pafs

    fs, local = fs_of(path)
    if fs.get_file_info(local).type != pafs.FileType.Directory:
        return exists(path)
    return any(True for _ in fs.get_file_info(pafs.FileSelector(local, recursive=True)))
