"""The study's report section: ``table.md`` (markdown tables with intervals), ``study.json`` and PNGs.

Cells read ``0.612 [0.571, 0.651]`` (estimate [95 % interval]); a difference marked ``*`` has a
paired interval that excludes 0. Accuracy intervals are Wilson over the pooled items × seeds;
``±`` after a mean is the standard deviation of the per-seed means.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ..analysis.report import REPORT_EXTRA, have_matplotlib
from .checks import describe

log = logging.getLogger(__name__)


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def cell(iv: dict[str, Any] | None, signed: bool = False) -> str:
    if not iv:
        return "n/a"
    est = iv.get("estimate", iv.get("mean"))
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "n/a"
    f = "+.3f" if signed else ".3f"
    text = f"{est:{f}} [{iv['low']:{f}}, {iv['high']:{f}}]"
    return text + (" *" if iv.get("significant") else "")


def verdicts(rows: list[dict[str, Any]], ref: str) -> list[str]:
    """One plain sentence per method and weight: what merging cost, and whether it is significant."""
    out = []
    for r in rows:
        i, d = r["interference"], r["downweighting_loss"]
        sig = "significant" if i["significant"] else "NOT significant (the interval contains 0)"
        line = (f"- **{r['method']}, w = {r['weight']:g}**: interference {cell(i, True)} — {sig}; "
                f"down-weighting loss {cell(d, True)}")
        vs = r.get("interference_vs_ref")
        if vs:
            line += (f"; interference minus {ref}'s {cell(vs, True)} — "
                     + ("significant" if vs["significant"] else "no significant difference"))
        if "merged" in r:
            line += f"; merged accuracy {cell(r['merged'])}"
        kept = r.get("merged_vs_ref")
        if kept:
            line += (f", minus {ref}'s {cell(kept, True)} — "
                     + ("significant" if kept["significant"] else "no significant difference"))
        out.append(line + ".")
    return out


def merge_table(rows: list[dict[str, Any]], ref: str) -> str:
    head = ["method", "task", "w", "single@w", "merged@w", "down-weighting loss", "interference",
            f"Δ interference vs {ref}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["method"], r["task"], f"{r['weight']:g}", cell(r["single"]),
                                        cell(r["merged"]), cell(r["downweighting_loss"], True),
                                        cell(r["interference"], True),
                                        cell(r.get("interference_vs_ref"), True)]) + " |")
    return "\n".join(lines)


def single_table(rows: list[dict[str, Any]], ref: str) -> str:
    head = ["method", "task", "accuracy (w = 1)", "± seeds", f"difference vs {ref}", f"ratio to {ref}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = r.get("ratio_to_ref")
        lines.append("| " + " | ".join([r["method"], r["task"], cell(r["accuracy"]), f"{r['accuracy']['sd_seeds']:.3f}",
                                        cell(r.get("vs_ref"), True),
                                        "n/a" if ratio is None or math.isnan(ratio) else f"{ratio:.3f}"]) + " |")
    return "\n".join(lines)


def continual_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    first, then = rows[0]["first"], rows[0]["then"]
    head = ["method", f"{first} before", f"{first} after", "forgetting (before − after)",
            f"{then} before", f"{then} after", f"{then} trained alone", "gap to alone"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["method"], cell(r["first_before"]), cell(r["first_after"]),
                                        cell(r["forgetting"], True), cell(r["then_before"]), cell(r["then_after"]),
                                        cell(r["then_alone"]), cell(r["then_gap_to_alone"], True)]) + " |")
    return "\n".join(lines)


def prediction_table(pred: dict[str, Any]) -> str:
    lines = ["| measure | Pearson r [95 %] | Spearman ρ [95 %] | pairs |", "|---|---|---|---|"]
    for measure, corr in pred["correlations"].items():
        lines.append(f"| {measure} | {cell(corr['pearson'], True)} | {cell(corr['spearman'], True)} | "
                     f"{corr['pearson']['n']} |")
    return "\n".join(lines)


def plot_interference(path: Path, rows: list[dict[str, Any]]) -> None:
    """Interference (and down-weighting loss, dashed) vs w, one panel per task, one line per method."""
    plt = pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [r for r in rows if r["task"] == task and r["method"] == method]
            ws = [r["weight"] for r in pts]
            est = [r["interference"]["estimate"] for r in pts]
            err = [[e - r["interference"]["low"] for e, r in zip(est, pts)],
                   [r["interference"]["high"] - e for e, r in zip(est, pts)]]
            line = ax.errorbar(ws, est, yerr=err, marker="o", capsize=3, label=f"{method} interference")
            ax.plot(ws, [r["downweighting_loss"]["estimate"] for r in pts], ls="--", color=line[0].get_color(),
                    alpha=0.6, label=f"{method} down-weighting")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(task)
        ax.set_xlabel("merge weight w")
        ax.set_ylabel("accuracy lost")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_prediction(path: Path, pred: dict[str, Any]) -> None:
    plt = pyplot()
    measures = list(pred["correlations"])
    fig, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 3.5), squeeze=False)
    for ax, measure in zip(axes[0], measures):
        for method in dict.fromkeys(p["method"] for p in pred["points"]):
            pts = [p for p in pred["points"] if p["method"] == method]
            ax.scatter([p.get(measure, math.nan) for p in pts], [p["interference"] for p in pts], label=method, s=18)
        r = pred["correlations"][measure]["spearman"]
        ax.set_title(f"{measure} (ρ = {cell(r, True)})", fontsize=9)
        ax.set_xlabel(measure)
        ax.set_ylabel("measured interference (pair merge)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def one_answer_section(flags: list[dict[str, Any]]) -> list[str]:
    if not flags:
        return []
    return ["## Check: adapters that give one answer to almost every item", "",
            *[f"- {describe(f)}." for f in flags], ""]


def write(folder: Path, study: dict[str, Any]) -> str:
    """Write table.md, study.json and the PNGs into ``folder``; returns the markdown."""
    ref = study["reference_method"]
    md = ["# lorikit study", "", *[f"- {n}" for n in study["notes"]], "",
          "## Summary (all tasks' test items pooled)", "", *verdicts(study.get("headline", []), ref), "",
          *one_answer_section(study.get("one_answer", [])),
          "## Single adapters (w = 1)", "", single_table(study["single"], ref), "",
          "## Merging: down-weighting vs interference", "", merge_table(study["merge"], ref), "",
          "![interference](interference.png)" if have_matplotlib() else f"(figures skipped: {REPORT_EXTRA})", ""]
    if have_matplotlib():
        plot_interference(folder / "interference.png", study["merge"])
    else:
        log.info("study: figures skipped (matplotlib is not installed: %s); the tables are complete", REPORT_EXTRA)
    if study.get("continual"):
        md += ["## Continual learning", "", continual_table(study["continual"]), ""]
    if study.get("prediction") and study["prediction"]["points"]:
        md += ["## Does the interference report predict measured interference?", "",
               prediction_table(study["prediction"]), "", "![prediction](prediction.png)" if have_matplotlib() else "", ""]
        if have_matplotlib():
            plot_prediction(folder / "prediction.png", study["prediction"])
    text = "\n".join(md)
    (folder / "table.md").write_text(text)
    (folder / "study.json").write_text(json.dumps(_clean(study), indent=1) + "\n")
    return text
