"""Built-in synthetic tasks, generated deterministically from a seed by lorikit's own code.

Three tasks with different skills and answer formats, each small enough for the 135M model to
learn in a few CPU minutes, so the whole train → merge → evaluate story runs offline:

- ``arithmetic`` (GSM8K format): "What is 37 + 48?" → "37 + 48 = 85.\\nThe final answer is: 85".
- ``reverse`` (Alpaca format, string transformation): reverse the order of 3–5 words.
- ``compare`` (NLU format, true/false): "Is 47 greater than 23?" → "the correct answer is true".

Two families whose tasks share their inputs but not their answers, so adapters trained on them
must meet in the same activations (where merging interference can show):

- ``pair-*`` (input "47 23", two distinct 2-digit numbers): ``pair-add`` → "70", ``pair-sub`` →
  "24", ``pair-max`` → "47" and ``pair-min`` → "23" (choices between the two numbers: the same
  options, opposite answers), ``pair-greater`` → "true". SmolLM2-135M learns every one of them
  but ``pair-sub`` to >= 90 % within 300 steps of 8; two-digit subtraction is the hard task, not
  learned in a few hundred steps (bench/RESULTS.md, Learnability), so studies leave it out by default.
- ``words-*`` (input 3–5 distinct words): ``words-reverse`` (reversed order) and ``words-sort``
  (alphabetical order).

Splits are disjoint by construction: an item belongs to ``train``, ``dev`` or ``test`` by a hash of
its content (80/10/10), so held-out examples are never seen in training. In a family the hash is
of the input alone and the random stream is the family's, so every task of the family draws the
same inputs in the same order and a test input of one task is never a training input of another.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Callable, NamedTuple

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


def _pair(rng: random.Random) -> tuple[int, int]:
    a, b = rng.sample(range(10, 100), 2)
    return a, b


def _pair_task(name: str, instruction: str, answer: Callable[[int, int], str], choice: bool = False):
    def make(rng: random.Random) -> dict[str, Any]:
        a, b = _pair(rng)
        out = answer(a, b)
        row = {"instruction": instruction, "input": f"{a} {b}", "output": out, "task": name}
        if choice:
            row["options"] = [str(a), str(b)]
        return row
    return make


def _greater(rng: random.Random) -> dict[str, Any]:
    a, b = _pair(rng)
    truth = "true" if a > b else "false"
    return {"instruction": "Is the first number greater than the second? Answer true or false.",
            "input": f"{a} {b}", "output": truth, "answer": truth, "task": "pair-greater"}


def _words_task(name: str, instruction: str, transform: Callable[[list[str]], list[str]]):
    def make(rng: random.Random) -> dict[str, Any]:
        words = rng.sample(WORDS, rng.randint(3, 5))
        while words[::-1] == sorted(words):  # the family's answers must conflict: redraw that input
            words = rng.sample(WORDS, rng.randint(3, 5))
        return {"instruction": instruction, "input": " ".join(words), "output": " ".join(transform(words)),
                "task": name}
    return make


class BuiltinTask(NamedTuple):
    generate: Callable[[random.Random], dict[str, Any]]
    format: str  # native training format
    scorer: str  # evaluation task that scores it
    family: str | None = None  # tasks of a family share inputs (random stream and split hash)
    choice: bool = False  # the answer is one of fixed options (log-likelihood scoring applies)


TASKS: dict[str, BuiltinTask] = {
    "arithmetic": BuiltinTask(_arithmetic, "gsm8k", "gsm8k"),
    "reverse": BuiltinTask(_reverse, "alpaca", "exact"),
    "compare": BuiltinTask(_compare, "nlu", "nlu", choice=True),
    "pair-add": BuiltinTask(_pair_task("pair-add", "Add the two numbers.", lambda a, b: str(a + b)),
                            "alpaca", "exact", "pair"),
    "pair-sub": BuiltinTask(_pair_task("pair-sub", "Subtract the second number from the first.",
                                       lambda a, b: str(a - b)), "alpaca", "exact", "pair"),
    "pair-max": BuiltinTask(_pair_task("pair-max", "Give the larger of the two numbers.",
                                       lambda a, b: str(max(a, b)), choice=True), "alpaca", "exact", "pair",
                            choice=True),
    "pair-min": BuiltinTask(_pair_task("pair-min", "Give the smaller of the two numbers.",
                                       lambda a, b: str(min(a, b)), choice=True), "alpaca", "exact", "pair",
                            choice=True),
    "pair-greater": BuiltinTask(_greater, "nlu", "nlu", "pair", choice=True),
    "words-reverse": BuiltinTask(_words_task("words-reverse", "Reverse the order of the words.",
                                             lambda w: w[::-1]), "alpaca", "exact", "words"),
    "words-sort": BuiltinTask(_words_task("words-sort", "Sort the words alphabetically.", sorted),
                              "alpaca", "exact", "words"),
}
BUILTIN_TASKS = TASKS  # name -> BuiltinTask (generate, format, scorer, family); the package-level export


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
    """``n`` distinct rows of task ``name`` in ``split``, the same for the same (name, split, n, seed).

    Fewer than ``n`` when the split holds fewer distinct items (a family's test split: ~800)."""
    task = TASKS[name]
    stream = task.family or name
    rng = random.Random(f"{stream}:{split}:{seed}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n and attempts < 200 * n:
        attempts += 1
        row = task.generate(rng)
        key = row["input"] if task.family else row.get("question") or row.get("input") or row["instruction"]
        if key in seen or _split_of(f"{stream}:{key}") != split:
            continue
        seen.add(key)
        rows.append(row)
    return rows
