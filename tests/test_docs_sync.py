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
