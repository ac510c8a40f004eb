"""The locks of one scoring run: a second run that would write the same files fails at once.

:class:`RunLock` takes, together or not at all, an exclusive lock for the run's lifetime on a lock
file beside each file the run writes (:func:`lock_path`: beside its resolved path, so every name
of it agrees; :class:`OutputLock`) and on each of those files that exists (its inode, so hard
links are caught too; :class:`FileLock`). ``flock`` is released by the kernel when the process
dies, so a ``kill -9`` never leaves a stale lock. A lock file that holds anything but tango's own
record is the user's: refused, never truncated or removed (:func:`is_lock_record`).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

_LOCK_RECORD = re.compile(r"(tango run pid )?\d*\n?")  # what a lock file of ours holds


def lock_path(path: Path) -> Path:
    """The lock file of a written file: beside its resolved path, so every name of it agrees."""
    resolved = Path(os.path.realpath(path))
    return resolved.with_name(resolved.name + ".lock")


def is_lock_record(path: Path) -> bool:
    try:
        return _LOCK_RECORD.fullmatch(path.read_text(encoding="utf-8", errors="replace")[:100]) is not None
    except OSError:
        return False


class OutputLock:
    """An exclusive, non-blocking lock on one lock file for the lifetime of one run.

    ``flock`` is released by the kernel when the process dies, so a ``kill -9`` never leaves a
    stale lock behind; the file itself is removed on a clean exit. After locking, the path is
    checked to still name the locked file (another run may have removed and recreated it). A lock
    file that holds anything but tango's own record (``tango run pid N``) is the user's: it is
    refused, never truncated or removed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): an exclusive create is the lock
            self._fd = self._create_exclusive()
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise ValueError(self._busy_message()) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)  # the file we locked was removed meanwhile: lock the new one
                continue
            if not _LOCK_RECORD.fullmatch(os.pread(fd, 100, 0).decode("utf-8", "replace")):
                os.close(fd)
                raise ValueError(
                    f"{self.path} exists and tango did not write it (it is not a tango lock file); "
                    "tango never replaces or deletes a file it did not write: move it away"
                )
            os.ftruncate(fd, 0)
            os.write(fd, f"tango run pid {os.getpid()}\n".encode())
            self._fd = fd
            return self

    def check_free(self) -> None:
        """Raise the busy error if another process holds the lock now (takes nothing)."""
        if not self.path.exists():
            return
        with self:
            pass

    def _create_exclusive(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise ValueError(self._busy_message()) from None
        os.write(fd, f"tango run pid {os.getpid()}\n".encode())
        return fd

    def _busy_message(self) -> str:
        output = self.path.with_name(self.path.name.removesuffix(".lock"))
        with contextlib.suppress(OSError):
            pid = self.path.read_text().strip().removeprefix("tango run pid ")
            if pid:
                return f"{output} is being written by another tango run (pid {pid}); wait for it to end"
        return f"{output} is being written by another tango run; wait for it to end"

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding the lock: nobody else holds it now
        os.close(self._fd)
        self._fd = None


class FileLock:
    """An exclusive ``flock`` on an existing file itself: its inode, whatever name reaches it.

    Hard links give one file two names whose lock files differ; the inode is what they share. A
    file that does not exist yet has no other name, and its lock file covers it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        try:
            import fcntl
        except ImportError:
            return self
        if not self.path.is_file():
            return self
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ValueError(
                f"{self.path} is being written by another tango run (under another name); wait for it to end"
            ) from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunLock(contextlib.ExitStack):
    """Every lock of one run, taken together or not at all: each written file's lock file, then
    each written file that exists. A second run that would write any of them fails at once."""

    def __init__(self, lock_files: list[Path], written: list[Path]) -> None:
        super().__init__()
        self.lock_files = list(dict.fromkeys(lock_files))
        self.written = list(dict.fromkeys(written))

    def __enter__(self) -> RunLock:
        super().__enter__()
        try:
            for path in self.lock_files:
                self.enter_context(OutputLock(path))
            for path in self.written:
                self.enter_context(FileLock(path))
        except BaseException:
            self.close()
            raise
        return self

    def check_free(self) -> None:
        """Raise the busy error if another run holds any of these locks now (keeps nothing)."""
        held = [p for p in self.lock_files if p.exists()]
        with RunLock(held, self.written):
            pass
