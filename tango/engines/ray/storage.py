"""Where a Ray run's files live: local paths, or any URI on a pyarrow file system.

Read tasks, actors and the driver may run on different machines, so every file of a run
(shards, errors, the ``<OUTPUT>.tango/`` bookkeeping) is reached through a pyarrow file system:
the run's own (``RayOptions.filesystem``, e.g. an ``S3FileSystem`` with an endpoint, as Ray
Data's readers and writers take one) or the one the URI names. Whole files are written
atomically, so a driver killed mid-write leaves the old file or the new one.
"""

from __future__ import annotations

import os
from typing import Any


def fs_of(path: str, filesystem: Any = None) -> tuple[Any, str]:
    """The file system that holds ``path`` and the path inside it.

    With ``filesystem`` given, a URI's scheme is dropped (``s3://bucket/key`` -> ``bucket/key``,
    what pyarrow's S3 file system expects); without, the URI names its file system and local
    paths are made absolute.
    """
    import pyarrow.fs as pafs

    if filesystem is not None:
        if "://" in path:
            return filesystem, path.split("://", 1)[1]
        local = isinstance(filesystem, pafs.LocalFileSystem)
        return filesystem, os.path.abspath(path) if local else path
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def write_bytes(path: str, data: bytes, filesystem: Any = None) -> None:
    """Write a whole file atomically (temp + move; an object store's put is atomic anyway)."""
    fs, local = fs_of(path, filesystem)
    fs.create_dir(os.path.dirname(local), recursive=True)
    tmp = f"{local}.tmp{os.getpid()}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, local)


def read_bytes(path: str, filesystem: Any = None) -> bytes | None:
    """A whole file's bytes, or None where there is no such file."""
    import pyarrow.fs as pafs

    fs, local = fs_of(path, filesystem)
    if fs.get_file_info(local).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(local) as stream:
        return stream.read()


def is_dir(path: str, filesystem: Any = None) -> bool:
    import pyarrow.fs as pafs

    fs, local = fs_of(path, filesystem)
    return fs.get_file_info(local).type == pafs.FileType.Directory


def remove(path: str, filesystem: Any = None) -> None:
    """Delete a file or a whole directory; nothing there is fine."""
    import pyarrow.fs as pafs

    fs, local = fs_of(path, filesystem)
    kind = fs.get_file_info(local).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(local)
    elif kind == pafs.FileType.File:
        fs.delete_file(local)


def has_files(path: str, filesystem: Any = None) -> bool:
    """A file, or a directory with a file somewhere in it (an empty directory holds no run)."""
    import pyarrow.fs as pafs

    fs, local = fs_of(path, filesystem)
    kind = fs.get_file_info(local).type
    if kind != pafs.FileType.Directory:
        return kind != pafs.FileType.NotFound
    found = fs.get_file_info(pafs.FileSelector(local, recursive=True))
    return any(info.type == pafs.FileType.File for info in found)
