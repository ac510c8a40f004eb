"""CPU speedup benchmark: tiers, cascades, early exit and the peers, in one run per data set.

A thin caller of `tango bench` (:func:`tango.bench.bench`) for the series of configs/*.toml: it
loads each tier in the fastest form its probe record names (`tango probe`: PyTorch, ONNX,
OpenVINO), adds the early-exit models and the tiers' PyTorch forms to the systems timed, and
leaves the docs to benchmarks/docs.py. Every system scores the same rows end to end (tokenization
included) with the same threads; the systems are timed interleaved round-robin (a warm-up round, then REPEATS
rounds) and reported as median (min-max). The SST-2 thresholds come from held-out training rows
that are never scored (a data set's "held_out" entry); the others use tango bench's 2-fold
cross-fitting (calibrate on one half, score the other), so the chosen operating point is never
judged on the rows that chose it.

    python benchmarks/bench.py                      # every data set below
    python benchmarks/bench.py --dataset sst2 --repeats 5
    python benchmarks/docs.py                       # then docs/benchmarks.md and README's headline

Writes benchmarks/results/<dataset>.{json,md,png,html}; benchmarks/docs.py writes the docs.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import click
import numpy as np

THREADS = 2
REPEATS = 5  # timed rounds after the warm-up round (the rules: at least 5)
MAX_DROP = 0.5  # accuracy points below tier 2 alone that the chosen threshold may lose
SWEEP = (0.1, 0.2, 0.3, 0.5)  # escalation levels of the descriptive sweep
EARLY_EXIT_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)  # maxprob, on per-exit calibrated probabilities
EARLY_EXIT_PATIENCE = (1, 2)  # PABEE
FORMS = {"": "PyTorch weights", "-int8": "ONNX int8", "-ov": "OpenVINO", "-ov-int8": "OpenVINO int8"}
ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
CONFIGS = ROOT.parent / "configs"  # one TOML file per data set; its [series.NAME] tables


def load_series(configs: Path = CONFIGS) -> dict[str, dict[str, Any]]:
    """Every [series.NAME] of configs/*.toml, in file order, each with the config that names it."""
    import tomllib

    series: dict[str, dict[str, Any]] = {}
    for path in sorted(configs.glob("*.toml"), key=lambda p: (p.name != "sst2.toml", p.name)):
        for name, spec in tomllib.loads(path.read_text()).get("series", {}).items():
            if name in series:
                raise click.ClickException(
                    f"series {name!r} is defined twice ({series[name]['config']}, {path})"
                )
            spec = dict(spec, config=str(path.relative_to(configs.parent)))
            for key in ("sweep", "dev_split"):  # TOML arrays -> the tuples tango bench takes
                if key in spec:
                    spec[key] = tuple(spec[key])
            series[name] = spec
    return series


DATASETS: dict[str, dict[str, Any]] = load_series()

os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


class HeldOutSplit(NamedTuple):
    """The tiers' held-out rows split into bench and calibration rows, and the rows they trained on."""

    bench: Any  # LabelledData
    calibration: Any
    trained: Any
    record: dict[str, Any]


def held_out_split(spec: dict[str, Any], label_names: list[str]) -> HeldOutSplit:
    """The tiers' held-out rows, split by a recorded seed; the training file is read once.

    Both tiers must hold out the same rows (same file, count and seed) and neither may have
    trained on them; the bench rows are a seeded ``bench_rows`` of them, the rest calibrate.
    """
    from tango.registry import resolve
    from tango.splits import held_out_rows

    helds = [held_out_rows(resolve(spec[t])) for t in ("tier1", "tier2")]
    if helds[0] is None or helds[0] != helds[1]:
        raise click.ClickException(
            f"{spec['tier1']} and {spec['tier2']} must hold out the same training rows "
            "(train both with the same --calibration-rows and --calibration-seed)"
        )
    rows, trained = helds[0].load_with_rest(label_names)
    count, seed = spec["held_out"]["bench_rows"], spec["held_out"]["seed"]
    if count >= len(rows):
        raise click.ClickException(f"{count} bench rows asked, the tiers held out only {len(rows)}")
    order = np.random.default_rng(seed).permutation(len(rows))
    bench_part, calibration_part = np.sort(order[:count]), np.sort(order[count:])
    record = {
        "held_out": helds[0].to_dict(),
        "seed": seed,
        "bench_positions": bench_part.tolist(),  # positions within the held-out rows
        "calibration_positions": calibration_part.tolist(),
    }
    return HeldOutSplit(rows.subset(bench_part), rows.subset(calibration_part), trained, record)


def calibration_tsv(path: Path) -> None:
    """SST-2's calibration rows (the held-out rows that are not bench rows) as a sentence/label TSV."""
    from tango.data import LABEL_NAMES

    spec = DATASETS["sst2"]
    calibration = held_out_split({**spec, "tier2": spec["tier1"]}, LABEL_NAMES["sst2"]).calibration
    rows = [f"{text}\t{label}" for text, label in zip(calibration.texts, calibration.labels, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["sentence\tlabel", *rows]) + "\n")


def new_text_only(split: HeldOutSplit) -> tuple[Any, dict[str, Any]]:
    """The calibration rows whose text appears inside no training row (tango.splits.new_text_rows)."""
    from tango.splits import new_text_rows

    keep = new_text_rows(split.calibration, split.trained)
    positions = np.asarray(split.record["calibration_positions"])[keep]
    record = {**split.record, "calibration_positions": positions.tolist(), "new_text_only": True}
    return split.calibration.subset(keep), record


def load_rows(spec: dict[str, Any], label_names: list[str]):
    """(rows scored, calibration rows or None, record of where both came from)."""
    from tango.data import load_labelled, split_rows

    if "held_out" in spec and spec.get("calibration") != "held_out":
        split = held_out_split(spec, label_names)
        return split.bench, split.calibration, split.record
    data = load_labelled(DATA / spec["file"], label_names=label_names)
    if "dev_split" in spec:  # the same seeded split the tiers were trained without
        fraction, seed = spec["dev_split"]
        data = data.subset(split_rows(len(data), fraction, seed)[1])
    if spec.get("calibration") == "held_out":
        split = held_out_split(spec, label_names)
        if spec.get("new_text_only"):
            return (data, *new_text_only(split))
        return data, split.calibration, split.record
    return data, None, {}


def recorded_tier(name: str, log: Callable[[str], None]):
    """The tier in the fastest form its probe records name: chosen once (`tango probe`), not here.

    Looks at NAME (PyTorch weights), NAME-int8 (ONNX), NAME-ov and NAME-ov-int8 (OpenVINO); each
    directory's ``tango_runtimes.json`` (made on this machine) lists the rows/s and the agreement
    with PyTorch fp32 of every runtime it can use; the fastest that kept >= 99.5% wins.
    """
    from tango.probe import passed_runtimes, read_record
    from tango.registry import resolve
    from tango.tiers import Tier

    options = []
    for suffix in FORMS:
        try:
            path = resolve(name + suffix)
        except ValueError:
            continue
        record = read_record(path)
        if record is None:
            log(f"  {name + suffix}: no probe record on this machine (`tango probe {name + suffix}`)")
            continue
        options += [{"model": name + suffix, "path": str(path), **m} for m in passed_runtimes(record)]
    if not options:
        raise click.ClickException(
            f"no probed form of {name!r}: build it with `tango build configs/<data set>.toml`, then "
            f"`tango probe {name}` (and its -int8 / -ov-int8 exports)"
        )
    for option in sorted(options, key=lambda o: -o["rows_per_s"]):
        log(f"  {option['model']}: {option['description']}: {option['rows_per_s']:.0f} rows/s (probe)")
    best = max(options, key=lambda o: o["rows_per_s"])
    tier = Tier.from_pretrained(
        best["path"], runtime=best["runtime"], precision=best["precision"], threads=THREADS
    )
    return tier, {"chosen": best, "candidates": options}


def torch_form_systems(spec: dict[str, Any]) -> dict[str, tuple[Callable, dict]]:
    """Both tiers on PyTorch bf16 (weights cast once) and tier 2 on bf16 autocast, timed with the rest.

    Early exit runs on PyTorch bf16, so its speedups are against the same runtime (#17); tier 2's
    autocast row is what tiers used before #12.
    """
    from tango.tiers import Tier

    systems = {}
    for tier_key, precision in (("tier1", "bf16"), ("tier2", "bf16"), ("tier2", "bf16-autocast")):
        tier = Tier.from_pretrained(spec[tier_key], runtime="torch", precision=precision, threads=THREADS)
        systems[f"{tier_key}-pytorch-{precision}"] = (
            tier.predict,  # label names, as `tango bench` reads extra systems
            {"model": spec[tier_key], "runtime": f"pytorch {precision}"},
        )
    return systems


def in_sample_system(tier1, tier2, calibration) -> dict[str, tuple[Callable, dict]]:
    """The same tiers with thresholds for the same target on the same rows, *not* certified (the
    rule before #13): what the 0.9 confidence level costs in speed, and what it buys."""
    from tango.cascade import Cascade

    cascade = Cascade([tier1, tier2])
    labels = [calibration.label_names[i] for i in calibration.labels]
    cascade.fit(calibration.texts, labels, max_drop=MAX_DROP, confidence_level=None)
    settings = {"thresholds": list(cascade.thresholds_), "temperatures": list(cascade.temperatures_)}
    return {"chosen-in-sample": (cascade.predict_detailed, {**settings, "confidence_level": None})}


def early_exit_systems(names: list[str]) -> dict[str, tuple[Callable, dict]]:
    """Early-exit models at each policy knob (batch 32, PyTorch bf16), timed with the cascade."""
    from tango.early_exit import EarlyExitClassifier
    from tango.registry import resolve

    systems: dict[str, tuple[Callable, dict]] = {}
    knobs = [("maxprob", threshold, 2) for threshold in EARLY_EXIT_THRESHOLDS]
    knobs += [("patience", None, patience) for patience in EARLY_EXIT_PATIENCE]
    for name in names:
        try:
            path = resolve(name)
        except ValueError:
            continue
        for policy, threshold, patience in knobs:
            model = EarlyExitClassifier.from_pretrained(
                path, policy=policy, threshold=threshold, patience=patience, precision="bf16", batch_size=32
            )
            knob = f"@{threshold}" if policy == "maxprob" else f"-patience{patience}"
            systems[f"{name}{knob}"] = (
                model.predict_detailed,
                {"model": name, "batch_size": 32, "policy": policy, "runtime": "pytorch bf16"},
            )
    return systems


def run_dataset(
    name: str,
    repeats: int,
    log: Callable[[str], None],
    out: Path,
    limit: int | None = None,
    result_name: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One data set through tango.bench: tiers in their probed forms, thresholds from other rows."""
    import torch

    from tango.bench import bench
    from tango.tiers import Tier

    torch.set_num_threads(THREADS)
    spec = {**DATASETS[name], **{k: v for k, v in overrides.items() if v}}
    labels = Tier.from_pretrained(spec["tier1"], runtime="torch", threads=THREADS).labels
    data, calibration, rows_record = load_rows(spec, labels)
    if limit:
        data = data.subset(np.arange(min(limit, len(data))))
    log(f"{name}: {len(data)} rows; the tiers' probed runtimes")
    t1, r1 = recorded_tier(spec["tier1"], log)
    t2, r2 = recorded_tier(spec["tier2"], log)
    extra = torch_form_systems(spec) if spec.get("torch_forms") else {}
    if calibration is not None:
        extra.update(in_sample_system(t1, t2, calibration))
    extra.update(early_exit_systems(spec.get("early_exit", [])))
    result = bench(
        [t1, t2],
        data,
        calibration_data=calibration,
        max_drop=MAX_DROP,
        bound_on=spec.get("bound_on", "population"),
        repeats=repeats,
        threads=THREADS,
        peers=spec.get("peers", True),
        sweep=spec.get("sweep", SWEEP),
        extra_systems=extra,
        out=out,
        name=result_name or name,  # out/<name>.json, .md, .png, .html and the reliability diagram
        command=shlex.join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
        log=log,
    )
    result["dataset"] = name
    result["config"] = spec["config"]
    result["rows"] = rows_record
    result["runtimes"] = {"tier1": r1, "tier2": r2}
    return result


# --- reports ----------------------------------------------------------------------------------
def markdown(result: dict[str, Any], results_dir: Path = ROOT / "results") -> str:
    """A data set's section of docs/benchmarks.md: tango bench's table, early exit, the targets."""
    from tango.bench.report import markdown as bench_markdown

    if "systems" not in result:  # measured before tango bench: the section as it was written then
        return (results_dir / f"{result['dataset']}.md").read_text()
    lines = [
        f"### {result.get('series', result['dataset'])} ({result['data']['scored']} rows)",
        "",
        f"Runtimes (from each tier's probe record): tier 1 {_form(result['runtimes']['tier1'])}, "
        f"tier 2 {_form(result['runtimes']['tier2'])}.",
        "",
        bench_markdown(result),
    ]
    exits = [r for r in result["systems"] if "mean_exit_layer" in r]
    if exits:
        lines += ["| early-exit system | accuracy | rows/s | mean exit layer |", "|---|---|---|---|"]
        lines += [
            f"| {r['system']} | {r['accuracy']:.2%} | {r['rows_per_s']:.1f} | {r['mean_exit_layer']:.2f} |"
            for r in exits
        ]
        lines.append("")
    lines += [targets(result), ""]
    return "\n".join(lines)


def _form(runtime: dict[str, Any]) -> str:
    """'NAME on DESCRIPTION' for a probed tier; older results stored the runtime name only."""
    chosen = runtime.get("chosen")
    if isinstance(chosen, dict):
        return f"{chosen['model']} on {chosen['description']}"
    return str(chosen)


def _versus(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Speed ratio and accuracy difference of row a over row b."""
    return f"{a['rows_per_s'] / b['rows_per_s']:.1f}x, {100 * (a['accuracy'] - b['accuracy']):+.2f} pt"


def _points(a: dict[str, Any], b: dict[str, Any]) -> float:
    return 100 * (a["accuracy"] - b["accuracy"])


def cascade_checks(by: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """Issue #12's targets of the chosen cascade against tier 2 alone, on the scored rows."""
    chosen, tier2, tier1 = by["chosen"], by["tier2"], by["tier1"]
    return [
        (
            "chosen cascade within 0.5 pt of tier 2 alone",
            f"{_points(chosen, tier2):+.2f} pt",
            _points(chosen, tier2) >= -0.5,
        ),
        (
            ">= 3x tier 2 alone (both on their chosen runtimes)",
            f"{chosen['speedup']:.2f}x",
            chosen["speedup"] >= 3,
        ),
        (
            "measured speedup >= 0.9 of the analytic bound",
            f"{chosen['speedup'] / chosen['analytic_speedup']:.0%}",
            chosen["speedup"] >= 0.9 * chosen["analytic_speedup"],
        ),
        (
            "padding efficiency >= 0.9",
            f"{tier1['settings']['padding_efficiency']:.3f}",
            tier1["settings"]["padding_efficiency"] >= 0.9,
        ),
    ]


def peer_checks(
    by: dict[str, dict[str, Any]], runtimes: dict[str, Any], ceilings: list[dict[str, Any]] = ()
) -> list[tuple[str, str, bool]]:
    """Issue #12's targets against the peers and tier 2's own PyTorch autocast form; with the
    run's ceilings (tango.bench), the most any threshold could reach with these tiers."""
    chosen, ref, pipe = by["chosen"], by["tangobert-reference"], by["tier2-pipeline"]
    checks = [
        (
            ">= 8x the TangoBERT reference at >= its accuracy",
            _versus(chosen, ref) + _ceiling(ceilings, "tangobert-reference"),
            chosen["rows_per_s"] >= 8 * ref["rows_per_s"] and chosen["accuracy"] >= ref["accuracy"],
        ),
        (
            ">= 15x tier 2 through pipeline",
            _versus(chosen, pipe),
            chosen["rows_per_s"] >= 15 * pipe["rows_per_s"],
        ),
    ]
    autocast = by.get("tier2-pytorch-bf16-autocast")
    if autocast:
        agreement = runtimes["tier2"]["chosen"].get("agreement") or 0.0
        ratio = by["tier2"]["rows_per_s"] / autocast["rows_per_s"]
        checks.append(
            (
                "tier 2 on its chosen runtime >= 1.8x its PyTorch bf16 autocast, "
                ">= 99.5% agreement with fp32",
                f"{ratio:.2f}x, {agreement:.2%} agreement",
                ratio >= 1.8 and agreement >= 0.995,
            )
        )
    return checks


EARLY_EXIT_TARGETS = (  # issue #17: (model, plain tier on the same runtime, max mean exit, min speedup)
    ("minilm-l6-sst2-ee-joint", "tier1-pytorch-bf16", 3.5, 1.4),
    ("mpnet-base-sst2-ee-joint", "tier2-pytorch-bf16", 7.0, 1.5),
)


def early_exit_checks(by: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """Issue #17: the fastest knob of each joint model that leaves early enough and stays within
    2 points of its plain tier, against that tier on PyTorch bf16."""
    checks = []
    for model, plain_name, max_exit, min_speedup in EARLY_EXIT_TARGETS:
        plain = by.get(plain_name)
        rows = [
            r
            for name, r in by.items()
            if name.startswith(model + "@") or name.startswith(model + "-patience")
        ]
        if plain is None or not rows:
            continue
        fits = [r for r in rows if r["mean_exit_layer"] <= max_exit and _points(r, plain) >= -2]
        label = f"{model}: mean exit <= {max_exit:g}, within 2 pt of {plain_name}, >= {min_speedup}x it"
        if not fits:
            closest = min(rows, key=lambda r: abs(r["mean_exit_layer"] - max_exit))
            checks.append(
                (
                    label,
                    f"no knob qualifies; nearest {closest['system']}: exit {closest['mean_exit_layer']:.2f}, "
                    f"{_versus(closest, plain)}",
                    False,
                )
            )
            continue
        best = max(fits, key=lambda r: r["rows_per_s"])
        ratio = best["rows_per_s"] / plain["rows_per_s"]
        checks.append(
            (
                label,
                f"{best['system']}: exit {best['mean_exit_layer']:.2f}, {ratio:.2f}x, "
                f"{_points(best, plain):+.2f} pt",
                ratio >= min_speedup,
            )
        )
    return checks


def _ceiling_ratio(ceilings: list[dict[str, Any]], versus: str) -> float | None:
    """The most any threshold gives against ``versus``, where the run recorded a ceiling."""
    return next((c["ratio"] for c in ceilings if c["versus"] == versus and c.get("ratio")), None)


def _ceiling(ceilings: list[dict[str, Any]], versus: str) -> str:
    """The ceiling against ``versus`` as a note, where the run recorded one."""
    ratio = _ceiling_ratio(ceilings, versus)
    return f" (the most any threshold gives with these tiers: {ratio:.2f}x)" if ratio else ""


def targets(result: dict[str, Any]) -> str:
    """The issues' targets on this data set, measured: met or missed, and by how much."""
    by = {r["system"]: r for r in result["systems"]}
    checks = cascade_checks(by)
    if "tangobert-reference" in by:
        checks += peer_checks(by, result["runtimes"], result.get("ceilings", []))
    checks += early_exit_checks(by)
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in checks]
    return "\n".join(lines)


def runs_table(runs: list[dict[str, Any]]) -> str:
    """The spread across full runs of one data set: each run's chosen cascade against tier 2."""
    lines = [
        "| run | date | tier 2 rows/s | chosen cascade rows/s | speedup | vs tier 2 | escalated "
        "| of bound | >= 3x within 0.5 pt | in-sample thresholds: speedup, vs tier 2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    speedups, drops, ceilings = [], [], []
    for k, run in enumerate(runs, 1):
        by = {r["system"]: r for r in run["systems"]}
        chosen, tier2 = by["chosen"], by["tier2"]
        drop = _points(chosen, tier2)
        ceilings.append(by["tier1"]["speedup"])
        speedups.append(chosen["speedup"])
        drops.append(drop)
        met = chosen["speedup"] >= 3 and drop >= -0.5
        lines.append(
            f"| {k} | {run['machine']['date']} | {tier2['rows_per_s']:.1f} | {chosen['rows_per_s']:.1f} "
            f"({chosen['rows_per_s_min']:.1f}-{chosen['rows_per_s_max']:.1f}) | {chosen['speedup']:.2f}x | "
            f"{drop:+.2f} pt | {chosen['escalated'][0]:.1%} | "
            f"{chosen['speedup'] / chosen['analytic_speedup']:.0%} | "
            f"{'yes' if met else '**no**'} | {_in_sample(by)} |"
        )
    lines += [
        "",
        f"Spread over {len(runs)} runs: speedup {min(speedups):.2f}x-{max(speedups):.2f}x, accuracy against "
        f"tier 2 {min(drops):+.2f} to {max(drops):+.2f} pt. Tier 1 alone ran at {min(ceilings):.2f}x-"
        f"{max(ceilings):.2f}x tier 2: no two-tier cascade of these forms can pass that, "
        "whatever it escalates.",
        "",
    ]
    if all("tangobert-reference" in {r["system"] for r in run["systems"]} for run in runs):
        lines[-1:] = [*reference_runs(runs), ""]
    return "\n".join(lines)


def reference_runs(runs: list[dict[str, Any]]) -> list[str]:
    """Each run's chosen cascade against the TangoBERT reference, beside the most any threshold
    gives with those tiers on those rows (the run's ceiling, where it recorded one)."""
    lines = [
        "",
        "| run | reference rows/s | chosen cascade vs the reference | the most any threshold gives |",
        "|---|---|---|---|",
    ]
    for k, run in enumerate(runs, 1):
        by = {r["system"]: r for r in run["systems"]}
        ratio = _ceiling_ratio(run.get("ceilings", []), "tangobert-reference")
        ref = by["tangobert-reference"]
        ceiling = f"{ratio:.2f}x" if ratio else "-"
        lines.append(f"| {k} | {ref['rows_per_s']:.1f} | {_versus(by['chosen'], ref)} | {ceiling} |")
    return lines


def _in_sample(by: dict[str, dict[str, Any]]) -> str:
    """The uncertified choice of the same run, where it was timed."""
    row = by.get("chosen-in-sample")
    if row is None:
        return "-"
    return f"{row['rows_per_s'] / by['tier2']['rows_per_s']:.2f}x, {_points(row, by['tier2']):+.2f} pt"


HEADLINE_SERIES = {  # the README quotes the first series that has results (the latest approach first)
    "sst2": ("sst2-h16k", "sst2-distilled", "sst2-ov-tier1", "sst2"),
    "sst2-dev": ("sst2-dev-h16k", "sst2-dev-distilled", "sst2-dev-ov-tier1", "sst2-dev"),
}


# docs/early-exit.md's table: the dev run whose tier 1 is the plainly trained MiniLM-L6, the
# tier the early-exit MiniLM is compared with (issue #17)
EARLY_EXIT_SERIES = ("sst2-dev-ov-tier1", "sst2-dev")


def headline(results_dir: Path) -> str:
    """README's headline, quoted from the committed results files (nothing typed by hand)."""
    lines = []
    runs = next((r for r in map(functools.partial(_runs, results_dir), HEADLINE_SERIES["sst2"]) if r), [])
    if runs:
        speedups = [next(r for r in run["systems"] if r["system"] == "chosen")["speedup"] for run in runs]
        last = {r["system"]: r for r in runs[-1]["systems"]}
        lines.append(
            f"- **SST-2** ({runs[-1]['data']['scored']} rows held out of training; SST-2's training file is "
            "phrases of its sentences, so they are easier than new text; "
            f"tier 1 {_form(runs[-1]['runtimes']['tier1'])}, "
            f"tier 2 {_form(runs[-1]['runtimes']['tier2'])}; "
            f"thresholds certified on {len(runs[-1]['rows']['calibration_positions']):,} other held-out rows "
            f"for <= 0.5 point{_bound_on(runs[-1])}): "
            f"the cascade {last['chosen']['rows_per_s']:.0f} rows/s at "
            f"{last['chosen']['accuracy']:.2%} against MPNet-base alone "
            f"{last['tier2']['rows_per_s']:.0f} rows/s "
            f"at {last['tier2']['accuracy']:.2%} ({last['chosen']['speedup']:.2f}x; "
            f"{min(speedups):.2f}x-{max(speedups):.2f}x over {len(runs)} runs, "
            f"{runs[-1]['machine']['date']})."
        )
    dev = next(
        (
            results_dir / f"{n}.json"
            for n in HEADLINE_SERIES["sst2-dev"]
            if (results_dir / f"{n}.json").exists()
        ),
        None,
    )
    if dev is not None:
        result = json.loads(dev.read_text())
        by = {r["system"]: r for r in result["systems"]}
        lines.append(
            f"- **SST-2 dev** ({result['data']['scored']} rows, same tiers and thresholds): the cascade "
            f"{by['chosen']['accuracy']:.2%}, {_versus(by['chosen'], by['tier2'])} against MPNet-base alone, "
            f"{_versus(by['chosen'], by['tangobert-reference'])} against the TangoBERT reference recipe"
            f"{_spread_over_runs(_runs(results_dir, dev.stem), 'tangobert-reference')}"
            f"{_ceiling(result.get('ceilings', []), 'tangobert-reference')} and "
            f"{_versus(by['chosen'], by['tier2-pipeline'])} against MPNet-base through a `pipeline` "
            f"({result['machine']['date']})."
        )
    for name, title in (("ag_news", "AG News"), ("imdb", "IMDB")):
        path = results_dir / f"three_tiers_{name}.json"
        if path.exists():
            lines.append(_three_tiers_line(title, json.loads(path.read_text())))
    return "\n".join(lines) + "\n"


def _spread_over_runs(runs: list[dict[str, Any]], peer: str) -> str:
    """ ", lo-hi over N runs": the chosen cascade's speed over ``peer`` in each run of a series."""
    if len(runs) < 2:
        return ""
    ratios = []
    for run in runs:
        by = {r["system"]: r for r in run["systems"]}
        ratios.append(by["chosen"]["rows_per_s"] / by[peer]["rows_per_s"])
    return f", {min(ratios):.1f}x-{max(ratios):.1f}x over {len(runs)} runs"


def _bound_on(result: dict[str, Any]) -> str:
    """How the headline names what the certified drop is about (older results: the mean)."""
    if result["settings"].get("bound_on") == "rows":
        return " on the bench rows themselves, their own sampling noise included"
    return " on average over new rows"


def _three_tiers_line(title: str, result: dict[str, Any]) -> str:
    """One line of the headline from benchmarks/bench_three_tiers.py's results."""
    rows = result["rows"]
    alone = next(r for r in rows if r["system"].startswith("tier alone"))
    two, three = (next(r for r in rows if r["system"] == f"{n} tiers") for n in (2, 3))

    def versus(a: dict[str, Any], b: dict[str, Any]) -> str:
        ratio = a["rows_per_s_median"] / b["rows_per_s_median"]
        return f"{ratio:.1f}x, {100 * (a['accuracy'] - b['accuracy']):+.2f} pt"

    return (
        f"- **{title}** (one split; three quickly trained tiers on PyTorch, MPNet-base 150 steps: "
        "linear -> MiniLM-L6 -> MPNet-base, certified gate): "
        f"{three['rows_per_s_median']:.0f} rows/s at {three['accuracy']:.2%}: {versus(three, two)} "
        "against the "
        f"two-tier cascade and {versus(three, alone)} against MPNet-base alone "
        f"({result['meta']['machine']['date']})."
    )


def _runs(results_dir: Path, name: str) -> list[dict[str, Any]]:
    """The full runs of a series of several, in order (its earlier runs, then NAME.json's own);
    none for a series of one run."""
    path = results_dir / f"{name}.json"
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    earlier = result.pop("earlier_runs", [])
    return [*earlier, result] if earlier else []


def docs_pages(out: Path) -> dict[Path, dict[str, str] | str]:
    """What the results say in the docs: docs/benchmarks.md whole (benchmarks/README.md and every
    series), README's headline section and docs/early-exit.md's table (``benchmarks/docs.py``
    writes them; a benchmark run never does)."""
    intro = (ROOT / "README.md").read_text()
    parts = [intro, "## Results", ""]
    for dataset in DATASETS:
        old = out / f"{dataset}.json"
        names = series_of(out, dataset) or ([dataset] if old.exists() else [])
        for name in names:
            result = json.loads((out / f"{name}.json").read_text())
            runs = _runs(out, name)
            if len(runs) > 1:
                parts += [f"### {name}: {len(runs)} full runs", "", runs_table(runs)]
            parts += [markdown(result, out), f"![{name}](../benchmarks/results/{name}.png)", ""]
    pages: dict[Path, dict[str, str] | str] = {
        ROOT.parent / "docs" / "benchmarks.md": "\n".join(parts),
        ROOT.parent / "README.md": {"headline": headline(out)},
    }
    dev = next((out / f"{n}.json" for n in EARLY_EXIT_SERIES if (out / f"{n}.json").exists()), None)
    if dev is not None:
        pages[ROOT.parent / "docs" / "early-exit.md"] = {"early_exit:sst2-dev": early_exit_section(dev)}
    return pages


def early_exit_section(path: Path) -> str:
    """docs/early-exit.md's table: each early-exit knob against its plain tier; #17's targets."""
    result = json.loads(path.read_text())
    by = {r["system"]: r for r in result["systems"]}
    lines = [
        f"`benchmarks/results/{path.name}`: "
        f"{result['machine']['cpu']}, {result['machine']['threads']} threads, {result['machine']['date']}; "
        f"{result['data']['scored']} rows; median (min-max) rows/s of {result['settings']['repeats']} "
        "interleaved rounds.",
        "",
        "| system | accuracy | rows/s | mean exit layer |",
        "|---|---|---|---|",
    ]
    for name in ("tier1-pytorch-bf16", "tier2-pytorch-bf16"):
        if name in by:
            r = by[name]
            lines.append(
                f"| {name} (plain, all layers) | {r['accuracy']:.2%} | {r['rows_per_s']:.1f} "
                f"({r['rows_per_s_min']:.1f}-{r['rows_per_s_max']:.1f}) | - |"
            )
    for r in result["systems"]:
        if "mean_exit_layer" in r:
            lines.append(
                f"| {r['system']} | {r['accuracy']:.2%} | {r['rows_per_s']:.1f} "
                f"({r['rows_per_s_min']:.1f}-{r['rows_per_s_max']:.1f}) | {r['mean_exit_layer']:.2f} |"
            )
    lines += ["", "| target (#17) | measured | met |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {'yes' if ok else '**no**'} |" for n, v, ok in early_exit_checks(by)]
    return "\n".join(lines) + "\n"


def run_series(
    name: str,
    runs: int,
    repeats: int,
    out: Path,
    limit: int | None,
    series: str | None = None,
    **overrides: Any,
) -> None:
    """``runs`` full runs of one data set, quietly, as one series: SERIES.json holds the newest run
    with the earlier ones under ``earlier_runs`` (SERIES defaults to the data set's name; another
    series name keeps an earlier series' files). While it runs, each run also writes SERIES-runK.*,
    removed once the series is whole: results keep one JSON and one Markdown per series."""
    from tango.quiet import quiet_libraries

    series = series or name
    if runs > 1:
        for stale in out.glob(f"{series}-run*"):
            stale.unlink()  # a new series: an interrupted one's runs are not mixed in
    done: list[dict[str, Any]] = []
    for k in range(1, runs + 1):
        result_name = f"{series}-run{k}" if runs > 1 else series
        click.echo(f"== {series}: run {k} of {runs}", err=True)
        with quiet_libraries():  # other libraries' logs and bars stay out of the benchmark's log
            result = run_dataset(
                name, repeats, lambda m: click.echo(m, err=True), out, limit, result_name, **overrides
            )
        result["series"] = series
        (out / f"{result_name}.json").write_text(json.dumps(result, indent=2))  # with dataset, runtimes
        done.append(result)
        if runs > 1 and k == runs:
            for suffix in (".png", ".html", "_reliability_tier1.png"):  # the newest run's pictures
                shutil.copyfile(out / f"{result_name}{suffix}", out / f"{series}{suffix}")
            whole = dict(result, earlier_runs=done[:-1])
            (out / f"{series}.json").write_text(json.dumps(whole, indent=2))
            for part in out.glob(f"{series}-run*"):
                part.unlink()
        (out / f"{series}.md").write_text(markdown(result, out))
        click.echo(markdown(result, out))


def series_of(out: Path, dataset: str) -> list[str]:
    """The series of a data set with results in ``out``: its own name first, then any others."""
    names = []
    for path in sorted(out.glob("*.json")):
        if re.search(r"-run\d+$", path.stem):
            continue
        result = json.loads(path.read_text())
        if result.get("dataset") == dataset and "systems" in result:
            names.append(result.get("series", dataset))
    return sorted(set(names), key=lambda n: (n != dataset, n))


@click.command()
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    type=click.Choice(sorted(DATASETS)),
    help="Data set(s) to run (default: all).",
)
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed runs after the warm-up.")
@click.option(
    "--runs",
    default=1,
    show_default=True,
    help="Full runs of each data set (one series: NAME.json keeps them all).",
)
@click.option(
    "--series",
    default=None,
    help="Name of this series of runs (default: the data set's); results go to SERIES.json.",
)
@click.option("--limit", type=int, default=None, help="Only the first N rows (a smoke test).")
@click.option("--tier1", default=None, help="Override the data set's tier-1 name.")
@click.option("--tier2", default=None, help="Override the data set's tier-2 name.")
@click.option(
    "--bound-on",
    type=click.Choice(["population", "rows"]),
    default=None,
    help="What the chosen thresholds' certified drop is about: the mean over new rows (default, "
    "as `tango calibrate`) or the bench rows themselves, their sampling noise included.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=str(ROOT / "results"),
    show_default=True,
    help="Where the JSON, Markdown, PNG and HTML results go.",
)
@click.option(
    "--write-calibration-rows",
    type=click.Path(dir_okay=False),
    default=None,
    help="Only write SST-2's 3,000 calibration rows (held out, not bench rows) to this TSV and stop; "
    "the early-exit recipes of configs/sst2.toml fit the exits' temperatures on them.",
)
def main(
    datasets: tuple[str, ...],
    repeats: int,
    runs: int,
    limit: int | None,
    tier1: str | None,
    tier2: str | None,
    bound_on: str | None,
    out_dir: str,
    write_calibration_rows: str | None,
    series: str | None,
) -> None:
    """Run the benchmark and write the results (the docs: python benchmarks/docs.py)."""
    if write_calibration_rows:
        calibration_tsv(Path(write_calibration_rows))
        return
    out = Path(out_dir)
    out.mkdir(exist_ok=True, parents=True)
    for name in datasets or tuple(DATASETS):
        run_series(name, runs, repeats, out, limit, series, tier1=tier1, tier2=tier2, bound_on=bound_on)


if __name__ == "__main__":
    main()
