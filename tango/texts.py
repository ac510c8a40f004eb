"""What tango classifies: a list of texts, or of (text, text_pair) tuples for pair tasks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Texts = Sequence[str] | Sequence[tuple[str, str]]


def as_texts(texts: str | Texts) -> list[str] | list[tuple[str, str]]:
    """Wrap a single text into a list; check the rows are all texts or all (text, pair) pairs.

    Only a ``str`` is a single row. A tuple or list is always a sequence of rows, so
    ``("good film", "dull mess")`` is two texts; a single pair is ``[("a man", "a woman")]``.
    Empty or blank texts are refused, as ``tango run`` refuses them, rather than scored.
    """
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, (bytes, dict)) or not isinstance(texts, Iterable):
        raise TypeError(
            f"texts must be a string or a list of strings or (text, text_pair) tuples, "
            f"got {type(texts).__name__}"
        )
    rows = list(texts)
    pairs = bool(rows) and not isinstance(rows[0], str)
    for k, row in enumerate(rows):
        parts = [row] if not pairs else list(row) if isinstance(row, (tuple, list)) else None
        if parts is None or (pairs and len(parts) != 2) or not all(isinstance(p, str) for p in parts):
            raise TypeError(
                f"row {k} is {row!r:.60}: texts must be a list of strings "
                "or a list of (text, text_pair) tuples"
            )
        if not all(p.strip() for p in parts):
            raise ValueError(f"row {k} is empty: give each row some text")
    return [tuple(r) for r in rows] if pairs else rows  # type: ignore[return-value]
