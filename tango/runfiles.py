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
- **Resume only the same job.** The manifest records the input's fingerprint (size, mtime, the
  SHA-256 of the whole file), each model's resolved files and their checksum, its batch plan, and
  every option that changes the output; :func:`manifest_differences` lists what changed, and
  ``--resume`` refuses when anything did. The progress file records the length and SHA-256 of the
  committed bytes of the output and errors files, so a file shortened or edited after the run
  stopped is refused rather than trusted.
- **Companion files are tango's.** A progress file, manifest or lock that exists but was not
  written by tango is never replaced or deleted, with or without ``--overwrite``.

Names are planned from the output's resolved path (symbolic links followed), so two names of one
file share one set of companions. :class:`RunLock` (:mod:`tango.locks`) holds an exclusive lock
for the run's lifetime on a lock file beside each file the run writes (output and errors) and on
each of those files that exists (its inode, so hard links are caught too): a second run writing
any of them fails at once instead of interleaving rows or deleting the first run's file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tango._version import __version__

# OutputLock moved to tango.locks with the other locks; it is one of this module's documented
# names (docs/architecture.md; the engines import run files' names from here): re-exported.
from tango.locks import OutputLock as OutputLock
from tango.locks import RunLock, is_lock_record, lock_path

OUTPUT_SUFFIXES = (".jsonl", ".csv")
READ_BLOCK = 1 << 20  # bytes read at a time when hashing


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
        """The run's files. Companions sit beside the output's *resolved* path, so a symbolic
        link and its target (two names, one file) share one progress file, manifest and lock."""
        output = Path(output)
        resolved = Path(os.path.realpath(output))

        def beside(suffix: str) -> Path:
            return resolved.with_name(resolved.name + suffix)

        return cls(
            str(input),
            output,
            Path(errors) if errors else beside(".errors.jsonl"),
            beside(".progress.json"),
            beside(".run.json"),
            beside(".lock"),
            errors is None,
        )

    @property
    def written(self) -> tuple[Path, Path]:
        """The files this run writes rows to, each locked for the run's lifetime."""
        return self.output, self.errors

    def run_lock(self) -> RunLock:
        """The lock this run holds: one lock file per written file, and the files' inodes."""
        return RunLock([self.lock, lock_path(self.errors)], list(self.written))

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
        self._check_companions()
        if not locked:
            self.run_lock().check_free()
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
        for role, path in (("progress file", self.state), ("run manifest", self.manifest)):
            if _same_file(self.errors, path) or _same_file(self.output, path):
                raise ValueError(f"the {role} {path} cannot also be written as output or errors")

    def _check_companions(self) -> None:
        """Refuse when a companion file exists that tango did not write: it is the user's."""
        checks = (
            (self.state, _is_progress_record, "progress file"),
            (self.manifest, _is_manifest, "run manifest"),
            (self.lock, is_lock_record, "lock file"),
            (lock_path(self.errors), is_lock_record, "lock file"),
        )
        for path, ours, role in checks:
            if path.is_file() and not ours(path):
                raise ValueError(
                    f"{path} exists and tango did not write it (it is not a tango {role}); tango "
                    f"never replaces or deletes a file it did not write: move it away, or choose "
                    f"another output name"
                )
            if path.exists() and not path.is_file():
                raise ValueError(f"{path} exists and is not a file; tango needs that name for its {role}")

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
    return os.path.realpath(a) == os.path.realpath(b)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_manifest(path: Path) -> bool:
    record = _read_json(path)
    return isinstance(record, dict) and {"tango_version", "input", "model", "options"} <= set(record)


def _is_progress_record(path: Path) -> bool:
    from tango.summary import RunSummary

    record = _read_json(path)
    fields = set(RunSummary.__dataclass_fields__)
    return isinstance(record, dict) and "rows_in" in record and set(record) <= fields


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
    """Size, mtime and the SHA-256 of the whole file: any edit a resume could be fooled by (a
    shorter, longer, replaced or touched file, a same-size edit in the middle) changes it. The
    file is read once for it, at about the speed of reading it (a GB in a few seconds)."""
    if path == "-":
        return {"path": "-"}
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(READ_BLOCK), b""):
            digest.update(block)
    return {
        "path": os.path.abspath(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": digest.hexdigest(),
    }


def prefix_fingerprint(path: str, lines: int) -> dict[str, Any]:
    """Length and SHA-256 of the first ``lines`` physical lines of a file (line endings kept).

    A run stopped by ``on_error="fail"`` records the lines before the bad one: a resume may then
    read a file whose bad line (or anything after it) was fixed, as long as these are unchanged.
    """
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        for _, line in zip(range(lines), file, strict=False):
            digest.update(line)
            size += len(line)
    return {"lines": lines, "bytes": size, "sha256": digest.hexdigest()}


def committed_digest(path: Path, size: int, expected: str | None) -> Any:
    """The running SHA-256 of the first ``size`` bytes of ``path``, checked against ``expected``.

    Raises ValueError, naming the file, when it is shorter than what was committed or its
    committed bytes changed: a resume must never trust rows that are no longer there.
    Returns the hash object, to go on hashing what is appended after them.
    """
    digest = hashlib.sha256()
    actual = path.stat().st_size if path.exists() else 0
    if actual < size:
        raise ValueError(
            f"cannot resume: {path} holds {actual:,} bytes but the interrupted run committed "
            f"{size:,}; it was shortened after the run stopped and the rows it lost cannot be "
            "told apart. Rerun with --overwrite to start again"
        )
    if size:
        with open(path, "rb") as file:
            left = size
            while left:
                block = file.read(min(READ_BLOCK, left))
                digest.update(block)
                left -= len(block)
    if expected and digest.hexdigest() != expected:
        raise ValueError(
            f"cannot resume: the first {size:,} bytes of {path} differ from what the interrupted "
            "run committed; it was edited after the run stopped. Rerun with --overwrite to start again"
        )
    return digest


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
    """What decides a model's answers: resolved files and their checksum, runtime, thresholds,
    and each tier's batch plan (rows and tokens per batch): with bf16 or int8 inference a row's
    probabilities move by up to about 1e-3 with its batch mates (docs/run.md), so a resume keeps
    the plan of the interrupted run and reproduces it exactly.
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
                    "batch_size": getattr(tier, "batch_size", None),
                    "max_tokens": getattr(tier, "max_tokens", None),
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
        "batch_size": getattr(model, "batch_size", None),
        "temperatures": list(model.temperatures) if getattr(model, "temperatures", None) else None,
        "labels": [str(label) for label in model.classes_],
    }


def build_manifest(files: RunFiles, model: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The record ``--resume`` checks: input fingerprint, model identity, output-shaping options."""
    return {
        "tango_version": __version__,
        "input": input_fingerprint(files.input),
        "output": os.path.realpath(files.output),
        "errors": os.path.realpath(files.errors),
        "model": model,
        "options": options,
    }


def manifest_differences(
    old: dict[str, Any], new: dict[str, Any], allowed: frozenset[str] = frozenset()
) -> list[str]:
    """Human-readable differences between the interrupted run and this one (empty: same job).

    ``allowed``: dotted keys (``input.sha256``, ``options.on_error``) that may differ.
    """
    found: list[str] = []
    for section in ("input", "model", "options"):
        _diff(section, old.get(section), new.get(section), found, allowed)
    for role in ("output", "errors"):
        if old.get(role) != new.get(role):
            found.append(f"{role} file {old.get(role)} -> {new.get(role)}")
    return found


def _diff(where: str, old: Any, new: Any, found: list[str], allowed: frozenset[str]) -> None:
    if where in allowed:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(f"{where}.{key}", old.get(key), new.get(key), found, allowed)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(f"{where}[{k + 1}]", a, b, found, allowed)
    elif old != new:
        found.append(f"{where}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:38] + "..." + text[-38:]
