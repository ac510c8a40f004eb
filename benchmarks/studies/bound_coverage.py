"""Does the certified drop hold as often as it says? Coverage of each bound tango offers.

`tango calibrate --max-drop X` promises the drop stays within X points on new rows with
probability 0.9. This study checks that promise (issue #27, item 5; benchmarks/PROTOCOL.md):

- the pool is every training row the new-text tiers held out (30,012 SST-2 rows in 3,067 whole
  sentence groups, never trained on), scored once by tier 1 and tier 2;
- its groups are split in two seeded halves: calibration draws come from one, the **population
  drop** of each certified threshold is measured on the other (about 15,000 rows);
- DRAWS independent draws of CALIBRATION_ROWS rows each fit tier 1's temperature on 30% and
  certify the threshold on the rest (`tango.thresholds.certify`), once per bound;
- coverage = the share of draws whose population drop stays within the target, against the
  nominal level, with a 95% Wilson interval.

    python benchmarks/studies/bound_coverage.py       # after tango build configs/sst2.toml

Writes benchmarks/results/bound_coverage.{json,md}. Nothing is timed.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from new_text_series import judged  # noqa: E402 - the gate on rows: accuracy, drop, share escalated

THREADS = 2
DRAWS = 500
CALIBRATION_ROWS = 2000
MAX_DROP = 0.5
LEVEL = 0.9
FIT_FRACTION = 0.3
ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: results/ and the shared helpers
DATA = ROOT.parent.parent / "shared" / "data"
TIER1, TIER2 = "minilm-l6-sst2-g30k-distilled", "mpnet-base-sst2-g30k"


def held_out_pool(tier2_dir: Path, labels: list[str]):
    """All rows the tiers held out, their labels and their groups (sentence roots)."""
    from tango.data import load_labelled
    from tango.splits import containment_groups, held_out_rows

    held = held_out_rows(tier2_dir)
    data = load_labelled(held.file, label_names=labels, **held.columns)
    groups = containment_groups(data.texts)
    rows = held.indices(groups)
    return data.subset(rows), groups[rows], held.to_dict()


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def certified(first, last, y, bound: str, seed: int) -> tuple[float, float]:
    """(temperature, threshold): temperature on 30% of the draw, the threshold certified on the rest."""
    from tango.calibration import TemperatureScaler
    from tango.confidence import confidence
    from tango.thresholds import certify

    order = np.random.default_rng(seed).permutation(len(y))
    fit, choose = order[: int(FIT_FRACTION * len(y))], order[int(FIT_FRACTION * len(y)) :]
    scaler = TemperatureScaler().fit(first[fit], y[fit])

    def rows(part):
        return (
            [confidence(scaler.predict_proba(first[part]), "maxprob")],
            [
                first[part].argmax(1),
                last[part].argmax(1),
            ],
            y[part],
        )

    confs, preds, labels = rows(choose)
    choice = certify(
        confs, preds, labels, [1.0, 1.0], MAX_DROP, order_rows=rows(fit), confidence_level=LEVEL, bound=bound
    )
    return float(scaler.temperature_), float(choice.thresholds[0])


@click.command()
@click.option("--draws", default=DRAWS, show_default=True, help="Independent calibration draws.")
def main(draws: int) -> None:
    """Run the coverage study and write benchmarks/results/bound_coverage.{json,md}."""
    from docs_section import write_results

    from tango.bounds import BOUNDS
    from tango.hardware import machine
    from tango.registry import registered_dir
    from tango.tiers import Tier

    tiers = [
        Tier.from_pretrained(registered_dir(n + s), threads=THREADS)
        for n, s in ((TIER1, "-ov"), (TIER2, "-ov-int8"))
    ]
    labels = list(tiers[1].labels)
    pool, groups, held = held_out_pool(registered_dir(TIER2), labels)
    click.echo(f"scoring {len(pool)} held-out rows with both tiers", err=True)
    first, last = (tier.logits(pool.texts) for tier in tiers)
    unique = np.unique(groups)
    draw_groups = np.random.default_rng(0).permutation(unique)[: len(unique) // 2]
    in_draw = np.isin(groups, draw_groups)
    draw_rows, population_rows = np.flatnonzero(in_draw), np.flatnonzero(~in_draw)
    y = pool.labels
    population = (first[population_rows], last[population_rows], y[population_rows])
    per_bound = {}
    for bound in BOUNDS:
        outcomes = []
        for d in range(draws):
            pick = draw_rows[np.random.default_rng(1000 + d).permutation(len(draw_rows))[:CALIBRATION_ROWS]]
            temperature, threshold = certified(first[pick], last[pick], y[pick], bound, seed=d)
            outcome = judged(*population, temperature, threshold)
            outcomes.append({"threshold": threshold, **{k: outcome[k] for k in ("drop", "escalated")}})
        covered = sum(o["drop"] <= MAX_DROP for o in outcomes)
        per_bound[bound] = {
            "coverage": covered / draws,
            "coverage_95": wilson(covered, draws),
            "escalated_median": float(np.median([o["escalated"] for o in outcomes])),
            "drop_median": float(np.median([o["drop"] for o in outcomes])),
            "draws": outcomes,
        }
        click.echo(f"{bound}: coverage {covered / draws:.3f}", err=True)
    result = {
        "command": shlex.join(["python", "benchmarks/studies/bound_coverage.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "tiers": [str(t.path) for t in tiers],
        "pool": {
            "rows": len(pool),
            "groups": len(unique),
            "draw_rows": len(draw_rows),
            "population_rows": len(population_rows),
            "held_out": held,
        },
        "settings": {
            "draws": draws,
            "calibration_rows": CALIBRATION_ROWS,
            "max_drop": MAX_DROP,
            "confidence_level": LEVEL,
            "fit_fraction": FIT_FRACTION,
        },
        "bounds": per_bound,
    }
    write_results("bound_coverage", result, markdown(result), None)


def markdown(result: dict) -> str:
    p, st, m = result["pool"], result["settings"], result["machine"]
    lines = [
        f"`benchmarks/results/bound_coverage.json`: {st['draws']} draws of {st['calibration_rows']} rows "
        f"from {p['draw_rows']} held-out SST-2 rows (half of {p['groups']} sentence groups); each "
        f"certifies max drop {st['max_drop']} pt at level {st['confidence_level']}; the drop is measured "
        f"on the other "
        f"{p['population_rows']} rows; {m['date']}. Command: `{result['command']}`.",
        "",
        "| bound | coverage (95% interval) | nominal | escalated, median | population drop, median |",
        "|---|---|---|---|---|",
    ]
    for bound, b in result["bounds"].items():
        low, high = b["coverage_95"]
        lines.append(
            f"| {bound} | {b['coverage']:.3f} ({low:.3f}-{high:.3f}) | {st['confidence_level']} | "
            f"{100 * b['escalated_median']:.1f}% | {b['drop_median']:+.2f} pt |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
