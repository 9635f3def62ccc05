"""The interference report: a folder with ``report.md``, PNG figures and ``analysis.json``.

Figures (matplotlib, Agg backend, written only when their data is given):
- ``overlap.png``: adapter × adapter row-space, column-space overlap and ΔW cosine (overall);
- ``layers-<a>-<b>.png``: per-layer × projection overlap of one adapter pair;
- ``shift.png``: adapter × task output shift ‖ΔW_i h‖/‖W h‖ (diagonal = own task);
- ``masks.png``: LoRI-S mask Jaccard;
- ``training.png``: loss curves from each adapter's ``train_log.jsonl``;
- ``sweep.png``: score vs merge weight; ``scores.png``: the score table as a heatmap.
The whole folder is written atomically (``atomic_output_dir``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import atomic_output_dir
from .compare import PairwiseComparison
from .masks import MaskOverlap
from .scores import ScoreTable
from .shift import OutputShift

logger = logging.getLogger(__name__)
ANNOTATE_MAX_CELLS = 120  # above this a heatmap's numbers would overlap


REPORT_EXTRA = "pip install 'lorikit[report]'"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _plt():
    """matplotlib.pyplot (Agg), or None without the ``report`` extra: figures are then skipped and
    report.md says so (tables and analysis.json need no matplotlib)."""
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def heatmap(ax, values: np.ndarray, rows: list[str], cols: list[str], title: str, cbar_label: str,
            vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis", fmt: str = ".2f",
            xlabel: str = "", ylabel: str = ""):
    """One annotated heatmap with a colour bar; NaN cells are grey and marked 'n/a'."""
    plt = _plt()
    data = np.ma.masked_invalid(np.asarray(values, dtype=float))
    cm = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
    im = ax.imshow(data, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30 if max(map(len, cols), default=0) > 6 else 0,
                  ha="right" if max(map(len, cols), default=0) > 6 else "center")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(cbar_label)
    if data.size <= ANNOTATE_MAX_CELLS:
        for (r, c), v in np.ndenumerate(np.asarray(values, dtype=float)):
            if math.isnan(v):
                ax.text(c, r, "n/a", ha="center", va="center", fontsize=8, color="#555555")
                continue
            red, green, blue, _ = cm(im.norm(v))
            luminance = 0.299 * red + 0.587 * green + 0.114 * blue  # pick the readable text colour
            ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=9,
                    color="black" if luminance > 0.5 else "white")
    return im


def plot_overlap(path: Path, cmp: PairwiseComparison) -> None:
    plt = _plt()
    if plt is None:
        return
    n = len(cmp.names)
    size = max(3.6, 0.9 * n + 2)
    fig, axes = plt.subplots(1, 3, figsize=(3 * size + 1, size))
    heatmap(axes[0], cmp.overall_row, cmp.names, cmp.names, "Row-space overlap\n(input directions read)",
            "mean cos² of principal angles", 0, 1)
    heatmap(axes[1], cmp.overall_col, cmp.names, cmp.names, "Column-space overlap\n(output directions written)",
            "mean cos² of principal angles", 0, 1)
    heatmap(axes[2], cmp.overall_cosine, cmp.names, cmp.names, "Cosine of flattened ΔW", "cosine",
            -1, 1, cmap="RdBu_r")
    fig.suptitle("Adapter similarity (mean over target modules)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_layers(path: Path, cmp: PairwiseComparison, i: int, j: int) -> None:
    plt = _plt()
    if plt is None:
        return
    layers, kinds, row_grid = cmp.by_layer(cmp.row, i, j)
    _, _, col_grid = cmp.by_layer(cmp.col, i, j)
    labels = ["–" if x is None else str(x) for x in layers]
    height = max(3.5, 0.32 * len(layers) + 1.8)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (0.75 * len(kinds) + 2.8), height))
    for ax, grid, what in ((axes[0], row_grid, "row space"), (axes[1], col_grid, "column space")):
        heatmap(ax, grid, labels, kinds, f"{what} overlap", "mean cos² of principal angles", 0, 1,
                xlabel="projection", ylabel="layer")
    fig.suptitle(f"Per-layer subspace overlap: {cmp.names[i]} vs {cmp.names[j]}", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_shift(path: Path, shift: OutputShift) -> None:
    plt = _plt()
    if plt is None:
        return
    size = max(4.0, 0.9 * max(len(shift.adapters), len(shift.tasks)) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    heatmap(ax, shift.overall, shift.adapters, shift.tasks,
            "Output shift ‖ΔW h‖ / ‖W h‖\n(mean over target modules)", "relative output shift",
            cmap="magma", fmt=".3f", xlabel="task data (h)", ylabel="adapter (ΔW)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_masks(path: Path, masks: MaskOverlap) -> None:
    plt = _plt()
    if plt is None:
        return
    labels = [f"{n}\n({d:.0%} kept)" for n, d in zip(masks.names, masks.density)]
    size = max(4.0, 0.9 * len(masks.names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    heatmap(ax, masks.overall, labels, masks.names, "LoRI-S mask overlap (Jaccard, all modules)",
            "|M1 ∧ M2| / |M1 ∨ M2|", 0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(path: Path, logs: dict[str, list[dict[str, Any]]]) -> None:
    plt = _plt()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, recs in logs.items():
        steps = [r["step"] for r in recs if "loss" in r]
        losses = [r["loss"] for r in recs if "loss" in r]
        ax.plot(steps, losses, marker="o" if len(steps) <= 30 else None, markersize=3, label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (response tokens)")
    ax.set_title("Training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(path: Path, sweep: dict[str, list[tuple[float, float]]], xlabel: str = "merge weight",
               ylabel: str = "score") -> None:
    plt = _plt()
    if plt is None:
        return
    many = len(sweep) > 4
    fig, ax = plt.subplots(figsize=(9.5 if many else 7, 4.2))
    values = [v for points in sweep.values() for _, v in points]
    for name, points in sweep.items():
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if values and 0 <= min(values) and max(values) <= 1:  # accuracies: keep the full scale, flat lines stay readable
        ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel.capitalize()} vs {xlabel}")
    ax.grid(alpha=0.3)
    if many:  # beside the axes, so no line hides under it
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(path: Path, table: ScoreTable) -> None:
    plt = _plt()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(table.tasks) + 3), max(3, 0.55 * len(table.rows) + 1.8)))
    heatmap(ax, table.scores, table.rows, table.tasks, "Scores (single adapters and merges)", "score",
            cmap="viridis", fmt=".3f", xlabel="task", ylabel="adapter / merge")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_matrix(values, rows: list[str], cols: list[str], fmt: str = ".3f") -> str:
    """A markdown table of a matrix (an array, or nested lists from analysis.json where NaN is null)."""
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r, row in zip(rows, values):
        lines.append(f"| {r} | " + " | ".join("n/a" if v is None or math.isnan(v) else format(v, fmt) for v in row)
                     + " |")
    return "\n".join(lines)


def read_train_log(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of ``<adapter>/train_log.jsonl`` ([] when the adapter has none)."""
    path = Path(folder) / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _comparison_section(tmp: Path, comparison: PairwiseComparison, max_layer_plots: int) -> list[str]:
    """Plots and markdown of the subspace overlap / ΔW cosine comparison."""
    plot_overlap(tmp / "overlap.png", comparison)
    md = ["", "## Subspace overlap and ΔW cosine", "",
           "Overlap = mean cos² of the principal angles between the adapters' ΔW row spaces "
           "(input directions) or column spaces (output directions): 1 identical, 0 orthogonal. "
           "Mean over target modules.", "", "![overlap](overlap.png)", "",
           "Row-space overlap:", "", markdown_matrix(comparison.overall_row, comparison.names, comparison.names),
           "", "Column-space overlap:", "",
           markdown_matrix(comparison.overall_col, comparison.names, comparison.names),
           "", "Cosine of flattened ΔW:", "",
           markdown_matrix(comparison.overall_cosine, comparison.names, comparison.names)]
    pairs = [(i, j) for i in range(len(comparison.names)) for j in range(i + 1, len(comparison.names))]
    if pairs:
        md += ["", "### Per layer", ""]
    for i, j in pairs[:max_layer_plots]:
        name = f"layers-{_slug(comparison.names[i])}-{_slug(comparison.names[j])}.png"
        plot_layers(tmp / name, comparison, i, j)
        md += [f"![{comparison.names[i]} vs {comparison.names[j]}]({name})", ""]
    if len(pairs) > max_layer_plots:
        md += [f"({len(pairs) - max_layer_plots} more pairs in analysis.json)", ""]
    return md
def _figures_note() -> list[str]:
    if have_matplotlib():
        return []
    logger.warning("report: matplotlib is not installed, figures skipped (%s)", REPORT_EXTRA)
    return [f"- Figures skipped: matplotlib is not installed ({REPORT_EXTRA}); the tables below are complete."]


def write_report(out: str | os.PathLike, *, comparison: PairwiseComparison | None = None,
                 shift: OutputShift | None = None, masks: MaskOverlap | None = None,
                 scores: ScoreTable | None = None, train_logs: dict[str, list[dict]] | None = None,
                 sweep: dict[str, list[tuple[float, float]]] | None = None, sweep_xlabel: str = "merge weight",
                 title: str = "lorikit interference report", notes: list[str] | None = None,
                 overwrite: bool = False, max_layer_plots: int = 6) -> Path:
    """Write report.md + PNGs + analysis.json for whatever results are given."""
    md: list[str] = [f"# {title}", ""]
    md += [f"- {n}" for n in notes or []]
    md += _figures_note()
    payload: dict[str, Any] = {}
    with atomic_output_dir(out, overwrite) as tmp:
        if comparison is not None:
            payload["comparison"] = comparison.to_json()
            md += _comparison_section(tmp, comparison, max_layer_plots)
        if shift is not None:
            plot_shift(tmp / "shift.png", shift)
            payload["output_shift"] = shift.to_json()
            md += ["", "## Output shift on each task's data", "",
                   "‖ΔW_i h‖ / ‖W h‖ over the inputs h each task's examples feed to every target module "
                   "of the base model (mean over modules). Row = adapter, column = task data; "
                   "off-diagonal cells are the interference a merge adds to other tasks.", "",
                   "![output shift](shift.png)", "",
                   markdown_matrix(shift.overall, shift.adapters, shift.tasks, ".4f"), "",
                   "Tokens per task: " + ", ".join(f"{t} {n}" for t, n in shift.tokens.items())]
        if masks is not None:
            plot_masks(tmp / "masks.png", masks)
            payload["masks"] = masks.to_json()
            md += ["", "## LoRI-S mask overlap", "", "![mask overlap](masks.png)", "",
                   markdown_matrix(masks.overall, masks.names, masks.names), "",
                   "Kept fraction: " + ", ".join(f"{n} {d:.1%}" for n, d in zip(masks.names, masks.density))]
        if scores is not None:
            plot_scores(tmp / "scores.png", scores)
            payload["scores"] = scores.to_json()
            md += ["", "## Scores: single vs merged", "", scores.markdown(), "", "![scores](scores.png)"]
        if sweep:
            plot_sweep(tmp / "sweep.png", sweep, sweep_xlabel)
            payload["sweep"] = {k: [list(p) for p in v] for k, v in sweep.items()}
            md += ["", "## Merge-weight sweep", "", "![sweep](sweep.png)", "", f"| series | {sweep_xlabel} | score |",
                   "|---|---|---|"]
            md += [f"| {k} | {w:g} | {v:.3f} |" for k, points in sweep.items() for w, v in points]
        logs = {k: v for k, v in (train_logs or {}).items() if v}
        if logs:
            plot_training(tmp / "training.png", logs)
            md += ["", "## Training curves", "", "![training](training.png)", "",
                   "| adapter | steps | first loss | last loss |", "|---|---|---|---|"]
            md += [f"| {k} | {v[-1]['step']} | {v[0]['loss']:.4f} | {v[-1]['loss']:.4f} |" for k, v in logs.items()]
        (tmp / "analysis.json").write_text(json.dumps(payload, indent=2) + "\n")
        (tmp / "report.md").write_text("\n".join(md) + "\n")
    return Path(out)
