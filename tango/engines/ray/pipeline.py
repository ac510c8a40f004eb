"""The Ray Data pipeline of a run, and the two ways it runs so that it can resume.

read -> tier-1 actor pool -> tier-2 actor pool -> write, either once over all inputs under Ray
Data's id-column checkpoint, or once per input file with a completion marker after each (where
the installed Ray has no checkpointing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tango.engines.ray.plan import ID, CascadeSpec, Stage
from tango.engines.ray.read import datasource_class, file_keys
from tango.engines.ray.storage import exists, fs_of, remove, write_bytes


@dataclass(frozen=True)
class Pipeline:
    """What every pipeline of one run shares: Ray, the cascade as data, each stage's resources
    and the two actor classes (swapped for subclasses in fault-injection tests)."""

    ray: Any
    spec: CascadeSpec
    tier1: Stage
    tier2: Stage
    read_cpus: float
    actor_classes: tuple[type, type]


def write(pipeline: Pipeline, settings: dict[str, Any], paths: list[str], target: str) -> None:
    """read -> tier-1 actors -> tier-2 actors -> write, for ``paths`` into directory ``target``."""
    from ray.data import ActorPoolStrategy

    first_class, second_class = pipeline.actor_classes
    tier1, tier2 = pipeline.tier1, pipeline.tier2
    source = datasource_class()(paths, settings=settings)
    ds = pipeline.ray.data.read_datasource(source, num_cpus=pipeline.read_cpus)
    ds = ds.map_batches(
        first_class,
        fn_constructor_kwargs={"spec": pipeline.spec, "threads": tier1.threads},
        batch_size=tier1.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=1, max_size=tier1.actors),
        num_cpus=tier1.cpus,
    )
    ds = ds.map_batches(
        second_class,
        fn_constructor_kwargs={
            "spec": pipeline.spec,
            "threads": tier2.threads,
            "probabilities": settings["probabilities"],
            "line_ids": settings["line_ids"],
        },
        batch_size=tier2.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=1, max_size=tier2.actors),
        num_cpus=tier2.cpus,
    )
    fs, local = fs_of(target)
    remote = {"num_cpus": pipeline.read_cpus}
    if settings["output_format"] == "jsonl":
        ds.write_json(local, filesystem=fs, ray_remote_args=remote, force_ascii=False)
    elif settings["output_format"] == "csv":
        ds.write_csv(local, filesystem=fs, ray_remote_args=remote)
    else:
        ds.write_parquet(local, filesystem=fs, ray_remote_args=remote)


def run_checkpointed(pipeline: Pipeline, settings: dict[str, Any], paths: list[str]) -> None:
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
        write(pipeline, settings, paths, settings["output"])
    finally:
        context.checkpoint_config = previous


def run_by_markers(pipeline: Pipeline, settings: dict[str, Any], paths: list[str]) -> None:
    """One pipeline per input file into ``OUTPUT/<key>/``; a marker records each finished file.

    The fallback where Ray has no checkpointing: an interrupted file is redone from its start
    (its partial shards are deleted first), finished files are skipped.
    """
    for real, key in sorted(file_keys(settings, paths).items(), key=lambda item: item[1]):
        marker = f"{settings['sidecar']}/done/{key}"
        if exists(marker):
            continue
        remove(f"{settings['output']}/{key}")
        write(pipeline, settings, [real], f"{settings['output']}/{key}")
        write_bytes(marker, b"")
