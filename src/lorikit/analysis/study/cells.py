"""How the study's numbers read in its tables: ``estimate [low, high]`` and a difference with its test."""

from __future__ import annotations

import math
from typing import Any


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def cell(iv: dict[str, Any] | None, signed: bool = False) -> str:
    """``estimate [low, high]``; without a run-level interval (one run) ``estimate (1 run)``."""
    if not iv:
        return "n/a"
    est = iv.get("estimate", iv.get("mean"))
    if not finite(est):
        return "n/a"
    f = "+.3f" if signed else ".3f"
    if not (finite(iv.get("low")) and finite(iv.get("high"))):
        return f"{est:{f}} (1 run)"
    return f"{est:{f}} [{iv['low']:{f}}, {iv['high']:{f}}]"


def comparison(c: dict[str, Any] | None, holm: bool = True) -> str:
    """A difference with its test, Holm-adjusted p, verdict and MDE."""
    if not c:
        return "n/a"
    text = cell(c, signed=True)
    if not finite(c.get("p")):
        return text + " — no test with one run"
    text += f" {p_text(c['p'])}"
    if holm and finite(c.get("p_holm")):
        text += f" (Holm {p_text(c['p_holm'])})"
    verdict = c["verdict"] if not holm or c.get("p_holm") is None else holm_verdict(c)
    text += f" {verdict}"
    if finite(c.get("mde")):
        text += f", MDE {c['mde']:.3f}"
    return text


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def holm_verdict(c: dict[str, Any]) -> str:
    """The verdict after Holm: 'different' only if the adjusted p clears the level, 'equivalent' only if
    the adjusted TOST p does."""
    if c["verdict"] == "different" and not c.get("significant_holm", False):
        return "inconclusive after Holm"
    if c["verdict"] == "equivalent" and "equivalent_holm" in c and not c["equivalent_holm"]:
        return "inconclusive (equivalent before Holm)"
    return c["verdict"]


def tost_text(c: dict[str, Any] | None) -> str:
    """The equivalence test's p, and its Holm-adjusted p where the comparison was adjusted."""
    if not c or not finite(c.get("tost_p")):
        return "n/a"
    return f"{c['tost_p']:.3f}" + (f" (Holm {c['tost_p_holm']:.3f})" if finite(c.get("tost_p_holm")) else "")
