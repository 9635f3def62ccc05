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

Four tasks whose inputs differ in kind and whose skills and answer formats differ, the setting of
the LoRI and OSRM papers (adapters of different tasks meet different activations) and the default
suite of ``lorikit study``: ``pair-max`` (two numbers, choice), ``words-reverse`` (a list of words,
generated), ``parity`` (a number of 3–5 digits, odd / even) and ``py-type`` (a Python literal, its
type among six). ``sentiment`` (a short review, positive / negative) is built in too but not in the
default suite: SmolLM2-135M already answers it (0.990 [0.964, 0.997] of 200 test items by option
log-likelihood), so merging cannot show that an adapter's skill was kept.

Splits are disjoint by construction: an item belongs to ``train``, ``dev`` or ``test`` by a hash of
the *unordered* content of its input (the multiset of its words and numbers, 80/10/10), so "23 47"
and "47 23", or two orders of the same words, always land in one split and no held-out input is a
reordering of a training input. In a family the hash is of the input alone and the random stream is
the family's, so every task of the family draws the same inputs in the same order and a test input
of one task is never a training input of another.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any, Callable, NamedTuple

from ..errors import UsageError

SPLITS = ("train", "dev", "test")
WORDS = ("apple river stone cloud green tiger paper light music ocean table dream silver "
         "forest candle winter garden rocket yellow bridge castle planet window mirror orange "
         "pencil thunder violet desert island").split()


_TOKEN = re.compile(r"[A-Za-z]+|-?\d+(?:\.\d+)?")


def content_key(text: str) -> str:
    """The unordered content of an input: its words (lower-cased) and numbers, sorted. Inputs that
    differ only in order ("23 47", "47 23") share it, so they share a split."""
    return " ".join(sorted(t.lower() for t in _TOKEN.findall(text)))


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


POSITIVE = ("delicious wonderful friendly excellent lovely fantastic pleasant superb charming delightful "
            "cozy helpful").split()
NEGATIVE = ("awful terrible rude bland dirty horrible disappointing dreadful boring noisy greasy "
            "unhelpful").split()
NOUNS = "food service staff room movie music soup view coffee hotel show book".split()


def _sentiment(rng: random.Random) -> dict[str, Any]:
    label = rng.choice(("positive", "negative"))
    adjectives = POSITIVE if label == "positive" else NEGATIVE
    nouns = rng.sample(NOUNS, rng.randint(1, 2))
    text = " and ".join(f"the {n} was {rng.choice(adjectives)}" for n in nouns)
    return {"instruction": "Is the sentiment of this review positive or negative?", "input": text.capitalize() + ".",
            "output": label, "options": ["positive", "negative"], "task": "sentiment"}


def _parity(rng: random.Random) -> dict[str, Any]:
    number = rng.randint(100, 99999)
    label = "even" if number % 2 == 0 else "odd"
    return {"instruction": "Is this number odd or even?", "input": str(number), "output": label,
            "options": ["odd", "even"], "task": "parity"}


PY_TYPES = ("int", "float", "str", "list", "tuple", "dict")


def _py_literal(rng: random.Random, kind: str) -> str:
    word = lambda: repr(rng.choice(WORDS))  # noqa: E731
    number = lambda: str(rng.randint(-99, 999))  # noqa: E731
    if kind == "int":
        return number()
    if kind == "float":
        return f"{rng.randint(-99, 999)}.{rng.randint(0, 99)}"
    if kind == "str":
        return repr(" ".join(rng.sample(WORDS, rng.randint(1, 2))))
    items = [rng.choice((word, number))() for _ in range(rng.randint(2, 3))]
    if kind == "list":
        return "[" + ", ".join(items) + "]"
    if kind == "tuple":
        return "(" + ", ".join(items) + ")"
    return "{" + ", ".join(f"{word()}: {v}" for v in items) + "}"


def _py_type(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(PY_TYPES)
    return {"instruction": "What is the Python type of this value?", "input": _py_literal(rng, kind), "output": kind,
            "options": list(PY_TYPES), "task": "py-type"}


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
    "sentiment": BuiltinTask(_sentiment, "alpaca", "exact", choice=True),
    "py-type": BuiltinTask(_py_type, "alpaca", "exact", choice=True),
    "parity": BuiltinTask(_parity, "alpaca", "exact", choice=True),
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
        if key in seen or _split_of(f"{stream}:{content_key(key)}") != split:
            continue
        seen.add(key)
        rows.append(row)
    return rows
