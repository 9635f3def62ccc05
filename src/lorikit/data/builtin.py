"""Built-in synthetic tasks, generated deterministically from a seed by lorikit's own code.

Three tasks with different skills and answer formats, each small enough for the 135M model to
learn in a few CPU minutes, so the whole train → merge → evaluate story runs offline:

- ``arithmetic`` (GSM8K format): "What is 37 + 48?" → "37 + 48 = 85.\\nThe final answer is: 85".
- ``reverse`` (Alpaca format, string transformation): reverse the order of 3–5 words.
- ``compare`` (NLU format, true/false): "Is 47 greater than 23?" → "the correct answer is true".

Splits are disjoint by construction: an item belongs to ``train``, ``dev`` or ``test`` by a hash of
its content (80/10/10), so held-out examples are never seen in training.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Callable

from ..errors import UsageError

SPLITS = ("train", "dev", "test")
WORDS = ("apple river stone cloud green tiger paper light music ocean table dream silver "
         "forest candle winter garden rocket yellow bridge castle planet window mirror orange "
         "pencil thunder violet desert island").split()


def _split_of(key: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def _arithmetic(rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    op = rng.choice("+-")
    c = a + b if op == "+" else a - b
    return {"question": f"What is {a} {op} {b}?", "answer": f"{a} {op} {b} = {c}.\n#### {c}", "task": "arithmetic"}


def _reverse(rng: random.Random) -> dict[str, Any]:
    words = rng.sample(WORDS, rng.randint(3, 5))
    return {"instruction": "Reverse the order of the words in the input.", "input": " ".join(words),
            "output": " ".join(reversed(words)), "task": "reverse"}


def _compare(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(range(10, 100), 2)
    truth = "true" if a > b else "false"
    return {"instruction": f"Is {a} greater than {b}?\n\nAnswer format: true/false",
            "input": "", "output": f"the correct answer is {truth}", "answer": truth, "task": "compare"}


BUILTIN_TASKS: dict[str, tuple[Callable[[random.Random], dict[str, Any]], str, str]] = {
    # name: (generator, native format, scorer used by evaluation)
    "arithmetic": (_arithmetic, "gsm8k", "gsm8k"),
    "reverse": (_reverse, "alpaca", "exact"),
    "compare": (_compare, "nlu", "nlu"),
}
TASKS = BUILTIN_TASKS  # the former name, still imported by eval/tasks.py


def parse_builtin(spec: str) -> tuple[str, str]:
    """``builtin:NAME[:SPLIT]`` → (NAME, SPLIT)."""
    parts = spec.split(":")
    name = parts[1] if len(parts) > 1 else ""
    split = parts[2] if len(parts) > 2 else "train"
    if name not in BUILTIN_TASKS:
        raise UsageError(f"--data {spec}: unknown built-in task {name!r} (choose from {', '.join(BUILTIN_TASKS)})")
    if split not in SPLITS or len(parts) > 3:
        raise UsageError(f"--data {spec}: unknown split {split!r} (choose from {', '.join(SPLITS)})")
    return name, split


def builtin_rows(name: str, split: str = "train", n: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct rows of task ``name`` in ``split``, the same for the same (name, split, n, seed)."""
    gen = BUILTIN_TASKS[name][0]
    rng = random.Random(f"{name}:{split}:{seed}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n and attempts < 200 * n:
        attempts += 1
        row = gen(rng)
        key = row.get("question") or row.get("input") or row["instruction"]
        if key in seen or _split_of(f"{name}:{key}") != split:
            continue
        seen.add(key)
        rows.append(row)
    return rows
