"""What a loaded adapter must satisfy before anything uses it.

PEFT applies only the weights of modules its ``target_modules`` names and creates each layer
with the config's ``r``; lorikit's merge reads the weights as they are. An adapter whose config
and weights disagree would therefore mean one thing to ``eval`` and another to ``merge``, and an
adapter with NaN/inf weights would evaluate to a meaningless score. Each such file is refused
with one line naming the file and the field, module or tensor at fault.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import LorikitError
from ..utils.finite import check_tensors_finite
from .patterns import check_regex, full_match


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_config_fields(config: dict[str, Any], where: str) -> None:
    """``r`` a positive integer, ``lora_alpha`` a finite number, their patterns likewise."""
    if "peft_type" not in config:
        raise LorikitError(f"{where}: missing field 'peft_type' (a PEFT LoRA config has \"peft_type\": \"LORA\")")
    r = config.get("r", 8)
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise LorikitError(f"{where}: field 'r' is {r!r}, expected a positive integer")
    alpha = config.get("lora_alpha", 8)
    if not _number(alpha):
        raise LorikitError(f"{where}: field 'lora_alpha' is {alpha!r}, expected a finite number")
    for field in ("rank_pattern", "alpha_pattern"):
        patterns = config.get(field) or {}
        if not isinstance(patterns, dict):
            raise LorikitError(f"{where}: field {field!r} is {type(patterns).__name__}, expected an object")
        for key, value in patterns.items():
            check_regex(str(key), where, field)
            if not _number(value) or (field == "rank_pattern" and (not isinstance(value, int) or value <= 0)):
                raise LorikitError(f"{where}: {field}[{key!r}] is {value!r}, expected a "
                                   f"{'positive integer' if field == 'rank_pattern' else 'finite number'}")


def _targeted(module: str, targets: Any, where: str) -> bool:
    """PEFT's rule: a regex string must match the whole name, a list entry its last components."""
    if isinstance(targets, str):
        return targets == "all-linear" or full_match(targets, module, where)
    return any(module == t or module.endswith("." + t) for t in targets)


def check_targets_cover(config: dict[str, Any], modules: list[str], where: str) -> None:
    targets = config.get("target_modules")
    if targets is None:
        return
    if not isinstance(targets, (str, list)) or (isinstance(targets, list) and not all(isinstance(t, str) for t in targets)):
        raise LorikitError(f"{where}: field 'target_modules' must be a list of names or a regex string")
    if isinstance(targets, str) and targets != "all-linear":
        check_regex(targets, where, "target_modules")
    stray = [m for m in modules if not _targeted(m, targets, where)]
    if stray:
        more = f" and {len(stray) - 3} more" if len(stray) > 3 else ""
        raise LorikitError(f"{where}: the weights adapt modules that target_modules does not list "
                           f"({', '.join(stray[:3])}{more}); PEFT would ignore them and merge would use them")


def check_ranks(config: dict[str, Any], ranks: dict[str, int], where: str, rank_of) -> None:
    """Each module's stored rank is the one the config gives it (``rank_of(module)``)."""
    for module, rank in ranks.items():
        expected = rank_of(module)
        if expected != rank:
            raise LorikitError(f"{where}: r is {expected} for {module} but its lora_A has rank {rank} "
                               f"(fix 'r' or 'rank_pattern')")


def check_meta(meta: Any, where: str) -> None:
    """``lorikit.json``: an object whose ``seed`` (when present) is an integer."""
    if not isinstance(meta, dict):
        raise LorikitError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    seed = meta.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise LorikitError(f"{where}: field 'seed' is {seed!r}, expected an integer")


def check_weights_finite(tensors, where: str) -> None:
    check_tensors_finite(tensors, where)
