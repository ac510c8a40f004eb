"""After a Ray run: its shards read back, the exactly-once check, and ``--merge`` into one file.

Every run ends with the check that each input id (from the id lists the read tasks wrote) is in
the output exactly once or is an error row; its totals become the run's summary. ``--merge``
writes the shards as one file in input order, in the local engine's format.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tango.engines.ray.plan import ID
from tango.engines.ray.read import file_keys
from tango.engines.ray.storage import fs_of, is_dir, read_bytes


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


def _manifest_schema() -> Any:
    """Each input file's id list: typed, so that header-only files (no rows) concatenate too."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("line", pa.int64()), ("ok", pa.bool_())])


def _manifests(settings: dict[str, Any], paths: list[str]) -> list[tuple[str, str, Any]]:
    """(file, key, table of id/line/ok) per input file, in input order."""
    import pyarrow.parquet as pq

    found = []
    for path, key in sorted(file_keys(settings, paths).items(), key=lambda item: item[1]):
        raw = read_bytes(f"{settings['sidecar']}/inputs/{key}.parquet")
        if raw is None:
            raise ValueError(f"{path} was never read to its end: no {key}.parquet in the run's inputs")
        found.append((path, key, pq.read_table(io.BytesIO(raw))))
    return found


def read_output(settings: dict[str, Any], columns: list[str] | None = None) -> Any:
    """All output shards as one Arrow table (ids and labels kept as text for CSV shards)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.dataset as pds

    fs, local = fs_of(settings["output"])
    kind = settings["output_format"]
    if kind == "csv":
        strings = {ID: pa.string(), "label": pa.string()}
        file_format: Any = pds.CsvFileFormat(convert_options=pcsv.ConvertOptions(column_types=strings))
    else:
        file_format = "json" if kind == "jsonl" else "parquet"
    if not is_dir(settings["output"]):
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
            (read_bytes(f"{settings['errors']}/{key}.errors.jsonl") or b"").count(b"\n")
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
        raw = read_bytes(f"{settings['errors']}/{key}.errors.jsonl") or b""
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
