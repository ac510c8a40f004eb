"""Time `tango quickstart` as a newcomer meets it: an empty directory outside the checkout, no tiers.

A fresh ``TANGO_HOME`` holds only the encoders (copied from the current one, so the PyPI download,
which depends on the network and not on tango, is left out and stated); the command then builds
its two tiers, calibrates them and scores the example file. The wall time, what the screen showed
and the scored rows go to benchmarks/results/quickstart.{json,md} and README's
``quickstart_timing`` section. Run it on a quiet machine (nothing else on the cores).

    python benchmarks/studies/time_quickstart.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers

ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: results/ and the shared helpers


def machine() -> dict[str, str]:
    from tango.hardware import machine as bench_machine

    return bench_machine(threads=os.cpu_count() or 1)


@click.command()
def main() -> None:
    """Run `tango quickstart` once from scratch and record how long it took and what it printed."""
    from tango.registry import tango_home

    encoders = tango_home() / "encoders"
    with tempfile.TemporaryDirectory(prefix="tango-quickstart-") as scratch:
        home, work = Path(scratch) / "home", Path(scratch) / "work"
        work.mkdir(parents=True)
        if encoders.is_dir():
            shutil.copytree(encoders, home / "encoders", symlinks=True)
        env = {**os.environ, "TANGO_HOME": str(home)}
        start = time.perf_counter()
        done = subprocess.run(
            ["tango", "quickstart", "-o", "scored.jsonl"], cwd=work, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if done.returncode:
            raise click.ClickException(f"tango quickstart failed ({done.returncode}):\n{done.stderr[-3000:]}")
        scored = [json.loads(line) for line in (work / "scored.jsonl").read_text().splitlines()]
    screen = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    result = {
        "command": "tango quickstart -o scored.jsonl (empty directory, fresh TANGO_HOME with the encoders)",
        "machine": machine(),
        "seconds": seconds,
        "encoders_preinstalled": encoders.is_dir(),
        "screen": [line for line in screen if "\r" not in line][-40:],
        "answered_by_tier": dict(Counter(str(row.get("tier")) for row in scored)),
        "rows": [{k: row.get(k) for k in ("id", "label", "tier", "confidence")} for row in scored],
    }
    out = ROOT / "results"
    (out / "quickstart.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "quickstart.md").write_text(table)
    click.echo(table)


def markdown(result: dict) -> str:
    tiers = ", ".join(f"tier {t}: {n} rows" for t, n in sorted(result["answered_by_tier"].items()))
    return (
        f"Measured by `python benchmarks/studies/time_quickstart.py` ({result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores, {result['machine']['date']}): `tango quickstart` from an "
        f"empty directory with no tiers built took **{result['seconds'] / 60:.1f} minutes** "
        f"({'encoders already installed' if result['encoders_preinstalled'] else 'encoders downloaded'}); "
        f"the example file's rows were answered by {tiers}.\n"
    )


if __name__ == "__main__":
    main()
