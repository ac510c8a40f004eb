"""Does tier 1's own representation rank its disagreements with tier 2 better than its confidence?
(benchmarks/PROTOCOL.md version 7, issue #28 item 3; an exploration that reads no dev row)

Tier 1 (series 5's pick E, PyTorch fp32) gives, per row, its logits, the [CLS] vector of its
last layer and that layer's mean over tokens; tier 2 (series 5's MPNet-base, OpenVINO int8)
gives its answer. Rules that predict "tier 1 disagrees with tier 2" are fitted on unlabelled
IMDB sentences (tier 2's answers are the target) or cross-fitted on the judged rows, and judged
on the tiers' held-out full SST-2 sentences: AUROC for disagreement, and the fewest rows each
ranking must escalate to stay within 0.5 pt of tier 2 there (labels choose that share: a bound,
not a system), as a speed through series 5's per-row costs.

    python benchmarks/studies/deferral_features.py   # -> results/deferral_features.{json,md}
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from new_text_series import HOME, MAX_DROP, TIER2, UNLABELLED_POOL, fewest_escalated, load  # noqa: E402

THREADS = 2
TIER1 = "minilm-l6-sst2-g30k-imdb100k-gk"  # E's weights (series 5 timed its int8 form, E8)
TIER1_TIMED = "E8 (E, int8)"
FIT_ROWS = 20000
FOLDS = 5
C_GRID = (0.001, 0.01, 0.1, 1.0)  # scikit-learn's C: inverse L2 strength
BATCH = 64


def imdb_fit_texts() -> list[str]:
    """FIT_ROWS IMDB calibration sentences outside the series' pool (its pick: seed 0's first
    UNLABELLED_POOL), drawn with seed 1."""
    from tango.data import load_texts

    texts = load_texts(HOME / "data" / "imdb-sentences-calibration.jsonl")
    pool = set(np.random.default_rng(0).permutation(len(texts))[:UNLABELLED_POOL].tolist())
    rest = np.asarray([i for i in range(len(texts)) if i not in pool])
    pick = np.sort(np.random.default_rng(1).permutation(rest)[:FIT_ROWS])
    return [texts[i] for i in pick]


def tier1_outputs(path: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), representation (N, 2H): last layer's [CLS] vector and its token mean)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths batch together
    logits, reps = [None] * len(texts), [None] * len(texts)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), BATCH), desc="tier 1", unit="batch", mininterval=5):
            index = order[start : start + BATCH]
            batch = tokenizer([texts[i] for i in index], padding=True, truncation=True, return_tensors="pt")
            out = model(**batch, output_hidden_states=True)
            last, mask = out.hidden_states[-1], batch["attention_mask"].unsqueeze(-1).float()
            mean = (last * mask).sum(1) / mask.sum(1)
            rep = torch.cat([last[:, 0], mean], dim=1).numpy()
            for row, i in enumerate(index):
                logits[i], reps[i] = out.logits[row].numpy(), rep[row]
    return np.stack(logits), np.stack(reps)


def features(logits: np.ndarray, reps: np.ndarray | None, lengths: np.ndarray) -> np.ndarray:
    """Output signals (tango.deferral's learned rule's), with the representation where given."""
    from tango.deferral import LearnedDeferral

    signals = LearnedDeferral().features(logits, lengths)
    return signals if reps is None else np.hstack([signals, reps])


def fitted_rule(x: np.ndarray, disagree: np.ndarray):
    """A scaled logistic regression, its L2 strength picked by FOLDS-fold CV AUROC on these rows."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegressionCV(Cs=list(C_GRID), cv=FOLDS, scoring="roc_auc", max_iter=2000)
    with warnings.catch_warnings():  # scikit-learn 1.8 announces 1.10's attribute changes
        warnings.simplefilter("ignore", FutureWarning)
        return make_pipeline(StandardScaler(), model).fit(x, disagree)


def cross_fitted(x: np.ndarray, disagree: np.ndarray) -> np.ndarray:
    """Out-of-fold predicted disagreement on the judged rows (each fold's rule never saw it)."""
    from sklearn.model_selection import StratifiedKFold

    score = np.zeros(len(x))
    for train, held in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(x, disagree):
        score[held] = fitted_rule(x[train], disagree[train]).predict_proba(x[held])[:, 1]
    return score


@click.command()
def main() -> None:
    """Run the study and write benchmarks/results/deferral_features.{json,md}."""
    import json

    from docs_section import write_results
    from sklearn.metrics import roc_auc_score

    from tango.confidence import confidence, softmax
    from tango.deferral import words
    from tango.hardware import machine, set_torch_threads
    from tango.labels import align_labels
    from tango.registry import registered_dir
    from tango.splits import held_out_rows

    set_torch_threads(THREADS)
    tier2 = load(TIER2)
    labels = list(tier2.labels)
    sentences, _ = held_out_rows(registered_dir(TIER2)).load_with_rest(labels)
    judged_texts, y = sentences.texts, align_labels(sentences.labels, sentences.label_names, labels)
    fit_texts = imdb_fit_texts()
    path = registered_dir(TIER1)
    if path is None:
        raise click.ClickException(f"no tier {TIER1}: build it: tango build configs/sst2.toml {TIER1}")
    first_fit, reps_fit = tier1_outputs(path, fit_texts)
    first, reps = tier1_outputs(path, judged_texts)
    last_fit, last = tier2.logits(fit_texts), tier2.logits(judged_texts)
    disagree_fit, disagree = first_fit.argmax(1) != last_fit.argmax(1), first.argmax(1) != last.argmax(1)
    len_fit, len_judged = words(fit_texts), words(judged_texts)
    uncertainty = {"max-probability": 1 - confidence(softmax(first), "maxprob")}
    for name, with_reps in (("output signals", False), ("representation + output signals", True)):
        x_fit = features(first_fit, reps_fit if with_reps else None, len_fit)
        x = features(first, reps if with_reps else None, len_judged)
        uncertainty[f"{name}, fitted on IMDB sentences"] = fitted_rule(x_fit, disagree_fit).predict_proba(x)[
            :, 1
        ]
    uncertainty["representation + output signals, cross-fitted on the sentences"] = cross_fitted(
        features(first, reps, len_judged), disagree
    )
    series5 = json.loads((ROOT / "results" / "new_text_sst2_series5.json").read_text())
    cost = series5["tiers"]["tier2"]["rows_per_s"] / series5["tiers"][TIER1_TIMED]["rows_per_s"]
    rules = {}
    for name, u in uncertainty.items():
        share = fewest_escalated(first, last, y, u)
        rules[name] = {"auroc": float(roc_auc_score(disagree, u)), "escalated": share,
                       "speedup": 1 / (cost + share)}  # fmt: skip
    result = {
        "protocol": "benchmarks/PROTOCOL.md, version 7, 2026-12-06 (an exploration; no dev row read)",
        "command": shlex.join(["python", "benchmarks/studies/deferral_features.py", *sys.argv[1:]]),
        "machine": machine(THREADS),
        "tier1": str(path),
        "tier2": str(tier2.path),
        "fit_rows": {"source": "imdb-sentences-calibration.jsonl outside the series' pool",
                     "rows": len(fit_texts),
                     "disagreement": float(disagree_fit.mean())},
        "judged_rows": {"source": "the tiers' held-out full SST-2 sentences", "rows": len(y),
                        "disagreement": float(disagree.mean()),
                        "tier1_accuracy": float((first.argmax(1) == y).mean()),
                        "tier2_accuracy": float((last.argmax(1) == y).mean())},
        "cost_ratio": {"value": cost, "from": f"series 5: tier 2 and {TIER1_TIMED} alone on dev, rows/s"},
        "rules": rules,
    }  # fmt: skip
    write_results("deferral_features", result, markdown(result))


def markdown(result: dict) -> str:
    m, fit, judged = result["machine"], result["fit_rows"], result["judged_rows"]
    lines = [
        f"`benchmarks/results/deferral_features.json` ({result['protocol']}): tier 1 E (PyTorch fp32) "
        f"against tier 2 (MPNet-base, OpenVINO int8). Rules fitted on {fit['rows']:,} unlabelled IMDB "
        f"sentences (tier 1 disagrees with tier 2 on {100 * fit['disagreement']:.1f}%) and judged on "
        f"{judged['rows']:,} held-out SST-2 sentences (disagreement {100 * judged['disagreement']:.1f}%; "
        f"tier 1 {100 * judged['tier1_accuracy']:.2f}%, tier 2 {100 * judged['tier2_accuracy']:.2f}%). "
        f"Speed: 1 / (tier 1's cost + share escalated), tier 1's cost {result['cost_ratio']['value']:.3f} "
        f"of tier 2's ({result['cost_ratio']['from']}). {m['cpu']}; {m['date']}. "
        f"Command: `{result['command']}`.",
        "",
        "| ranking of rows to escalate | AUROC for disagreement | "
        f"fewest escalated within {MAX_DROP} pt (a bound) | speed there vs tier 2 |",
        "|---|---|---|---|",
    ]
    for name, r in result["rules"].items():
        lines.append(f"| {name} | {r['auroc']:.3f} | {100 * r['escalated']:.1f}% | {r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
