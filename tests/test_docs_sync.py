"""Every benchmark table in README.md and docs/ is what the committed results say: the one docs
command (benchmarks/docs.py) would change nothing. A table typed or edited by hand fails here."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_tables_match_the_committed_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stale: nothing" in done.stdout


def test_every_script_a_page_names_exists():
    """A command a reader copies from README.md or docs/ names a script that is there (scripts that
    moved are named at their new place, through ``docs_section.command_now``)."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        (page.name, script)
        for page in pages
        for script in re.findall(r"python (benchmarks/[\w/]+\.py)", page.read_text())
    }
    assert len(named) > 10  # the pattern finds the pages' commands
    assert [(page, script) for page, script in sorted(named) if not (ROOT / script).exists()] == []


def test_a_moved_script_is_named_at_its_new_place():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from docs_section import command_now

    assert command_now("python benchmarks/bench_openvino.py --repeats 9") == (
        "python benchmarks/studies/bench_openvino.py --repeats 9"
    )
    assert (
        command_now("python benchmarks/studies/bench_openvino.py")
        == "python benchmarks/studies/bench_openvino.py"
    )
    assert (
        command_now("python benchmarks/bench.py --dataset sst2")
        == "python benchmarks/bench.py --dataset sst2"
    )
