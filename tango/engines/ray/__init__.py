"""Batch scoring on Ray Data: the engine of ``tango run --engine ray`` (``pip install 'tango[ray]'``).

A run is a few Ray Data executions, the scoring one shaped the way Ray users already write
batch inference::

    index    read (tango's reader, every row, no text) -> write_parquet(<OUTPUT>.tango/index/)
    errors   read_parquet(index) -> bad rows -> their own sink (--errors, default <OUTPUT>.errors/)
    scoring  read (tango's reader, good rows, one read task per input file)
               -> map_batches(Tier1Scorer, ActorPoolStrategy)   every row: tier 1's answer
               -> map_batches(Tier2Scorer, ActorPoolStrategy)   unsure rows scored, others pass
               -> write_json / write_csv / write_parquet        shards in OUTPUT, checkpointed
    check    index ids + output ids -> union -> groupby(id) -> ids not seen once on each side
    merge    index places + output rows -> groupby(id) -> sort(file, line) -> one file (--merge)

One module per concern: :mod:`~tango.engines.ray.plan` (stage resources, the cluster check, the
cascade as data for the actors), :mod:`~tango.engines.ray.read` (tango's reader as a Ray
datasource), :mod:`~tango.engines.ray.index` (the index pass and the errors' sink),
:mod:`~tango.engines.ray.actors` (the two stages; rows formatted by the local engine's
:class:`tango.writers.RowWriter`, so both engines write the same columns and values),
:mod:`~tango.engines.ray.pipeline` (the checkpointed scoring graph),
:mod:`~tango.engines.ray.resume` (``run.json``), :mod:`~tango.engines.ray.output` (the output as
a dataset, the exactly-once check), :mod:`~tango.engines.ray.merge` (``--merge``),
:mod:`~tango.engines.ray.context` (Ray Data settings per execution),
:mod:`~tango.engines.ray.storage` (local paths, URIs, a given pyarrow file system), and
:mod:`~tango.engines.ray.run` (:func:`score`, start to end).

Beside the output, ``<OUTPUT>.tango/`` keeps the run's bookkeeping: ``run.json`` (parameters,
the passes finished), ``index/`` (every input row's id, file, line and fault) and Ray Data's
id-column checkpoint (``checkpoint/``, deleted once the run is complete) that ``resume=True``
continues from. Every run ends with a check that each input id is in the output exactly once or
is an error row.

Ray itself is imported only when a run starts: importing this package does not need it.
"""

from tango.engines.ray.actors import Tier1Scorer, Tier2Scorer
from tango.engines.ray.merge import merge_output
from tango.engines.ray.output import DistributedSummary, check_exactly_once, read_output
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
