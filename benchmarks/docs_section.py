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


def write_results(name: str, result: dict, table: str) -> None:
    """``benchmarks/results/NAME.{json,md}`` and the table echoed; the docs pages that quote it
    are rewritten by ``python benchmarks/docs.py``, never here."""
    import json

    out = Path(__file__).resolve().parent / "results" / name
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(table)
    click.echo(table)
    click.echo("docs: python benchmarks/docs.py", err=True)


STUDIES = ("batch_independence.py", "bench_escalated.py", "bench_first_token.py", "bench_openvino.py")


def command_now(command: str) -> str:
    """A recorded command as it runs today: the scripts that moved into benchmarks/studies/ after
    their results were written are named at their new place (the results keep what ran)."""
    for script in STUDIES:
        command = command.replace(f"benchmarks/{script}", f"benchmarks/studies/{script}")
    return command


def timed_rows(forms: list[dict], timings: dict, rows: int) -> list[dict]:
    """Each form (a dict naming its ``system``) with its rows/s: the median round and the
    min-max over rounds, ``rows`` scored per round (``timings``: ``tango.bench.interleave``'s)."""
    timed = []
    for form in forms:
        timing = timings[form["system"]]
        timed.append(
            {
                **form,
                "rows_per_s": rows / timing.median,
                "rows_per_s_min": rows / timing.max,
                "rows_per_s_max": rows / timing.min,
                "seconds": timing.seconds,
            }
        )
    return timed


def rows_result(script: str, threads: int, data: str, rows: int, copies: int, repeats: int) -> dict:
    """What a tier-speed script records besides its systems: the command, the machine and
    versions, the rows, how they were timed."""
    import shlex
    import sys

    from tango.hardware import machine

    return {
        "command": shlex.join(["python", f"benchmarks/studies/{script}", *sys.argv[1:]]),
        "machine": machine(threads),
        "data": {"source": data, "rows": rows, "copies": copies},
        "settings": {"repeats": repeats, "warm_up_rounds": 1, "order": "round-robin", "threads": threads},
    }


def rows_caption(name: str, result: dict) -> str:
    """The line over a tier-speed table: rows, machine, rounds, date, command."""
    m, d = result["machine"], result["data"]
    return (
        f"`benchmarks/results/{name}.json`: {d['rows']} rows of {Path(d['source']).name} x{d['copies']}, "
        f"tokenization included; {m['cpu']}, {m['threads']} threads; median (min-max) of "
        f"{result['settings']['repeats']} interleaved rounds after a warm-up; {m['date']}. "
        f"Command: `{command_now(result['command'])}`."
    )


def tier_speed_options(tiers: tuple[str, ...], data: Path, repeats: int):
    """The options of a script that times tiers on rows: --tiers, --data, --copies, --repeats."""

    def wrap(command):
        shown = {"show_default": True}
        options = [
            click.option("--tiers", default=",".join(tiers), help="Tiers, comma-separated.", **shown),
            click.option("--data", default=str(data), help="Rows to score.", **shown),
            click.option("--copies", default=2, help="Times the rows are scored per round.", **shown),
            click.option("--repeats", default=repeats, help="Timed rounds after the warm-up.", **shown),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return wrap
