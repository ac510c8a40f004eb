"""Order-free fingerprints of ids, and the index's totals: what the exactly-once check compares.

Each side of a run (the good input rows, the output rows) sums its row count and a 128-bit
fingerprint of its ids batch by batch, wherever its batches are: in the index's write tasks, in
the check's tasks reading the output back. Equal counts and fingerprints mean the output's ids
are the good input ids, each once (two different multisets of ids agree by chance with
probability about 2**-64).
"""

from __future__ import annotations

import hashlib
from typing import Any

MASK = (1 << 64) - 1
INDEX_TOTALS = ("inputs", "bad", "low", "high")


def fingerprint(ids: Any) -> tuple[int, int]:
    """Ids' order-free fingerprint: the sums, modulo 2**64, of the two halves of each id's 16-byte
    BLAKE2b digest (of its text). Equal multisets of ids have equal fingerprints; a row missing,
    written twice or foreign changes them but for a chance of about 2**-64."""
    low = high = 0
    for value in ids:
        digest = hashlib.blake2b(str(value).encode(), digest_size=16).digest()
        low += int.from_bytes(digest[:8], "little")
        high += int.from_bytes(digest[8:], "little")
    return low & MASK, high & MASK


def index_totals(table: Any) -> dict[str, int]:
    """An index table's input rows, bad rows and good ids' fingerprint (halves ``low``, ``high``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    good = int(pc.sum(table["ok"].cast(pa.int64())).as_py() or 0) if len(table) else 0
    ids = table.filter(table["ok"])["id"].to_pylist() if good else []
    low, high = fingerprint(ids)
    return {"inputs": len(table), "bad": len(table) - good, "low": low, "high": high}


def add_totals(parts: Any) -> dict[str, int]:
    """Index totals summed (fingerprint halves modulo 2**64)."""
    total = dict.fromkeys(INDEX_TOTALS, 0)
    for part in parts:
        for key in INDEX_TOTALS:
            total[key] += int(part[key])
    total["low"] &= MASK
    total["high"] &= MASK
    return total
