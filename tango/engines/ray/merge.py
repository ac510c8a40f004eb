"""``--merge``: the shards as one file in input order, in the local engine's format.

The order is restored by Ray Data, not in the driver's memory: each output row is paired with
its input place (file, line) from the run's index by a ``groupby(id)``, the pairs are sorted by
(file, line) with a distributed ``sort``, and the driver streams the sorted batches into the
file, holding one batch at a time. The bad rows go beside it (``FILE.errors.jsonl``), sorted the
same way. The merged file is on the driver's disk: it is for users who want one file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from tango.engines.ray.context import shuffling
from tango.engines.ray.index import bad_rows, error_lines, error_paths, good_rows, index_dataset
from tango.engines.ray.output import output_dataset
from tango.engines.ray.plan import ID
from tango.writers import RowWriter

MERGE_BATCH = 4096  # rows the driver holds at a time


def _keyed_places(batch: Any) -> Any:
    """A good input row's id and place, with no output row yet."""
    import pyarrow as pa

    return pa.table(
        {
            ID: batch[ID],
            "file": batch["file"],
            "line": batch["line"],
            "row": pa.nulls(len(batch), pa.string()),
        }
    )


def _keyed_rows(batch: Any) -> Any:
    """An output row as the JSON text the local engine writes, keyed by its id, with no place yet."""
    import pyarrow as pa

    rows = [json.dumps(row, ensure_ascii=False) for row in batch.to_pylist()]
    missing = np.full(len(batch), -1, np.int64)
    return pa.table(
        {
            ID: batch[ID].cast(pa.string()),
            "file": missing,
            "line": missing,
            "row": pa.array(rows, pa.string()),
        }
    )


def _paired(group: Any) -> Any:
    """One id's input place and output row as one row (the check made sure there is one of each)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    place = group.filter(pc.is_null(group["row"]))
    row = group.filter(pc.is_valid(group["row"]))
    return pa.table({"file": place["file"], "line": place["line"], "row": row["row"]})


def _ordered_rows(ray: Any, settings: dict[str, Any]) -> Any:
    """The output rows' JSON text sorted by input place (a dataset; nothing runs yet)."""
    cpus = settings["read_cpus"]
    places = good_rows(index_dataset(ray, settings), cpus)
    places = places.map_batches(_keyed_places, batch_format="pyarrow", num_cpus=cpus)
    rows = output_dataset(ray, settings).map_batches(_keyed_rows, batch_format="pyarrow", num_cpus=cpus)
    pairs = places.union(rows).groupby(ID).map_groups(_paired, batch_format="pyarrow", num_cpus=cpus)
    return pairs.sort(["file", "line"])


def merge_output(ray: Any, settings: dict[str, Any], target: str) -> int:
    """Write the shards as one ``.jsonl``/``.csv`` file in input order; its errors beside it."""
    target_path = Path(target)
    labels = np.asarray(settings["labels"])
    columns = RowWriter(target_path, labels, settings["probabilities"]).columns  # the shards' columns
    written = 0
    with shuffling(preserve_order=True), open(target_path, "w", encoding="utf-8", newline="") as out:
        writer = None
        if target_path.suffix.lower() == ".csv":
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
        for batch in _ordered_rows(ray, settings).iter_batches(
            batch_size=MERGE_BATCH, batch_format="pyarrow"
        ):
            rows = batch["row"].to_pylist()
            if writer is None:
                out.writelines(row + "\n" for row in rows)
            else:
                writer.writerows(json.loads(row) for row in rows)
            written += len(rows)
    _merge_errors(ray, settings, target_path.with_name(target_path.name + ".errors.jsonl"))
    return written


def _merge_errors(ray: Any, settings: dict[str, Any], target: Path) -> None:
    """The bad rows of all inputs in input order, as the local errors file (several inputs: each
    line names its file); no file when there are none."""
    paths, written = error_paths(settings), 0
    with shuffling(preserve_order=True), open(target, "wb") as out:
        bad = bad_rows(index_dataset(ray, settings), settings["read_cpus"]).sort(["file", "line"])
        for batch in bad.iter_batches(batch_size=MERGE_BATCH, batch_format="pyarrow"):
            written += out.write(error_lines(batch, paths))
    if not written:
        target.unlink()
