"""TRL's dataset formats (messages, prompt/completion, text): detection, label masks, training and eval."""

from __future__ import annotations

import json

import pytest

from lorikit.cli import main as cli
from lorikit.data import IGNORE, load_examples, tokenize
from lorikit.errors import LorikitError
from lorikit.models.loading import build_tiny_tokenizer

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"}]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def labelled(tok, tokenized) -> list[str]:
    """The supervised stretches of a tokenized example, decoded (one string per run of labelled tokens)."""
    runs, current = [], []
    for token, label in zip(tokenized.input_ids, tokenized.labels):
        if label == IGNORE:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    if current:
        runs.append(current)
    return [tok.decode(r) for r in runs]


@pytest.fixture
def tok():
    return build_tiny_tokenizer()


@pytest.mark.parametrize("row, fmt", [({"messages": CHAT}, "messages"),
                                      ({"prompt": "a", "completion": "b"}, "prompt-completion"),
                                      ({"text": "abc"}, "text")])
def test_formats_are_detected_from_the_fields(tmp_path, row, fmt):
    from lorikit.data.formats import detect_format

    assert detect_format(row, "x") == fmt
    assert load_examples(write_jsonl(tmp_path / "d.jsonl", [row] * 2))


def test_messages_train_on_the_assistant_turns_only(tmp_path, tok):
    [ex] = load_examples(write_jsonl(tmp_path / "m.jsonl", [{"messages": CHAT}]))
    t = tokenize(tok, ex, max_length=512)
    assert labelled(tok, t) == ["4</s>", "6</s>"]  # each reply and its end-of-turn token; no header, no user turn
    assert tok.decode(t.input_ids) == tok.apply_chat_template(CHAT, tokenize=False)


def test_conversational_prompt_completion_trains_on_the_completion_only(tmp_path, tok):
    row = {"prompt": CHAT[:3] + CHAT[3:4], "completion": [CHAT[4]]}  # the prompt holds an earlier reply
    [ex] = load_examples(write_jsonl(tmp_path / "pc.jsonl", [row]))
    assert labelled(tok, tokenize(tok, ex)) == ["6</s>"]


def test_prompt_completion_trains_on_the_completion_and_eos(tmp_path, tok):
    [ex] = load_examples(write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "Q: 2+2\nA:", "completion": " 4"}]))
    t = tokenize(tok, ex)
    assert labelled(tok, t) == [" 4</s>"] and tok.decode(t.input_ids) == "Q: 2+2\nA: 4</s>"


def test_text_trains_on_every_token(tmp_path, tok):
    [ex] = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "hello world"}]))
    t = tokenize(tok, ex)
    assert all(label != IGNORE for label in t.labels) and tok.decode(t.input_ids) == "hello world</s>"


def test_truncation_keeps_the_labels_aligned(tmp_path, tok):
    [ex] = load_examples(write_jsonl(tmp_path / "m.jsonl", [{"messages": CHAT}]))
    full = tokenize(tok, ex, max_length=512)
    cut = tokenize(tok, ex, max_length=20)
    assert cut.input_ids == full.input_ids[:20] and cut.labels == full.labels[:20]


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "has no assistant turn"),
    ({"messages": "hi"}, "field 'messages' must be a non-empty list"),
    ({"messages": [{"role": "user"}]}, "messages[0]: missing field 'content'"),
    ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "a"}]},
     "field 'completion' has no assistant turn"),
    ({"prompt": "q", "completion": {"a": 1}}, "field 'completion' is dict, expected text"),
])
def test_bad_rows_name_the_line_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(LorikitError) as err:
        load_examples(path)
    assert str(err.value).startswith(f"{path}:1: ") and message in str(err.value)


def test_train_and_eval_read_trl_formats(tmp_path, capsys):
    rows = [{"messages": [{"role": "user", "content": f"{i}+1?"}, {"role": "assistant", "content": str(i + 1)}]}
            for i in range(8)]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    out = tmp_path / "a"
    assert cli(["train", "--model", "tiny-random-llama", "--data", data, "--max-steps", "2", "--batch-size", "4",
                "--rank", "2", "--out", str(out)]) == 0
    assert json.loads((out / "lorikit.json").read_text())["train"]["final_loss"] > 0
    result = tmp_path / "eval.json"
    assert cli(["eval", "--model", "tiny-random-llama", "--adapter", str(out), "--task", "exact", "--data", data,
                "--limit", "2", "--max-new-tokens", "2", "--out", str(result)]) == 0
    record = json.loads(result.read_text())["records"][0]
    assert record["prompt"] == "<|user|>\n0+1?</s>\n<|assistant|>\n" and record["gold"] == "1"
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": f"{i}+1=", "completion": str(i + 1)} for i in range(4)])
    assert cli(["eval", "--model", "tiny-random-llama", "--task", "exact", "--data", pc, "--limit", "2",
                "--max-new-tokens", "2", "--out", str(tmp_path / "pc.json")]) == 0
    assert json.loads((tmp_path / "pc.json").read_text())["records"][1]["prompt"] == "1+1="
