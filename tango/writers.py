"""The rows a scoring run writes: scored rows as JSON lines or CSV, bad rows as error lines.

Both engines (:mod:`tango.engines.local`, :mod:`tango.engines.ray`) write through these, so their
outputs have the same columns and values.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from tango.data import Record, RowError


def error_line(row: RowError) -> bytes:
    """One line of the errors file: where the row is, what is wrong, and the raw text.

    A row that is not UTF-8 also keeps its exact bytes, base64-encoded in ``raw_base64`` (``raw``
    shows them with U+FFFD for the bad bytes), so it can be recovered as it was.
    """
    record = {"line": row.line, "field": row.field, "error": row.message, "raw": row.raw}
    if getattr(row, "raw_bytes", None) is not None:
        record["raw_base64"] = base64.b64encode(row.raw_bytes).decode("ascii")
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


class RowWriter:
    """Formats scored rows as JSON lines or CSV (chosen by the output's extension).

    ``stage`` is the result's field saying where each row was answered: ``tier`` (written
    numbered from 1, as the CLI's ``--tier1/--tier2``) or ``exit_layer`` (already 1-based).
    """

    def __init__(self, path: Path, labels: np.ndarray, probabilities: bool, stage: str = "tier") -> None:
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise ValueError(f"cannot write {path}: the output must end in .jsonl or .csv")
        self.csv = suffix == ".csv"
        self.names = [str(label) for label in labels]
        self.probabilities = probabilities
        self.stage = stage
        self.columns = ["id", "label", "confidence", stage] + (
            [f"p_{name}" for name in self.names] if probabilities else []
        )

    def fields(self, row: Record, k: int, result: Any) -> dict[str, Any]:
        """One output row: the row's id (else its line number) and the model's answer."""
        stage = int(getattr(result, self.stage)[k]) + (1 if self.stage == "tier" else 0)
        out = {
            "id": row.id if row.id is not None else row.line,
            "label": str(result.labels[k]),
            "confidence": round(float(result.confidence[k]), 6),
            self.stage: stage,
        }
        if self.probabilities:
            probabilities = result.probabilities[k]
            out.update({f"p_{n}": round(float(p), 6) for n, p in zip(self.names, probabilities, strict=True)})
        return out

    def __call__(self, rows: list[Record], result: Any, first: bool) -> bytes:
        """The bytes to append for ``rows``; ``first`` adds the CSV header."""
        if not self.csv:
            return "".join(
                json.dumps(self.fields(row, k, result), ensure_ascii=False) + "\n"
                for k, row in enumerate(rows)
            ).encode()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        if first:
            writer.writeheader()
        writer.writerows(self.fields(row, k, result) for k, row in enumerate(rows))
        return buffer.getvalue().encode()
