"""Regexes from adapter configs (``target_modules`` as a string, ``rank_pattern`` / ``alpha_pattern``
keys), matched with a time limit.

They come from files anyone can write; a pattern such as ``([a-z_.0-9]+)*X`` backtracks
catastrophically in Python's ``re`` (the time doubles with each character of a module name). The
``regex`` package matches with a ``timeout``: a pattern that takes longer than ``MATCH_SECONDS`` on
one module name is refused, naming the field; an invalid pattern is refused too. PEFT itself
matches with ``re``, so lorikit hands PEFT the matched module names instead of the patterns
(``explicit_config``).
"""

from __future__ import annotations

import functools
from typing import Any

import regex

from ..errors import LorikitError

MATCH_SECONDS = 0.25


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def check_regex(pattern: str, where: str, field: str) -> regex.Pattern:
    try:
        return _compile(pattern)
    except (regex.error, TypeError, ValueError) as exc:
        raise LorikitError(f"{where}: field {field!r}: {pattern!r} is not a valid regex ({exc})") from None


def _run(method, name: str, pattern: str, where: str, field: str):
    try:
        return method(name, timeout=MATCH_SECONDS)
    except TimeoutError:
        raise LorikitError(f"{where}: field {field!r}: the regex {pattern[:80]!r} takes over {MATCH_SECONDS} s "
                           f"to match the module name {name!r} (catastrophic backtracking); refused") from None


def full_match(pattern: str, name: str, where: str, field: str = "target_modules") -> bool:
    """PEFT's rule for a ``target_modules`` string: the regex matches the whole module name."""
    return _run(check_regex(pattern, where, field).fullmatch, name, pattern, where, field) is not None


def suffix_match(pattern: str, name: str, where: str, field: str) -> bool:
    """PEFT's rule for ``rank_pattern`` / ``alpha_pattern`` keys: the regex matches the end of the
    module name, starting at a component boundary."""
    check_regex(pattern, where, field)  # the key alone, so the error shows it rather than the wrapper
    wrapped = check_regex(rf"(.*\.)?(?:{pattern})$", where, field)
    return _run(wrapped.match, name, pattern, where, field) is not None


def pattern_value(patterns: dict[str, Any] | None, module: str, default: Any, where: str, field: str) -> Any:
    for pattern, value in (patterns or {}).items():
        if suffix_match(str(pattern), module, where, field):
            return value
    return default
