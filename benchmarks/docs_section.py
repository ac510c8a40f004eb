"""Filling a marked section of a docs page with a benchmark's table (shared by the scripts)."""

from __future__ import annotations

from pathlib import Path

import click


def fill_section(page: Path, name: str, table: str) -> None:
    """Replace what lies between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in ``page``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = page.read_text()
    if begin not in text or end not in text:
        raise click.ClickException(f"{page} has no {begin} ... {end} section to fill")
    head, rest = text.split(begin, 1)
    page.write_text(f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}")


def write_results(name: str, result: dict, table: str, page: Path | None) -> None:
    """``benchmarks/results/NAME.{json,md}``, the table echoed, and ``page``'s NAME section
    filled (None: no docs page rewritten)."""
    import json

    out = Path(__file__).resolve().parent / "results" / name
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(table)
    click.echo(table)
    if page is not None:
        fill_section(page, name, table)
