"""``search.png``: the objective of every evaluation and the best so far (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import LorikitError


def plot_search(records: list[dict[str, Any]], path: str | Path, ylabel: str, title: str) -> Path:
    """Scatter of each evaluation's objective, the running minimum as a line; written to ``path``."""
    try:  # an optional dependency (the search extra), imported where it is used
        import matplotlib
    except ImportError:
        raise LorikitError("merge-search writes search.png with matplotlib: pip install 'lorikit[search]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    xs = [r["eval"] for r in records]
    ys = [r["objective"] for r in records]
    best, running = float("inf"), []
    for y in ys:
        best = min(best, y)
        running.append(best)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.scatter(xs, ys, s=14, alpha=0.6, label="evaluation")
    ax.plot(xs, running, color="C3", linewidth=1.8, label="best so far")
    ax.set_xlabel("evaluation")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
