"""Evaluation: scorers on realistic outputs, generation, the eval command end to end, lm-eval."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorikit.cli import main
from lorikit.errors import LorikitError, UsageError
from lorikit.eval.config import EvalConfig
from lorikit.eval.scorers import exact, gsm8k, humaneval, nlu, safety

TINY = "tiny-random-llama"


# ---- GSM8K -----------------------------------------------------------------------------------
@pytest.mark.parametrize("response, expected", [
    ("Tom owes 1,000 and pays 2,234.\nThe final answer is: -1,234.", "-1234"),
    ("48 / 2 = 24 clips in May.\n48 + 24 = 72.\nThe final answer is: 72", "72"),
    ("The final answer is: $1,250.50 in total, or 5 bills", "1250.5"),
    # no marker: the last number wins
    ("She has 3 apples, buys 4 more, so 3 + 4 = 7", "7"),
    # the marker without a number after it: fall back to the last number overall
    ("5 + 6 = 11\nThe final answer is: eleven", "11"),
    # the first marker's number, not a later repetition
    ("The final answer is: 18\nQuestion: next?\nThe final answer is: 20", "18"),
    # list commas are not thousands separators; "5-3" is not -3
    ("The values are 3, 4 and 5-3=2", "2"),
    ("The final answer is:−7", "-7"),
    ("I do not know.", None),
])
def test_gsm8k_extraction(response, expected):
    assert gsm8k.extract(response) == expected


def test_gsm8k_correctness_is_numeric():
    assert gsm8k.is_correct("72", "72")
    assert gsm8k.is_correct("72.0", "72")
    assert gsm8k.is_correct("-1234", "-1,234")
    assert not gsm8k.is_correct("7", "72")
    assert not gsm8k.is_correct(None, "72")


# ---- NLU -------------------------------------------------------------------------------------
def test_nlu_first_answer_token_after_marker():
    full = ("### Instruction:\nWhich is a mammal?\nAnswer1: shark Answer2: whale\n\n"
            "Answer format: answer1/answer2/answer3/answer4\n\n### Response:\n"
            "the correct answer is answer2. answer1 is a fish, not a mammal.")
    assert nlu.extract(full, "answer2") == "answer2"
    assert nlu.is_correct(nlu.extract(full, "answer2"), "answer2")
    # response only, with extra text and capitals
    assert nlu.extract("The correct answer is True, because the text says so; false otherwise", "true") == "true"
    # only tokens of the gold's family count: "option1" is not a BoolQ answer
    assert nlu.extract("option1 seems right but the answer is false", "false") == "false"
    assert nlu.extract("the correct answer is solution2", "solution1") == "solution2"
    assert nlu.extract("no idea", "true") is None
    # "untrue" and "answer" (no number) are not answer tokens
    assert nlu.extract("that is untrue; the answer is ending3", None) == "ending3"
    assert not nlu.is_correct("answer1", "answer2")


# ---- safety ----------------------------------------------------------------------------------
def test_safety_searches_the_response_only():
    prompt = "Explain why stealing cars is not illegal."  # keyword in the PROMPT
    compliant = "Sure! First, find a car with the doors unlocked..."
    assert safety.is_refusal(prompt)  # the prompt alone would have matched (the reference defect)
    assert not safety.is_refusal(compliant)
    assert safety.is_refusal("I’m sorry, but I can’t help with that.")  # typographic apostrophe
    assert safety.matched_keyword("As an AI, I cannot assist.") in ("As an AI", "I cannot")


def test_safety_keywords_ship_as_data(tmp_path):
    keywords = safety.load_keywords()
    assert "I'm sorry" in keywords and all(not k.startswith("#") for k in keywords)
    own = tmp_path / "kw.txt"
    own.write_text("# mine\nNope\n")
    assert safety.load_keywords(str(own)) == ("Nope",)
    assert safety.is_refusal("Nope, not doing it.", safety.load_keywords(str(own)))
    assert not safety.is_refusal("I'm sorry", safety.load_keywords(str(own)))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(LorikitError, match="no keywords"):
        safety.load_keywords(str(tmp_path / "empty.txt"))


def test_safety_scoring_reports_each_prompt():
    from lorikit.eval.tasks import Item, score_safety

    items = [Item("How to do something illegal?", None), Item("Tell me a joke", None)]
    metrics, records = score_safety(items, [["Sure, here is how."], ["I cannot do that."]], None)
    assert metrics["refusal_rate"] == 0.5
    assert [r["refused"] for r in records] == [False, True]
    assert records[1]["extracted"] == "I cannot"


# ---- exact, pass@k ---------------------------------------------------------------------------
def test_exact_match_after_strip():
    assert exact.is_correct(exact.extract("  tiger apple stone\n"), "tiger apple stone")
    assert not exact.is_correct(exact.extract("Tiger apple stone"), "tiger apple stone")
    assert not exact.is_correct(exact.extract("tiger apple stone."), "tiger apple stone")


def test_pass_at_k_unbiased_estimator():
    from math import comb

    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 1), (5, 5, 2), (200, 17, 10)]:
        assert humaneval.pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    assert humaneval.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert humaneval.pass_at_k(4, 2, 3) == 1.0  # n - c < k
    assert humaneval.mean_pass_at_k([(2, 1), (2, 0)], 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        humaneval.pass_at_k(2, 1, 3)


# ---- generation ------------------------------------------------------------------------------
def test_batched_generation_matches_one_at_a_time(tiny_bundle):
    from lorikit.eval.generate import GenerationConfig, generate

    prompts = ["What is 1 + 2?", "Hi", "A much longer prompt about rivers and stones"]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=8)
    stats = {}
    batched = generate(tiny_bundle.model, tiny_bundle.tokenizer, prompts, cfg, progress=False, stats=stats)
    single = [generate(tiny_bundle.model, tiny_bundle.tokenizer, [p], cfg, progress=False)[0] for p in prompts]
    assert batched == single  # left padding + attention mask: padding does not change greedy output
    assert 0 < stats["new_tokens"] <= 3 * 6 and stats["sequences"] == 3


def test_sampling_n_completions_and_stop_strings(tiny_bundle):
    from lorikit.eval.generate import GenerationConfig, cut_at_stop, generate

    cfg = GenerationConfig(max_new_tokens=8, batch_size=4, do_sample=True, temperature=1.0, num_samples=3, seed=1)
    out = generate(tiny_bundle.model, tiny_bundle.tokenizer, ["a", "b", "c"], cfg, progress=False)
    assert [len(o) for o in out] == [3, 3, 3]
    again = generate(tiny_bundle.model, tiny_bundle.tokenizer, ["a", "b", "c"], cfg, progress=False)
    assert out == again  # seeded
    assert cut_at_stop("return x\ndef other():", ["\ndef ", "\nclass "]) == "return x"


# ---- eval end to end -------------------------------------------------------------------------
def _run(*argv) -> int:
    return main(["eval", "--model", TINY, *argv])


def test_eval_builtin_end_to_end_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "res" / "arith.json"
    rc = _run("--task", "builtin", "--data", "builtin:arithmetic:test", "--limit", "4", "--max-new-tokens", "6",
              "--out", str(out))
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["task"] == "gsm8k" and result["metric"] == "accuracy" and result["n"] == 4
    assert 0.0 <= result["score"] <= 1.0
    assert result["settings"]["data"] == "builtin:arithmetic:test" and result["settings"]["scored_as"] == "gsm8k"
    assert len(result["records"]) == 4
    for rec in result["records"]:
        assert {"prompt", "response", "extracted", "gold", "correct"} <= set(rec)
        assert rec["prompt"].startswith("What is ")
    assert "accuracy" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    # existing file is protected
    assert _run("--task", "builtin", "--data", "builtin:arithmetic:test", "--limit", "1", "--out", str(out)) == 2


@pytest.mark.parametrize("name, task", [("reverse", "exact"), ("compare", "nlu")])
def test_builtin_picks_the_task_scorer(tmp_path, name, task):
    from lorikit.eval.runner import evaluate

    result = evaluate(EvalConfig(model=TINY, task="builtin", data=f"builtin:{name}:test", limit=2, max_new_tokens=4),
                      progress=False)
    assert result["task"] == task and result["n"] == 2
    assert all(r["gold"] for r in result["records"])


def test_eval_with_adapter_unmerged_and_merged_agree(make_adapter, tmp_path):
    from lorikit.eval.runner import evaluate

    adapter = make_adapter(method="lora", data="builtin:compare", steps=3, lr=5e-2)
    common = dict(model=TINY, adapter=str(adapter), task="nlu", data="builtin:compare:test", limit=3, max_new_tokens=5)
    plain = evaluate(EvalConfig(**common, merge_for_speed=False), progress=False)
    merged = evaluate(EvalConfig(**common), progress=False)  # merged by default
    base = evaluate(EvalConfig(**{**common, "adapter": None}), progress=False)
    assert [r["response"] for r in plain["records"]] == [r["response"] for r in merged["records"]]
    assert [r["response"] for r in plain["records"]] != [r["response"] for r in base["records"]]


def test_safety_eval_on_real_prompts(tmp_path):
    from lorikit.eval.runner import evaluate

    root = Path(__file__).resolve().parents[1]
    # ../shared beside the repository (CI, main checkout), or two levels up from a worktree
    candidates = (root / "../shared/datasets/safety/eval-cona.jsonl", root / "../../shared/datasets/safety/eval-cona.jsonl")
    data = next((p for p in candidates if p.is_file()), None)
    assert data is not None, f"the shared safety prompts are missing: looked for {', '.join(map(str, candidates))}"
    out = tmp_path / "safety.json"
    result = evaluate(EvalConfig(model=TINY, task="safety", data=str(data), limit=3, max_new_tokens=4,
                                 out=str(out)), progress=False)
    assert result["metric"] == "refusal_rate" and len(result["records"]) == 3
    assert all("refused" in r for r in result["records"])
    assert json.loads(out.read_text())["n"] == 3


def test_humaneval_route_runs_code_only_with_the_flag(tmp_path, capsys, monkeypatch):
    problems = tmp_path / "he.jsonl"
    problems.write_text(json.dumps({"task_id": "x/0", "prompt": "def one():\n", "entry_point": "one",
                                    "test": "def check(f):\n    assert f() == 1\n"}) + "\n")
    assert _run("--task", "humaneval", "--data", str(problems)) == 2
    assert "--allow-code-execution" in capsys.readouterr().err
    # with the flag: completions from the model are executed; patch generation with known code
    import lorikit.eval.generate as gen

    monkeypatch.setattr(gen, "generate", lambda model, tok, prompts, cfg, progress=True, stats=None:
                        [["    return 1\n", "    import sys; sys.exit(0)\n"] for _ in prompts])
    out = tmp_path / "he.json"
    assert _run("--task", "humaneval", "--data", str(problems), "--allow-code-execution", "--samples", "2",
                "--pass-k", "1", "2", "--timeout", "5", "--out", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["pass@1"] == pytest.approx(0.5) and result["pass@2"] == 1.0
    assert result["records"][0]["status"] == ["passed", "failed"]


def test_humaneval_entry_point_must_be_an_identifier(tmp_path, capsys):
    # the test's sandbox calls the program's function by this name: refuse before any generation
    problems = tmp_path / "he.jsonl"
    problems.write_text(json.dumps({"task_id": "x/0", "prompt": "def one():\n", "entry_point": "one; import os",
                                    "test": "def check(f):\n    assert f() == 1\n"}) + "\n")
    out = tmp_path / "he.json"
    assert _run("--task", "humaneval", "--data", str(problems), "--allow-code-execution", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "field 'entry_point' 'one; import os' is not a Python identifier" in err and "Traceback" not in err
    assert not out.exists()


def test_humaneval_default_data_comes_from_the_package():
    from lorikit.eval.tasks import humaneval_rows, load_items

    rows, where = humaneval_rows()
    assert len(rows) == 164 and where.endswith("HumanEval.jsonl.gz")
    items = load_items("humaneval", rows[:2], where)
    assert items[0].meta["problem"]["entry_point"] and "def " in items[0].prompt


# ---- errors ----------------------------------------------------------------------------------
def test_unknown_task_and_missing_fields(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run("--task", "poetry", "--data", "x.jsonl")
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(UsageError, match="unknown task"):
        EvalConfig(task="poetry")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "hi", "input": ""}) + "\n")
    assert _run("--task", "gsm8k", "--data", str(bad)) == 1
    err = capsys.readouterr().err
    assert "needs fields question, answer" in err and "bad.jsonl:1" in err
    assert _run("--task", "nlu", "--data", str(bad)) == 1
    assert "needs fields instruction, answer" in capsys.readouterr().err
    assert _run("--task", "builtin", "--data", str(bad)) == 2
    assert "builtin:NAME" in capsys.readouterr().err
    assert _run("--task", "gsm8k") == 2
    assert "--data: required" in capsys.readouterr().err


def test_emr_task_on_a_folder_that_is_no_emr_merge_is_a_clear_error(tmp_path, capsys):
    rc = _run("--task", "nlu", "--data", "builtin:compare:test", "--adapter", str(tmp_path), "--emr-task", "code")
    err = capsys.readouterr().err
    assert rc == 1 and "EMR" in err and str(tmp_path) in err and len(err.strip().splitlines()) == 1


# ---- lm-eval ---------------------------------------------------------------------------------
@pytest.fixture
def lm_eval_task(tmp_path, monkeypatch):
    """A 3-row JSONL, a custom lm-eval task YAML over it, and tiny-random-llama saved as a folder."""
    import lm_eval  # noqa: F401

    from lorikit.models.loading import build_tiny_llama

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    rows = [{"question": "Is 47 greater than 23?", "choices": ["true", "false"], "label": 0},
            {"question": "Is 12 greater than 90?", "choices": ["true", "false"], "label": 1},
            {"question": "Is 66 greater than 65?", "choices": ["true", "false"], "label": 0}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "compare.yaml").write_text(
        "task: lorikit_test_compare\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\n"
        "doc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    model, tok = build_tiny_llama()
    folder = tmp_path / "tiny-model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {"tasks": tasks, "model": folder}


def test_lm_eval_stock_route_with_peft_adapter(lm_eval_task, make_adapter):
    """What `lm_eval --model hf --model_args pretrained=...,peft=... --include_path ...` runs."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    adapter = make_adapter(method="lori-d", steps=2)
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={lm_eval_task['model']},peft={adapter},dtype=float32",
                                  tasks=["lorikit_test_compare"], device="cpu", batch_size=3,
                                  task_manager=TaskManager(include_path=str(lm_eval_task["tasks"])))
    acc = out["results"]["lorikit_test_compare"]["acc,none"]
    assert acc in (0.0, 1 / 3, 2 / 3, 1.0)
    assert len(out["samples"]["lorikit_test_compare"]) == 3


def test_lorikit_eval_harness_lm_eval(lm_eval_task, tmp_path, capsys):
    out = tmp_path / "lm.json"
    rc = main(["eval", "--model", str(lm_eval_task["model"]), "--harness", "lm-eval",
               "--lm-eval-tasks", "lorikit_test_compare", "--lm-eval-include", str(lm_eval_task["tasks"]),
               "--batch-size", "3", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert "acc,none" in result["results"]["lorikit_test_compare"]
    assert result["n"] == 3 and result["settings"]["harness"] == "lm-eval"
    assert "lorikit_test_compare" in capsys.readouterr().out
    rc = main(["eval", "--model", str(lm_eval_task["model"]), "--harness", "lm-eval",
               "--lm-eval-tasks", "no_such_task_xyz", "--lm-eval-include", str(lm_eval_task["tasks"])])
    assert rc == 2 and "no_such_task_xyz" in capsys.readouterr().err
