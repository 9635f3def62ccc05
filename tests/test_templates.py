"""Prompt templates: the reference's (default) and the tokenizer's chat template (--template chat)."""

from __future__ import annotations

import json

import pytest

from lorikit.cli import main
from lorikit.data.formats import to_example
from lorikit.data.templates import ALPACA_NO_INPUT, apply_template, chat_prompt
from lorikit.errors import UsageError
from lorikit.models.loading import build_tiny_tokenizer

TINY = "tiny-random-llama"


def test_formats_keep_the_user_message_without_the_wrapper():
    alpaca = to_example({"instruction": "Add 2 and 3.", "input": "2, 3", "output": "5"}, "alpaca", "f:1")
    assert alpaca.prompt.startswith("Below is an instruction") and alpaca.user == "Add 2 and 3.\n\n2, 3"
    gsm = to_example({"question": "What is 1+1?", "answer": "#### 2"}, "gsm8k", "f:1")
    assert gsm.user.startswith("What is 1+1?\nAnswer the above question") and not gsm.user.endswith("\n")


def test_reference_template_is_the_identity_and_chat_uses_the_tokenizer_template():
    tok = build_tiny_tokenizer()
    ex = to_example({"instruction": "Reverse: a b", "output": "b a"}, "alpaca", "f:1")
    assert apply_template("reference", tok, [ex]) == [ex]
    (chat,) = apply_template("chat", tok, [ex])
    assert chat.prompt == "<|user|>\nReverse: a b</s>\n<|assistant|>\n"
    assert chat.response == ex.response and ex.prompt == ALPACA_NO_INPUT.format(instruction="Reverse: a b")
    with pytest.raises(UsageError, match="--template 'jinja'"):
        apply_template("jinja", tok, [ex])


def test_chat_without_a_chat_template_is_a_one_line_error():
    tok = build_tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(UsageError, match="has no chat template"):
        chat_prompt(tok, "hi")


def test_chat_prompt_does_not_double_a_bos_the_tokenizer_adds_itself():
    from tokenizers import processors

    tok = build_tiny_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    tok.chat_template = "<s>" + tok.chat_template
    assert tok("x").input_ids[0] == tok.bos_token_id  # this tokenizer adds BOS on encode
    text = chat_prompt(tok, "hi")
    ids = tok(text).input_ids
    assert not text.startswith("<s>") and ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    plain = build_tiny_tokenizer()  # one that does not add BOS keeps the template's
    plain.chat_template = "<s>" + plain.chat_template
    assert chat_prompt(plain, "hi").startswith("<s>")


def test_train_and_eval_with_the_chat_template_end_to_end(tmp_path):
    adapter = tmp_path / "chat"
    assert main(["train", "--model", TINY, "--data", "builtin:pair-greater", "--builtin-rows", "40",
                 "--template", "chat", "--max-steps", "2", "--batch-size", "4", "--out", str(adapter)]) == 0
    meta = json.loads((adapter / "lorikit.json").read_text())
    assert meta["data"]["template"] == "chat"
    out = tmp_path / "eval.json"  # --template auto (the default) follows the adapter
    assert main(["eval", "--model", TINY, "--adapter", str(adapter), "--task", "builtin", "--data",
                 "builtin:pair-greater:test", "--limit", "4", "--scoring", "loglik", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["template"] == "chat"
    assert all(r["prompt"].startswith("<|user|>\n") and r["prompt"].endswith("<|assistant|>\n")
               and "### Instruction" not in r["prompt"] for r in result["records"])
    ref = tmp_path / "ref.json"
    assert main(["eval", "--model", TINY, "--adapter", str(adapter), "--task", "builtin", "--data",
                 "builtin:pair-greater:test", "--limit", "4", "--scoring", "loglik", "--template", "reference",
                 "--out", str(ref)]) == 0
    assert all("### Instruction" in r["prompt"] for r in json.loads(ref.read_text())["records"])


def test_eval_auto_template_refuses_a_corrupt_record(tmp_path, capsys):
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "lorikit.json").write_text(json.dumps({"data": {"template": "jinja"}}))
    assert main(["eval", "--model", TINY, "--adapter", str(adapter), "--task", "builtin", "--data",
                 "builtin:pair-greater:test", "--limit", "2", "--scoring", "loglik",
                 "--out", str(tmp_path / "e.json")]) != 0
    err = capsys.readouterr().err
    assert "lorikit.json: data.template 'jinja'" in err and not (tmp_path / "e.json").exists()
