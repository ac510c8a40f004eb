"""After the scoring pass: the output shards as a dataset, and the exactly-once check on Ray.

Every run ends with the check that each good input row's id (from the run's index) is in the
output exactly once, and that the errors destination holds one line per bad row. It runs as Ray
Data operations, not in the driver's memory, in one of two ways:

- **fingerprints** (ids tango made: line numbers or ``<file>:<line>``, unique by construction):
  one map-only pass over the output read back sums its row count and a 128-bit fingerprint of
  its ids (:func:`~tango.engines.ray.fingerprint.fingerprint`: the sum of each id's BLAKE2b
  digest, modulo 2**64 in two halves), and compares them with the good input rows' (summed by the
  index's write tasks as they wrote it, recorded in run.json; read back when not recorded), so
  equal counts and fingerprints mean the output's ids are the good input ids, each once (two
  different multisets of ids agree by chance with probability about 2**-64).
- **group-by** (an id column the user gave, whose uniqueness nothing guarantees; or any run whose
  fingerprints disagree, to name its faults): the index's ids and the output's ids, each tagged
  with the side it came from, are unioned and grouped by id (``groupby(id)`` summing the two
  tags); the ids whose sums are not one and one are the faults. A shuffle: on a small cluster it
  costs several seconds more than the fingerprint pass.

Only totals and a few examples reach the driver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tango.engines.ray.context import shuffling
from tango.engines.ray.fingerprint import MASK, fingerprint, index_totals
from tango.engines.ray.index import good_rows, index_dataset
from tango.engines.ray.plan import ID
from tango.engines.ray.storage import fs_of, has_files


@dataclass
class DistributedSummary:
    """Totals of a Ray run, read back from its outputs after the exactly-once check."""

    rows_in: int = 0
    rows_out: int = 0
    errors: int = 0  # bad rows (in the errors output, or skipped with on_error="skip")
    seconds: float = 0.0
    tiers: dict[str, int] = field(default_factory=dict)  # output tier value -> rows it answered
    resume_mode: str = "checkpoint"
    files: int = 0
    passes: dict[str, float] = field(default_factory=dict)  # seconds of each pass this run ran

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
        if self.passes:
            lines.append("passes: " + ", ".join(f"{name} {took:.1f} s" for name, took in self.passes.items()))
        for tier, rows in sorted(self.tiers.items()):
            share = rows / self.rows_out if self.rows_out else 0.0
            lines.append(f"tier {tier}: answered {share:6.1%} of rows")
        return "\n".join(lines)


def _as_line_ids(batch: Any) -> Any:
    """CSV shards hold ids as text; a line-number id is an integer, as the local engine writes it."""
    import pyarrow as pa

    return batch.set_column(batch.column_names.index(ID), ID, batch[ID].cast(pa.int64()))


def output_dataset(ray: Any, settings: dict[str, Any]) -> Any:
    """All output shards as one dataset (ids and labels kept as text in CSV shards)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    filesystem = settings.get("filesystem")
    if not has_files(settings["output"], filesystem):  # no shard at all: every row was bad
        return ray.data.from_arrow(pa.table({ID: pa.array([], pa.string())}))
    fs, where = fs_of(settings["output"], filesystem)
    cpus = settings.get("read_cpus", 1.0)
    kind = settings["output_format"]
    if kind == "csv":
        types = pcsv.ConvertOptions(column_types={ID: pa.string(), "label": pa.string()})
        ds = ray.data.read_csv(where, filesystem=fs, convert_options=types, num_cpus=cpus)
        if settings["line_ids"]:
            ds = ds.map_batches(_as_line_ids, batch_format="pyarrow", num_cpus=cpus)
        return ds
    if kind == "jsonl":
        return ray.data.read_json(where, filesystem=fs, num_cpus=cpus)
    return ray.data.read_parquet(where, filesystem=fs, num_cpus=cpus)


def read_output(settings: dict[str, Any], columns: list[str] | None = None) -> Any:
    """All output shards as one Arrow table, for looking at a small run's output (needs Ray)."""
    import pyarrow as pa
    import ray

    ds = output_dataset(ray, settings)
    blocks = [pa.table(block) for block in ray.get(ds.to_arrow_refs())]
    table = pa.concat_tables(blocks, promote_options="default") if blocks else pa.table({ID: []})
    return table.select(columns) if columns else table


def _tagged(batch: Any, side: int) -> Any:
    """Ids as text with a count of one on their side (0: the input's good rows, 1: the output)."""
    import pyarrow as pa

    ones, zeros = np.ones(len(batch), np.int64), np.zeros(len(batch), np.int64)
    sides = (ones, zeros) if side == 0 else (zeros, ones)
    return pa.table({ID: batch[ID].cast(pa.string()), "in": sides[0], "out": sides[1]})


PROBLEMS = {
    "repeated": "input ids appear more than once (the id column must be unique)",
    "twice": "output ids appear more than once (a row was written twice)",
    "missing": "input ids missing from the output",
    "extra": "output ids not in the input",
}


def _problems(batch: Any) -> Any:
    """The ids not seen exactly once on each side, each with the kind of fault."""
    import pyarrow as pa

    seen_in, seen_out = batch["in"].to_numpy(), batch["out"].to_numpy()
    kind = np.select([seen_in > 1, seen_out > 1, seen_out == 0, seen_in == 0], list(PROBLEMS), default="")
    keep = kind != ""
    return pa.table({ID: batch[ID].filter(pa.array(keep)), "kind": kind[keep], "times": seen_out[keep]})


def id_faults(ray: Any, settings: dict[str, Any]) -> list[str]:
    """Each kind of exactly-once fault with its count and a few ids (empty when all is well): the
    good input ids and the output ids, tagged by side, unioned and grouped by id."""
    from ray.data.aggregate import Sum

    cpus = settings["read_cpus"]
    with shuffling():
        inputs = good_rows(index_dataset(ray, settings), cpus)
        inputs = inputs.map_batches(_tagged, fn_kwargs={"side": 0}, batch_format="pyarrow", num_cpus=cpus)
        outputs = output_dataset(ray, settings).select_columns([ID])
        outputs = outputs.map_batches(_tagged, fn_kwargs={"side": 1}, batch_format="pyarrow", num_cpus=cpus)
        sums = (Sum("in", alias_name="in"), Sum("out", alias_name="out"))
        counts = inputs.union(outputs).groupby(ID).aggregate(*sums)
        problems = counts.map_batches(_problems, batch_format="pyarrow", num_cpus=cpus).materialize()
    if not problems.count():
        return []
    faults = []
    for kind, text in PROBLEMS.items():
        of_kind = problems.filter(lambda row, kind=kind: row["kind"] == kind).materialize()
        if of_kind.count():
            shown = [
                f"{row[ID]!r}" + (f" x{row['times']}" if kind == "twice" else "") for row in of_kind.take(3)
            ]
            faults.append(f"{of_kind.count()} {text} (e.g. {', '.join(shown)})")
    return faults


TOTALS = ("inputs", "bad", "outputs", "errors")


def _partial_totals(batch: Any, side: str) -> Any:
    """One batch's share of the run's totals, as one row: input rows and bad ones and the good
    rows' id fingerprint (index), output rows, the tiers that answered them and their id
    fingerprint (output), error lines (errors destination)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    row = dict.fromkeys(TOTALS, 0)
    tiers = "{}"
    low = high = 0
    if side == "index":
        found = index_totals(batch)
        row["inputs"], row["bad"], low, high = found["inputs"], found["bad"], found["low"], found["high"]
    elif side == "output":
        row["outputs"] = len(batch)
        counts = pc.value_counts(batch["tier"]).to_pylist() if "tier" in batch.column_names else []
        tiers = json.dumps({str(item["values"]): item["counts"] for item in counts})
        low, high = fingerprint(batch[ID].to_pylist())
    else:
        row["errors"] = len(batch)
    columns = {**{key: [value] for key, value in row.items()}, "tiers": [tiers], "side": [side]}
    return pa.table({**columns, "low": pa.array([low], pa.uint64()), "high": pa.array([high], pa.uint64())})


def _sides(ray: Any, settings: dict[str, Any], read_index: bool) -> Any:
    """Output, errors lines and (``read_index``) the index as datasets of partial totals, one row
    per batch."""
    cpus = settings["read_cpus"]
    sides = {"output": output_dataset(ray, settings)}
    if read_index:
        sides["index"] = index_dataset(ray, settings)
    if settings["on_error"] == "write" and has_files(settings["errors"], settings.get("filesystem")):
        fs, where = fs_of(settings["errors"], settings.get("filesystem"))
        sides["errors"] = ray.data.read_text(where, filesystem=fs, num_cpus=cpus)
    partial = [
        ds.map_batches(_partial_totals, fn_kwargs={"side": side}, batch_format="pyarrow", num_cpus=cpus)
        for side, ds in sides.items()
    ]
    return partial[0].union(*partial[1:]) if len(partial) > 1 else partial[0]


@dataclass
class Totals:
    """A finished run's totals as the workers summed them batch by batch (``counts``: input rows,
    bad rows, output rows, error lines; ``tiers``: rows per answering tier; ``prints``: each
    side's id fingerprint)."""

    counts: dict[str, int]
    tiers: dict[str, int]
    prints: dict[str, tuple[int, int]]

    @property
    def ids_match(self) -> bool:
        """Whether the output holds the good input rows' ids, each once (by count and fingerprint)."""
        good = self.counts["inputs"] - self.counts["bad"]
        return self.counts["outputs"] == good and self.prints["index"] == self.prints["output"]


def totals(ray: Any, settings: dict[str, Any], index: dict[str, int] | None = None) -> Totals:
    """The run's totals, rows per answering tier and id fingerprints, summed by the workers batch
    by batch; the driver adds up one small row per batch. ``index``: the index's totals as its
    write tasks summed them (:func:`tango.engines.ray.index.write_index`), else the index is
    read back too."""
    counts = dict.fromkeys(TOTALS, 0)
    tiers: dict[str, int] = {}
    sums = {side: [0, 0] for side in ("index", "output", "errors")}
    if index is not None:
        counts["inputs"], counts["bad"] = index["inputs"], index["bad"]
        sums["index"] = [index["low"], index["high"]]
    for row in _sides(ray, settings, read_index=index is None).take_all():
        for key in TOTALS:
            counts[key] += row[key]
        for tier, count in json.loads(row["tiers"]).items():
            tiers[tier] = tiers.get(tier, 0) + count
        sums[row["side"]][0] += row["low"]
        sums[row["side"]][1] += row["high"]
    prints = {side: (low & MASK, high & MASK) for side, (low, high) in sums.items()}
    return Totals(counts, tiers, prints)


def check_exactly_once(
    ray: Any, settings: dict[str, Any], index: dict[str, int] | None = None
) -> DistributedSummary:
    """Raise ValueError unless every good input id is in the output once and every bad row is in
    the errors destination (``on_error="write"``); the run's totals otherwise.

    One pass of totals and fingerprints over the output read back (and the index, unless its
    totals are given: the run records them as the index is written); the group-by runs too when
    the ids come from a column (it also proves them unique) or when the fingerprints disagree (it
    names the faulty ids)."""
    found = totals(ray, settings, index)
    if settings["id_column"] is not None or not found.ids_match:
        faults = id_faults(ray, settings)
        if not faults and not found.ids_match:  # the group-by found nothing the fingerprints did
            faults = ["the output's ids are not the good input ids (their counts or fingerprints differ)"]
        if faults:
            raise ValueError(f"exactly-once check failed for {settings['output']}: " + "; ".join(faults))
    counts = found.counts
    if settings["on_error"] == "write" and counts["errors"] != counts["bad"]:
        bad, written = counts["bad"], counts["errors"]
        raise ValueError(
            f"exactly-once check failed: {bad} bad input rows, {written} in {settings['errors']}"
        )
    return DistributedSummary(
        rows_in=counts["inputs"], rows_out=counts["outputs"], errors=counts["bad"], tiers=found.tiers
    )
