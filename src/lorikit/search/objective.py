"""Dev-set objectives of a merged model: targets' negative log-likelihood, or a generated-answer score.

``nll`` (default): per task, the mean per-token negative log-likelihood of the dev responses (+
EOS) given their prompts — the training loss of ``lorikit train`` (same templates, truncation and
supervised-position head), one forward pass per batch, no generation. ``score``: the task's eval
metric (accuracy, refusal rate, ...) on greedy generations, as ``lorikit eval`` computes it. Both
average the tasks with equal weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from ..data.loading import load_examples, load_rows
from ..data.tokenize import collate, tokenize
from ..errors import LorikitError
from ..eval import tasks as eval_tasks
from ..eval.generate import GenerationConfig, generate
from ..train.loss import sft_loss_sum


@dataclass
class DevSet:
    """One task's dev data, ready for the objective: token batches (nll) or eval items (score)."""

    name: str
    source: str
    batches: list[dict[str, torch.Tensor]] | None = None
    tokens: int = 0
    items: list | None = None
    task: str | None = None

    @property
    def size(self) -> int:
        return len(self.items) if self.items is not None else sum(int(b["input_ids"].shape[0]) for b in self.batches)


def nll_dev_set(name: str, spec: str, tokenizer, fmt: str = "auto", limit: int | None = None,
                batch_size: int = 8, max_length: int = 512, max_prompt_length: int = 256, offset: int = 0) -> DevSet:
    """Tokenise rows ``offset`` … ``offset + limit`` of ``spec`` as training does; batches sorted by
    length so little of each is padding."""
    examples = load_examples(spec, fmt, limit=None if limit is None else offset + limit)[offset:]
    if not examples:
        raise LorikitError(f"--dev {spec}: no rows after --offset {offset}")
    tokenized = [tokenize(tokenizer, e, max_length, max_prompt_length) for e in examples]
    tokenized = sorted(tokenized, key=lambda t: len(t.input_ids))
    batches = [collate(tokenized[i: i + batch_size], tokenizer.pad_token_id)
               for i in range(0, len(tokenized), batch_size)]
    tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    if tokens == 0:
        raise LorikitError(f"--dev {spec}: no response tokens to score (every response cut by --max-length?)")
    return DevSet(name, spec, batches=batches, tokens=tokens)


def score_dev_set(name: str, spec: str, task: str, limit: int | None = None, offset: int = 0) -> DevSet:
    """Eval items of rows ``offset`` … ``offset + limit`` of ``spec`` for ``task`` (``builtin``: the data set's)."""
    spec_of = eval_tasks.TASKS[task]
    task = spec_of.resolve(SimpleNamespace(data=spec)) if spec_of.resolve is not None else task
    rows, where = load_rows(spec, split="test")
    if rows and not rows[offset:]:
        raise LorikitError(f"--dev {spec}: no rows after --offset {offset}")
    items = eval_tasks.load_items(task, rows[offset: offset + limit] if limit else rows[offset:], where)
    return DevSet(name, spec, items=items, task=task)


@torch.no_grad()
def mean_nll(model, dev: DevSet) -> float:
    """Per-token mean NLL of ``dev``'s responses under ``model``."""
    device = next(model.parameters()).device
    total = 0.0
    for batch in dev.batches:
        loss, _ = sft_loss_sum(model, {k: v.to(device) for k, v in batch.items()})
        total += float(loss)
    return total / dev.tokens


@torch.no_grad()
def dev_score(model, tokenizer, dev: DevSet, batch_size: int = 8, max_new_tokens: int | None = None,
              keywords_file: str | None = None) -> float:
    """The eval metric of greedy answers on ``dev`` (higher is better)."""
    spec = eval_tasks.TASKS[dev.task]
    cfg = GenerationConfig(max_new_tokens=max_new_tokens or spec.max_new_tokens, batch_size=batch_size,
                           stop=list(spec.stop))
    completions = generate(model, tokenizer, [it.prompt for it in dev.items], cfg, progress=False)
    metrics, _ = spec.score(dev.items, completions, SimpleNamespace(refusal_keywords=keywords_file), None, False)
    return float(metrics["score"])


def evaluate_tasks(model, tokenizer, devs: list[DevSet], objective: str, batch_size: int = 8,
                   max_new_tokens: int | None = None) -> tuple[float, dict[str, float]]:
    """(value to minimise before any penalty, per-task values): mean NLL, or minus the mean score."""
    model.eval()
    if objective == "nll":
        per_task = {d.name: mean_nll(model, d) for d in devs}
        return sum(per_task.values()) / len(per_task), per_task
    per_task = {d.name: dev_score(model, tokenizer, d, batch_size, max_new_tokens) for d in devs}
    return -sum(per_task.values()) / len(per_task), per_task
