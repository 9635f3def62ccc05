"""The study's report section: ``table.md`` (markdown tables), ``study.json`` and PNGs (``figures``).

Accuracies read ``0.612 [0.571, 0.651]``: the mean of the per-run accuracies and its t-interval over
training runs. Differences read ``+0.031 [-0.012, +0.074] p 0.14 (Holm 0.56) inconclusive, MDE
0.061``: the mean per-run difference, its t-interval, the t-test's p (and its Holm-adjusted p), the
verdict (different / equivalent by TOST at the study's margin / inconclusive) and the smallest
difference the design detects with 80 % power.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ..report import REPORT_EXTRA, have_matplotlib
from .cells import cell, comparison, finite, holm_verdict, tost_text
from .checks import describe

log = logging.getLogger(__name__)


def primary_section(primary: dict[str, Any], ref: str, margin: float, learned_at: float | None = None) -> list[str]:
    """The primary endpoint's table; with ``learned_at``, the exploratory one over the tasks every run learned."""
    if not primary:
        return []
    endpoint = f"{primary['endpoint'][0].upper()}{primary['endpoint'][1:]}"
    if learned_at is None:
        title, scope, what = "Primary endpoint", "all tasks", (
            f"{endpoint}, over every task's test items, each method minus {ref}; declared before the study ran.")
    else:
        title, scope, what = "Exploratory: the primary endpoint over the tasks every run learned", "learned tasks", (
            f"{endpoint}, over the test items of {', '.join(primary['tasks'])} only — the tasks whose single "
            f"adapter scored ≥ {learned_at:g} in every run of every method — each method minus {ref}. Not declared "
            f"before the study ran: it reads the primary endpoint without the tasks some adapters never learned, "
            f"a rule on the single adapters, blind to the merges.")
    head = ["method", "weight per run", f"merged accuracy ({scope})", f"minus {ref}", "TOST p", "verdict (Holm)"]
    lines = [f"## {title}", "", f"{what} {_holm_family(len(primary['rows']) - 1)}; equivalence margin ±{margin:g}.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in primary["rows"]:
        c = r.get("vs_ref")
        weights = ", ".join(f"{w}" for w in r["weights"].values())
        lines.append("| " + " | ".join([r["method"], weights, cell(r["merged"]), comparison(c) if c else "reference",
                                        tost_text(c),
                                        holm_verdict(c) if c and c.get("p_holm") is not None else
                                        (c["verdict"] if c else "")]) + " |")
    return lines + [""]


def _holm_family(k: int) -> str:
    return "One comparison (no adjustment)" if k <= 1 else f"Holm over these {k} comparisons"


def convergence_section(conv: dict[str, Any]) -> list[str]:
    if not conv.get("with_record"):
        return []
    share = conv["plateau_share"]
    line = (f"{conv['with_record'] - len(conv['at_cap'])} of {conv['with_record']} adapters ({share:.0%}) stopped on a "
            f"dev-loss plateau; {len(conv['at_cap'])} at the step cap")
    out = ["## Convergence", "", line + "."]
    if conv["warning"]:
        out += ["", f"**WARNING: {1 - share:.0%} of the adapters stopped at the step cap (more than 10 %): they may "
                "not be converged; raise max_steps.** At the cap: " + ", ".join(conv["at_cap"])]
    return out + [""]


def verdicts(rows: list[dict[str, Any]], ref: str) -> list[str]:
    """One plain sentence per method and weight: what merging cost, and the verdicts."""
    out = []
    for r in rows:
        line = f"- **{r['method']}, w = {r['weight']:g}**: interference {comparison(r['interference'])}"
        if r.get("downweighting_loss"):
            line += f"; down-weighting loss {comparison(r['downweighting_loss'])}"
        if r.get("interference_vs_ref"):
            line += f"; interference minus {ref}'s {comparison(r['interference_vs_ref'])}"
        line += f"; merged accuracy {cell(r['merged'])}"
        if r.get("merged_vs_ref"):
            line += f", minus {ref}'s {comparison(r['merged_vs_ref'])}"
        out.append(line + ".")
    return out


def merge_table(rows: list[dict[str, Any]], ref: str) -> str:
    head = ["method", "task", "w", "single@w", "merged@w", "down-weighting loss", "interference",
            f"Δ interference vs {ref}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["method"], r["task"], f"{r['weight']:g}", cell(r["single"]),
                                        cell(r["merged"]), comparison(r.get("downweighting_loss")),
                                        comparison(r["interference"]),
                                        comparison(r.get("interference_vs_ref"))]) + " |")
    return "\n".join(lines)


def single_table(rows: list[dict[str, Any]], ref: str) -> str:
    head = ["method", "task", "accuracy (w = 1)", "per run", f"difference vs {ref}", f"ratio to {ref}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = r.get("ratio_to_ref")
        lines.append("| " + " | ".join([r["method"], r["task"], cell(r["accuracy"]),
                                        " ".join(f"{x:.2f}" for x in r["accuracy"]["per_seed"]),
                                        comparison(r.get("vs_ref")) if r.get("vs_ref") else "reference",
                                        "n/a" if ratio is None or not finite(ratio) else f"{ratio:.3f}"]) + " |")
    return "\n".join(lines)


def _runs_text(seeds: list[str], n: int) -> str:
    return f"{len(seeds)} of {n}" + (f" (seeds {', '.join(seeds)})" if seeds and len(seeds) < n else "")


def continual_table(rows: list[dict[str, Any]], at: float) -> str:
    if not rows:
        return ""
    first, then, ref = rows[0]["first"], rows[0]["then"], rows[0]["method"]
    head = ["method", f"{first} before", f"{first} after", "forgetting (before − after)", f"forgetting minus {ref}'s",
            f"{then} after", f"{then} trained alone", "gap to alone", f"runs that learned both (≥ {at:g})",
            f"forgetting minus {ref}'s, runs where both learned both"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        control = "forgetting_vs_ref" not in r
        common = r.get("learned_both_with_ref", [])
        restricted = ("control" if control else comparison(r["forgetting_vs_ref_learned"])
                      if r.get("forgetting_vs_ref_learned") else f"n/a ({len(common)} run(s) in common)")
        lines.append("| " + " | ".join([r["method"], cell(r["first_before"]), cell(r["first_after"]),
                                        comparison(r["forgetting"]),
                                        "control" if control else comparison(r["forgetting_vs_ref"]),
                                        cell(r["then_after"]), cell(r["then_alone"]),
                                        comparison(r["then_gap_to_alone"]),
                                        _runs_text(r.get("learned_both", []), r.get("runs", 0)), restricted]) + " |")
    return "\n".join(lines)


def learned_section(rows: list[dict[str, Any]], at: float, alpha: float) -> list[str]:
    """Per task and method: the runs that learned the task, and the suite's premise."""
    if not rows:
        return []
    level = f"{1 - alpha:.0%}"
    head = ["task", "method", f"runs with accuracy ≥ {at:g}", f"pooled accuracy [{level} Wilson]",
            f"premise: Wilson lower bound ≥ {at:g} over ≥ 3 runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        missed = r["not_learned"]
        runs = f"{r['learned_runs']} of {r['runs']}" + (f" (not: seed{'s' * (len(missed) > 1)} {', '.join(missed)})" if missed else "")
        p = r["pooled"]
        pooled = f"{p['estimate']:.3f} [{p['low']:.3f}, {p['high']:.3f}] of {p['n']}"
        lines.append("| " + " | ".join([r["task"], r["method"], runs, pooled,
                                        "met" if r["premise_met"] else "**not met**"]) + " |")
    return ["## Learned: which runs learned each task", "",
            f"A run learned a task when its single adapter (w = 1) scored at least {at:g} on the task's test items "
            f"(declared before the study ran). The pooled interval counts every run's items as trials: it "
            f"describes these adapters on these items, not training runs (the single-adapter table has the "
            f"run-level intervals).", "", "\n".join(lines), ""]


def prediction_table(pred: dict[str, Any]) -> str:
    lines = ["| measure | Pearson r [95 %] | Spearman ρ [95 %] | adapter pairs |", "|---|---|---|---|"]
    for measure, corr in pred["correlations"].items():
        lines.append(f"| {measure} | {cell(corr['pearson'], True)} | {cell(corr['spearman'], True)} | "
                     f"{corr['pearson']['n']} |")
    return "\n".join(lines)


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


def markdown(study: dict[str, Any], figures: bool) -> str:
    """The table's markdown, a pure function of ``study`` (bench_study.py --verify regenerates it)."""
    ref = study["reference_method"]
    md = ["# lorikit study", "", *[f"- {n}" for n in study["notes"]], "",
          *primary_section(study["primary"], ref, study["equivalence_margin"]),
          *(["![primary endpoint](primary.png)", ""] if figures else []),
          *primary_section(study.get("primary_learned"), ref, study["equivalence_margin"], study.get("learned_at", 0.9)),
          *convergence_section(study.get("convergence", {})),
          "## Fixed weights (all tasks' test items pooled)", "", *verdicts(study.get("headline", []), ref), "",
          *one_answer_section(study.get("one_answer", [])),
          *learned_section(study.get("learned", []), study.get("learned_at", 0.9), study["alpha"]),
          "## Single adapters (w = 1)", "", single_table(study["single"], ref), "",
          "## Merging: down-weighting vs interference", "", merge_table(study["merge"], ref), ""]
    if figures:
        md += ["![interference](interference.png)", ""]
    if study.get("continual"):
        md += ["## Continual learning", "", continual_table(study["continual"], study.get("learned_at", 0.9)), ""]
        if figures:
            md += ["![continual](continual.png)", ""]
    if study.get("prediction") and study["prediction"]["points"]:
        md += ["## Does the interference report predict measured interference?", "",
               prediction_table(study["prediction"]), ""]
        if figures:
            md += ["![prediction](prediction.png)", ""]
    return "\n".join(md)


def write(folder: Path, study: dict[str, Any]) -> str:
    """Write table.md, study.json and the PNGs into ``folder``; returns the markdown."""
    figures = have_matplotlib()
    if figures:
        from .figures import write_figures  # matplotlib only when it is there

        write_figures(folder, study)
    else:
        log.info("study: figures skipped (matplotlib is not installed: %s); the tables are complete", REPORT_EXTRA)
    text = markdown(study, figures)
    if not figures:
        text += f"\n(figures skipped: {REPORT_EXTRA})\n"
    (folder / "table.md").write_text(text)
    (folder / "study.json").write_text(json.dumps(_clean(study), indent=1) + "\n")
    return text
