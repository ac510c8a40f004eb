"""Batch scoring on Ray Data: the engine of ``tango run --engine ray`` (``pip install 'tango[ray]'``).

The job is one Ray Data pipeline, shaped the way Ray users already write batch inference::

    read (tango's own reader, one read task per input file)
      -> map_batches(Tier1Scorer, ActorPoolStrategy)   every row: tier 1's answer and confidence
      -> map_batches(Tier2Scorer, ActorPoolStrategy)   only rows tier 1 left unsure are scored,
                                                         the others pass through; output columns
      -> write_json / write_csv / write_parquet        shards in the OUTPUT directory

Reading goes through :mod:`tango.data` (a ``FileBasedDatasource`` whose read task runs the local
reader over each file's byte stream), so bad rows are found with the same line, field and message
as locally and written per input file to ``<OUTPUT>.errors/<key>.errors.jsonl`` in the local
errors format. Output rows are formatted by the local engine's own writer
(:class:`tango.writers.RowWriter`), so both engines write the same columns and values.

Beside the output, ``<OUTPUT>.tango/`` keeps the run's bookkeeping: ``run.json`` (parameters,
resume mode, completion), ``inputs/<key>.parquet`` (each input file's ids in input order, with
which rows were bad: the exactly-once check and ``--merge`` read them), and either Ray Data's
id-column checkpoint (``checkpoint/``, where the installed Ray has it) or per-input-file
completion markers (``done/<key>``) that ``resume=True`` continues from. Every run ends with a
check that each input id is in the output exactly once or is an error row.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango.cascade import Cascade
from tango.data import (
    Record,
    RowError,
    _duplicate_columns,
    _format,
    _header,
    _missing_columns,
    _records,
    _rows,
    columns_of,
    guess_columns,
)
from tango.scoring import ON_ERROR
from tango.writers import RowWriter, error_line

OUTPUT_FORMATS = ("jsonl", "csv", "parquet")
DEFAULT_READ_CPUS = 0.25  # per read or write task: parsing a file is light beside a model
RESUME_MODES = ("auto", "checkpoint", "markers")
ID = "id"  # the id column every stage carries; Ray's checkpoint keys on it


@dataclass
class Stage:
    """One pipeline stage's resources: the most actors in its pool, CPUs per actor, rows per batch.

    The pool autoscales from one actor to ``actors``. Size the tier-2 pool from the escalation
    rate: it scores ``escalated x rows`` rows with a model that costs several times tier 1's per
    row (docs/distributed.md). The defaults (0.25 CPU per actor and per read task) fit a 2-CPU
    cluster, resume included (its checkpoint filter needs one CPU beside them).
    """

    actors: int = 1
    cpus: float = 0.25  # a reservation for scheduling; the runtime runs round(cpus) threads, >= 1
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.actors < 1 or self.cpus <= 0 or self.batch_size < 1:
            raise ValueError(f"a stage needs actors >= 1, cpus > 0 and batch_size >= 1, got {self}")

    @property
    def threads(self) -> int:
        """Runtime threads per actor: its CPUs, at least one (ONNX Runtime ignores OMP_NUM_THREADS)."""
        return max(1, round(self.cpus))


# Ray Data's checkpoint filter, which a resumed checkpointed run adds, is a task of one CPU.
CHECKPOINT_FILTER_CPUS = 1.0


def check_resources(
    cluster_cpus: float, tier1: Stage, tier2: Stage, read_cpus: float, resuming: bool
) -> None:
    """Refuse a plan the cluster cannot schedule, before anything runs (it would hang, not fail).

    Each pool keeps at least one actor for the whole run, a read or write task needs
    ``read_cpus`` beside them, and a resumed checkpointed run also needs the checkpoint filter's
    CPU; all of it must fit in the cluster's CPUs at once.
    """
    parts = {"tier-1 actor": tier1.cpus, "tier-2 actor": tier2.cpus, "read/write task": read_cpus}
    if resuming:
        parts["checkpoint filter (resume)"] = CHECKPOINT_FILTER_CPUS
    needed = sum(parts.values())
    if needed > cluster_cpus + 1e-9:
        shown = " + ".join(f"{cpus:g} ({name})" for name, cpus in parts.items())
        raise ValueError(
            f"this plan needs {needed:g} CPUs at once ({shown}) but the Ray cluster has "
            f"{cluster_cpus:g}: it would wait forever. Lower --tier1-cpus/--tier2-cpus/--read-cpus "
            "(a fraction such as 0.25 is fine: each actor still runs one thread), or add CPUs"
        )


# --- what an actor needs to rebuild its part of the cascade --------------------------------------

SAMPLE_TOLERANCE = {"fp32": 1e-4, "low": 2e-2}  # max |probability difference| at start-up


@dataclass
class TierSpec:
    """A tier by path, runtime, precision and runtime options, small enough to ship to actors that
    load it themselves; ``sample``/``expected`` are the driver's answer on a sample batch, which
    the actor must reproduce before it scores anything."""

    path: str
    runtime: str
    precision: str
    runtime_options: dict[str, Any]
    batch_size: int
    max_tokens: int | None
    max_length: int | None
    sample: list[Any] = field(default_factory=list)
    expected: list[list[float]] = field(default_factory=list)

    @classmethod
    def of(cls, tier: Any) -> TierSpec:
        from tango.export import CHECK_SENTENCES
        from tango.runtimes import runtime_settings

        runtime, precision, options = runtime_settings(tier.runtime)
        sample: list[Any] = list(CHECK_SENTENCES[:8])
        if tier.inputs == "pairs":
            sample = list(zip(CHECK_SENTENCES[:8], CHECK_SENTENCES[8:16], strict=True))
        expected = tier.predict_proba(sample).tolist()
        return cls(
            str(tier.path), runtime, precision, options, tier.batch_size, tier.max_tokens, tier.max_length,
            sample, expected,
        )  # fmt: skip

    def load(self, threads: int) -> Any:
        from tango.tiers import Tier

        tier = Tier.from_pretrained(
            self.path,
            runtime=self.runtime,
            precision=self.precision,
            threads=threads,
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            runtime_options=self.runtime_options or None,
        )
        tier.max_length = self.max_length or tier.max_length
        self.check(tier)
        return tier

    def check(self, tier: Any) -> None:
        """The loaded tier must answer the sample as the driver's did, or the engines would drift."""
        if not self.sample:
            return
        got = tier.predict_proba(self.sample)
        difference = float(np.abs(got - np.asarray(self.expected)).max())
        limit = SAMPLE_TOLERANCE["fp32" if self.precision in ("fp32", "auto") else "low"]
        if difference > limit:
            raise ValueError(
                f"tier {self.path} on a Ray worker ({getattr(tier.runtime, 'description', '?')}) answers a "
                f"sample batch {difference:.2g} away from the driver's (allowed {limit:g}): the engines "
                "would drift. Check that the workers have the same tango, runtime and model files"
            )


@dataclass
class CascadeSpec:
    """A validated cascade as plain data; each stage's actors load only the tiers they run."""

    tiers: list[TierSpec]
    thresholds: list[float]
    temperatures: list[float]
    confidence: str
    labels: list[str]

    @classmethod
    def of(cls, cascade: Cascade) -> CascadeSpec:
        if not isinstance(cascade, Cascade):
            raise ValueError("the Ray engine scores cascades; early-exit models run on the local engine")
        tiers, thresholds, temperatures = cascade._validated()
        specs = [TierSpec.of(tier) for tier in tiers]
        return cls(specs, list(thresholds), list(temperatures), cascade.confidence, list(tiers[0].labels))

    def stage(self, first: int, last: int, threads: int) -> Cascade:
        """Tiers ``first..last-1`` as a cascade of their own, with their thresholds."""
        return Cascade(
            [spec.load(threads) for spec in self.tiers[first:last]],
            thresholds=self.thresholds[first : last - 1],
            confidence=self.confidence,
            temperatures=self.temperatures[first:last],
        )


# --- the two actor classes -----------------------------------------------------------------------


def _texts(batch: dict[str, np.ndarray]) -> list:
    texts = [str(t) for t in batch["text"]]
    if "text_pair" in batch:
        return list(zip(texts, (str(t) for t in batch["text_pair"]), strict=True))
    return texts


def _actor_setup() -> None:
    """Tokenizers must not spawn threads of their own beside the runtime's."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


class Tier1Scorer:
    """Ray actor: tier 1 scores every row; its answer rides along for the tier-2 stage."""

    def __init__(self, spec: CascadeSpec, threads: int) -> None:
        _actor_setup()
        self.cascade = spec.stage(0, 1, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.cascade.predict_detailed(_texts(batch))
        batch["_probabilities"] = result.probabilities
        batch["_confidence"] = result.confidence
        batch["_tier"] = result.tier
        return batch


class Tier2Scorer:
    """Ray actor: later tiers score the rows tier 1 left unsure; every row leaves formatted.

    One output row per input row (no filter + union): confident rows pass through with tier 1's
    answer. Rows are formatted by the local engine's writer, so the columns match it.
    """

    def __init__(self, spec: CascadeSpec, threads: int, probabilities: bool, line_ids: bool) -> None:
        _actor_setup()
        self.spec = spec
        self.later = spec.stage(1, len(spec.tiers), threads) if len(spec.tiers) > 1 else None
        self.labels = np.asarray(spec.labels)
        self.line_ids = line_ids
        self.writer = RowWriter(Path("rows.jsonl"), self.labels, probabilities)
        self.schema = self._format(  # one dummy row fixes the column names and types
            np.asarray([1 if line_ids else "x"], dtype=object),
            np.asarray([1]),
            np.full((1, len(self.labels)), 1 / len(self.labels)),
            np.asarray([0.5]),
            np.asarray([0]),
        ).schema

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        probabilities = np.array(batch["_probabilities"], dtype=np.float64).reshape(-1, len(self.labels))
        confidence = np.array(batch["_confidence"], dtype=np.float64)
        tier = np.array(batch["_tier"], dtype=np.int64)
        if not len(confidence):
            return self.schema.empty_table()
        if self.later is not None:
            unsure = np.flatnonzero(confidence < self.spec.thresholds[0])
            if len(unsure):
                texts = _texts(batch)
                result = self.later.predict_detailed([texts[i] for i in unsure])
                probabilities[unsure] = result.probabilities
                confidence[unsure] = result.confidence
                tier[unsure] = result.tier + 1  # tiers of the later cascade come after tier 1
        return self._format(batch[ID], batch["line"], probabilities, confidence, tier).cast(self.schema)

    def _format(
        self,
        ids: np.ndarray,
        lines: np.ndarray,
        probabilities: np.ndarray,
        confidence: np.ndarray,
        tier: np.ndarray,
    ) -> Any:
        """Output rows as an Arrow table built column by column, with the local writer's columns
        and values (:class:`tango.writers.RowWriter`: id, label, confidence and each probability
        rounded to 6 places, tier numbered from 1), never through JSON text per row."""
        import pyarrow as pa

        columns: dict[str, Any] = {
            "id": pa.array(np.asarray(lines, dtype=np.int64))
            if self.line_ids
            else pa.array([str(i) for i in ids]),
            "label": pa.array(self.labels[probabilities.argmax(axis=1)].astype(str)),
            "confidence": pa.array(_rounded(confidence)),
            "tier": pa.array(np.asarray(tier, dtype=np.int64) + 1),
        }
        if self.writer.probabilities:
            for k, name in enumerate(self.writer.names):
                columns[f"p_{name}"] = pa.array(_rounded(probabilities[:, k]))
        assert list(columns) == self.writer.columns, "the Ray rows must have the local writer's columns"
        return pa.table(columns)


def _rounded(values: np.ndarray) -> list[float]:
    """Python's round to 6 places, as the local writer rounds (numpy's can differ in the last bit)."""
    return [round(float(v), 6) for v in values]


# --- reading: tango's reader inside a Ray datasource ---------------------------------------------


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


def _file_key(index: int, path: str) -> str:
    """A stable, unique, file-system-safe name for an input file's shards and markers."""
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in os.path.basename(path))[:60]
    return f"{index:05d}-{name}"


def _name_files(paths: list[str]) -> dict[str, list[str]]:
    """Each input file -> [its key, its name in derived ids], fixed once per run on the driver."""
    ordered = sorted(paths)
    prefix = os.path.commonpath(ordered) if len(ordered) > 1 else ""
    return {
        path: [_file_key(i, path), os.path.relpath(path, prefix) if prefix else path]
        for i, path in enumerate(ordered)
    }


def _datasource_class() -> type:
    from ray.data.datasource import FileBasedDatasource

    class TangoRecords(FileBasedDatasource):
        """Rows ``{id, text[, text_pair], line}`` of CSV/TSV/JSONL files, read by tango.data.

        Each file is read whole by one task (CSV rows may span lines). Bad rows never enter the
        dataset: the task writes them, with the file's id list, under the run's side directories.
        """

        def __init__(self, paths: list[str], *, settings: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(paths, **kwargs)
            self.settings = settings
            self.files = files = settings.get("files") or _name_files(self._paths())
            self.keys = {path: key for path, (key, _) in files.items()}
            self.names = {path: name for path, (_, name) in files.items()}

        def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
            import pyarrow as pa

            s = self.settings
            columns = {
                "text": s["text_column"],
                "pair": s["pair_column"],
                "label": None,
                "id": s["id_column"],
            }
            ids, lines, oks, bad, block = [], [], [], [], []
            for item in read_stream_records(_Lines(f), path, columns, s["format"]):
                if isinstance(item, RowError):
                    if s["on_error"] == "fail":
                        raise ValueError(
                            f"{path}: line {item.line}, field {item.field or '-'}: {item.message}. "
                            "Rows scored before it are in the output; fix the file and rerun with "
                            "--resume, or use --on-error write"
                        )
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
            key = self.keys[path]
            if s["on_error"] == "write":
                _write_bytes(f"{s['errors']}/{key}.errors.jsonl", b"".join(error_line(r) for r in bad))
            table = pa.table(
                {
                    "id": pa.array(ids, pa.string()),
                    "line": pa.array(lines, pa.int64()),
                    "ok": pa.array(oks, pa.bool_()),
                }
            )
            _write_parquet(f"{s['sidecar']}/inputs/{key}.parquet", table)

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

    return TangoRecords


# --- storage: local paths or any pyarrow file system URI ----------------------------------------


def _fs(path: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _write_bytes(path: str, data: bytes) -> None:
    """Write a whole file atomically (temp + rename): a retried read task rewrites it harmlessly."""
    fs, local = _fs(path)
    fs.create_dir(os.path.dirname(local), recursive=True)
    tmp = f"{local}.tmp{os.getpid()}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, local)


def _write_parquet(path: str, table: Any) -> None:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    _write_bytes(path, buffer.getvalue())


def _read_bytes(path: str) -> bytes | None:
    import pyarrow.fs as pafs

    fs, local = _fs(path)
    if fs.get_file_info(local).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(local) as stream:
        return stream.read()


def _exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, local = _fs(path)
    return fs.get_file_info(local).type != pafs.FileType.NotFound


def _remove(path: str) -> None:
    import pyarrow.fs as pafs

    fs, local = _fs(path)
    kind = fs.get_file_info(local).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(local)
    elif kind == pafs.FileType.File:
        fs.delete_file(local)


def _has_files(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, local = _fs(path)
    if fs.get_file_info(local).type != pafs.FileType.Directory:
        return _exists(path)
    return any(True for _ in fs.get_file_info(pafs.FileSelector(local, recursive=True)))


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


# --- the run --------------------------------------------------------------------------------------


@dataclass
class DistributedSummary:
    """Totals of a Ray run, read back from its outputs after the exactly-once check."""

    rows_in: int = 0
    rows_out: int = 0
    errors: int = 0  # bad rows (in the errors output, or skipped with on_error="skip")
    seconds: float = 0.0
    tiers: dict[str, int] = field(default_factory=dict)  # output tier value -> rows it answered
    resume_mode: str = ""
    files: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.rows_out / self.seconds if self.seconds else 0.0

    def report(self) -> str:
        lines = [
            f"rows in: {self.rows_in:,}   scored: {self.rows_out:,}   errors: {self.errors:,}"
            f"   files: {self.files}",
            f"time: {self.seconds:.1f} s   {self.rows_per_s:,.1f} rows/s   resume by: {self.resume_mode}",
            "exactly-once check: every input id is in the output once or is an error row",
        ]
        for tier, rows in sorted(self.tiers.items()):
            share = rows / self.rows_out if self.rows_out else 0.0
            lines.append(f"tier {tier}: answered {share:6.1%} of rows")
        return "\n".join(lines)


def checkpointing_available() -> bool:
    """Ray Data's id-column checkpointing (beta; Ray >= 2.50 or so) is importable here."""
    try:
        from ray.data import DataContext
        from ray.data.checkpoint import CheckpointConfig  # noqa: F401
    except ImportError:
        return False
    return hasattr(DataContext, "checkpoint_config")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "the Ray engine needs Ray Data: pip install 'tango[ray]' (ray[data] >= 2.40)"
        ) from error
    return ray


def score(
    cascade: Cascade,
    inputs: str | Sequence[str],
    output: str,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    id_column: str | None = None,
    format: str | None = None,
    output_format: str = "jsonl",
    errors_dir: str | None = None,
    on_error: str = "write",
    probabilities: bool = False,
    tier1: Stage | None = None,
    tier2: Stage | None = None,
    read_cpus: float = DEFAULT_READ_CPUS,
    block_rows: int = 1024,
    resume: bool = False,
    overwrite: bool = False,
    merge: str | None = None,
    address: str | None = None,
    resume_by: str = "auto",
    progress: bool = True,
    actor_classes: tuple[type, type] = (Tier1Scorer, Tier2Scorer),
) -> DistributedSummary:
    """Score CSV/TSV/JSONL files on Ray Data into the directory ``output`` (shards, any order).

    ``inputs``: a path, a local glob, a directory or a URI Ray can read, or a list of them.
    Output rows have the local engine's columns; bad rows go to ``errors_dir`` (default
    ``<output>.errors``) in its errors format, one file per input. Ids: ``id_column`` when given,
    else the line number (one input file) or ``<file>:<line>`` (several). ``merge`` writes one
    ordered ``.jsonl``/``.csv`` file (and its ``.errors.jsonl``) from the shards at the end.
    ``resume`` continues an interrupted run by Ray's checkpoint or per-file markers (``resume_by``).
    ``read_cpus`` is reserved per read and write task, ``block_rows`` rows make a read block:
    the unit that is written and checkpointed. ``actor_classes`` swaps the stage actors
    (subclasses, e.g. for fault-injection tests).
    """
    started = time.perf_counter()
    ray = _import_ray()
    options = dict(text_column=text_column, pair_column=text_pair_column, id_column=id_column)
    options.update(format=format, output_format=output_format, errors_dir=errors_dir)
    options.update(on_error=on_error, probabilities=probabilities, resume_by=resume_by, merge=merge)
    settings, paths = _settings(cascade, inputs, output, options)
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    settings["block_rows"] = block_rows
    spec = CascadeSpec.of(cascade)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=progress)
    _keys(settings, paths)  # list the input files once: their keys and id names are the run's
    tier1, tier2 = tier1 or Stage(), tier2 or Stage()
    resuming = resume and _recorded_mode(settings) == "checkpoint"
    check_resources(ray.cluster_resources().get("CPU", 0.0), tier1, tier2, read_cpus, resuming)
    mode = _prepare(settings, paths, resume, overwrite)
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = progress
    try:
        pipeline = (ray, spec, tier1, tier2, read_cpus, actor_classes)
        if mode == "checkpoint":
            _run_checkpointed(pipeline, settings, paths)
        else:
            _run_by_markers(pipeline, settings, paths)
    except Exception as error:
        raise _user_error(error) from error
    finally:
        context.enable_progress_bars = bars
    summary = check_exactly_once(settings, paths)
    summary.resume_mode, summary.files = mode, len(settings["files"])
    _update_run(settings, complete=True)
    if merge:
        merge_output(settings, paths, merge)
    summary.seconds = time.perf_counter() - started
    return summary


def _user_error(error: Exception) -> Exception:
    """The ValueError a read task or actor raised (a bad row, a missing column), unwrapped.

    Ray wraps it in a RayTaskError whose text is a remote traceback; the CLI shows one line
    (tango's messages are one line: file, line, field).
    """
    cause: BaseException | None = error
    while cause is not None and type(cause).__module__.startswith("ray."):
        cause = getattr(cause, "cause", None) or cause.__cause__
    if not isinstance(cause, ValueError) or not str(cause).strip():
        return error
    return ValueError(str(cause).strip().splitlines()[0])  # Ray appends retry advice below


def _settings(
    cascade: Cascade, inputs: str | Sequence[str], output: str, options: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Validate the arguments into the plain dict the datasource, the check and merge share."""
    on_error, output_format, resume_by = options["on_error"], options["output_format"], options["resume_by"]
    text_column, merge, format = options["text_column"], options["merge"], options["format"]
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if resume_by not in RESUME_MODES:
        raise ValueError(f"resume_by must be one of {RESUME_MODES}, got {resume_by!r}")
    if merge and Path(merge).suffix.lower() not in (".jsonl", ".csv"):
        raise ValueError(f"cannot merge into {merge}: the merged file must end in .jsonl or .csv")
    paths = expand_inputs(inputs)
    local = "://" not in paths[0] and Path(paths[0]).is_file()
    pair_column = options["pair_column"]
    if text_column is None:
        text_column, guessed_pair, _ = (
            guess_columns(paths[0], format, label=False) if local else ("text", None, None)
        )
        pair_column = pair_column or guessed_pair
    id_column = options["id_column"]
    if id_column is None and local and "id" in columns_of(paths[0], format):
        id_column = "id"  # as the local engine: the input's id column is the default id
    check_inputs(paths, {"text": text_column, "pair": pair_column, "id": id_column}, format)
    output = str(output).rstrip("/")
    settings = {
        "inputs": paths,
        "output": output,
        "errors": str(options["errors_dir"]).rstrip("/") if options["errors_dir"] else f"{output}.errors",
        "sidecar": f"{output}.tango",
        "text_column": text_column,
        "pair_column": pair_column,
        "id_column": id_column,
        "format": format,
        "output_format": output_format,
        "on_error": on_error,
        "probabilities": options["probabilities"],
        "labels": [str(label) for label in cascade.classes_],
        "line_ids": id_column is None and len(paths) == 1 and not _is_dir(paths[0]),
        "block_rows": 1024,
        "resume_by": resume_by,
    }
    return settings, paths


def check_inputs(paths: list[str], columns: dict[str, str | None], format: str | None) -> None:
    """Every local input file readable, with the columns asked for, before Ray starts anything.

    A missing column or an unreadable file fails here in one line instead of inside a read task
    after the actors have loaded; empty (0-byte) and header-only files are valid shards. Remote
    URIs are checked by the read tasks.
    """
    for path in paths:
        if "://" in path or _is_local_dir(path):
            continue
        if not Path(path).is_file():
            raise ValueError(f"input {path}: no such file")
        if Path(path).stat().st_size == 0:
            continue
        with open(path, "rb") as file:
            records = read_stream_records(file, path, {**columns, "label": None}, format)
            next(iter(records), None)  # the header and its columns are checked on the first read


def _is_local_dir(path: str) -> bool:
    return Path(path).is_dir()


def _is_dir(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, local = _fs(path)
    return fs.get_file_info(local).type == pafs.FileType.Directory


_RUN_KEYS = ("inputs", "files", "text_column", "pair_column", "id_column", "format", "output_format")
_RUN_KEYS += ("labels",)  # a resumed run must be the same run


def _prepare(settings: dict[str, Any], paths: list[str], resume: bool, overwrite: bool) -> str:
    """Start a fresh run, or check an interrupted one is the same run; return the resume mode."""
    run_file = f"{settings['sidecar']}/run.json"
    if resume:
        raw = _read_bytes(run_file)
        if raw is None:
            raise ValueError(f"cannot resume: {run_file} is missing (was {settings['output']} a Ray run?)")
        previous = json.loads(raw)
        if previous.get("complete"):
            raise ValueError(f"{settings['output']} looks complete: {run_file} says the run finished")
        for key in _RUN_KEYS:
            if previous["settings"].get(key) != settings[key]:
                raise ValueError(
                    f"cannot resume {settings['output']}: {key} was {previous['settings'].get(key)!r}, "
                    f"now {settings[key]!r}"
                )
        if previous["mode"] == "checkpoint" and not _has_files(f"{settings['sidecar']}/checkpoint"):
            _remove(settings["output"])  # killed before its first checkpoint: no shard is committed
        return previous["mode"]
    targets = (settings["output"], settings["errors"], settings["sidecar"])
    if any(_has_files(path) for path in targets) and not overwrite:
        raise ValueError(
            f"{settings['output']} already exists; pass --resume to finish an interrupted run "
            f"or --overwrite to start again"
        )
    for path in targets:
        _remove(path)
    wanted = settings["resume_by"]
    if wanted == "checkpoint" and not checkpointing_available():
        raise ValueError("this Ray has no Ray Data checkpointing; use resume_by='markers' or 'auto'")
    mode = "checkpoint" if wanted != "markers" and checkpointing_available() else "markers"
    _write_bytes(run_file, json.dumps({"settings": settings, "mode": mode, "complete": False}).encode())
    return mode


def _recorded_mode(settings: dict[str, Any]) -> str | None:
    """The resume mode an interrupted run recorded (None: no run recorded)."""
    raw = _read_bytes(f"{settings['sidecar']}/run.json")
    return json.loads(raw).get("mode") if raw else None


def _update_run(settings: dict[str, Any], **changes: Any) -> None:
    run_file = f"{settings['sidecar']}/run.json"
    state = json.loads(_read_bytes(run_file) or b"{}")
    state.update(changes)
    _write_bytes(run_file, json.dumps(state).encode())


def _pipeline_write(pipeline: tuple, settings: dict[str, Any], paths: list[str], target: str) -> None:
    """read -> tier-1 actors -> tier-2 actors -> write, for ``paths`` into directory ``target``."""
    ray, spec, tier1, tier2, read_cpus, (first_class, second_class) = pipeline
    from ray.data import ActorPoolStrategy

    source = _datasource_class()(paths, settings=settings)
    ds = ray.data.read_datasource(source, num_cpus=read_cpus)
    ds = ds.map_batches(
        first_class,
        fn_constructor_kwargs={"spec": spec, "threads": tier1.threads},
        batch_size=tier1.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=1, max_size=tier1.actors),
        num_cpus=tier1.cpus,
    )
    ds = ds.map_batches(
        second_class,
        fn_constructor_kwargs={
            "spec": spec,
            "threads": tier2.threads,
            "probabilities": settings["probabilities"],
            "line_ids": settings["line_ids"],
        },
        batch_size=tier2.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=1, max_size=tier2.actors),
        num_cpus=tier2.cpus,
    )
    fs, local = _fs(target)
    remote = {"num_cpus": read_cpus}
    if settings["output_format"] == "jsonl":
        ds.write_json(local, filesystem=fs, ray_remote_args=remote, force_ascii=False)
    elif settings["output_format"] == "csv":
        ds.write_csv(local, filesystem=fs, ray_remote_args=remote)
    else:
        ds.write_parquet(local, filesystem=fs, ray_remote_args=remote)


def _run_checkpointed(pipeline: tuple, settings: dict[str, Any], paths: list[str]) -> None:
    """One pipeline over all inputs; Ray Data's checkpoint (by the id column) makes it resumable."""
    from ray.data import DataContext
    from ray.data.checkpoint import CheckpointConfig

    context = DataContext.get_current()
    previous = context.checkpoint_config
    where = f"{settings['sidecar']}/checkpoint"
    context.checkpoint_config = CheckpointConfig(
        id_column=ID, checkpoint_path=where if "://" in where else os.path.abspath(where)
    )
    try:
        _pipeline_write(pipeline, settings, paths, settings["output"])
    finally:
        context.checkpoint_config = previous


def _run_by_markers(pipeline: tuple, settings: dict[str, Any], paths: list[str]) -> None:
    """One pipeline per input file into ``OUTPUT/<key>/``; a marker records each finished file.

    The fallback where Ray has no checkpointing: an interrupted file is redone from its start
    (its partial shards are deleted first), finished files are skipped.
    """
    for real, key in sorted(_keys(settings, paths).items(), key=lambda item: item[1]):
        marker = f"{settings['sidecar']}/done/{key}"
        if _exists(marker):
            continue
        _remove(f"{settings['output']}/{key}")
        _pipeline_write(pipeline, settings, [real], f"{settings['output']}/{key}")
        _write_bytes(marker, b"")


def _keys(settings: dict[str, Any], paths: list[str]) -> dict[str, str]:
    """Each input file, as Ray lists them (directories expanded) -> its key."""
    if not settings.get("files"):
        settings["files"] = _datasource_class()(paths, settings=settings).files
    return {path: key for path, (key, _) in settings["files"].items()}


# --- after the run: the exactly-once check and --merge --------------------------------------------


def _manifest_schema() -> Any:
    """Each input file's id list: typed, so that header-only files (no rows) concatenate too."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("line", pa.int64()), ("ok", pa.bool_())])


def _manifests(settings: dict[str, Any], paths: list[str]) -> list[tuple[str, str, Any]]:
    """(file, key, table of id/line/ok) per input file, in input order."""
    import pyarrow.parquet as pq

    found = []
    for path, key in sorted(_keys(settings, paths).items(), key=lambda item: item[1]):
        raw = _read_bytes(f"{settings['sidecar']}/inputs/{key}.parquet")
        if raw is None:
            raise ValueError(f"{path} was never read to its end: no {key}.parquet in the run's inputs")
        found.append((path, key, pq.read_table(io.BytesIO(raw))))
    return found


def read_output(settings: dict[str, Any], columns: list[str] | None = None) -> Any:
    """All output shards as one Arrow table (ids and labels kept as text for CSV shards)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.dataset as pds

    fs, local = _fs(settings["output"])
    kind = settings["output_format"]
    if kind == "csv":
        strings = {ID: pa.string(), "label": pa.string()}
        file_format: Any = pds.CsvFileFormat(convert_options=pcsv.ConvertOptions(column_types=strings))
    else:
        file_format = "json" if kind == "jsonl" else "parquet"
    if not _is_dir(settings["output"]):
        return pa.table({ID: pa.array([], pa.string())})
    table = pds.dataset(local, filesystem=fs, format=file_format).to_table(columns=columns)
    if ID not in table.column_names:  # no shard at all: every row was bad
        return pa.table({ID: pa.array([], pa.string())})
    if settings["line_ids"] and table.schema.field(ID).type != pa.int64():
        table = table.set_column(table.column_names.index(ID), ID, table[ID].cast(pa.int64()))
    return table


def check_exactly_once(settings: dict[str, Any], paths: list[str]) -> DistributedSummary:
    """Raise ValueError unless every input id is in the output once, or is an error row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    manifests = _manifests(settings, paths)
    tables = [table.cast(_manifest_schema()) for _, _, table in manifests]
    every = pa.concat_tables(tables) if tables else _manifest_schema().empty_table()
    good = every.filter(every["ok"])[ID]
    _no_repeats(good, "input", "the id column must be unique")
    output = read_output(settings, [ID, "tier"] if settings["output_format"] != "csv" else None)
    out_ids = output[ID].cast(pa.string())
    _no_repeats(out_ids, "output", "a row was written twice")
    missing = pc.filter(good, pc.invert(pc.is_in(good, value_set=out_ids)))
    extra = pc.filter(out_ids, pc.invert(pc.is_in(out_ids, value_set=good)))
    if len(missing) or len(extra):
        raise ValueError(
            f"exactly-once check failed for {settings['output']}: {len(missing)} input ids missing "
            f"from the output (e.g. {missing[:3].to_pylist()}), {len(extra)} output ids not in the "
            f"input (e.g. {extra[:3].to_pylist()})"
        )
    bad = len(every) - len(good)
    if settings["on_error"] == "write":
        written = sum(
            (_read_bytes(f"{settings['errors']}/{key}.errors.jsonl") or b"").count(b"\n")
            for _, key, _ in manifests
        )
        if written != bad:
            raise ValueError(
                f"exactly-once check failed: {bad} bad input rows, {written} in {settings['errors']}"
            )
    tiers: dict[str, int] = {}
    if len(output) and "tier" in output.column_names:
        for item in pc.value_counts(output["tier"]).to_pylist():
            tiers[str(item["values"])] = item["counts"]
    return DistributedSummary(rows_in=len(every), rows_out=len(out_ids), errors=bad, tiers=tiers)


def _no_repeats(ids: Any, where: str, why: str) -> None:
    import pyarrow.compute as pc

    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        example = repeated[0].as_py()
        raise ValueError(
            f"exactly-once check failed: {len(repeated)} {where} ids appear more than once "
            f"(e.g. {example['values']!r} x{example['counts']}); {why}"
        )


def merge_output(settings: dict[str, Any], paths: list[str], target: str) -> int:
    """Write the shards as one file in input order, in the local engine's format; errors beside it.

    The whole output passes through this process's memory: for users who want one file.
    """
    import pyarrow as pa

    table = read_output(settings)
    columns = table.column_names
    order = pa.concat_tables(
        [t.cast(_manifest_schema()).filter(t["ok"]) for _, _, t in _manifests(settings, paths)]
    )
    order = order.append_column("_order", pa.array(np.arange(len(order)))).select([ID, "_order"])
    keyed = table.append_column("_key", table[ID].cast(pa.string()))
    joined = keyed.join(order.rename_columns(["_key", "_order"]), "_key").sort_by("_order")
    rows = joined.select(columns).to_pylist()
    target_path = Path(target)
    with open(target_path, "w", encoding="utf-8", newline="") as out:
        if target_path.suffix.lower() == ".jsonl":
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        else:
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    _merge_errors(settings, paths, target_path.with_name(target_path.name + ".errors.jsonl"))
    return len(rows)


def _merge_errors(settings: dict[str, Any], paths: list[str], target: Path) -> None:
    """Error rows of all inputs in input order; with several inputs each line names its file."""
    manifests = _manifests(settings, paths)
    chunks = []
    for path, key, _ in manifests:
        raw = _read_bytes(f"{settings['errors']}/{key}.errors.jsonl") or b""
        if len(manifests) > 1:
            raw = b"".join(
                (json.dumps({"path": path, **json.loads(line)}, ensure_ascii=False) + "\n").encode()
                for line in raw.splitlines()
            )
        chunks.append(raw)
    data = b"".join(chunks)
    if data:
        target.write_bytes(data)
    else:
        target.unlink(missing_ok=True)


__all__ = [
    "CascadeSpec",
    "DistributedSummary",
    "Stage",
    "Tier1Scorer",
    "Tier2Scorer",
    "check_exactly_once",
    "checkpointing_available",
    "expand_inputs",
    "merge_output",
    "read_output",
    "score",
]
