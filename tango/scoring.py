"""Batch offline scoring of a file, crash-safe and resumable: the engine of ``tango run``.

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

import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tango.cascade import Cascade, CascadeResult
from tango.data import Record, RowError, read_records
from tango.runfiles import (
    OutputLock,
    RunFiles,
    build_manifest,
    manifest_differences,
    model_identity,
    write_atomically,
)

ON_ERROR = ("write", "skip", "fail")


@dataclass
class RunSummary:
    """Totals of a scoring run (across resumes); also the content of the progress file."""

    rows_in: int = 0  # input rows consumed (good + bad)
    rows_out: int = 0  # rows scored and written
    errors: int = 0  # bad rows written to the errors file
    skipped: int = 0  # bad rows dropped by on_error="skip" (each one reported on stderr)
    truncated: int = 0  # rows cut to the first tier's max length
    seconds: float = 0.0  # wall clock, including reading and writing
    tier_rows: list[int] = field(default_factory=list)  # rows scored by each tier
    tier_answered: list[int] = field(default_factory=list)  # final answers from each tier
    tier_seconds: list[float] = field(default_factory=list)  # tokenize + infer per tier
    exit_rows: dict[str, int] = field(default_factory=dict)  # early exit: rows leaving at each layer
    num_layers: int = 0  # early exit: the encoder's depth (the last exit)
    output_bytes: int = 0  # committed length of the output file
    errors_bytes: int = 0  # committed length of the errors file

    @property
    def rows_per_s(self) -> float:
        return self.rows_out / self.seconds if self.seconds else 0.0

    @property
    def mean_exit_layer(self) -> float | None:
        """Early exit: encoder layers run per row, on average."""
        rows = sum(self.exit_rows.values())
        return sum(int(k) * n for k, n in self.exit_rows.items()) / rows if rows else None

    @property
    def estimated_speedup(self) -> float | None:
        """Cascade: tier-last-alone time over cascade time, from measured per-row tier costs.

        Early exit: encoder depth over the mean exit layer (layers saved; heads not counted).
        """
        if self.exit_rows:
            mean = self.mean_exit_layer
            return self.num_layers / mean if mean else None
        if not self.tier_rows or not self.tier_rows[-1] or not sum(self.tier_seconds):
            return None
        last_cost = self.tier_seconds[-1] / self.tier_rows[-1]
        return last_cost * self.rows_out / sum(self.tier_seconds)

    def add(self, result: Any) -> None:
        """Count a chunk's result: a CascadeResult, or an early-exit result (``exit_layer``)."""
        if not isinstance(result, CascadeResult):
            for layer, count in zip(*np.unique(result.exit_layer, return_counts=True), strict=True):
                self.exit_rows[str(layer)] = self.exit_rows.get(str(layer), 0) + int(count)
            self.rows_out += len(result.labels)
            return
        tiers = result.stats.tiers
        if not self.tier_rows:
            self.tier_rows, self.tier_answered, self.tier_seconds = (
                [0] * len(tiers),
                [0] * len(tiers),
                [0.0] * len(tiers),
            )
        for k, stats in enumerate(tiers):
            self.tier_rows[k] += stats.rows
            self.tier_answered[k] += stats.answered
            self.tier_seconds[k] += stats.seconds
        self.truncated += tiers[0].truncated if tiers else 0
        self.rows_out += len(result)

    def report(self) -> str:
        """The end-of-run summary a person reads."""
        lines = [
            f"rows in: {self.rows_in:,}   scored: {self.rows_out:,}   errors: {self.errors:,}"
            f"   skipped: {self.skipped:,}   truncated: {self.truncated:,}",
            f"time: {self.seconds:.1f} s   {self.rows_per_s:,.1f} rows/s",
        ]
        if self.exit_rows:
            return "\n".join(lines + self._exit_report())
        for k, (answered, seconds) in enumerate(zip(self.tier_answered, self.tier_seconds, strict=True)):
            share = answered / self.rows_out if self.rows_out else 0.0
            lines.append(
                f"tier {k + 1}: answered {share:6.1%} of rows, scored {self.tier_rows[k]:,} rows"
                f" in {seconds:.1f} s"
            )
        speedup = self.estimated_speedup
        lines.append(
            "estimated speedup over the last tier alone: "
            + (f"{speedup:.2f}x" if speedup else "n/a (no row reached it, its cost is unmeasured)")
        )
        return "\n".join(lines)

    def _exit_report(self) -> list[str]:
        lines = [
            f"exit at layer {layer:>2}: {count / self.rows_out:6.1%} of rows"
            for layer, count in sorted((int(k), n) for k, n in self.exit_rows.items())
        ]
        speedup = self.estimated_speedup
        lines.append(
            f"mean exit layer: {self.mean_exit_layer:.2f} of {self.num_layers}"
            + (f"   estimated speedup over the full model: {speedup:.2f}x (in layers)" if speedup else "")
        )
        return lines

    def progress(self) -> dict[str, str]:
        """The progress bar's live figures."""
        if self.exit_rows:
            return {"mean_exit_layer": f"{self.mean_exit_layer or 0:.2f}"}
        answered = self.tier_answered[0] if self.tier_answered else self.rows_out
        escalated = 1 - answered / self.rows_out if self.rows_out else 0.0
        return {"escalated": f"{escalated:.1%}"}


def score_file(
    cascade: Cascade | Any,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    id_column: str | None = None,
    format: str | None = None,
    errors_path: str | Path | None = None,
    on_error: str = "write",
    chunk_size: int = 1024,
    probabilities: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Score every row of ``input_path`` into ``output_path`` (``.jsonl`` or ``.csv``).

    ``cascade`` may also be an :class:`~tango.early_exit.EarlyExitClassifier`.
    Each output row holds ``id`` (the ``id_column`` value; without one, the input's ``id``
    column when it has one, else the input line number), ``label``, ``confidence``, ``tier``
    (the tier that answered, numbered from 1; for an early-exit model ``exit_layer``, the 1-based
    layer the row left at) and, with ``probabilities``, one probability per class. Bad rows go to
    ``errors_path`` (default ``<output>.errors.jsonl``) with their line, field and raw text;
    ``on_error="skip"`` reports them on stderr only, ``"fail"`` stops at the first one after
    committing the rows before it.

    Every path is checked before anything is written (see :mod:`tango.runfiles`): an existing
    output is replaced only with ``overwrite``, never when it is the input; ``resume`` continues
    only the same job (same input, models and options) and says what differs otherwise; a second
    run on the same output fails while this one holds its lock.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    files = RunFiles.plan(input_path, output_path, errors_path)
    files.check(resume=resume, overwrite=overwrite)
    exits = getattr(cascade, "exits_", None)  # early-exit models: their exit layers
    stage = "exit_layer" if exits else "tier"
    writer = _writer_for(files.output, cascade.classes_, probabilities, stage)
    with OutputLock(files.lock):
        files.check(resume=resume, overwrite=overwrite, locked=True)  # again: no other run can interfere now
        records = read_records(
            input_path,
            text_column,
            text_pair_column,
            id_column=id_column,
            format=format,
            default_id_column="id",
        )  # checks the header before anything is written
        options = {
            "text_column": text_column,
            "text_pair_column": text_pair_column,
            "id_column": records.columns["id"],
            "format": records.format,
            "probabilities": probabilities,
            "on_error": on_error,
            "output_columns": writer.columns,
        }
        manifest = build_manifest(files, model_identity(cascade), options)
        commit = _Commits(files, manifest, resume)
        summary = commit.summary
        records.skip(summary.rows_in)
        summary.num_layers = exits[-1] if exits else 0  # the last exit is the encoder's depth
        try:
            _score_chunks(cascade, records, files, commit, writer, on_error, chunk_size, progress)
        finally:
            commit.close()
        commit.finish()
    return summary


def _score_chunks(
    model: Any,
    records: Any,
    files: RunFiles,
    commit: _Commits,
    writer: Any,
    on_error: str,
    chunk_size: int,
    progress: bool,
) -> None:
    """The scoring loop: read a chunk, score its good rows, commit output and errors together."""
    summary = commit.summary
    started = time.perf_counter() - summary.seconds
    bar = tqdm(
        total=_count_rows(files.input),
        initial=summary.rows_in,
        unit="row",
        disable=not progress,
        desc=f"scoring {Path(files.input).name}",
        dynamic_ncols=True,
    )
    with bar:
        for chunk in _chunks(records, chunk_size):
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
            errors = b""
            if on_error == "skip":
                summary.skipped += len(bad)
                for row in bad:
                    print(
                        f"skipped {files.input}:{row.line} [{row.field or '-'}]: {row.message}",
                        file=sys.stderr,
                    )
            else:
                summary.errors += len(bad)
                errors = b"".join(_error_line(row) for row in bad)
            output = writer(good, result, first=summary.output_bytes == 0)
            summary.seconds = time.perf_counter() - started
            commit.append(output, errors)
            bar.update(len(chunk))
            bar.set_postfix(**summary.progress(), errors=summary.errors + summary.skipped)
            if failure is not None:
                raise ValueError(
                    f"{files.input}: line {failure.line}, field {failure.field or '-'}: "
                    f"{failure.message}. {summary.rows_out} rows scored before it are "
                    f"in {files.output}; rerun with --resume after fixing the file, or "
                    f"use --on-error write"
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
        self.summary = self._resumed() if resume else RunSummary()
        self.started = resume  # a resumed run's files exist already
        self.out: Any = None
        self.err: Any = None

    def _resumed(self) -> RunSummary:
        files = self.files
        differences = manifest_differences(files.read_manifest() or {}, self.manifest)
        if differences:
            raise ValueError(
                f"cannot resume {files.output}: this run differs from the interrupted one ("
                + "; ".join(differences[:6])
                + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
                + "). Rerun with the original input, models and options, or with --overwrite "
                "to start again"
            )
        summary = RunSummary(**json.loads(files.state.read_text()))
        _truncate(files.output, summary.output_bytes)
        _truncate(files.errors, summary.errors_bytes)
        return summary

    def _start(self) -> None:
        """First commit of a fresh run: the moment it takes over its files."""
        files = self.files
        files.write_manifest(self.manifest)
        write_atomically(files.state, json.dumps(asdict(self.summary)))
        with open(files.output, "wb"):  # --overwrite, checked: replace the old output now
            pass
        files.errors.unlink(missing_ok=True)  # checked: ours to replace
        self.started = True

    def append(self, output: bytes, errors: bytes) -> None:
        if not self.started:
            self._start()
        if self.out is None:
            self.out = open(self.files.output, "ab")  # noqa: SIM115 - closed by close()
        if errors and self.err is None:
            self.err = open(self.files.errors, "ab")  # noqa: SIM115
        self.summary.output_bytes += _append(self.out, output)
        if errors:
            self.summary.errors_bytes += _append(self.err, errors)
        write_atomically(self.files.state, json.dumps(asdict(self.summary)))

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


def _error_line(row: RowError) -> bytes:
    return (
        json.dumps(
            {"line": row.line, "field": row.field, "error": row.message, "raw": row.raw}, ensure_ascii=False
        )
        + "\n"
    ).encode()


class RowWriter:
    """Formats scored rows as JSON lines or CSV (chosen by the output's extension).

    ``stage`` is the result's field saying where each row was answered: ``tier`` (written
    numbered from 1, as the CLI's ``--tier1/--tier2``) or ``exit_layer`` (already 1-based).
    """

    def __init__(self, path: Path, labels: np.ndarray, probabilities: bool, stage: str = "tier") -> None:
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise ValueError(f"cannot write {path}: the output must end in .jsonl or .csv")
        self.csv = suffix == ".csv"
        self.names = [str(label) for label in labels]
        self.probabilities = probabilities
        self.stage = stage
        self.columns = ["id", "label", "confidence", stage] + (
            [f"p_{name}" for name in self.names] if probabilities else []
        )

    def fields(self, row: Record, k: int, result: Any) -> dict[str, Any]:
        """One output row: the row's id (else its line number) and the model's answer."""
        stage = int(getattr(result, self.stage)[k]) + (1 if self.stage == "tier" else 0)
        out = {
            "id": row.id if row.id is not None else row.line,
            "label": str(result.labels[k]),
            "confidence": round(float(result.confidence[k]), 6),
            self.stage: stage,
        }
        if self.probabilities:
            probabilities = result.probabilities[k]
            out.update({f"p_{n}": round(float(p), 6) for n, p in zip(self.names, probabilities, strict=True)})
        return out

    def __call__(self, rows: list[Record], result: Any, first: bool) -> bytes:
        """The bytes to append for ``rows``; ``first`` adds the CSV header."""
        if not self.csv:
            return "".join(
                json.dumps(self.fields(row, k, result), ensure_ascii=False) + "\n"
                for k, row in enumerate(rows)
            ).encode()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        if first:
            writer.writeheader()
        writer.writerows(self.fields(row, k, result) for k, row in enumerate(rows))
        return buffer.getvalue().encode()


def _writer_for(path: Path, labels: np.ndarray, probabilities: bool, stage: str = "tier") -> RowWriter:
    return RowWriter(path, labels, probabilities, stage)
