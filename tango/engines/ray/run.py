"""A whole Ray run from the driver: its options, the settings every task shares, start to end.

:func:`score` checks everything it can before Ray schedules anything (options, inputs, the
cascade, the plan against the cluster's CPUs, an earlier run in the output), then runs the
run's passes, each a Ray Data execution, skipping those a resumed run finished: the index (every
row parsed, no text kept) and its errors, after the checkpointed scoring pipeline (before it
with ``on_error="fail"``); then the exactly-once check, and ``--merge``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tango.cascade import Cascade
from tango.data import columns_of, guess_columns
from tango.engines.local import ON_ERROR
from tango.engines.ray.actors import Tier1Scorer, Tier2Scorer
from tango.engines.ray.context import data_context
from tango.engines.ray.index import write_errors, write_index
from tango.engines.ray.merge import merge_output
from tango.engines.ray.output import DistributedSummary, check_exactly_once
from tango.engines.ray.pipeline import Pipeline, checkpoint_dir, checkpointed, write_output
from tango.engines.ray.plan import (
    DEFAULT_READ_CPUS,
    KEEP_IDLE_WORKERS,
    OUTPUT_FORMATS,
    CascadeSpec,
    Stage,
    check_resources,
)
from tango.engines.ray.read import check_inputs, expand_inputs, file_keys
from tango.engines.ray.resume import prepare, recorded, require_checkpointing, update_run
from tango.engines.ray.storage import is_dir, remove


@dataclass(frozen=True)
class RayOptions:
    """How one ``tango run --engine ray`` reads, scores, writes and resumes, as one value.

    Output rows have the local engine's columns; bad rows go to ``errors_dir`` (default
    ``<output>.errors``, a directory of JSON-lines files) in its errors format. Ids:
    ``id_column`` when given, else the line number (one input file) or ``<file>:<line>``
    (several). ``merge`` writes one ordered ``.jsonl``/``.csv`` file (and its ``.errors.jsonl``)
    from the shards at the end. ``resume`` continues an interrupted run (Ray Data's checkpoint).
    ``tier1``/``tier2`` size each actor pool; ``fuse_tiers`` runs one pool of whole-cascade actors
    instead (sized by ``tier1``: the local engine's way, faster on small nodes, see
    :class:`~tango.engines.ray.actors.CascadeScorer`); ``read_cpus`` is reserved per read and write task,
    ``block_rows`` rows make a read block: the unit that is written and checkpointed.
    ``address`` names the Ray cluster (default: start one). ``filesystem`` (a pyarrow file
    system, e.g. ``S3FileSystem(endpoint_override=...)``) holds every path of the run, as Ray
    Data's readers take one (default: the one each URI names). ``actor_classes`` swaps the
    stage actors (subclasses, e.g. for fault-injection tests).
    """

    text_column: str | None = None
    text_pair_column: str | None = None
    id_column: str | None = None
    format: str | None = None
    output_format: str = "jsonl"
    errors_dir: str | None = None
    on_error: str = "write"
    probabilities: bool = False
    tier1: Stage = field(default_factory=Stage)
    tier2: Stage = field(default_factory=Stage)
    fuse_tiers: bool = False
    read_cpus: float = DEFAULT_READ_CPUS
    block_rows: int = 1024
    resume: bool = False
    overwrite: bool = False
    merge: str | None = None
    address: str | None = None
    filesystem: Any = None
    progress: bool = True
    actor_classes: tuple[type, type] = (Tier1Scorer, Tier2Scorer)

    def __post_init__(self) -> None:
        for stage in ("tier1", "tier2"):  # None, as the keyword arguments always took: the default
            if getattr(self, stage) is None:
                object.__setattr__(self, stage, Stage())


def score(
    cascade: Cascade,
    inputs: str | Sequence[str],
    output: str,
    options: RayOptions | None = None,
    **keywords: Any,
) -> DistributedSummary:
    """Score CSV/TSV/JSONL files on Ray Data into the directory ``output`` (shards, any order).

    ``inputs``: a path, a local glob, a directory or a URI Ray can read, or a list of them.
    ``options`` (a :class:`RayOptions`) or its fields as keywords say how (keywords override
    ``options``). Ray is imported here, not before: it is an optional dependency.
    """
    started = time.perf_counter()
    options = replace(options or RayOptions(), **keywords)
    ray = _import_ray()
    settings, paths = _settings(cascade, inputs, output, options)
    spec = CascadeSpec.of(cascade)
    if not ray.is_initialized():
        ray.init(
            address=options.address,
            include_dashboard=False,
            log_to_driver=options.progress,
            **own_ray_settings(options.address),
        )
    require_checkpointing()
    file_keys(settings, paths)  # list the input files once: their keys and id names are the run's
    cpus = ray.cluster_resources().get("CPU", 0.0)
    nodes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
    check_resources(
        cpus, options.tier1, options.tier2, options.read_cpus, options.resume, nodes, options.fuse_tiers
    )
    state = prepare(settings, options.resume, options.overwrite)
    pipeline = Pipeline(ray, spec, options.tier1, options.tier2, options.actor_classes, options.fuse_tiers)
    alone_cpus = min(1.0, max(nodes, default=1.0) or 1.0)
    with data_context(enable_progress_bars=options.progress):
        try:
            summary = _passes(pipeline, settings, alone_cpus, paths, state, options.merge)
        except Exception as error:
            raise _user_error(error) from error
    summary.files = len(settings["files"])
    summary.seconds = time.perf_counter() - started
    return summary


def own_ray_settings(address: str | None) -> dict[str, Any]:
    """``ray.init`` settings for a Ray that tango starts itself (no address given, none in
    ``$RAY_ADDRESS``): idle worker processes kept (``KEEP_IDLE_WORKERS``). A running cluster
    keeps its own settings (Ray refuses them when connecting)."""
    if address is not None or os.environ.get("RAY_ADDRESS"):
        return {}
    return {"_system_config": dict(KEEP_IDLE_WORKERS)}


def _passes(
    pipeline: Pipeline,
    scoring: dict[str, Any],
    alone_cpus: float,
    paths: list[str],
    state: dict[str, Any],
    merge: str | None,
) -> DistributedSummary:
    """The run's Ray Data executions, each recorded in run.json once it finished.

    ``scoring``: the run's settings. The scoring pass runs first, so its actors start at once;
    the index (and its errors) follows it, on the worker processes the scoring pass's read and
    write tasks leave idle: its seconds on a fresh cluster are mostly Ray starting those
    processes (why not beside it, from a thread: docs/distributed.md, "The passes of a run").
    With ``on_error="fail"`` the index runs first, so a bad row stops the run before any model
    loads. The passes that run without actors (index, errors, check, merge) get tasks of
    ``alone_cpus`` (a whole CPU, at most a node's): with a quarter CPU each, Ray starts up to four
    worker processes per CPU for them, and on a small node starting those costs more than the
    work (the check of 12,000 rows took 6-10 s instead of 3 s).
    """
    ray = pipeline.ray
    alone = {**scoring, "read_cpus": alone_cpus}
    seconds: dict[str, float] = {}
    index, indexed = state.get("index_totals"), state.get("indexed")
    if not indexed and scoring["on_error"] == "fail":
        index, indexed = _index_pass(ray, alone, scoring, paths, seconds), True
    if not state.get("scored"):
        with _timed(seconds, "scoring"):
            write_output(checkpointed(pipeline, scoring, paths), scoring)
        update_run(scoring, scored=True)
    if not indexed:
        index = _index_pass(ray, alone, scoring, paths, seconds)
    with _timed(seconds, "check"):
        summary = check_exactly_once(ray, alone, index)
    update_run(scoring, complete=True)
    remove(checkpoint_dir(scoring), scoring.get("filesystem"))
    if merge:
        with _timed(seconds, "merge"):
            merge_output(ray, alone, merge)
    summary.passes = seconds
    return summary


def _index_pass(
    ray: Any, tasks: dict[str, Any], scoring: dict[str, Any], paths: list[str], seconds: dict[str, float]
) -> dict[str, int]:
    """The index and its errors written with ``tasks``' CPUs per task, recorded in run.json;
    its totals."""
    with _timed(seconds, "index"):
        index = write_index(ray, tasks, paths)
        write_errors(ray, tasks, index["bad"])
    update_run(scoring, indexed=True, index_totals=index, settings=recorded(scoring))
    return index


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "the Ray engine needs Ray Data: pip install 'tango[ray]' (ray[data] >= 2.40)"
        ) from error
    return ray


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
    cascade: Cascade, inputs: str | Sequence[str], output: str, options: RayOptions
) -> tuple[dict[str, Any], list[str]]:
    """Validate the options into the plain dict the datasource, the check and merge share.

    It is JSON (run.json keeps it, and a resumed run must match it) and small enough to ship to
    every read task.
    """
    _refuse(options)
    paths = expand_inputs(inputs)
    local = _on_this_machine(options.filesystem)
    columns = _columns(paths, options, local)
    if local:
        check_inputs(paths, columns, options.format)
    output = str(output).rstrip("/")
    settings = {
        "inputs": paths,
        "output": output,
        "errors": str(options.errors_dir).rstrip("/") if options.errors_dir else f"{output}.errors",
        "sidecar": f"{output}.tango",
        "text_column": columns["text"],
        "pair_column": columns["pair"],
        "id_column": columns["id"],
        "format": options.format,
        "output_format": options.output_format,
        "on_error": options.on_error,
        "probabilities": options.probabilities,
        "labels": [str(label) for label in cascade.classes_],
        "line_ids": columns["id"] is None and len(paths) == 1 and not is_dir(paths[0], options.filesystem),
        "block_rows": options.block_rows,
        "read_cpus": options.read_cpus,
        "filesystem": options.filesystem,  # not data: left out of run.json
    }
    if options.block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {options.block_rows}")
    return settings, paths


def _refuse(options: RayOptions) -> None:
    """Options no run can have, refused before the inputs are looked at."""
    if options.on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {options.on_error!r}")
    if options.output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {options.output_format!r}")
    if options.fuse_tiers and options.tier2 != Stage():
        raise ValueError(
            "fuse_tiers runs one pool of whole-cascade actors sized by tier1: tier2 does not apply"
        )
    merge = options.merge
    if merge and Path(merge).suffix.lower() not in (".jsonl", ".csv"):
        raise ValueError(f"cannot merge into {merge}: the merged file must end in .jsonl or .csv")


def _on_this_machine(filesystem: Any) -> bool:
    """Whether input paths without a scheme are files of this machine (no other file system given)."""
    import pyarrow.fs as pafs

    return filesystem is None or isinstance(filesystem, pafs.LocalFileSystem)


def _columns(paths: list[str], options: RayOptions, on_this_machine: bool) -> dict[str, str | None]:
    """The text, pair and id columns: those given, else guessed from the first input as the local
    engine guesses them (text: the first of text, sentence, ...; id: the input's ``id`` column).
    Remote inputs are not opened on the driver: their text column defaults to ``text``."""
    local = on_this_machine and "://" not in paths[0] and Path(paths[0]).is_file()
    text_column, pair_column = options.text_column, options.text_pair_column
    if text_column is None:
        guessed = guess_columns(paths[0], options.format, label=False) if local else ("text", None, None)
        text_column, pair_column = guessed[0], pair_column or guessed[1]
    id_column = options.id_column
    if id_column is None and local and "id" in columns_of(paths[0], options.format):
        id_column = "id"  # as the local engine: the input's id column is the default id
    return {"text": text_column, "pair": pair_column, "id": id_column}
