"""The SST-2 new-text series of benchmarks/PROTOCOL.md: tiers that held out whole sentences, dev
judging, 20 calibration seeds, labelled and label-free gates, per tier-1 variant.

Every tier scores each row set once (dev, the held-out full sentences, a pool of IMDB
sentences); the seeds then resample calibration rows, fit temperatures and certify thresholds
(`tango.tuning.fit_gate`, max_drop 0.5 at level 0.9) and apply them to dev's scores. Speeds come
from each tier alone on dev, timed interleaved round-robin (warm-up, REPEATS rounds, 2 threads,
tokenization included); the median seed's cascade is timed end to end in the same rounds.

    python benchmarks/imdb_sentences.py && tango build configs/sst2.toml   # the tiers, once
    python benchmarks/new_text_series.py          # series 1 -> results/new_text_sst2.{json,md}
    python benchmarks/new_text_series.py --series 2   # -> results/new_text_sst2_series2.{json,md}

Series 2 (PROTOCOL.md version 2) adds tier 1 variants C (Gatekeeper) and D (100,000 IMDB
sentences), the combined gate (labelled sentences and IMDB sentences in one prediction-powered
bound) and the pick of a variant on the held-out sentences' deferral curve.

Nothing here is chosen on dev: dev only judges.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

THREADS = 2
REPEATS = 5
SEEDS = 20
MAX_DROP = 0.5
LEVEL = 0.9
LABELLED_ROWS = 2000  # held-out full sentences per seed
UNLABELLED_POOL, UNLABELLED_ROWS = 20000, 15000  # IMDB calibration sentences: pool, per seed
ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
HOME = Path.home() / ".cache" / "tango"
TIER2 = "mpnet-base-sst2-g30k-ov-int8"  # every tier by the exact form a series ran
SERIES = {
    "1": {
        "name": "new_text_sst2",
        "protocol": "benchmarks/PROTOCOL.md, 2026-12-06",
        "variants": {
            "A (distilled)": "minilm-l6-sst2-g30k-distilled-ov",
            "B (+ IMDB sentences)": "minilm-l6-sst2-g30k-imdb-ov",
        },
        "gates": ("labelled", "label-free"),
    },
    "2": {
        "name": "new_text_sst2_series2",
        "protocol": "benchmarks/PROTOCOL.md, version 2, 2026-12-06",
        "variants": {
            "B (+ 30k IMDB sentences)": "minilm-l6-sst2-g30k-imdb-ov",
            "C (B + Gatekeeper)": "minilm-l6-sst2-g30k-imdb-gk-ov",
            "D (+ 100k IMDB sentences)": "minilm-l6-sst2-g30k-imdb100k-ov",
        },
        "gates": ("labelled", "label-free", "combined"),
    },
    "5": {
        "name": "new_text_sst2_series5",
        "protocol": "benchmarks/PROTOCOL.md, version 5, 2026-12-06",
        "variants": {
            "D (+ 100k IMDB sentences)": "minilm-l6-sst2-g30k-imdb100k-ov",
            "D8 (D, int8)": "minilm-l6-sst2-g30k-imdb100k-ov-int8",
            "E (D + Gatekeeper)": "minilm-l6-sst2-g30k-imdb100k-gk-ov",
            "E8 (E, int8)": "minilm-l6-sst2-g30k-imdb100k-gk-ov-int8",
        },
        "gates": ("labelled", "label-free", "combined"),
        "pick": "speed within target on the held-out sentences",
        "optional": ("D8 (D, int8)", "E8 (E, int8)"),  # an int8 form failing its export check is left out
    },
}
# series 8: series 5 again under version 8 (label-free gates bounded exactly; the rest unchanged)
SERIES["8"] = {
    **SERIES["5"],
    "name": "new_text_sst2_series8",
    "protocol": "benchmarks/PROTOCOL.md, version 8, 2026-12-06 (exact label-free bound)",
}


def results_link(name: str) -> str:
    return (
        "\nThe runtime x gate tables and the deferral study: "
        f"[benchmarks/results/{name}.md](benchmarks/results/{name}.md).\n"
    )


def load(form: str):
    """A tier in the exported form a series names (tango probe's record picks precision and
    options)."""
    from tango.registry import registered_dir
    from tango.tiers import Tier

    if path := registered_dir(form):
        return Tier.from_pretrained(path, threads=THREADS)
    from tango.recipes import EXPORT_FORMS

    suffixes = sorted((suffix for suffix, _ in EXPORT_FORMS.values()), key=len, reverse=True)
    recipe = next((form[: -len(s)] for s in suffixes if form.endswith(s)), form)  # the recipe's name
    raise click.ClickException(f"no tier {form}: build it: tango build configs/sst2.toml {recipe}")


def usable_variants(series: dict) -> tuple[dict[str, str], dict[str, str]]:
    """The series' variants whose forms are registered, and why each optional one left out is
    out (an export is registered only when it passed its agreement check)."""
    from tango.registry import registered_dir

    names, left_out = {}, {}
    for variant, form in series["variants"].items():
        if variant in series.get("optional", ()) and not registered_dir(form):
            left_out[variant] = why_unregistered(form)
        else:
            names[variant] = form
    return names, left_out


def why_unregistered(form: str) -> str:
    """Why an exported form is not registered: its export's record says how its check went."""
    import json

    record = HOME / "models" / form / "tango_export.json"
    if not record.exists():
        return f"{form} was not built"
    from tango.export import MIN_AGREEMENT

    saved = json.loads(record.read_text())
    agreement, needed = saved.get("check", {}).get("agreement"), saved.get("min_agreement", MIN_AGREEMENT)
    return f"{form} failed its export check (agreement with fp32 {agreement}, needed {needed})"


def rows(tier2_name: str, labels: list[str]) -> dict[str, Any]:
    """Dev (judges), the held-out full sentences (labelled calibration), the IMDB pool (unlabelled)."""
    from tango.data import load_labelled, load_texts
    from tango.registry import registered_dir
    from tango.splits import held_out_rows

    dev = load_labelled(DATA / "sst2" / "dev.tsv", label_names=labels)
    held = held_out_rows(registered_dir(tier2_name))
    sentences, _ = held.load_with_rest(labels)
    imdb = load_texts(HOME / "data" / "imdb-sentences-calibration.jsonl")
    pick = np.sort(np.random.default_rng(0).permutation(len(imdb))[:UNLABELLED_POOL])
    return {"dev": dev, "sentences": sentences, "imdb": [imdb[i] for i in pick], "held": held.to_dict()}


def gate(
    first: np.ndarray,
    last: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    unlabelled: list[np.ndarray] | None = None,
) -> tuple[float, float, float]:
    """(tier-1 temperature, threshold, certified bound) for MAX_DROP at LEVEL on these rows;
    ``unlabelled`` (both tiers' logits on unlabelled rows) joins labelled rows in one bound."""
    from tango.tuning import Target, fit_gate

    y = last.argmax(1) if labels is None else labels
    goal = Target(max_drop=MAX_DROP, confidence_level=LEVEL, seed=seed)
    fitted = fit_gate(
        [first, last], y, [1.0, 1.0], goal, fit_last=labels is not None, unlabelled_logits=unlabelled
    )
    bound = fitted.choice["drop_bound"]
    return float(fitted.scalers[0].temperature_), float(fitted.thresholds[0]), float(bound)


def judged(first: np.ndarray, last: np.ndarray, y: np.ndarray, temperature: float, threshold: float) -> dict:
    """The gate on dev: accuracy, drop against tier 2 alone (points), share escalated."""
    from tango.confidence import confidence, softmax

    escalate = confidence(softmax(first, temperature), "maxprob") < threshold
    final = np.where(escalate, last.argmax(1), first.argmax(1))
    accuracy, alone = float((final == y).mean()), float((last.argmax(1) == y).mean())
    return {"accuracy": accuracy, "drop": 100 * (alone - accuracy), "escalated": float(escalate.mean())}


def add_speeds(result: dict, variant: str, costs: dict[str, float], timed: dict[str, float]) -> None:
    """Each seed's speedup from the tiers' measured per-row costs; the median seed's, timed."""

    def speedup(escalated: float) -> float:
        return costs["tier2"] / (costs[variant] + escalated * costs["tier2"])

    for kind in result["gates"]:
        gate_result = result[kind]
        for seed in gate_result["seeds"]:
            seed["speedup"] = speedup(seed["escalated"])
        gate_result["speedup"] = spread([s["speedup"] for s in gate_result["seeds"]])
        gate_result["median_seed_timed_speedup"] = costs["tier2"] / timed[f"{variant}, {kind}"]
    result["ceiling"]["speedup"] = speedup(result["ceiling"]["escalated"])


def median_cascade(tiers: dict, variant: str, gate_result: dict):
    """The cascade of the median seed's gate (by escalated share), to time end to end."""
    from tango.cascade import Cascade

    seed = gate_result["seeds"][gate_result["median_seed"]]
    return Cascade(
        [tiers[variant], tiers["tier2"]], [seed["threshold"]], temperatures=[seed["temperature"], 1.0]
    )


PIPELINE_BATCH = 32


def pipeline_cascade(pair: list, texts: list, threshold: float, temperature: float = 1.0):
    """Two fp32 Hugging Face ``pipeline``s (TangoBERT's runtime): rows whose max-probability at
    ``temperature`` (applied to the first pipeline's class probabilities) is under ``threshold``
    go to the second. Returns a callable giving (labels, share escalated)."""
    import torch
    from transformers import pipeline

    from tango.modeldir import read_export_record

    options = {"device": -1, "batch_size": PIPELINE_BATCH, "dtype": torch.float32, "top_k": None}
    first, last = (
        pipeline(
            "text-classification", model=read_export_record(t.path).get("source", str(t.path)), **options
        )
        for t in pair
    )

    def tempered_top(scores: list[dict]) -> tuple[str, float]:
        logp = np.log(np.clip([s["score"] for s in scores], 1e-30, None)) / temperature
        p = np.exp(logp - logp.max())
        return scores[int(np.argmax(p))]["label"], float(p.max() / p.sum())

    def run() -> tuple[list[str], float]:
        answers = [tempered_top(scores) for scores in first(texts, truncation=True)]
        labels = [label for label, _ in answers]
        unsure = [i for i, (_, p) in enumerate(answers) if p < threshold]
        if unsure:
            for i, scores in zip(unsure, last([texts[i] for i in unsure], truncation=True), strict=True):
                labels[i] = max(scores, key=lambda s: s["score"])["label"]
        return labels, len(unsure) / len(texts)

    return run


def two_by_two(pair: list, name: str, gate_seed: dict, dev: list) -> dict[str, Any]:
    """The systems of the runtime x gate table of the cascade ``pair`` (tier 1, the last tier):
    {pipeline fp32, tango} x {TangoBERT rule, the gate of ``gate_seed``}, named ``name, ...``."""
    from tango.bench.systems import RULE_THRESHOLD  # TangoBERT's max-probability threshold, T = 1
    from tango.cascade import Cascade

    rule = Cascade(pair, [RULE_THRESHOLD], temperatures=[1.0, 1.0])
    return {
        f"{name}, pipeline x rule": pipeline_cascade(pair, dev, RULE_THRESHOLD),
        f"{name}, pipeline x gate": pipeline_cascade(
            pair, dev, gate_seed["threshold"], gate_seed["temperature"]
        ),
        f"{name}, tango x rule": lambda: rule.predict_detailed(dev),
    }


def table_cell(result: Any, labels: list[str], y: np.ndarray) -> tuple[float, float]:
    """(accuracy, share escalated) of a timed system's last answer."""
    if isinstance(result, tuple):  # a pipeline cascade: (label names, share escalated)
        index = {name.lower(): k for k, name in enumerate(labels)}
        predicted = np.asarray([index[str(name).lower()] for name in result[0]])
        return float((predicted == y).mean()), result[1]
    predicted = np.asarray([labels.index(str(name)) for name in result.labels])
    return float((predicted == y).mean()), float(result.stats.escalated[0])


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
    }


def seeded_gate(kind: str, first: dict, last: dict, sentence_labels: np.ndarray, seed: int) -> tuple:
    """Seed ``seed``'s calibration rows for gate ``kind`` and the gate certified on them: 2,000
    held-out sentences (labelled), 15,000 IMDB sentences (label-free), or both (combined)."""
    labelled = np.random.default_rng(seed).permutation(len(first["sentences"]))[:LABELLED_ROWS]
    unlabelled = np.random.default_rng(seed).permutation(len(first["imdb"]))[:UNLABELLED_ROWS]
    if kind == "label-free":
        return gate(first["imdb"][unlabelled], last["imdb"][unlabelled], None, seed)
    side = [first["imdb"][unlabelled], last["imdb"][unlabelled]] if kind == "combined" else None
    rows = (first["sentences"][labelled], last["sentences"][labelled], sentence_labels[labelled])
    return gate(*rows, seed, unlabelled=side)


def fewest_escalated(
    first: np.ndarray, last: np.ndarray, y: np.ndarray, uncertainty: np.ndarray | None = None
) -> float:
    """The fewest rows (a share) a two-tier cascade must escalate, least confident first (most
    ``uncertainty`` first, where given), to stay within MAX_DROP of the last tier on these rows:
    chosen with their labels, a bound, not a system."""
    from tango.bench import escalation_curve
    from tango.deferral import rows_right

    right = (
        escalation_curve(first, last, y) if uncertainty is None else rows_right(first, last, y, uncertainty)
    )
    needed = int(np.ceil(((last.argmax(1) == y).mean() - MAX_DROP / 100) * len(y) - 1e-6))
    return int(np.flatnonzero(right >= needed)[0]) / len(y)


def series_for(variant: str, scores: dict, y: np.ndarray, gates: tuple[str, ...]) -> dict:
    """Each gate over SEEDS seeds for one tier-1 variant, and its deferral on dev (speeds later)."""
    from tango.bench import escalation_curve
    from tango.deferral import deferral_study, words

    first, last = scores[variant], scores["tier2"]
    agreement = float((first["dev"].argmax(1) == last["dev"].argmax(1)).mean())
    result: dict[str, Any] = {"agreement_with_tier2": agreement, "gates": list(gates)}
    result["tier1_accuracy"] = float((first["dev"].argmax(1) == y).mean())
    sentence_labels = scores["labels"]["sentences"]
    right = escalation_curve(first["sentences"], last["sentences"], sentence_labels)
    result["sentences_deferral_area"] = float(right.mean() / len(sentence_labels))  # picks a variant
    for kind in gates:
        per_seed = []
        for seed in range(SEEDS):
            temperature, threshold, bound = seeded_gate(kind, first, last, sentence_labels, seed)
            outcome = judged(first["dev"], last["dev"], y, temperature, threshold)
            per_seed.append(
                {"seed": seed, "temperature": temperature, "threshold": threshold, "bound": bound, **outcome}
            )
        drops = [s["drop"] for s in per_seed]
        result[kind] = {
            "seeds": per_seed,
            "drop": spread(drops),
            "escalated": spread([s["escalated"] for s in per_seed]),
            "within_target": float(np.mean([d <= MAX_DROP for d in drops])),
            "median_seed": sorted(per_seed, key=lambda s: s["escalated"])[SEEDS // 2]["seed"],
        }
    result["ceiling"] = {"escalated": fewest_escalated(first["dev"], last["dev"], y)}
    sentences = (first["sentences"], last["sentences"], sentence_labels)
    result["sentences_ceiling_escalated"] = fewest_escalated(*sentences)
    fit_rows = (first["sentences"], last["sentences"], words(scores["texts"]["sentences"]))
    judged_rows = (first["dev"], last["dev"], y, words(scores["texts"]["dev"]))
    result["deferral"] = deferral_study(fit_rows, judged_rows)
    return result


@click.command()
@click.option("--series", "series_key", type=click.Choice(sorted(SERIES)), default="1", show_default=True,
              help="Which series of PROTOCOL.md: its tier 1 variants, gates and results file.")  # fmt: skip
@click.option("--repeats", default=REPEATS, show_default=True, help="Timed rounds after the warm-up.")
def main(series_key: str, repeats: int) -> None:
    """Run a series and write benchmarks/results/<its name>.{json,md} (and README's table)."""
    from docs_section import write_results

    from tango.hardware import set_torch_threads

    set_torch_threads(THREADS)
    series = SERIES[series_key]
    names, left_out = usable_variants(series)
    tiers = {"tier2": load(TIER2), **{v: load(name) for v, name in names.items()}}
    labels = list(tiers["tier2"].labels)
    data = rows(TIER2, labels)
    scores, y = score_rows(tiers, data, labels)
    variants = {v: series_for(v, scores, y, series["gates"]) for v in names}
    dev = data["dev"].texts
    tabled: list[str] = []  # variants whose 2x2 is timed in the same rounds as the tiers
    if "pick" not in series:
        picked = max(variants, key=lambda v: variants[v]["sentences_deferral_area"])  # never dev
        tabled = list(names) if series_key == "1" else [picked]  # series 1 tabled every variant
    timings = time_systems(tiers, variants, tabled, dev, repeats)
    per_row = {k: timing.median / len(dev) for k, timing in timings.items()}
    for v in tabled:
        variants[v]["runtime_x_gate"] = runtime_x_gate(v, timings, labels, y, len(dev))
    if "pick" in series:  # the variants differ in cost: pick on the timed costs, then its 2x2
        for v, record in variants.items():
            record["sentences_speed"] = sentences_speed(record, per_row[v], per_row["tier2"])
        picked = max(variants, key=lambda v: variants[v]["sentences_speed"])  # never dev
        table = time_table(tiers, variants, picked, dev, repeats)
        variants[picked]["runtime_x_gate"] = runtime_x_gate(picked, table, labels, y, len(dev))
        timings.update({f"{k} (2x2 rounds)": t for k, t in table.items()})
    for v, record in variants.items():
        add_speeds(record, v, per_row, per_row)
    result = {
        "series": series_key,
        "protocol": series["protocol"],
        "command": shlex.join(["python", "benchmarks/new_text_series.py", *sys.argv[1:]]),
        "machine": _machine(),
        "rows": {
            "dev": len(dev),
            "held_out_sentences": len(data["sentences"].texts),
            "imdb_pool": len(data["imdb"]),
            "held_out": data["held"],
        },  # fmt: skip
        "settings": {
            "seeds": SEEDS,
            "max_drop": MAX_DROP,
            "confidence_level": LEVEL,
            "repeats": repeats,
            "labelled_rows": LABELLED_ROWS,
            "unlabelled_rows": UNLABELLED_ROWS,
            "threads": THREADS,
        },  # fmt: skip
        "tiers": {
            k: {"path": str(t.path), "runtime": t.runtime.description, **speed(timings[k], len(dev))}
            for k, t in tiers.items()
        },  # fmt: skip
        "timed": {k: {"seconds": t.seconds} for k, t in timings.items()},
        "tier2_accuracy": float((scores["tier2"]["dev"].argmax(1) == y).mean()),
        "picked_variant": picked,
        "variants": variants,
        **({"left_out": left_out} if left_out else {}),
    }
    write_results(series["name"], result, markdown(result))  # README's table: benchmarks/docs.py


def _machine() -> dict:
    from tango.hardware import machine

    return machine(THREADS)


def speed(timing, rows: int) -> dict[str, float]:
    return {"rows_per_s": rows / timing.median, "rows_per_s_min": rows / timing.max,
            "rows_per_s_max": rows / timing.min}  # fmt: skip


def score_rows(tiers: dict, data: dict, labels: list[str]) -> tuple[dict, np.ndarray]:
    """Every tier's logits on dev, the held-out sentences and the IMDB pool; dev's label ids."""
    from tango.labels import align_labels as to_ids

    texts = {"dev": data["dev"].texts, "sentences": data["sentences"].texts, "imdb": data["imdb"]}
    scores: dict[str, Any] = {"texts": texts, "labels": {"sentences": data["sentences"].labels}}
    for key, tier in tiers.items():
        click.echo(f"scoring with {key}: {tier.runtime.description}", err=True)
        scores[key] = {part: tier.logits(rows_) for part, rows_ in texts.items()}
    return scores, to_ids(data["dev"].labels, data["dev"].label_names, labels)


def time_systems(tiers: dict, variants: dict, tabled: list[str], dev: list, repeats: int) -> dict:
    """Each tier alone, each variant's median-seed cascade per gate, and the runtime x gate
    systems of the ``tabled`` variants: interleaved round-robin (``tango.bench.interleave``)."""
    from tango.bench import interleave

    systems = {k: (lambda t=t: t.logits(dev)) for k, t in tiers.items()}
    for v, record in variants.items():
        for kind in record["gates"]:
            cascade = median_cascade(tiers, v, record[kind])
            systems[f"{v}, {kind}"] = lambda c=cascade: c.predict_detailed(dev)
    for v in tabled:
        gate_seed = variants[v]["labelled"]["seeds"][variants[v]["labelled"]["median_seed"]]
        systems.update(two_by_two([tiers[v], tiers["tier2"]], v, gate_seed, dev))
    return interleave(systems, repeats, lambda message: click.echo(message, err=True))


def sentences_speed(record: dict, cost: float, tier2_cost: float) -> float:
    """A variant's speed against tier 2 at its fewest escalated held-out sentences within target
    (series 5's pick: the held-out sentences' labels and the timed costs, no dev label)."""
    return tier2_cost / (cost + record["sentences_ceiling_escalated"] * tier2_cost)


def time_table(tiers: dict, variants: dict, picked: str, dev: list, repeats: int) -> dict:
    """The pick's runtime x gate systems, its labelled median-seed cascade and tier 2 alone, in
    rounds of their own (the 2x2's speeds are against this tier 2)."""
    from tango.bench import interleave

    record = variants[picked]
    systems = {"tier2": lambda t=tiers["tier2"]: t.logits(dev)}
    cascade = median_cascade(tiers, picked, record["labelled"])
    systems[f"{picked}, labelled"] = lambda: cascade.predict_detailed(dev)
    median_seed = record["labelled"]["seeds"][record["labelled"]["median_seed"]]
    systems.update(two_by_two([tiers[picked], tiers["tier2"]], picked, median_seed, dev))
    return interleave(systems, repeats, lambda message: click.echo(message, err=True))


def runtime_x_gate(
    variant: str, timings: dict, labels: list[str], y: np.ndarray, rows: int, reference: str = "tier2"
) -> dict:
    """The 2x2 cells of one variant: accuracy, share escalated, rows/s of each system and its
    speed against the last tier alone (timed as ``reference``) in the same rounds."""
    cells = {}
    for name in ("pipeline x rule", "pipeline x gate", "tango x rule", "labelled"):
        timing = timings[f"{variant}, {name}"]
        accuracy, escalated = table_cell(timing.result, labels, y)
        cells[name.replace("labelled", "tango x gate")] = {
            "accuracy": accuracy, "escalated": escalated, "rows_per_s": rows / timing.median,
            "vs_tier2": timings[reference].median / timing.median,
        }  # fmt: skip
    return cells


def two_by_two_lines(cells: dict, title: str, last_accuracy: float, last_rows_per_s: float) -> list[str]:
    """The runtime x gate table: each cell's speed against the last tier alone (of its own rounds
    where recorded), its accuracy drop against the last tier, and its share escalated."""
    lines = [
        "",
        title,
        "",
        "| runtime | TangoBERT rule (maxprob 0.85, T = 1) | certified gate |",
        "|---|---|---|",
    ]
    for runtime, label in (("pipeline", "fp32 `pipeline`"), ("tango", "tango (OpenVINO)")):
        row = [label]
        for gate_name in ("rule", "gate"):
            c = cells[f"{runtime} x {gate_name}"]
            drop = 100 * (last_accuracy - c["accuracy"])
            speed = c.get("vs_tier2", c["rows_per_s"] / last_rows_per_s)
            row.append(f"{speed:.2f}x, {drop:+.2f} pt, {100 * c['escalated']:.1f}% on")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def recorded_bounds(result: dict) -> bool:
    """Whether the series recorded its gates' certified bounds (series 1 did not: its table, as
    committed, has no such column)."""
    return any(
        "bound" in seed
        for v in result["variants"].values()
        for kind in v.get("gates", ("labelled", "label-free"))
        for seed in v[kind]["seeds"]
    )


def bound_cell(gate_result: dict) -> str:
    """The median certified bound of a gate's seeds."""
    bounds = [seed["bound"] for seed in gate_result["seeds"] if "bound" in seed]
    return f"{np.median(bounds):.2f} pt | " if bounds else "- | "


def markdown(result: dict) -> str:  # also README's new_text section
    m, r, st = result["machine"], result["rows"], result["settings"]
    held, tier2 = r["held_out"], result["tiers"]["tier2"]
    name = SERIES[result.get("series", "1")]["name"]
    bounds = recorded_bounds(result)
    lines = [
        f"`benchmarks/results/{name}.json` ({result['protocol']}): SST-2 dev ({r['dev']} rows, "
        f"judging only); tiers held out {held['held']} training rows as {held['group_count']} whole "
        f"sentences; labelled gate on {st['labelled_rows']} of those sentences, label-free gate on "
        f"{st['unlabelled_rows']} of {r['imdb_pool']} IMDB sentences"
        + (", combined gate on both in one prediction-powered bound" if "combined" in str(result) else "")
        + f", {st['seeds']} seeds, max drop "
        f"{st['max_drop']} pt at level {st['confidence_level']}; {m['cpu']}, {m['threads']} threads; "
        f"{m['date']}. Tier 2 alone: {100 * result['tier2_accuracy']:.2f}% on dev, "
        f"{tier2['rows_per_s']:.0f} rows/s. Command: `{result['command']}`.",
        "",
        "| tier 1 | agrees with tier 2 | gate | drop vs tier 2, pt: median (p10-p90) | seeds within 0.5 pt | "
        "speedup vs tier 2: median (p10-p90) | escalated, median | "
        + ("certified bound, median | " if bounds else "")
        + "ceiling within 0.5 pt |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if bounds else ""),
    ]
    for name, v in result["variants"].items():
        for kind in v.get("gates", ("labelled", "label-free")):
            g = v[kind]
            lines.append(
                f"| {name} | {100 * v['agreement_with_tier2']:.1f}% | {kind} | {g['drop']['median']:+.2f} "
                f"({g['drop']['p10']:+.2f} to {g['drop']['p90']:+.2f}) | {100 * g['within_target']:.0f}% | "
                f"{g['speedup']['median']:.2f}x ({g['speedup']['p10']:.2f}-{g['speedup']['p90']:.2f}) | "
                f"{100 * g['escalated']['median']:.1f}% (its cascade timed: "
                f"{g['median_seed_timed_speedup']:.2f}x) | "
                + (bound_cell(g) if bounds else "")
                + f"{v['ceiling']['speedup']:.2f}x "
                f"({100 * v['ceiling']['escalated']:.1f}% escalated) |"
            )
    tier2_rows_per_s = result["tiers"]["tier2"]["rows_per_s"]
    lines += [f"- Left out: {variant}: {why}." for variant, why in result.get("left_out", {}).items()]
    if "sentences_speed" in next(iter(result["variants"].values())):
        speeds = ", ".join(
            f"{k} {v['sentences_speed']:.2f}x ({100 * v['sentences_ceiling_escalated']:.1f}% escalated)"
            for k, v in result["variants"].items()
        )
        lines += ["", "Picked on the held-out sentences: speed against tier 2 at the fewest of them "
                      f"escalated within 0.5 pt ({speeds}): **{result['picked_variant']}**; its runtime x "
                      "gate table follows (timed in rounds of its own, with tier 2 alone)."]  # fmt: skip
    elif "picked_variant" in result:
        areas = ", ".join(f"{k} {v['sentences_deferral_area']:.4f}" for k, v in result["variants"].items())
        lines += ["", f"Picked on the held-out sentences' deferral curve (area: {areas}): "
                      f"**{result['picked_variant']}**; its runtime x gate table follows."]  # fmt: skip
    for name, v in result["variants"].items():
        if "runtime_x_gate" in v:
            title = (
                f"Runtime x gate, tier 1 {name} (labelled gate at its median seed; speed against tier 2 "
                "alone on tango's runtime, accuracy drop against tier 2):"
            )
            lines += two_by_two_lines(v["runtime_x_gate"], title, result["tier2_accuracy"], tier2_rows_per_s)
    lines += [
        "",
        "Deferral on dev, AUROC for disagreement with tier 2 (learned rule fitted on held-out sentences):",
        "",
    ]
    for name, v in result["variants"].items():
        auroc = ", ".join(f"{k} {a:.3f}" for k, a in v["deferral"]["auroc"].items() if a is not None)
        lines.append(
            f"- {name}: {auroc}; learned rule beats max-probability: {v['deferral'].get('beats_maxprob')}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
