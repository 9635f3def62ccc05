"""Issue 2: models, data, LoRA / LoRI-D training, saved adapters, generation, CLI."""

from __future__ import annotations

import json

import pytest

from lorikit.data import BUILTIN_TASKS
import torch

from lorikit.adapters.build import AdapterConfig
from lorikit.adapters.seeded import seeded_projection
from lorikit.adapters.state import load_adapter
from lorikit.cli import main as cli_main
from lorikit.data import load_examples
from lorikit.errors import LorikitError, UsageError
from lorikit.models import load_model
from lorikit.train import TrainConfig, Trainer

TINY = "tiny-random-llama"


def _logits(model, text="The final answer is: 42"):
    tok = load_model(TINY).tokenizer
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_tiny_model_is_identical_every_time():
    a, b = load_model(TINY).model, load_model(TINY).model
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_unknown_model_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown model"):
        load_model("no-such-model")


@pytest.mark.parametrize("method", ["lora", "lori-d"])
def test_stock_peft_loads_adapter_with_same_logits_as_manual_delta(make_adapter, method):
    from peft import PeftModel

    out = make_adapter(method=method, steps=3)
    state = load_adapter(out)
    peft_model = PeftModel.from_pretrained(load_model(TINY).model, str(out))
    manual = load_model(TINY).model
    with torch.no_grad():
        for name, mod in state.modules().items():
            manual.get_submodule(name).weight += mod.delta()
    assert any(m.B.abs().sum() > 0 for m in state.modules().values()), "training should move B"
    torch.testing.assert_close(_logits(peft_model), _logits(manual), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("a_init", ["kaiming", "gaussian"])
def test_lori_d_A_is_frozen_seeded_and_regenerable(make_adapter, a_init):
    out = make_adapter(method="lori-d", seed=7, steps=4, a_init=a_init)
    state = load_adapter(out)
    assert state.meta["method"] == "lori-d" and state.meta["seed"] == 7 and state.meta["a_init"] == a_init
    for name, mod in state.modules().items():
        regenerated = seeded_projection(7, name, mod.rank, mod.A.shape[1], a_init)
        assert torch.equal(mod.A, regenerated), name


def test_two_seeds_give_different_A_and_modules_differ():
    a = seeded_projection(0, "model.layers.0.self_attn.q_proj", 4, 64)
    b = seeded_projection(1, "model.layers.0.self_attn.q_proj", 4, 64)
    c = seeded_projection(0, "model.layers.0.self_attn.k_proj", 4, 64)
    assert not torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 1 / 64 ** 0.5
    g = seeded_projection(0, "x", 8, 4096, "gaussian")
    assert abs(g.std().item() - 8 ** -0.5) < 0.01


def test_only_B_has_optimizer_state_for_lori_d(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "d"), model=TINY, data="builtin:compare", builtin_rows=32,
                      max_steps=2, batch_size=4, adapter=AdapterConfig(method="lori-d", rank=4))
    trainer = Trainer(cfg)
    trainer.run()
    names = {id(p): n for n, p in trainer.peft_model.named_parameters()}
    with_state = [names[id(p)] for p in trainer.optimizer.state]
    assert with_state and all("lora_B" in n for n in with_state)
    assert not any(p.requires_grad for n, p in trainer.peft_model.named_parameters() if "lora_A" in n)
    lora_b = [n for n, p in trainer.peft_model.named_parameters() if "lora_B" in n]
    assert len(with_state) == len(lora_b)


def test_loss_falls_on_builtin_task(make_adapter):
    out = make_adapter(method="lori-d", data="builtin:arithmetic", rank=8, steps=40, lr=5e-3)
    losses = [json.loads(line)["loss"] for line in open(out / "train_log.jsonl")]
    assert len(losses) == 40
    # a random 2-layer model learns slowly; a 5% drop in 40 steps is far outside step-to-step noise
    assert sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5


def test_supervised_position_loss_equals_full_logits_loss(tiny_bundle):
    from lorikit.data import collate, tokenize_example
    from lorikit.train.loss import sft_loss_sum

    tok = tiny_bundle.tokenizer
    exs = load_examples("builtin:compare", n_builtin=4)
    batch = collate([tokenize_example(tok, e.prompt, e.response) for e in exs], tok.pad_token_id)
    with torch.no_grad():
        fast, n1 = sft_loss_sum(tiny_bundle.model, batch, supervised_only=True)
        full, n2 = sft_loss_sum(tiny_bundle.model, batch, supervised_only=False)
    assert n1 == n2 > 0
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-4)


def test_accumulation_equivalence(tmp_path):
    from lorikit.train import train

    def run(bs, accum, out):
        cfg = TrainConfig(out=str(tmp_path / out), model=TINY, data="builtin:arithmetic", builtin_rows=16,
                          max_steps=2, batch_size=bs, grad_accum=accum, lr=1e-2,
                          adapter=AdapterConfig(method="lori-d", rank=4))
        return load_adapter(train(cfg))

    one, acc = run(8, 1, "one"), run(4, 2, "acc")
    # The losses agree to rounding. The weights after two AdamW steps agree to 1e-4 (a wrong
    # accumulation is off by ~lr = 1e-2): Adam's first update m / sqrt(v) is ±lr for any gradient
    # entry, so an entry whose gradient is ~0 turns the rounding of differently padded
    # micro-batches into differences of a few 1e-6.
    logs = [[json.loads(line)["loss"] for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
            for name in ("one", "acc")]
    assert logs[0] == pytest.approx(logs[1], rel=1e-5)
    for key, t in one.tensors.items():
        torch.testing.assert_close(t, acc.tensors[key], rtol=1e-4, atol=1e-4)


def test_training_is_deterministic(make_adapter):
    a = load_adapter(make_adapter(method="lora", steps=3, seed=3))
    b = load_adapter(make_adapter(method="lora", steps=3, seed=3))
    assert all(torch.equal(t, b.tensors[k]) for k, t in a.tensors.items())


def test_foreign_adapter_without_lorikit_json(make_adapter):
    out = make_adapter(method="lora")
    (out / "lorikit.json").unlink()
    state = load_adapter(out)
    assert state.meta is None and state.method == "unknown" and state.seed is None
    assert len(state.modules()) == 2 * 7


# ---- data ---------------------------------------------------------------------------------
def test_builtin_tasks_are_deterministic_and_splits_disjoint():
    for task in ("arithmetic", "reverse", "compare"):
        a = load_examples(f"builtin:{task}", n_builtin=200)
        b = load_examples(f"builtin:{task}", n_builtin=200)
        test = load_examples(f"builtin:{task}:test", n_builtin=50)
        assert [e.prompt for e in a] == [e.prompt for e in b]
        assert not {e.prompt for e in a} & {e.prompt for e in test}


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_no_test_input_is_a_reordering_of_a_training_input(task):
    """Splits go by the unordered content of an input: "23 47" and "47 23" (or two orders of the same
    words) never fall on both sides of a split, for every built-in task (the study's default budget
    generates 2000 training rows)."""
    from lorikit.data.builtin import builtin_rows, content_key

    def keys(split, n):
        rows = builtin_rows(task, split, n)
        return {content_key(r.get("question") or r.get("input") or r["instruction"]) for r in rows}

    train, dev, test = keys("train", 2000), keys("dev", 300), keys("test", 300)
    assert len(test) >= 50  # the split is not empty by accident
    assert not train & test and not train & dev and not dev & test


def test_content_key_ignores_order_only():
    from lorikit.data.builtin import content_key

    assert content_key("23 47") == content_key("47 23") == "23 47"
    assert content_key("river Apple stone") == content_key("stone river apple")
    assert content_key("[-5, 'apple']") == "-5 apple" != content_key("[5, 'apple']")


def test_formats_follow_reference_templates(tmp_path):
    gsm = tmp_path / "g.jsonl"
    gsm.write_text(json.dumps({"question": "2+2?", "answer": "2+2=4\n#### 1,004"}) + "\n")
    ex = load_examples(str(gsm))[0]
    assert ex.prompt == "2+2?\nAnswer the above question. First think step by step and then answer the final number.\n"
    assert ex.response == "2+2=4\nThe final answer is: 1004" and ex.answer == "1004"
    alp = tmp_path / "a.json"
    alp.write_text(json.dumps([{"instruction": "Do X", "input": "ctx", "output": "done"}]))
    ex = load_examples(str(alp))[0]
    assert ex.prompt.startswith("Below is an instruction that describes a task, paired with an input")
    assert ex.prompt.endswith("### Instruction:\nDo X\n\n### Input:\nctx\n\n### Response:\n")
    assert "\n " not in ex.prompt  # no stray indentation (reference defect)


def test_labels_cover_response_and_eos_only(tiny_bundle):
    from lorikit.data import tokenize_example

    tok = tiny_bundle.tokenizer
    t = tokenize_example(tok, "Q: hi\n", "ok")
    supervised = [i for i, l in zip(t.input_ids, t.labels) if l != -100]
    assert supervised == tok("ok", add_special_tokens=False).input_ids + [tok.eos_token_id]


@pytest.mark.parametrize("content, fmt, message", [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', "auto", r"x\.jsonl:2: malformed JSON"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', "alpaca", r"x\.jsonl:2: missing field 'output'"),
    ('{"question": "a", "answer": "no marker"}\n', "gsm8k", r"x\.jsonl:1: field 'answer'"),
    ("", "auto", "no rows"),
    ('{"foo": 1}\n', "auto", "cannot detect the format"),
])
def test_malformed_data_errors_name_file_line_field(tmp_path, content, fmt, message):
    f = tmp_path / "x.jsonl"
    f.write_text(content)
    with pytest.raises(LorikitError, match=message):
        load_examples(str(f), fmt)


def test_unknown_builtin_and_format_are_usage_errors():
    with pytest.raises(UsageError, match="unknown built-in task 'nope'"):
        load_examples("builtin:nope")
    with pytest.raises(UsageError, match="--format 'xml'"):
        load_examples("builtin:compare", "xml")


# ---- generation ---------------------------------------------------------------------------
def test_batched_generation_equals_one_at_a_time(tiny_bundle):
    from lorikit.eval.generate import GenerationConfig, generate

    prompts = ["Is 5 greater than 3?", "hello there, a much longer prompt than the first", "x"]
    batched = generate(tiny_bundle.model, tiny_bundle.tokenizer, prompts, GenerationConfig(max_new_tokens=6))
    single = [generate(tiny_bundle.model, tiny_bundle.tokenizer, [p], GenerationConfig(max_new_tokens=6))[0]
              for p in prompts]
    assert batched == single


# ---- CLI ----------------------------------------------------------------------------------
def test_cli_train_then_generate_and_refuse_existing_out(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", TINY, "--data", "builtin:reverse", "--method", "lori-d", "--rank", "4",
            "--max-steps", "2", "--builtin-rows", "16", "--out", str(out)]
    assert cli_main(args) == 0
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["method"] == "lori-d" and meta["data"]["rows"] == 16 and meta["rank"] == 4
    assert meta["hyperparameters"]["max_steps"] == 2
    assert cli_main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(args + ["--overwrite"]) == 0
    assert cli_main(["generate", "--model", TINY, "--adapter", str(out), "--prompt", "hi",
                     "--max-new-tokens", "3"]) == 0


def test_cli_failure_leaves_no_output(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a"}\n')
    out = tmp_path / "never"
    code = cli_main(["train", "--model", TINY, "--data", str(bad), "--format", "alpaca", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "bad.jsonl:1: missing field 'output'" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


@pytest.mark.slow
def test_smollm2_trains_a_few_steps(tmp_path):
    from lorikit.train import train

    cfg = TrainConfig(out=str(tmp_path / "s"), model="smollm2-135m", data="builtin:compare", builtin_rows=8,
                      max_steps=2, batch_size=2, max_length=96, lr=1e-3,
                      adapter=AdapterConfig(method="lori-d", rank=8))
    state = load_adapter(train(cfg))
    assert state.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(state.modules()) == 30 * 7


def test_default_seed_differs_per_task_and_ignores_the_split(tmp_path):
    """Different tasks get different A by default (docs/methods.md#seeds); a task's train/dev views share it."""
    from lorikit.adapters.config import RunSeed
    from lorikit.train.config import TrainConfig, data_seed

    math, code = tmp_path / "math.jsonl", tmp_path / "code.jsonl"
    math.write_text('{"question": "1+1?", "answer": "2\\n#### 2"}\n')
    code.write_text('{"instruction": "print 1", "output": "print(1)"}\n')
    resolved = [TrainConfig(out="o", data=str(d)).run_seed for d in (math, code, "builtin:arithmetic")]
    assert len({s.value for s in resolved}) == 3 and {s.origin for s in resolved} == {"data"}
    assert data_seed(f"{math}?split=train") == data_seed(f"{math}?split=dev") == data_seed(str(math))
    assert data_seed("builtin:arithmetic:test") == data_seed("builtin:arithmetic")
    copy = tmp_path / "elsewhere.jsonl"
    copy.write_bytes(math.read_bytes())
    assert data_seed(str(copy)) == data_seed(str(math))  # content, not path
    assert TrainConfig(out="o", data=str(math), adapter=AdapterConfig(seed=7)).run_seed == RunSeed(7, "given")
    # LoRI-S takes the seed of the adapter its A comes from: pending until that adapter is read
    lori_s = TrainConfig(out="o", data=str(math), mask=str(math), adapter=AdapterConfig(method="lori-s"))
    assert lori_s.run_seed == RunSeed(None, "adapter") and lori_s.adapter.run_seed == RunSeed(None, "unset")
    derived = TrainConfig(out="o", data=str(math), adapter=AdapterConfig(method="lori-d"))
    assert derived.adapter.seed is None and derived.adapter.run_seed == derived.run_seed  # carried, not rewritten
