"""Batch offline scoring of a file, crash-safe and resumable: the local engine of ``tango run``.

The model is a :class:`~tango.cascade.Cascade` or an
:class:`~tango.early_exit.EarlyExitClassifier`: anything with ``classes_`` and a
``predict_detailed`` whose result has ``labels``, ``probabilities``, ``confidence`` and either
``tier`` (cascades) or ``exit_layer`` (early exit), which becomes the output's last column.
The input streams through in chunks (memory stays flat however large the file): each chunk's
good rows go through the model, its bad rows to the errors file, and both are appended and
fsync'ed before a small progress file is replaced atomically. After a crash, ``resume=True``
truncates the outputs back to the last committed chunk and skips the rows already done, so every
input row is written exactly once: ``rows out + rows in the errors file (+ skipped) = rows in``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tango.cascade import Cascade
from tango.data import Record, Records, RowError, read_records
from tango.runfiles import (
    RunFiles,
    build_manifest,
    committed_digest,
    manifest_differences,
    model_identity,
    prefix_fingerprint,
    write_atomically,
)
from tango.summary import RunSummary
from tango.writers import RowWriter, error_line

ON_ERROR = ("write", "skip", "fail")
DEFAULT_CHUNK_SIZE = 1024
# What a resume after an ``on_error="fail"`` stop may change: the input (its lines before the bad
# one are checked instead) and what to do with bad rows.
_AFTER_FAILURE = frozenset({"input.size", "input.mtime_ns", "input.sha256", "options.on_error"})


@dataclass(frozen=True)
class LocalOptions:
    """How one ``tango run`` on this machine reads, writes and treats its rows, as one value.

    ``text_column``/``text_pair_column`` hold the text; ``id_column`` becomes the output's ``id``
    (without one, the input's ``id`` column when it has one, else the input line number).
    ``format`` is the input's (default: from the extension). Bad rows go to ``errors_path``
    (default ``<output>.errors.jsonl``) with their line, field and raw text; ``on_error="skip"``
    reports them on stderr only, ``"fail"`` stops at the first one after committing the rows
    before it. ``chunk_size`` defaults to 1024 rows, or on ``resume`` to the interrupted run's.
    ``probabilities`` adds one probability per class to each output row.
    """

    text_column: str = "text"
    text_pair_column: str | None = None
    id_column: str | None = None
    format: str | None = None
    errors_path: str | Path | None = None
    on_error: str = "write"
    chunk_size: int | None = None
    probabilities: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        size = self.chunk_size
        if size is not None and (isinstance(size, bool) or size < 1):
            raise ValueError(f"chunk_size must be >= 1, got {size}")


def score_file(
    cascade: Cascade | Any,
    input_path: str | Path,
    output_path: str | Path,
    options: LocalOptions | None = None,
    **keywords: Any,
) -> RunSummary:
    """Score every row of ``input_path`` into ``output_path`` (``.jsonl`` or ``.csv``).

    ``cascade`` may also be an :class:`~tango.early_exit.EarlyExitClassifier`. ``options`` (a
    :class:`LocalOptions`) or its fields as keywords say how (keywords override ``options``).
    Each output row holds ``id``, ``label``, ``confidence``, ``tier`` (the tier that answered,
    numbered from 1; for an early-exit model ``exit_layer``, the 1-based layer the row left at)
    and, with ``probabilities``, one probability per class.

    Every path is checked before anything is written (see :mod:`tango.runfiles`): an existing
    output is replaced only with ``overwrite``, never when it is the input; ``resume`` continues
    only the same job (same input, models, batch plan and options) and says what differs
    otherwise, so a resumed run writes the same bytes as an uninterrupted one; a second run on
    the same output fails while this one holds its lock. After a stop by ``on_error="fail"``,
    ``resume`` also accepts the input with its bad line fixed (the lines before it must be
    unchanged) and another ``on_error``.
    """
    options = replace(options or LocalOptions(), **keywords)
    files = RunFiles.plan(input_path, output_path, options.errors_path)
    files.check(resume=options.resume, overwrite=options.overwrite)
    exits = getattr(cascade, "exits_", None)  # early-exit models: their exit layers
    writer = RowWriter(
        files.output, cascade.classes_, options.probabilities, "exit_layer" if exits else "tier"
    )
    with files.run_lock():
        # again: no other run can interfere now
        files.check(resume=options.resume, overwrite=options.overwrite, locked=True)
        options = replace(options, chunk_size=_chunk_size(files, options))
        records = read_records(
            input_path,
            options.text_column,
            options.text_pair_column,
            id_column=options.id_column,
            format=options.format,
            default_id_column="id",
        )  # checks the header before anything is written
        manifest = build_manifest(files, model_identity(cascade), _job_options(options, records, writer))
        commit = _Commits(files, manifest, options.resume)
        records.skip(commit.summary.rows_in)
        commit.summary.num_layers = exits[-1] if exits else 0  # the last exit is the encoder's depth
        try:
            _score_chunks(cascade, records, commit, writer, options)
        finally:
            commit.close()
        commit.finish()
    return commit.summary


def _chunk_size(files: RunFiles, options: LocalOptions) -> int:
    """The chunk size asked for, else a resumed run's recorded one (its bytes depend on it)."""
    if options.chunk_size is not None:
        return options.chunk_size
    recorded = (files.read_manifest() or {}).get("options", {}) if options.resume else {}
    return int(recorded.get("chunk_size") or DEFAULT_CHUNK_SIZE)


def _job_options(options: LocalOptions, records: Records, writer: RowWriter) -> dict[str, Any]:
    """The options the manifest records: what a resumed run must share with the interrupted one."""
    return {
        "text_column": options.text_column,
        "text_pair_column": options.text_pair_column,
        "id_column": records.columns["id"],
        "format": records.format,
        "probabilities": options.probabilities,
        "on_error": options.on_error,
        "output_columns": writer.columns,
        "chunk_size": options.chunk_size,
    }


def _score_chunks(model: Any, records: Any, commit: _Commits, writer: Any, options: LocalOptions) -> None:
    """The scoring loop: read a chunk, score its good rows, commit output and errors together."""
    summary, files, on_error = commit.summary, commit.files, options.on_error
    started = time.perf_counter() - summary.seconds
    bar = tqdm(
        total=_count_rows(files.input),
        initial=summary.rows_in,
        unit="row",
        disable=not options.progress,
        desc=f"scoring {Path(files.input).name}",
        dynamic_ncols=True,
    )
    with bar:
        for chunk in _chunks(records, options.chunk_size):
            failure = (
                next((row for row in chunk if isinstance(row, RowError)), None)
                if on_error == "fail"
                else None
            )
            if failure is not None:
                chunk = chunk[: chunk.index(failure)]
            good = [row for row in chunk if isinstance(row, Record)]
            bad = [row for row in chunk if isinstance(row, RowError)]
            result = model.predict_detailed([row.text for row in good])
            summary.add(result)
            summary.rows_in += len(chunk)
            errors = _bad_rows(files, summary, bad, on_error)
            output = writer(good, result, first=summary.output_bytes == 0)
            summary.seconds = time.perf_counter() - started
            commit.append(output, errors)
            bar.update(len(chunk))
            bar.set_postfix(**summary.progress(), errors=summary.errors + summary.skipped)
            if failure is not None:
                commit.stop_at(failure.line)
                raise ValueError(_failure_message(files, failure, summary.rows_out))


def _bad_rows(files: RunFiles, summary: RunSummary, bad: list[RowError], on_error: str) -> bytes:
    """A chunk's bad rows counted, and either reported on stderr (skip) or as error lines."""
    if on_error == "skip":
        summary.skipped += len(bad)
        for row in bad:
            print(f"skipped {files.input}:{row.line} [{row.field or '-'}]: {row.message}", file=sys.stderr)
        return b""
    summary.errors += len(bad)
    return b"".join(error_line(row) for row in bad)


def _failure_message(files: RunFiles, failure: RowError, scored: int) -> str:
    """What stopped an ``on_error="fail"`` run, and the two ways on that work."""
    where = f"{files.input}: line {failure.line}, field {failure.field or '-'}: {failure.message}."
    if files.input == "-":
        return (
            f"{where} {scored} rows scored before it are in {files.output}. A stream cannot be "
            "resumed: save it to a file, fix that line and score the file with --overwrite"
        )
    return (
        f"{where} {scored} rows scored before it are in {files.output}. Fix that line and rerun "
        "the same command with --resume, or rerun it with --resume --on-error write to send "
        "bad rows to the errors file"
    )


# --- commit protocol ----------------------------------------------------------------------------
class _Commits:
    """Appends output and error rows chunk by chunk so that a crash loses nothing committed.

    A fresh run touches no file until its first chunk is scored: then it writes the manifest and
    an empty progress record, replaces the output (and an errors file a run of this output left),
    and from there each chunk is appended and fsync'ed before the progress file is replaced
    atomically. A resumed run checks the manifest, then cuts both files back to the last commit.
    """

    def __init__(self, files: RunFiles, manifest: dict[str, Any], resume: bool) -> None:
        self.files, self.manifest = files, manifest
        self.digests = {"output": hashlib.sha256(), "errors": hashlib.sha256()}
        self.summary = self._resumed() if resume else RunSummary()
        self.started = resume  # a resumed run's files exist already
        self.out: Any = None
        self.err: Any = None

    def _resumed(self) -> RunSummary:
        """Check that this is the interrupted job and its committed bytes are intact, then cut
        both files back to the last commit."""
        files = self.files
        summary = RunSummary(**json.loads(files.state.read_text()))
        allowed = self._fixed_after_failure(summary)
        differences = manifest_differences(files.read_manifest() or {}, self.manifest, allowed)
        if differences:
            raise ValueError(
                f"cannot resume {files.output}: this run differs from the interrupted one ("
                + "; ".join(differences[:6])
                + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
                + "). Rerun with the original input, models and options, or with --overwrite "
                "to start again"
            )
        # Checked before anything is cut: a shortened or edited output is refused, not trusted.
        self.digests["output"] = committed_digest(files.output, summary.output_bytes, summary.output_sha256)
        self.digests["errors"] = committed_digest(files.errors, summary.errors_bytes, summary.errors_sha256)
        _truncate(files.output, summary.output_bytes)
        _truncate(files.errors, summary.errors_bytes)
        if allowed:  # the fixed input is now the job's input
            summary.failed_line, summary.input_prefix = 0, {}
            files.write_manifest(self.manifest)
            write_atomically(files.state, json.dumps(asdict(summary)))
        return summary

    def _fixed_after_failure(self, summary: RunSummary) -> frozenset[str]:
        """After an on_error="fail" stop the input may have been fixed from the bad line on: the
        keys that may then differ, once the lines before it are checked to be unchanged."""
        if not summary.failed_line:
            return frozenset()
        now = prefix_fingerprint(self.files.input, summary.failed_line - 1)
        if now != summary.input_prefix:
            raise ValueError(
                f"cannot resume {self.files.output}: lines 1-{summary.failed_line - 1} of "
                f"{self.files.input} changed since the run stopped at line {summary.failed_line}; "
                "only that line and the ones after it may be fixed. Rerun with --overwrite to start again"
            )
        return _AFTER_FAILURE

    def stop_at(self, line: int) -> None:
        """Record that on_error="fail" stopped the run at ``line``, with the lines before it."""
        if self.files.input == "-":
            return
        self.summary.failed_line = line
        self.summary.input_prefix = prefix_fingerprint(self.files.input, line - 1)
        write_atomically(self.files.state, json.dumps(asdict(self.summary)))

    def _start(self) -> None:
        """First commit of a fresh run: the moment it takes over its files."""
        files = self.files
        files.write_manifest(self.manifest)
        write_atomically(files.state, json.dumps(asdict(self.summary)))
        with open(files.output, "wb"):  # --overwrite, checked: replace the old output now
            pass
        if files.errors.exists():  # checked: ours to replace; emptied in place (its lock stays)
            with open(files.errors, "wb"):
                pass
        self.started = True

    def append(self, output: bytes, errors: bytes) -> None:
        if not self.started:
            self._start()
        if self.out is None:
            self.out = open(self.files.output, "ab")  # noqa: SIM115 - closed by close()
        if errors and self.err is None:
            self.err = open(self.files.errors, "ab")  # noqa: SIM115
        summary = self.summary
        summary.output_bytes += self._append("output", self.out, output)
        if errors:
            summary.errors_bytes += self._append("errors", self.err, errors)
        summary.output_sha256 = self.digests["output"].hexdigest()
        summary.errors_sha256 = self.digests["errors"].hexdigest()
        write_atomically(self.files.state, json.dumps(asdict(summary)))

    def _append(self, role: str, file: Any, data: bytes) -> int:
        """Append and fsync; an OS error (a full disk) names the file and how to go on."""
        path = self.files.output if role == "output" else self.files.errors
        try:
            written = _append(file, data)
        except OSError as error:
            raise OSError(
                error.errno,
                f"{error.strerror} while writing {role} (the {self.summary.rows_out:,} rows committed "
                "before it are kept; make room and rerun the same command with --resume)",
                str(path),
            ) from error
        self.digests[role].update(data)
        return written

    def close(self) -> None:
        for file in (self.out, self.err):
            if file is not None:
                file.close()
        self.out = self.err = None

    def finish(self) -> None:
        """After the last chunk: record the totals, drop the progress file and an empty errors file."""
        if not self.started:
            self.append(b"", b"")  # an input without rows still gets its (empty) output
            self.close()
        files, summary = self.files, self.summary
        assert summary.rows_out + summary.errors + summary.skipped == summary.rows_in, "row accounting"
        files.write_manifest({**self.manifest, "summary": asdict(summary)})
        files.state.unlink(missing_ok=True)
        if summary.errors == 0 and files.errors.exists() and files.errors.stat().st_size == 0:
            files.errors.unlink()


def _truncate(path: Path, size: int) -> None:
    if path.exists():
        with open(path, "r+b") as file:
            file.truncate(size)
    elif size:
        raise ValueError(f"cannot resume: {path} is missing but {size} bytes were committed to it")


def _append(file: Any, data: bytes) -> int:
    if data:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    return len(data)


# --- reading and writing rows -------------------------------------------------------------------
def _chunks(rows: Iterator[Record | RowError], size: int) -> Iterator[list[Record | RowError]]:
    chunk: list[Record | RowError] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _count_rows(path: str | Path) -> int | None:
    """Rows in a regular file, for the progress bar (newlines, minus a CSV/TSV header)."""
    if str(path) == "-" or not Path(path).is_file():
        return None
    with open(path, "rb") as file:
        lines = sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b""))
    return max(lines - (0 if str(path).endswith((".jsonl", ".json", ".ndjson")) else 1), 0)
