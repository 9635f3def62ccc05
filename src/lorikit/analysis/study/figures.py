"""The study's figures: the primary endpoint run by run, interference against the merge weight, the
continual arm's forgetting run by run, and the interference report's prediction. Every figure is drawn
from ``study.json``'s numbers alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .cells import finite, cell


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_figures(folder: Path, study: dict[str, Any], prefix: str = "") -> list[Path]:
    """Every figure the study has data for, as ``folder/PREFIXNAME.png``; returns their paths."""
    written = [folder / f"{prefix}primary.png", folder / f"{prefix}interference.png"]
    plot_primary(written[0], study["primary"], study["equivalence_margin"])
    plot_interference(written[1], study["merge"])
    if study.get("continual"):
        written.append(folder / f"{prefix}continual.png")
        plot_continual(written[-1], study["continual"], study["equivalence_margin"])
    if study.get("prediction") and study["prediction"]["points"]:
        written.append(folder / f"{prefix}prediction.png")
        plot_prediction(written[-1], study["prediction"])
    return written


def _error_bar(iv: dict[str, Any]) -> list[list[float]]:
    """matplotlib's yerr/xerr of one interval; none where there is no interval (one run)."""
    e = iv.get("estimate", iv.get("mean"))
    return [[abs(e - iv["low"]) if finite(iv["low"]) else 0.0], [abs(iv["high"] - e) if finite(iv["high"]) else 0.0]]


def differences_panel(ax, labelled: list[tuple[str, dict[str, Any]]], margin: float, xlabel: str, title: str) -> None:
    """One row per (label, run-level comparison): the per-run differences (grey), the estimate with its
    t-interval (red where significant), the equivalence band ± margin."""
    for y, (_, c) in enumerate(labelled):
        ax.errorbar([c["estimate"]], [y], xerr=_error_bar(c), fmt="o", color="C3" if c["significant"] else "C0", capsize=4)
        ax.scatter(c["per_seed"], [y] * len(c["per_seed"]), color="grey", s=8, alpha=0.5)
    ax.axvspan(-margin, margin, color="C2", alpha=0.12, label=f"equivalence ±{margin:g}")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(labelled)), [label for label, _ in labelled])
    ax.set_ylim(-0.7, max(len(labelled), 1) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="best")


def plot_primary(path: Path, primary: dict[str, Any], margin: float) -> None:
    """Left: each run's merged accuracy at its weight, one grey line per seed across the methods (the
    pairing), and each method's mean with its t-interval. Right: each method minus the reference, the
    t-interval of the per-run differences and the equivalence band ± margin."""
    plt = pyplot()
    rows = primary["rows"]
    methods = [r["method"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(4 + 1.2 * len(methods), 3.8),
                                      gridspec_kw={"width_ratios": [3, 2]})
    per_seed = [r["merged"]["per_seed"] for r in rows]
    for run in zip(*per_seed):
        left.plot(range(len(methods)), run, color="grey", alpha=0.35, lw=0.8, marker=".", ms=4)
    for x, r in enumerate(rows):
        left.errorbar([x], [r["merged"]["mean"]], yerr=_error_bar(r["merged"]), fmt="o", color="C0", capsize=4)
    left.set_xticks(range(len(methods)), methods)
    left.set_ylabel("merged accuracy, all tasks' test items")
    left.set_title(f"{primary['endpoint']} (grey: one seed)", fontsize=8)
    differences_panel(right, [(f"{r['method']} − {rows[0]['method']}", r["vs_ref"]) for r in rows if r.get("vs_ref")],
                      margin, "paired by seed", "difference, t-interval (red: p < alpha)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_continual(path: Path, rows: list[dict[str, Any]], margin: float) -> None:
    """Left: the first task's score before and after training on the second, one grey line per run
    and each arm's mean with its t-interval. Right: each arm's forgetting minus the control's (the
    first row), per run and as a t-interval, with the equivalence band ± margin."""
    plt = pyplot()
    arms = [r["method"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(4 + 1.4 * len(arms), 3.8), gridspec_kw={"width_ratios": [3, 2]})
    for x, r in enumerate(rows):
        before, after = r["first_before"], r["first_after"]
        for b, a in zip(before["per_seed"], after["per_seed"]):
            left.plot([x - 0.18, x + 0.18], [b, a], color="grey", alpha=0.4, lw=0.8, marker=".", ms=4)
        left.errorbar([x - 0.18], [before["mean"]], yerr=_error_bar(before), fmt="o", color="C0", capsize=4,
                      label="before" if x == 0 else None)
        left.errorbar([x + 0.18], [after["mean"]], yerr=_error_bar(after), fmt="o", color="C3", capsize=4,
                      label="after" if x == 0 else None)
    left.set_xticks(range(len(arms)), arms)
    left.set_ylabel(f"{rows[0]['first']}: accuracy")
    left.set_title(f"{rows[0]['first']} before and after training on {rows[0]['then']} (grey: one run)", fontsize=8)
    left.legend(fontsize=7, loc="center")  # between the before and after clouds
    differences_panel(right, [(f"{r['method']} − {arms[0]}", r["forgetting_vs_ref"]) for r in rows
                              if r.get("forgetting_vs_ref")],
                      margin, "forgetting difference, paired by seed", "t-interval (red: p < alpha)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
            bound = lambda v, e: abs(v - e) if finite(v) else 0.0  # noqa: E731 (one run: no interval)
            err = [[bound(r["interference"]["low"], e) for e, r in zip(est, pts)],
                   [bound(r["interference"]["high"], e) for e, r in zip(est, pts)]]
            line = ax.errorbar(ws, est, yerr=err, marker="o", capsize=3, label=f"{method} interference")
            ax.plot(ws, [r.get("downweighting_loss", {"estimate": 0.0})["estimate"] for r in pts], ls="--", color=line[0].get_color(),
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
