"""Batch scoring on Ray Data: the engine of ``tango run --engine ray`` (``pip install 'tango[ray]'``).

The job is one Ray Data pipeline, shaped the way Ray users already write batch inference::

    read (tango's own reader, one read task per input file)
      -> map_batches(Tier1Scorer, ActorPoolStrategy)   every row: tier 1's answer and confidence
      -> map_batches(Tier2Scorer, ActorPoolStrategy)   only rows tier 1 left unsure are scored,
                                                         the others pass through; output columns
      -> write_json / write_csv / write_parquet        shards in the OUTPUT directory

One module per concern: :mod:`~tango.engines.ray.plan` (stage resources, the cluster check, the
cascade as data for the actors), :mod:`~tango.engines.ray.read` (tango's reader as a Ray
datasource; bad rows to ``<OUTPUT>.errors/<key>.errors.jsonl`` in the local errors format),
:mod:`~tango.engines.ray.actors` (the two stages; rows formatted by the local engine's
:class:`tango.writers.RowWriter`, so both engines write the same columns and values),
:mod:`~tango.engines.ray.pipeline` (the Ray Data graph and its two resumable ways to run),
:mod:`~tango.engines.ray.resume` (``run.json``), :mod:`~tango.engines.ray.output` (the
exactly-once check and ``--merge``), :mod:`~tango.engines.ray.storage` (local paths or URIs),
and :mod:`~tango.engines.ray.run` (:func:`score`, start to end).

Beside the output, ``<OUTPUT>.tango/`` keeps the run's bookkeeping: ``run.json`` (parameters,
resume mode, completion), ``inputs/<key>.parquet`` (each input file's ids in input order, with
which rows were bad: the exactly-once check and ``--merge`` read them), and either Ray Data's
id-column checkpoint (``checkpoint/``, where the installed Ray has it) or per-input-file
completion markers (``done/<key>``) that ``resume=True`` continues from. Every run ends with a
check that each input id is in the output exactly once or is an error row.

Ray itself is imported only when a run starts: importing this package does not need it.
"""

from tango.engines.ray.actors import Tier1Scorer, Tier2Scorer
from tango.engines.ray.output import DistributedSummary, check_exactly_once, merge_output, read_output
from tango.engines.ray.plan import CascadeSpec, Stage
from tango.engines.ray.read import expand_inputs
from tango.engines.ray.resume import checkpointing_available
from tango.engines.ray.run import RayOptions, score

__all__ = [
    "CascadeSpec",
    "DistributedSummary",
    "RayOptions",
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
