"""The one docs command: every benchmark table in README.md and docs/ rewritten from the committed
results in benchmarks/results/, and nothing else (a benchmark run writes only its results).

    python benchmarks/docs.py            # rewrite the pages
    python benchmarks/docs.py --check    # exit 1 naming every section that differs (the tests run this)

A page holds ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` sections; each section here names
the results file whose Markdown fills it. docs/benchmarks.md is written whole, from
benchmarks/README.md and every series (``bench.docs_pages``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
PAGES = ROOT.parent


def whole(text: str) -> str:
    return text


def readme_part(name: str, results: str = "benchmarks/results") -> Callable[[str], str]:
    """README shows a new-text series' main table and its last runtime x gate table (series 1:
    the variant with IMDB sentences; series 2: the picked variant), and links to the rest."""

    def part(text: str) -> str:
        blocks = text.split("\n\n")
        table = text.split("\n\nRuntime x gate")[0].split("\n\nPicked on")[0].rstrip() + "\n"
        splits = [i for i, block in enumerate(blocks) if block.startswith("Runtime x gate")]
        split = "\n\n".join(blocks[splits[-1] : splits[-1] + 2]).rstrip() + "\n" if splits else ""
        return (
            f"{table}\n{split}\nThe other runtime x gate tables and the deferral study: "
            f"[benchmarks/results/{name}.md]({results}/{name}.md).\n"
        )

    return part


def readme_three_tiers(text: str) -> str:
    """README shows a three-tier series without its heading and figure (docs/benchmarks.md has both)."""
    kept = [line for line in text.splitlines() if not line.startswith(("#### ", "!["))]
    return "\n".join(kept).strip() + "\n"


# section -> (page, results Markdown stem, how the Markdown becomes the section)
SECTIONS: dict[str, tuple[str, str, Callable[[str], str]]] = {
    "new_text_sst2_series8": ("README.md", "new_text_sst2_series8", readme_part("new_text_sst2_series8")),
    "new_text_sst2": (
        "benchmarks/README.md",
        "new_text_sst2",
        readme_part("new_text_sst2", "../benchmarks/results"),
    ),
    "new_text_sst2_series2": (
        "benchmarks/README.md",
        "new_text_sst2_series2",
        readme_part("new_text_sst2_series2", "../benchmarks/results"),
    ),
    "new_text_sst2_series5": (
        "benchmarks/README.md",
        "new_text_sst2_series5",
        readme_part("new_text_sst2_series5", "../benchmarks/results"),
    ),
    "three_tiers_fair_ag_news_v8": ("README.md", "three_tiers_fair_ag_news_v8", readme_three_tiers),
    "three_tiers_fair_imdb_v8": ("README.md", "three_tiers_fair_imdb_v8", readme_three_tiers),
    "quickstart_timing": ("README.md", "quickstart", whole),
    "escalated_batches": ("docs/architecture.md", "escalated_batches", whole),
    "bench_distributed": ("docs/distributed.md", "distributed", whole),
    "bench_distributed_30000": ("docs/distributed.md", "distributed_30000", whole),
    "bench_distributed_beside": ("docs/distributed.md", "distributed_fused_beside", whole),
    "bench_distributed_30000_beside": ("docs/distributed.md", "distributed_30000_beside", whole),
    "bench_distributed_series4": ("docs/distributed.md", "distributed_fused_series4", whole),
    "bench_distributed_autoscale": ("docs/distributed.md", "distributed_fused_autoscale", whole),
    "bench_distributed_groupby": ("docs/distributed.md", "distributed_fused_groupby", whole),
    "bench_distributed_split": ("docs/distributed.md", "distributed_split_3000", whole),
    "bench_distributed_split_unpinned": ("docs/distributed.md", "distributed_split_3000_unpinned", whole),
    "bench_processes": ("docs/distributed.md", "processes", whole),
    "early_exit_new_text": ("docs/early-exit.md", "early_exit_new_text", whole),
    "openvino_configs": ("docs/models.md", "openvino_configs", whole),
    "first_token": ("docs/models.md", "first_token", whole),
    "deferral_features": ("docs/models.md", "deferral_features", whole),
    "batch_independence": ("docs/run.md", "batch_independence", whole),
}
# sections named after a series: "PREFIX:NAME" filled from results/<stem prefix>NAME.md
FAMILIES = {"gate_resplits": "gate_", "three_tiers": "three_tiers_"}
MARKER = re.compile(r"<!-- ([\w:.-]+):begin -->")


def fill(text: str, name: str, table: str) -> str:
    """``text`` with section ``name`` holding ``table``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}"


def section_text(name: str) -> str | None:
    """What section ``name`` should hold, from the committed results (None: no results yet)."""
    family, _, series = name.partition(":")
    if family in FAMILIES:
        source, shape = RESULTS / f"{FAMILIES[family]}{series}.md", whole
    elif name in SECTIONS:
        source, shape = RESULTS / f"{SECTIONS[name][1]}.md", SECTIONS[name][2]
    else:
        return None  # written by bench.docs_pages
    return shape(source.read_text()) if source.exists() else None


def expected_pages() -> dict[Path, str]:
    """Every page as the committed results say it should read."""
    sys.path.insert(0, str(ROOT))
    from bench import docs_pages

    pages: dict[Path, str] = {}
    generated = docs_pages(RESULTS)
    for page in [PAGES / "README.md", *sorted((PAGES / "docs").glob("*.md")), ROOT / "README.md"]:
        made = generated.get(page)
        text = made if isinstance(made, str) else page.read_text()
        for name in MARKER.findall(text):
            table = (made or {}).get(name) if isinstance(made, dict) else None
            table = table if table is not None else section_text(name)
            if table is not None:
                text = fill(text, name, table)
        pages[page] = text
    return pages


@click.command()
@click.option("--check", is_flag=True, help="Change nothing; exit 1 naming each page that differs.")
def main(check: bool) -> None:
    """Rewrite every benchmark table of README.md and docs/ from benchmarks/results/."""
    stale = []
    for page, text in expected_pages().items():
        if page.read_text() != text:
            stale.append(page.relative_to(PAGES))
            if not check:
                page.write_text(text)
    if check and stale:
        raise click.ClickException(
            f"out of date with benchmarks/results: {', '.join(map(str, stale))}; "
            "run python benchmarks/docs.py"
        )
    click.echo(f"{'stale' if check else 'rewrote'}: {', '.join(map(str, stale)) or 'nothing'}")


if __name__ == "__main__":
    main()
