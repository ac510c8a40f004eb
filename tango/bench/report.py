"""The files of one `tango bench` run: results.json, results.md, results.png and report.html.

Every figure in them comes from the result :func:`tango.bench.bench` returns, which carries the
machine, the versions, the command line and the rows used; ``report.html`` embeds its images
(base64 PNG) so it opens anywhere on its own.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

KIND_NAMES = {
    "tier": "tier alone",
    "sweep": "cascade sweep (thresholds from these rows)",
    "chosen": "chosen cascade (thresholds from other rows)",
    "rule": "TangoBERT rule on tango's tiers",
    "peer": "peer (transformers pipeline)",
    "extra": "other",
}


def write_results(
    result: dict[str, Any],
    out: str | Path,
    name: str = "results",
    reliability: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[Path]:
    """Write ``{name}.json``, ``{name}.md``, ``{name}.png`` and the HTML report into ``out``.

    The report is ``report.html`` for the default name, else ``{name}.html``. ``reliability``
    is tier 1's (probabilities before, after temperature scaling, labels) on the scored rows.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    paths[0].write_text(json.dumps(result, indent=2, default=_jsonable))
    paths[1].write_text(markdown(result))
    plot(result, paths[2])
    images = {"speed vs accuracy": paths[2]}
    if result.get("deferral"):
        curve = out / f"{name}_deferral.png"
        plot_deferral(result, curve)
        images["deferral curve"] = curve
        paths.append(curve)
    if reliability is not None:
        from tango.calibration import reliability_diagram

        diagram = out / f"{name}_reliability_tier1.png"
        reliability_diagram(*reliability, diagram, title="tier 1 before and after temperature scaling")
        images["reliability of tier 1"] = diagram
        paths.append(diagram)
    report = out / ("report.html" if name == "results" else f"{name}.html")
    report.write_text(to_html(result, images))
    return [*paths, report]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# --- tables -----------------------------------------------------------------------------------
def table_rows(result: dict[str, Any], bold: str = "") -> list[list[str]]:
    """system | rows/s median (min-max) | accuracy | speedup vs last tier | escalated | bound.

    The chosen cascade's name is wrapped in ``bold`` (``**`` for Markdown).
    """
    rows = []
    for r in result["systems"]:
        escalated = r["escalated"]
        bound = r.get("analytic_speedup")
        rows.append(
            [
                f"{bold}{r['system']}{bold}" if r["kind"] == "chosen" else r["system"],
                f"{r['rows_per_s']:.1f} ({r['rows_per_s_min']:.1f}-{r['rows_per_s_max']:.1f})",
                f"{r['accuracy']:.2%}",
                f"{r['speedup']:.2f}x",
                ", ".join(f"{f:.1%}" for f in escalated) if escalated is not None else "-",
                f"{bound:.2f}x" if bound else "-",
            ]
        )
    return rows


HEADER = ["system", "rows/s median (min-max)", "accuracy", "speedup vs last tier", "escalated", "bound"]


def describe(result: dict[str, Any]) -> str:
    """One paragraph: machine, versions, rows, method."""
    m, s, d = result["machine"], result["settings"], result["data"]
    isa = ", ".join(m["isa"]) or "no AVX2"
    return (
        f"{d['scored']} rows of {d['source'] or 'memory'} scored end to end (tokenization included); "
        f"thresholds chosen {d['calibration']['mode']} (max drop {s['max_drop']} points at confidence "
        f"level {s['confidence_level']}). {m['cpu']} ({m['cores']} cores; {isa}), {m['threads']} threads; "
        f"python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, onnxruntime "
        f"{m['onnxruntime']}, tango {m['tango']}; {m['date']}. Median (min-max) of {s['repeats']} "
        "rounds after a warm-up round, systems interleaved round-robin. Bound = the analytic speedup "
        "from the tiers' costs alone and the escalated fractions."
    )


def breakdown_rows(result: dict[str, Any]) -> list[tuple[str, float]]:
    b = result["breakdown"]
    parts = [("tokenize", b["tokenize_s"])]
    parts += [(f"tier {k + 1}", b[f"tier{k + 1}_s"]) for k in range(len(result["tiers"]))]
    return [*parts, ("route (the rest)", b["route_s"])]


def markdown(result: dict[str, Any]) -> str:
    """The results table, the chosen cascade's time breakdown and how they were measured."""
    lines = [describe(result), "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result, bold="**")]
    total = result["breakdown"]["seconds"]
    lines += ["", "Chosen cascade, last timed run:", "", "| part | seconds | share |", "|---|---|---|"]
    lines += [f"| {part} | {s:.4f} | {s / total:.0%} |" for part, s in breakdown_rows(result)]
    lines += gate_lines(result)
    lines += ceiling_lines(result)
    lines += deferral_lines(result)
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def gate_lines(result: dict[str, Any]) -> list[str]:
    """Each gate's rows against the scored rows: the tiers' accuracy and the chosen drop on both.

    A gate is only as good as the likeness of the rows that chose it to the rows it runs on;
    this puts the two side by side (results measured before it was recorded show nothing)."""
    by = {r["system"]: r for r in result["systems"]}
    tiers = len(result.get("tiers", []))
    lines = []
    for gate in result.get("gates", []):
        if "tier_accuracy" not in gate or not gate.get("choice"):
            continue
        there = ", ".join(f"{a:.2%}" for a in gate["tier_accuracy"])
        here = ", ".join(f"{by[f'tier{k + 1}']['accuracy']:.2%}" for k in range(tiers))
        chosen_drop = 100 * (by[f"tier{tiers}"]["accuracy"] - by["chosen"]["accuracy"])
        bound = gate["choice"].get("drop_bound")
        lines.append(
            f"Rows that chose the thresholds ({gate['choice']['rows']} certifying): tiers 1..{tiers} "
            f"{there}; the chosen thresholds' drop there {gate['choice']['drop']:+.2f} pt"
            + (f" (bound {bound:.2f})" if bound is not None else "")
            + f". Scored rows: tiers {here}; the chosen cascade's drop {chosen_drop:+.2f} pt."
        )
    return ["", *lines] if lines else []


def ceiling_lines(result: dict[str, Any]) -> list[str]:
    """What no threshold can beat with these tiers on these rows (tango.bench._ceilings)."""
    parts = []
    for c in result.get("ceilings", []):
        against = "tier 2" if c["versus"] == "tier2" else "the reference"
        if c.get("rows_per_s") is None:
            parts.append(f"{c['target']} accuracy ({c['accuracy']:.2%}): no escalation reaches it")
            continue
        parts.append(
            f"{c['target']} accuracy ({c['accuracy']:.2%}): {c['escalated']:.1%} of rows escalated, "
            f"{c['rows_per_s']:.0f} rows/s, {c['ratio']:.2f}x {against}"
        )
    if not parts:
        return []
    return [
        "",
        "Ceiling of these tiers (the fewest rows escalated, least confident first, chosen with the "
        "scored rows' labels; speed from the tiers' measured costs): no threshold does better here. "
        + "; ".join(parts)
        + ".",
    ]


DEFERRAL_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5)  # escalated shares the table shows


def deferral_lines(result: dict[str, Any]) -> list[str]:
    """How well each signal finds the rows that disagree with the last tier (tango.deferral)."""
    study = result.get("deferral")
    if not study:
        return []
    shares = study["shares"]
    columns = [shares.index(share) for share in DEFERRAL_SHARES if share in shares]
    head = ["signal", "AUROC for disagreement", *(f"accuracy, {shares[k]:.0%} escalated" for k in columns)]
    lines = [
        "",
        f"Deferral on the scored rows ({study['rows']} rows; tier 1 disagrees with the last tier on "
        f"{study['disagreement']:.1%}): the least certain rows by each signal take the last tier's "
        "answer."
        + (" The learned rule was fitted on the calibration rows." if "learned" in study["area"] else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, curve in study["curves"].items():
        auroc = study["auroc"].get(name)
        cells = [
            name,
            f"{auroc:.3f}" if auroc is not None else "-",
            *(f"{100 * curve[k]:.2f}%" for k in columns),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if "beats_maxprob" in study:
        verdict = "beats" if study["beats_maxprob"] else "does not beat"
        lines += [
            "",
            f"The learned rule {verdict} max-probability on these rows (mean accuracy over the curve).",
        ]
    return lines


def plot_deferral(result: dict[str, Any], path: str | Path) -> None:
    """Accuracy against the share of rows escalated, one line per deferral signal."""
    from matplotlib.figure import Figure

    study = result["deferral"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    shares = 100 * np.asarray(study["shares"])
    for name, curve in study["curves"].items():
        ax.plot(shares, 100 * np.asarray(curve), marker=".", label=name)
    ax.set(
        xlabel="rows escalated to the last tier (%)",
        ylabel="accuracy (%)",
        title="deferral curve: the least certain rows go on",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- pictures ---------------------------------------------------------------------------------
def plot(result: dict[str, Any], path: str | Path) -> None:
    """Rows/s (log) against accuracy, one marker per kind, min-max bars, the chosen point named."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for kind, label in KIND_NAMES.items():
        rows = sorted((r for r in result["systems"] if r["kind"] == kind), key=lambda r: r["rows_per_s"])
        if not rows:
            continue
        x = np.asarray([r["rows_per_s"] for r in rows])
        spread = [x - [r["rows_per_s_min"] for r in rows], [r["rows_per_s_max"] for r in rows] - x]
        ax.errorbar(
            x,
            [100 * r["accuracy"] for r in rows],
            xerr=spread,
            fmt="o-" if kind == "sweep" else "s",
            label=label,
            capsize=3,
        )
        for r in rows:
            if kind != "sweep":
                ax.annotate(
                    r["system"],
                    (r["rows_per_s"], 100 * r["accuracy"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(4, 4),
                )
    ax.set(
        xscale="log",
        xlabel=f"rows/s (log scale, end to end, {result['settings']['threads']} threads)",
        ylabel="accuracy (%)",
        title="speed vs accuracy",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def to_html(result: dict[str, Any], images: dict[str, Path]) -> str:
    """A self-contained page: the description, the table, the breakdown and the images inline."""
    esc = html.escape

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    total = result["breakdown"]["seconds"]
    parts = [[p, f"{s:.4f}", f"{s / total:.0%}"] for p, s in breakdown_rows(result)]
    figures = "".join(
        f"<figure><img alt='{esc(title)}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(path).read_bytes()).decode()}'><figcaption>{esc(title)}</figcaption></figure>"
        for title, path in images.items()
    )
    command = f"<p>Command: <code>{esc(result['command'])}</code></p>" if result.get("command") else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tango bench</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>tango bench</h1>
<p>{esc(describe(result))}</p>{command}
<h2>Systems</h2>
{table(HEADER, table_rows(result))}
<h2>Where the chosen cascade's time goes</h2>
{table(["part", "seconds", "share"], parts)}
<h2>Figures</h2>
{figures}
</body></html>
"""
