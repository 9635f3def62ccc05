"""Log-likelihood scoring of choice tasks, per-item results, and the built-in task families."""

from __future__ import annotations

import json

import pytest
import torch

from lorikit.cli import main
from lorikit.data.builtin import TASKS, builtin_rows
from lorikit.errors import LorikitError, UsageError
from lorikit.eval.choice import answer_prefix, row_options
from lorikit.eval.config import EvalConfig
from lorikit.eval.loglik import ChoiceItem, option_logliks
from lorikit.eval.result import read_items

TINY = "tiny-random-llama"


def _naive_loglik(model, tok, context: str, continuation: str) -> float:
    """One full forward per option, every position through the head: the definition."""
    ctx = tok(context, add_special_tokens=True).input_ids
    cont = tok(continuation, add_special_tokens=False).input_ids
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[len(ctx) + t - 1, tok_id]) for t, tok_id in enumerate(cont))


def test_option_logliks_equal_the_naive_full_forward(tiny_bundle):
    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    items = [ChoiceItem("Is 3 > 2?\n", ["the correct answer is true", "the correct answer is false"]),
             ChoiceItem("Pick one:\n", ["a", "bb", "a longer option"]),  # distinct parts of several tokens
             ChoiceItem("x", ["12", "1"])]  # one option a prefix of the other
    stats = {}
    got = option_logliks(model, tok, items, batch_size=2, progress=False, stats=stats)
    for item, scores in zip(items, got):
        want = [_naive_loglik(model, tok, item.context, c) for c in item.continuations]
        assert scores == pytest.approx(want, abs=1e-4)
    # each prompt is forwarded once, not once per option
    naive_tokens = sum(len(tok(i.context).input_ids) + len(tok(c, add_special_tokens=False).input_ids)
                       for i in items for c in i.continuations)
    assert stats["tokens"] < naive_tokens


def test_cached_prompt_route_equals_the_one_sequence_per_option_route(tiny_bundle, monkeypatch):
    import lorikit.eval.loglik as loglik

    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    items = [ChoiceItem("a much longer prompt than the others, " * 3, ["47", "23", "100"]),
             ChoiceItem("short", ["x", "a longer option here"]),
             ChoiceItem("mid-length prompt\n", ["the correct answer is true", "the correct answer is false"])]
    cached = [option_logliks(model, tok, items, batch_size=b, progress=False) for b in (1, 3)]
    monkeypatch.setattr(loglik, "decoder_and_head", lambda m: (None, None))  # the full-forward route
    full = option_logliks(model, tok, items, batch_size=2, progress=False)
    for a, b, c in zip(*cached, full):
        assert a == pytest.approx(c, abs=1e-4) and b == pytest.approx(c, abs=1e-4)


def test_options_come_from_the_row():
    assert row_options({"options": ["47", "23"]}, "f:1", nlu=False) == ["47", "23"]
    assert row_options({"instruction": "Q?\n\nAnswer format: answer1/answer2/answer3"}, "f:1", nlu=True) \
        == ["answer1", "answer2", "answer3"]
    assert row_options({"instruction": "Q?", "answer": "False"}, "f:1", nlu=True) == ["true", "false"]
    assert row_options({"instruction": "Q?", "output": "x"}, "f:1", nlu=False) is None
    with pytest.raises(LorikitError, match="f:1: field 'options'"):
        row_options({"options": "a/b"}, "f:1", nlu=False)
    assert answer_prefix({"output": "the correct answer is true"}, "true", nlu=True) == "the correct answer is "
    assert answer_prefix({"output": "true"}, "true", nlu=True) == ""
    assert answer_prefix({}, "true", nlu=True) == "the correct answer is "


def test_eval_loglik_writes_per_item_results(tmp_path):
    out = tmp_path / "greater.json"
    assert main(["eval", "--model", TINY, "--task", "builtin", "--data", "builtin:pair-greater:test",
                 "--limit", "6", "--scoring", "loglik", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 6 and result["settings"]["scoring"] == "loglik"
    for rec in result["records"]:
        assert set(rec["logliks"]) == {"true", "false"}
        assert rec["extracted"] == max(rec["logliks"], key=rec["logliks"].get)
        assert rec["correct"] == (rec["extracted"] == rec["gold"])
    items = read_items(out)
    assert [i.id for i in items] == [str(k) for k in range(6)]
    assert sum(i.correct for i in items) == result["correct"]
    assert result["score"] == pytest.approx(result["correct"] / 6)


def test_scoring_both_reports_agreement_on_well_formed_answers(monkeypatch):
    import lorikit.eval.generate as gen
    import lorikit.eval.runner as runner

    # generation answers "true" for every item (well-formed), or nonsense for the last two
    monkeypatch.setattr(gen, "generate", lambda model, tok, prompts, cfg, **kw:
                        [["the correct answer is true"]] * (len(prompts) - 2) + [["???"]] * 2)
    result = runner.evaluate(EvalConfig(model=TINY, task="builtin", data="builtin:compare:test", limit=8,
                                        scoring="both"), progress=False)
    recs = result["records"]
    assert result["well_formed"] == 6 and [r["well_formed"] for r in recs] == [True] * 6 + [False] * 2
    agree = sum(r["loglik_extracted"] == "true" for r in recs[:6])
    assert result["agreement"] == pytest.approx(agree / 6)
    assert result["score"] == pytest.approx(sum(r["gold"] == "true" for r in recs[:6]) / 8)
    assert result["loglik_accuracy"] == pytest.approx(sum(r["loglik_correct"] for r in recs) / 8)


def test_loglik_refuses_tasks_without_options(tmp_path, capsys):
    assert main(["eval", "--model", TINY, "--task", "builtin", "--data", "builtin:arithmetic:test",
                 "--limit", "2", "--scoring", "loglik"]) == 2
    assert "--scoring loglik" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--scoring loglik: --task gsm8k"):
        EvalConfig(task="gsm8k", scoring="loglik")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"instruction": "Pick", "output": "c", "options": ["a", "b"]}) + "\n")
    with pytest.raises(LorikitError, match=r"rows.jsonl:1: gold answer 'c' is not one of the options"):
        runner_eval(EvalConfig(model=TINY, task="exact", data=str(rows), scoring="loglik"))


def runner_eval(cfg):
    from lorikit.eval.runner import evaluate

    return evaluate(cfg, progress=False)


# ---- built-in families -----------------------------------------------------------------------
@pytest.mark.parametrize("family", ["pair", "words"])
def test_family_tasks_share_inputs_and_conflict_in_answers(family):
    names = [n for n, t in TASKS.items() if t.family == family]
    assert len(names) >= 2
    tests = {n: builtin_rows(n, "test", 50) for n in names}
    inputs = {n: [r["input"] for r in rows] for n, rows in tests.items()}
    assert all(v == inputs[names[0]] for v in inputs.values())  # the same inputs, in the same order
    for i in range(50):
        assert len({tests[n][i]["output"] for n in names}) > 1  # answers differ between tasks
    train = {r["input"] for r in builtin_rows(names[1], "train", 2000)}
    assert not train & set(inputs[names[0]])  # no task trains on a family member's test input


def test_family_answers_are_right():
    for row in builtin_rows("pair-add", "dev", 20) + builtin_rows("pair-sub", "dev", 20):
        a, b = map(int, row["input"].split())
        assert int(row["output"]) == (a + b if row["task"] == "pair-add" else a - b)
    for row in builtin_rows("pair-max", "dev", 20):
        assert row["output"] == str(max(map(int, row["input"].split()))) and row["output"] in row["options"]
    for mx, mn in zip(builtin_rows("pair-max", "dev", 20), builtin_rows("pair-min", "dev", 20)):
        pair = sorted(map(int, mn["input"].split()))
        assert mn["input"] == mx["input"] and mn["options"] == mx["options"]  # same item, opposite answer
        assert (mn["output"], mx["output"]) == (str(pair[0]), str(pair[1]))
    for row in builtin_rows("words-sort", "dev", 20):
        assert row["output"].split() == sorted(row["input"].split())
    assert len(builtin_rows("pair-greater", "test", 300)) == 300  # enough test items for a study


# ---- recipes and the task registry -----------------------------------------------------------
def test_recipe_eval_stage_takes_scoring(tmp_path):
    from lorikit.pipeline.kinds.eval import KIND

    cfg = KIND.validate("score", {"task": "nlu", "data": "x.jsonl", "scoring": "loglik"}, tmp_path)
    assert cfg.scoring == "loglik"
    # recipes coerce choice settings themselves (with a did-you-mean), naming the stage and the setting
    with pytest.raises(UsageError, match=r"stage 'score' \(eval\): setting 'scoring' = 'sum': unknown "
                                         r"\(choose from generate, loglik, both\)"):
        KIND.validate("score", {"task": "nlu", "data": "x.jsonl", "scoring": "sum"}, tmp_path)
    with pytest.raises(UsageError, match=r"stage 'score' \(eval\): --scoring loglik: --task safety"):
        KIND.validate("score", {"task": "safety", "data": "x.jsonl", "scoring": "loglik"}, tmp_path)


def test_every_registered_task_is_a_cli_choice_and_documented():
    import argparse
    from pathlib import Path

    from lorikit.cli import eval as eval_cli
    from lorikit.eval.tasks import TASKS

    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["eval"]
    choices = next(a.choices for a in sub._actions if a.dest == "task")
    assert set(choices) == set(TASKS) >= {"gsm8k", "nlu", "exact", "safety", "humaneval", "classification", "builtin"}
    doc = (Path(__file__).resolve().parents[1] / "docs" / "eval.md").read_text()
    for name, spec in TASKS.items():
        assert f"| `{name}` |" in doc, name
        assert spec.run or spec.resolve or (spec.to_item and spec.score), name


def test_every_builtin_task_has_a_registered_scorer():
    from lorikit.eval.tasks import TASKS as EVAL_TASKS

    for name, task in TASKS.items():
        assert task.scorer in EVAL_TASKS, name
        row = builtin_rows(name, "test", 1)[0]
        item = EVAL_TASKS[task.scorer].to_item(row, name)
        if "options" in row or row.get("answer") in ("true", "false"):
            assert item.options and item.gold in item.options  # loglik-able
