"""``<OUTPUT>.tango/run.json``: a fresh run, or the same interrupted one continued.

A fresh run refuses an existing output unless told to overwrite it, and records its settings and
resume mode; a resumed run must have the same inputs, columns, formats and labels, and continues
in the mode it recorded: Ray Data's id-column checkpoint, or per-input-file markers.
"""

from __future__ import annotations

import json
from typing import Any

from tango.engines.ray.storage import has_files, read_bytes, remove, write_bytes


def checkpointing_available() -> bool:
    """Ray Data's id-column checkpointing (beta; Ray >= 2.50 or so) is importable here."""
    try:
        from ray.data import DataContext
        from ray.data.checkpoint import CheckpointConfig  # noqa: F401
    except ImportError:
        return False
    return hasattr(DataContext, "checkpoint_config")


RUN_KEYS = ("inputs", "files", "text_column", "pair_column", "id_column", "format", "output_format")
RUN_KEYS += ("labels",)  # a resumed run must be the same run


def prepare(settings: dict[str, Any], resume: bool, overwrite: bool) -> str:
    """Start a fresh run, or check an interrupted one is the same run; return the resume mode."""
    return _continued(settings) if resume else _fresh(settings, overwrite)


def _continued(settings: dict[str, Any]) -> str:
    """The interrupted run's resume mode, once its run.json says it is this run and unfinished."""
    run_file = f"{settings['sidecar']}/run.json"
    raw = read_bytes(run_file)
    if raw is None:
        raise ValueError(f"cannot resume: {run_file} is missing (was {settings['output']} a Ray run?)")
    previous = json.loads(raw)
    if previous.get("complete"):
        raise ValueError(f"{settings['output']} looks complete: {run_file} says the run finished")
    for key in RUN_KEYS:
        if previous["settings"].get(key) != settings[key]:
            raise ValueError(
                f"cannot resume {settings['output']}: {key} was {previous['settings'].get(key)!r}, "
                f"now {settings[key]!r}"
            )
    if previous["mode"] == "checkpoint" and not has_files(f"{settings['sidecar']}/checkpoint"):
        remove(settings["output"])  # killed before its first checkpoint: no shard is committed
    return previous["mode"]


def _fresh(settings: dict[str, Any], overwrite: bool) -> str:
    """Clear what an earlier run left (only with ``overwrite``) and record this run's mode."""
    targets = (settings["output"], settings["errors"], settings["sidecar"])
    if any(has_files(path) for path in targets) and not overwrite:
        raise ValueError(
            f"{settings['output']} already exists; pass --resume to finish an interrupted run "
            f"or --overwrite to start again"
        )
    for path in targets:
        remove(path)
    wanted = settings["resume_by"]
    if wanted == "checkpoint" and not checkpointing_available():
        raise ValueError("this Ray has no Ray Data checkpointing; use resume_by='markers' or 'auto'")
    mode = "checkpoint" if wanted != "markers" and checkpointing_available() else "markers"
    run_file = f"{settings['sidecar']}/run.json"
    write_bytes(run_file, json.dumps({"settings": settings, "mode": mode, "complete": False}).encode())
    return mode


def recorded_mode(settings: dict[str, Any]) -> str | None:
    """The resume mode an interrupted run recorded (None: no run recorded)."""
    raw = read_bytes(f"{settings['sidecar']}/run.json")
    return json.loads(raw).get("mode") if raw else None


def update_run(settings: dict[str, Any], **changes: Any) -> None:
    """Change run.json's fields (``complete=True`` once the exactly-once check passed)."""
    run_file = f"{settings['sidecar']}/run.json"
    state = json.loads(read_bytes(run_file) or b"{}")
    state.update(changes)
    write_bytes(run_file, json.dumps(state).encode())
