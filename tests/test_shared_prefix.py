"""--shared-prefix: the prompt tokens every row of a micro-batch shares run once (train/loss.py).

Without dropout the loss, its gradients and a whole training run equal the full pass to float
tolerance (tiny-random-llama, float32); the shared length stops before any row's response."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lorikit import AdapterConfig, TrainConfig, train
from lorikit.data import collate, load_examples, tokenize
from lorikit.data.templates import apply_template
from lorikit.errors import UsageError
from lorikit.models import load_model
from lorikit.models.cache import MIN_SHARED_PREFIX, decode_with_shared_prefix
from lorikit.train.loss import IGNORE, sft_loss_sum, shared_prefix_length

TINY = dict(model="tiny-random-llama", builtin_rows=40, max_length=512, dtype="float32")


def batch_of(task: str, rows: int = 6, template: str = "reference"):
    bundle = load_model("tiny-random-llama", dtype="float32")
    tok = bundle.tokenizer
    examples = apply_template(template, tok, load_examples(f"builtin:{task}", "auto", n_builtin=40, seed=1)[:rows])
    return bundle, collate([tokenize(tok, e, 512, None) for e in examples], tok.pad_token_id)


def lora(model, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(hash(name) % 2**31))
    return peft.train()


@pytest.mark.parametrize("task", ["pair-max", "words-reverse", "parity", "py-type"])
def test_loss_and_gradients_equal_the_full_pass(task):
    bundle, batch = batch_of(task)
    length = shared_prefix_length(batch)
    first_response = int(((batch["labels"] != IGNORE).float().argmax(1)).min())
    # the reference template's preamble is shared; the rows' own inputs are not
    assert MIN_SHARED_PREFIX <= length <= first_response - 1
    assert not (batch["input_ids"][:, length + 1] == batch["input_ids"][0, length + 1]).all() or \
        length == first_response - 1
    model = lora(bundle.model)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(shared: bool):
        for p in params:
            p.grad = None
        loss, n = sft_loss_sum(model.get_base_model(), batch, True, shared_prefix=shared)
        loss.backward()
        return float(loss.detach()), n, [p.grad.clone() for p in params]

    full, shared = loss_and_grads(False), loss_and_grads(True)
    assert shared[1] == full[1] > 0
    assert shared[0] == pytest.approx(full[0], rel=1e-5)
    for a, b in zip(full[2], shared[2]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().max()) > 1e-4 for g in full[2])  # a real comparison: gradients are not all 0


def test_shared_length_rules():
    _, batch = batch_of("pair-max", rows=4)
    assert shared_prefix_length({k: v[:1] for k, v in batch.items()}) == 0  # one row: nothing to share
    # identical rows share everything up to the position that predicts the first response token
    same = {k: v[:1].repeat(3, 1) for k, v in batch.items()}
    first_response = int((same["labels"][0] != IGNORE).float().argmax())
    assert shared_prefix_length(same) == first_response - 1
    # rows that differ from the first token share nothing
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][1, 0] += 1
    assert shared_prefix_length(other) == 0
    # a template without a preamble shares fewer tokens than MIN_SHARED_PREFIX: the full pass runs
    _, plain = batch_of("pair-max", rows=4, template="chat")
    assert shared_prefix_length(plain) >= MIN_SHARED_PREFIX  # the chat template's system turn is shared too


def test_training_with_a_shared_prefix_equals_training_without(tmp_path):
    """Ten AdamW steps with dev-loss early stopping: the same adapter, losses and dev record."""
    def run(name: str, shared: bool):
        cfg = TrainConfig(out=str(tmp_path / name), data="builtin:pair-max", max_steps=10, lr=1e-2, batch_size=4,
                          eval_every=5, patience=2, dev_fraction=0.25, shared_prefix=shared,
                          adapter=AdapterConfig(method="lori-d", rank=4, seed=1), **TINY)
        return train(cfg)

    full, shared = run("full", False), run("shared", True)
    want, got = load_file(full / "adapter_model.safetensors"), load_file(shared / "adapter_model.safetensors")
    assert want.keys() == got.keys() and any(float(want[k].abs().max()) > 1e-3 for k in want if "lora_B" in k)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=key)
    logs = [[json.loads(line) for line in (d / "train_log.jsonl").read_text().splitlines()] for d in (full, shared)]
    assert [r["loss"] for r in logs[1]] == pytest.approx([r["loss"] for r in logs[0]], rel=1e-5)
    dev = [json.loads((d / "lorikit.json").read_text())["early_stopping"]["history"] for d in (full, shared)]
    assert [h["dev_loss"] for h in dev[1]] == pytest.approx([h["dev_loss"] for h in dev[0]], rel=1e-5)


def test_with_dropout_the_shared_tokens_draw_one_mask_and_training_still_learns(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "a"), data="builtin:pair-max", max_steps=8, lr=1e-2, batch_size=4,
                      shared_prefix=True, adapter=AdapterConfig(method="lora", rank=4, seed=1, dropout=0.1), **TINY)
    out = train(cfg)
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.parametrize("change, message", [
    ({"head": "classification"}, "--shared-prefix: not with --head classification"),
    ({"grad_checkpointing": True}, "--shared-prefix: needs --logits supervised and no --grad-checkpointing"),
    ({"logits": "full"}, "--shared-prefix: needs --logits supervised"),
])
def test_shared_prefix_refuses_what_it_cannot_share(tmp_path, change, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(out=str(tmp_path / "a"), data="builtin:pair-max", shared_prefix=True, **{**TINY, **change})


def test_loglik_scores_with_a_shared_prefix_equal_the_scores_without(monkeypatch):
    """Prompts of one template share their preamble; options of several tokens run against the cache
    the shared pass filled; a prompt as short as the preamble keeps its last token."""
    from lorikit.eval import loglik
    from lorikit.eval.loglik import ChoiceItem, option_logliks

    lengths = []

    def spy(decoder, ids, mask, length, cache=None):
        lengths.append(length)
        return decode_with_shared_prefix(decoder, ids, mask, length, cache)

    monkeypatch.setattr(loglik, "decode_with_shared_prefix", spy)

    bundle = load_model("tiny-random-llama", dtype="float32")
    preamble = "Below is an instruction that describes a task.\n\n### Input:\n"
    items = [ChoiceItem(preamble + "23 47\n", ["the answer is 47", "the answer is 23"]),
             ChoiceItem(preamble + "a longer input than the others\n", ["x", "a longer option here"]),
             ChoiceItem(preamble, ["1", "12"]),
             ChoiceItem(preamble + "9\n", ["yes", "no"])]
    full = option_logliks(bundle.model, bundle.tokenizer, items, batch_size=4, progress=False)
    shared = option_logliks(bundle.model, bundle.tokenizer, items, batch_size=4, progress=False, shared_prefix=True)
    # the shared pass ran: the whole preamble but the short prompt's last token
    assert lengths[0] == 0 and lengths[1] == len(bundle.tokenizer(preamble).input_ids) - 1 >= MIN_SHARED_PREFIX
    for a, b in zip(full, shared):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-5)
    assert len({round(v, 3) for row in full for v in row}) > 4  # distinct scores: a real comparison


def test_eval_shared_prefix_is_for_loglik_scoring():
    from lorikit.eval.config import EvalConfig

    with pytest.raises(UsageError, match=r"--shared-prefix: only with --scoring loglik or both"):
        EvalConfig(task="builtin", data="builtin:pair-max", shared_prefix=True, scoring="generate")
    assert EvalConfig(task="builtin", data="builtin:pair-max", shared_prefix=True, scoring="loglik").shared_prefix
