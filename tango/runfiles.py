"""The files of one scoring run, and the rules that keep a user's data safe.

A run reads one input and owns four files named after its output: the output itself, the errors
file (``OUTPUT.errors.jsonl`` unless ``--errors`` names another), the progress file
(``OUTPUT.progress.json``, present only while a run is unfinished) and the run manifest
(``OUTPUT.run.json``: what produced the output). Three rules follow:

- **Checked before written.** :meth:`RunFiles.check` looks at every path (input readable and a
  file, output in an existing writable directory, no two roles on one file, nothing that exists
  and is not ours to replace) without creating or opening anything for writing, so the CLI can
  call it before any model loads.
- **Nothing deleted that the run did not write.** A fresh run refuses an existing output unless
  ``overwrite`` is given, and even then never replaces the input, nor an errors file that no
  earlier run of this output wrote.
- **Resume only the same job.** The manifest records the input's fingerprint (size, mtime, hashes
  of its first and last blocks), each model's resolved files and their checksum, and every option
  that changes the output; :func:`manifest_differences` lists what changed, and ``--resume``
  refuses when anything did.

:class:`OutputLock` holds an exclusive lock on ``OUTPUT.lock`` for the run's lifetime, so a second
run on the same output fails at once instead of interleaving rows or deleting the first run's file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tango._version import __version__

OUTPUT_SUFFIXES = (".jsonl", ".csv")
BLOCK = 1 << 16  # bytes hashed at each end of the input for its fingerprint


@dataclass(frozen=True)
class RunFiles:
    """Every path one run reads or writes. Build it with :meth:`plan`."""

    input: str  # a path, or "-" for stdin
    output: Path
    errors: Path
    state: Path  # progress file: present only while the run is unfinished
    manifest: Path  # what produced the output; verified by --resume
    lock: Path
    default_errors: bool  # errors path derived from the output's name

    @classmethod
    def plan(cls, input: str | Path, output: str | Path, errors: str | Path | None = None) -> RunFiles:
        output = Path(output)

        def beside(suffix: str) -> Path:
            return output.with_name(output.name + suffix)

        return cls(
            str(input),
            output,
            Path(errors) if errors else beside(".errors.jsonl"),
            beside(".progress.json"),
            beside(".run.json"),
            beside(".lock"),
            errors is None,
        )

    # --- checks: read-only, safe to run before anything else ------------------------------------
    def check(self, resume: bool = False, overwrite: bool = False, locked: bool = False) -> None:
        """Raise ValueError naming the path and the fix if this run could lose or mix up data.

        ``locked``: the caller holds the output's lock already (skip the check that it is free).
        """
        if resume and overwrite:
            raise ValueError("give --resume or --overwrite, not both")
        self._check_input()
        self._check_output()
        self._check_distinct()
        if not locked:
            OutputLock(self.lock).check_free()
        if resume:
            self._check_resumable()
        else:
            self._check_fresh(overwrite)

    def _check_input(self) -> None:
        if self.input == "-":
            return
        path = Path(self.input)
        if not path.exists():
            raise ValueError(f"input {self.input}: no such file")
        if path.is_dir():
            raise ValueError(f"input {self.input} is a directory; give a CSV, TSV or JSONL file")
        if not os.access(path, os.R_OK):
            raise ValueError(f"input {self.input}: permission denied")

    def _check_output(self) -> None:
        if self.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"cannot write {self.output}: the output must end in .jsonl or .csv")
        for role, path in (("output", self.output), ("errors file", self.errors)):
            if path.is_dir():
                raise ValueError(f"{role} {path} is a directory; give a file name")
            parent = path.parent
            if not parent.exists():
                raise ValueError(f"cannot write {role} {path}: directory {parent} does not exist")
            if not parent.is_dir():
                raise ValueError(f"cannot write {role} {path}: {parent} is not a directory")
            if not _writable(parent):
                raise ValueError(f"cannot write {role} {path}: directory {parent} is not writable")

    def _check_distinct(self) -> None:
        roles = {"output": self.output, "errors file": self.errors}
        roles.update({"progress file": self.state, "run manifest": self.manifest, "lock file": self.lock})
        if self.input != "-":
            for role, path in roles.items():
                if _same_file(Path(self.input), path):
                    raise ValueError(
                        f"the {role} {path} is the input file; scoring would destroy it. "
                        "Choose another output name"
                    )
        if _same_file(self.errors, self.output) or _same_file(self.errors, self.state):
            raise ValueError(f"the errors file {self.errors} must differ from the output and its companions")

    def _check_fresh(self, overwrite: bool) -> None:
        if self.state.exists() and not overwrite:
            raise ValueError(
                f"{self.output}: an interrupted run left {self.state.name}; pass --resume to finish "
                "it, or --overwrite to start again"
            )
        if self.output.exists() and not overwrite:
            raise ValueError(
                f"{self.output} already exists; pass --resume to finish an interrupted run "
                "or --overwrite to replace it"
            )
        if self.errors.exists() and not self._errors_are_ours():
            hint = "" if self.default_errors else ", or choose another --errors path"
            raise ValueError(
                f"errors file {self.errors} already exists and no earlier run of {self.output} "
                f"wrote it; tango never replaces a file it did not write: move it away{hint}"
            )
        if self.errors.exists() and not overwrite:
            raise ValueError(f"errors file {self.errors} already exists; pass --overwrite to replace it")

    def _errors_are_ours(self) -> bool:
        """An existing errors file may be replaced only when a run of this output wrote it."""
        if self.default_errors:
            return True  # OUTPUT.errors.jsonl: named after the output that --overwrite names
        previous = self.read_manifest()
        return bool(previous) and _same_file(Path(previous.get("errors", "")), self.errors)

    def _check_resumable(self) -> None:
        if self.input == "-":
            raise ValueError(
                "cannot resume from stdin: tango cannot check that it holds the same rows as the "
                "interrupted run. Save the input to a file and score that"
            )
        if not self.manifest.exists():
            raise ValueError(
                f"cannot resume {self.output}: no run manifest ({self.manifest.name}) says what "
                "produced it; rerun with --overwrite to start again"
            )
        if not self.state.exists():
            raise ValueError(f"{self.output} looks complete: there is no {self.state.name} to resume from")

    # --- the manifest ---------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomically(self.manifest, json.dumps(manifest, indent=2, ensure_ascii=False))


def _writable(directory: Path) -> bool:
    """Can a file be created in ``directory``? Asked by creating (and at once removing) a nameless
    temporary file: ``os.access`` says yes to root on read-only and virtual file systems."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    """True when both names reach one file (also through links), or would once created."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old or the new file, whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


# --- fingerprints -------------------------------------------------------------------------------
def input_fingerprint(path: str) -> dict[str, Any]:
    """Size, mtime and hashes of the first and last blocks: cheap, and changes with any edit
    that a resume could be fooled by (a shorter, longer, replaced or touched file)."""
    if path == "-":
        return {"path": "-"}
    stat = os.stat(path)
    with open(path, "rb") as file:
        head = hashlib.sha256(file.read(BLOCK)).hexdigest()
        file.seek(max(stat.st_size - BLOCK, 0))
        tail = hashlib.sha256(file.read(BLOCK)).hexdigest()
    return {
        "path": os.path.abspath(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "head_sha256": head,
        "tail_sha256": tail,
    }


def directory_checksum(directory: str | Path) -> str:
    """SHA-256 over every file in a model directory (names and contents), hidden files aside."""
    digest = hashlib.sha256()
    root = Path(directory)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or relative.parts[0] == "calibration":
            continue
        digest.update(str(relative).encode() + b"\0")
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(model: Any) -> dict[str, Any]:
    """What decides a model's answers: resolved files and their checksum, runtime, thresholds.

    Batch and chunk sizes are left out on purpose: answers do not depend on them.
    """
    if hasattr(model, "tiers"):  # a Cascade
        tiers, thresholds, temperatures = model._validated()
        return {
            "kind": "cascade",
            "tiers": [
                {
                    "path": str(Path(tier.path).resolve()),
                    "checksum": directory_checksum(tier.path),
                    "runtime": getattr(tier.runtime, "description", type(tier.runtime).__name__),
                }
                for tier in tiers
            ],
            "thresholds": [float(t) for t in thresholds],
            "temperatures": [float(t) for t in temperatures],
            "confidence": model.confidence,
            "labels": [str(label) for label in model.classes_],
        }
    path = getattr(model, "path", None)
    return {
        "kind": "early-exit",
        "path": str(Path(path).resolve()) if path else None,
        "checksum": directory_checksum(path) if path else None,
        "precision": getattr(model, "precision", None),
        "policy": getattr(model, "policy", None),
        "threshold": getattr(model, "threshold", None),
        "patience": getattr(model, "patience", None),
        "temperatures": list(model.temperatures) if getattr(model, "temperatures", None) else None,
        "labels": [str(label) for label in model.classes_],
    }


def build_manifest(files: RunFiles, model: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The record ``--resume`` checks: input fingerprint, model identity, output-shaping options."""
    return {
        "tango_version": __version__,
        "input": input_fingerprint(files.input),
        "output": os.path.abspath(files.output),
        "errors": os.path.abspath(files.errors),
        "model": model,
        "options": options,
    }


def manifest_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between the interrupted run and this one (empty: same job)."""
    found: list[str] = []
    for section in ("input", "model", "options"):
        _diff(section, old.get(section), new.get(section), found)
    for role in ("output", "errors"):
        if old.get(role) != new.get(role):
            found.append(f"{role} file {old.get(role)} -> {new.get(role)}")
    return found


def _diff(where: str, old: Any, new: Any, found: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(f"{where}.{key}", old.get(key), new.get(key), found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(f"{where}[{k + 1}]", a, b, found)
    elif old != new:
        found.append(f"{where}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:38] + "..." + text[-38:]


# --- the lock -----------------------------------------------------------------------------------
class OutputLock:
    """An exclusive, non-blocking lock on ``OUTPUT.lock`` for the lifetime of one run.

    ``flock`` is released by the kernel when the process dies, so a ``kill -9`` never leaves a
    stale lock behind; the file itself is removed on a clean exit. After locking, the path is
    checked to still name the locked file (another run may have removed and recreated it).
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
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)  # the file we locked was removed meanwhile: lock the new one

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
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _busy_message(self) -> str:
        output = self.path.with_name(self.path.name.removesuffix(".lock"))
        with contextlib.suppress(OSError):
            pid = self.path.read_text().strip()
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
