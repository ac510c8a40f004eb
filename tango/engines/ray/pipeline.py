"""The scoring pipeline of a run, resumable by Ray Data's id-column checkpoint.

read (good rows) -> tier-1 actor pool -> tier-2 actor pool -> write, once over all inputs (fused:
read -> one pool of whole-cascade actors -> write). Ray
Data records each written block's ids under ``<OUTPUT>.tango/checkpoint/`` (a pending file
before the block is written, committed after), and on resume drops the rows already written
right after the read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tango.engines.ray.actors import CascadeScorer
from tango.engines.ray.context import data_context
from tango.engines.ray.plan import ID, CascadeSpec, Stage
from tango.engines.ray.read import datasource_class
from tango.engines.ray.storage import fs_of


@dataclass(frozen=True)
class Pipeline:
    """What the scoring pipeline needs: Ray, the cascade as data, each stage's resources and the
    two actor classes (swapped for subclasses in fault-injection tests). ``fused``: one pool of
    whole-cascade actors, sized by ``tier1``, instead of a pool per tier."""

    ray: Any
    spec: CascadeSpec
    tier1: Stage
    tier2: Stage
    actor_classes: tuple[type, type]
    fused: bool = False


def checkpoint_dir(settings: dict[str, Any]) -> str:
    return f"{settings['sidecar']}/checkpoint"


def scored(pipeline: Pipeline, settings: dict[str, Any], paths: list[str]) -> Any:
    """read -> tier-1 actors -> tier-2 actors (fused: -> whole-cascade actors): the dataset of
    output rows (not yet executed)."""
    first_class, second_class = pipeline.actor_classes
    source = datasource_class()(paths, settings=settings, rows="good")
    ds = pipeline.ray.data.read_datasource(source, num_cpus=settings["read_cpus"])
    writes = {"probabilities": settings["probabilities"], "line_ids": settings["line_ids"]}
    if pipeline.fused:
        return _pool(ds, CascadeScorer, pipeline.tier1, spec=pipeline.spec, **writes)
    ds = _pool(ds, first_class, pipeline.tier1, spec=pipeline.spec)
    return _pool(ds, second_class, pipeline.tier2, spec=pipeline.spec, **writes)


def _pool(ds: Any, actor: type, stage: Stage, **arguments: Any) -> Any:
    """``ds`` through an autoscaling pool of ``actor`` (``stage.min_actors`` to ``stage.actors``),
    each built with ``arguments`` and the stage's threads."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(
        actor,
        fn_constructor_kwargs={**arguments, "threads": stage.threads},
        batch_size=stage.batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=stage.min_actors, max_size=stage.actors),
        num_cpus=stage.cpus,
    )


def write_output(ds: Any, settings: dict[str, Any]) -> None:
    """The output rows as shards of ``--output-format`` in the OUTPUT directory."""
    fs, where = fs_of(settings["output"], settings.get("filesystem"))
    remote = {"num_cpus": settings["read_cpus"]}
    if settings["output_format"] == "jsonl":
        ds.write_json(where, filesystem=fs, ray_remote_args=remote, force_ascii=False)
    elif settings["output_format"] == "csv":
        ds.write_csv(where, filesystem=fs, ray_remote_args=remote)
    else:
        ds.write_parquet(where, filesystem=fs, ray_remote_args=remote)


def checkpointed(pipeline: Pipeline, settings: dict[str, Any], paths: list[str]) -> Any:
    """The scoring pipeline's dataset under Ray Data's checkpoint, keyed by the id column.

    A dataset keeps a copy of the ``DataContext`` it was built in: this one runs checkpointed
    wherever it is written, and datasets built after it (the index's) are not. The checkpoint
    is kept when the write succeeds (the run deletes it once the exactly-once check has
    passed), so a driver killed between the two resumes without scoring again.
    """
    from ray.data.checkpoint import CheckpointConfig

    fs, where = fs_of(checkpoint_dir(settings), settings.get("filesystem"))
    config = CheckpointConfig(
        id_column=ID, checkpoint_path=where, override_filesystem=fs, delete_checkpoint_on_success=False
    )
    with data_context(checkpoint_config=config):
        return scored(pipeline, settings, paths)
