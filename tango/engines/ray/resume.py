"""``<OUTPUT>.tango/run.json``: a fresh run, or the same interrupted one continued.

A fresh run refuses an existing output unless told to overwrite it and records its settings; a
resumed run must have the same inputs, columns, formats and labels. run.json also records how
far the run got (``indexed``, ``scored``, ``complete``), so a resumed run skips the passes that
finished; the scoring pass itself resumes by Ray Data's id-column checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

from tango.engines.ray.storage import has_files, read_bytes, remove, write_bytes

RUN_KEYS = ("inputs", "files", "text_column", "pair_column", "id_column", "format", "output_format")
RUN_KEYS += ("labels",)  # a resumed run must be the same run
ERROR_KEYS = ("errors", "on_error")  # may change on resume: the index and errors are then redone
STEPS = ("indexed", "scored", "complete")
RECORDED = "filesystem"  # a setting that is not data: never written to run.json


def checkpointing_available() -> bool:
    """Ray Data's id-column checkpointing (``ray.data.checkpoint``, beta) is importable here."""
    try:
        from ray.data import DataContext
        from ray.data.checkpoint import CheckpointConfig  # noqa: F401
    except ImportError:
        return False
    return hasattr(DataContext, "checkpoint_config")


def require_checkpointing() -> None:
    """The engine resumes only by Ray Data's checkpoint: refuse a Ray without it, at once."""
    if not checkpointing_available():
        raise ImportError(
            "the Ray engine resumes by Ray Data's checkpoint (ray.data.checkpoint.CheckpointConfig), "
            "which this Ray lacks: pip install -U 'ray[data]' (ray 2.60 has it)"
        )


def _run_file(settings: dict[str, Any]) -> str:
    return f"{settings['sidecar']}/run.json"


def prepare(settings: dict[str, Any], resume: bool, overwrite: bool) -> dict[str, Any]:
    """Start a fresh run, or check an interrupted one is the same run; return its recorded state."""
    return _continued(settings) if resume else _fresh(settings, overwrite)


def _continued(settings: dict[str, Any]) -> dict[str, Any]:
    """The interrupted run's state, once its run.json says it is this run and unfinished."""
    filesystem = settings.get("filesystem")
    raw = read_bytes(_run_file(settings), filesystem)
    if raw is None:
        raise ValueError(
            f"cannot resume: {_run_file(settings)} is missing (was {settings['output']} a Ray run?)"
        )
    previous = json.loads(raw)
    if previous.get("complete"):
        raise ValueError(f"{settings['output']} looks complete: {_run_file(settings)} says the run finished")
    for key in RUN_KEYS:
        if previous["settings"].get(key) != settings[key]:
            raise ValueError(
                f"cannot resume {settings['output']}: {key} was {previous['settings'].get(key)!r}, "
                f"now {settings[key]!r}"
            )
    if any(previous["settings"].get(key) != settings[key] for key in ERROR_KEYS):
        previous["indexed"] = False  # e.g. --on-error fail stopped it, and it resumes with write
    if not previous.get("scored") and not has_files(f"{settings['sidecar']}/checkpoint", filesystem):
        remove(settings["output"], filesystem)  # killed before its first checkpoint: no shard is committed
    return previous


def _fresh(settings: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Clear what an earlier run left (only with ``overwrite``) and record this run."""
    filesystem = settings.get("filesystem")
    targets = (settings["output"], settings["errors"], settings["sidecar"])
    if any(has_files(path, filesystem) for path in targets) and not overwrite:
        raise ValueError(
            f"{settings['output']} already exists; pass --resume to finish an interrupted run "
            f"or --overwrite to start again"
        )
    for path in targets:
        remove(path, filesystem)
    state = {"settings": recorded(settings), **dict.fromkeys(STEPS, False)}
    write_bytes(_run_file(settings), json.dumps(state).encode(), filesystem)
    return state


def recorded(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as run.json keeps them (plain data: the file system object left out)."""
    return {key: value for key, value in settings.items() if key != RECORDED}


def update_run(settings: dict[str, Any], /, **changes: Any) -> None:
    """Record the passes a run has finished (``complete=True`` once the exactly-once check passed)."""
    filesystem = settings.get("filesystem")
    state = json.loads(read_bytes(_run_file(settings), filesystem) or b"{}")
    state.update(changes)
    write_bytes(_run_file(settings), json.dumps(state).encode(), filesystem)
