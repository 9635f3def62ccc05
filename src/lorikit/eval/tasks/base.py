"""What an evaluation task is (``TaskSpec``), the items it scores, and the shared row → item check.

A task file in ``lorikit/eval/tasks/`` builds one ``TaskSpec`` and calls ``register(SPEC)``; the
package imports every file in it, so adding a task is adding a file. A spec holds:

- ``required``: the row fields it needs (any one of these sets) and ``to_item``: row → ``Item``
  (prompt from the task's template, gold answer, options for choice tasks);
- default generation settings (``max_new_tokens``, ``stop``);
- ``scorings``: how it can be scored (``generate``; ``loglik`` and ``both`` for choice tasks);
- ``score(items, completions, cfg, context)`` → (metrics, records) for generated answers;
- optional hooks: ``default_rows`` (data when ``--data`` is absent), ``prepare(cfg)`` (checked and
  built before the model loads; its result is the ``context`` given to ``score``), ``resolve(cfg)``
  (a task that stands for another, e.g. ``builtin`` → its data's scorer) and ``run(cfg, workdir,
  progress)`` (a task with its own route, e.g. ``classification`` with a classification head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...data.formats import text_field
from ...data.templates import alpaca_prompt, alpaca_user
from ...errors import LorikitError
from ...utils.registry import Registry

GENERATE_ONLY = ("generate",)
CHOICE = ("generate", "loglik", "both")


@dataclass
class Item:
    prompt: str
    gold: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    options: list[str] | None = None  # choice items: the answers log-likelihood scoring compares
    prefix: str = ""  # what the response says before the option ("the correct answer is ")
    id: str = ""  # the row's id/task_id field, else its 0-based position in the data
    where: str = ""  # file:line for errors
    user: str | None = None  # the prompt's content without the task's template (for --template chat)
    messages: list[dict] | None = None  # a conversation: the prompt is its turns before the last reply


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    required: tuple[tuple[str, ...], ...] = ()
    to_item: Callable[[dict, str], Item] | None = None
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    scorings: tuple[str, ...] = GENERATE_ONLY
    score: Callable[..., tuple[dict, list[dict]]] | None = None
    default_rows: Callable[[], tuple[list[dict], str]] | None = None
    prepare: Callable[[Any], Any] | None = None
    context_key: str = ""  # the settings key that records prepare()'s result (a dataclass)
    resolve: Callable[[Any], str] | None = None
    run: Callable[[Any, str, bool], dict] | None = None


TASKS: Registry = Registry("evaluation task")


def register(spec: TaskSpec) -> TaskSpec:
    return TASKS.add(spec.name, spec)


def alpaca_from_row(row: dict, where: str) -> str:
    """The Alpaca prompt of a row's ``instruction`` (+ ``input`` when present)."""
    inp = row.get("input")
    return alpaca_prompt(text_field(row, "instruction", where), text_field(row, "input", where) if inp is not None else None)


def user_message(row: dict, prompt: str) -> str:
    """The user turn for ``--template chat``: an instruction row's instruction (+ input), else the
    task's prompt itself (a GSM8K question with its instruction, a safety prompt, a code prompt)."""
    if isinstance(row.get("instruction"), str):
        inp = row.get("input")
        return alpaca_user(row["instruction"], inp if isinstance(inp, str) else None)
    return prompt.strip()


def line_namer(where: str) -> Callable[[int], str]:
    """``file.jsonl:N`` for JSONL files, ``source: row N`` otherwise (N counts from 1)."""
    return (lambda i: f"{where}:{i + 1}") if where.endswith(".jsonl") else (lambda i: f"{where}: row {i + 1}")


def load_items(task: str, rows: list[dict], where: str) -> list[Item]:
    """Check the task's fields (first row names what is missing) and convert every row."""
    spec = TASKS[task]
    if not rows:
        raise LorikitError(f"{where}: no rows")
    line_of = line_namer(where)
    first = rows[0] if isinstance(rows[0], dict) else {}
    if not any(set(fields) <= set(first) for fields in spec.required):
        need = " or ".join(", ".join(fields) for fields in spec.required)
        raise LorikitError(f"{line_of(0)}: --task {task} needs fields {need}; the row has {sorted(first)}")
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise LorikitError(f"{line_of(i)}: row is {type(row).__name__}, expected a JSON object")
        item = spec.to_item(row, line_of(i))
        item.id = str(next((row[k] for k in ("id", "task_id") if row.get(k) is not None), i))
        item.where = line_of(i)
        if item.user is None:
            item.user = user_message(row, item.prompt)
        items.append(item)
    return items


def score_answers(extract: Callable[[str, str | None], str | None], is_correct: Callable[[str | None, str | None], bool],
                  items: list[Item], completions: list[list[str]]) -> tuple[dict, list[dict]]:
    """Accuracy over every sample (= mean per-example fraction correct): ``extract(text, gold)``
    pulls the answer out of a completion, ``is_correct(prediction, gold)`` judges it."""
    records, fractions = [], []
    for item, outs in zip(items, completions):
        graded = []
        for text in outs:
            pred = extract(text, item.gold)
            graded.append({"response": text, "extracted": pred, "correct": is_correct(pred, item.gold)})
        record = {"id": item.id, "prompt": item.prompt, **graded[0], "gold": item.gold}
        if len(graded) > 1:
            record["samples"] = graded
        records.append(record)
        fractions.append(sum(g["correct"] for g in graded) / len(graded))
    accuracy = sum(fractions) / len(fractions)
    return {"metric": "accuracy", "score": accuracy, "accuracy": accuracy,
            "correct": sum(r["correct"] for r in records)}, records
