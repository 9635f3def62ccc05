"""lorikit.integrations: LoRI / OSRM as PEFT models inside Trainer, TRL and custom loops."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel
from safetensors.torch import load_file

from lorikit.adapters.seeded import seeded_projection
from lorikit.cli import main as cli_main
from lorikit.errors import UsageError
from lorikit.integrations import (collect_osrm_stats, extract_masks, get_lori_model, initialize_osrm_weights,
                                  save_lori_adapter, task_seed)
from lorikit.models import load_model

TINY = "tiny-random-llama"
ROOT = Path(__file__).resolve().parents[1]


def config(**kw) -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", **kw)


def b_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


def load_example(name: str):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def check_stock_lori_s(folder: Path, mask_file: Path) -> None:
    """Stock PEFT loads ``folder``; B is zero exactly where the mask says so; no foreign keys."""
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert not [k for k in tensors if "parametrizations" in k]
    masks = torch.load(mask_file)
    model = PeftModel.from_pretrained(load_model(TINY).model, str(folder))
    kept = 0
    for name, p in model.named_parameters():
        if "lora_B" in name:
            mask = masks[name]
            assert bool((p[~mask] == 0).all()), name
            kept += int((p[mask] != 0).sum())
    assert kept > 0  # the kept entries did train


def check_auto_peft_loads(folder: Path) -> None:
    """Stock ``AutoPeftModelForCausalLM`` finds the recorded base by itself and gives lorikit's outputs."""
    from peft import AutoPeftModelForCausalLM

    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert (Path(base) / "config.json").is_file(), base  # a real folder, not the alias
    stock = AutoPeftModelForCausalLM.from_pretrained(str(folder)).eval()
    ours = PeftModel.from_pretrained(load_model(TINY).model, str(folder)).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-6)


# ---- get_lori_model -----------------------------------------------------------------------------
def test_seed_is_required_or_derived_never_a_shared_default():
    with pytest.raises(UsageError, match="give seed=INT or task=NAME"):
        get_lori_model(load_model(TINY).model, config())
    a = get_lori_model(load_model(TINY).model, config(), task="code")
    b = get_lori_model(load_model(TINY).model, config(), task="math")
    assert a.lorikit_info["seed"] == task_seed("code") != b.lorikit_info["seed"] == task_seed("math")
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    A_a, A_b = dict(a.named_parameters())[name], dict(b.named_parameters())[name]
    assert not A_a.requires_grad
    assert torch.equal(A_a, seeded_projection(task_seed("code"), "model.layers.0.self_attn.q_proj", 4, 64))
    assert not torch.equal(A_a, A_b)
    assert all(float(p.abs().sum()) == 0 for p in b_weights(a).values())
    assert {n for n, p in a.named_parameters() if p.requires_grad} == set(b_weights(a))


def test_bad_arguments_are_one_line_errors():
    model = load_model(TINY).model
    with pytest.raises(UsageError, match="method='lori-s' needs mask"):
        get_lori_model(model, config(), method="lori-s", seed=1)
    with pytest.raises(UsageError, match=r"^mask: only with method='lori-s' \(LoRI-D trains all of B\)$"):
        get_lori_model(model, config(), method="lori-d", seed=1, mask={"m": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(UsageError, match="method='dora'"):
        get_lori_model(model, config(), method="dora", seed=1)
    with pytest.raises(UsageError, match="use_dora"):
        get_lori_model(model, config(use_dora=True), seed=1)
    with pytest.raises(UsageError, match="lora_config: expected a peft.LoraConfig"):
        get_lori_model(model, {"r": 4}, seed=1)


def test_lori_s_trains_kept_entries_only_and_saves_stock_peft(tmp_path):
    dense = get_lori_model(load_model(TINY).model, config(), seed=3)
    with torch.no_grad():
        for p in b_weights(dense).keys():
            dict(dense.named_parameters())[p].normal_()
    mask = extract_masks(dense, 0.75)
    model = get_lori_model(load_model(TINY).model, config(), method="lori-s", seed=3, mask=mask)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == mask.kept
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, 200, (2, 12))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    keys = list(model.state_dict())
    assert not [k for k in keys if "parametrizations" in k] and any(k.endswith("lora_B.default.weight") for k in keys)
    out = save_lori_adapter(model, tmp_path / "s")
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["method"] == "lori-s" and meta["seed"] == 3 and meta["mask"]["kept"] == mask.kept
    loaded = PeftModel.from_pretrained(load_model(TINY).model, str(out))
    for name, p in loaded.named_parameters():
        if "lora_B" in name:
            module = name.split("base_model.model.")[1].split(".lora_B")[0]
            assert bool((p[~mask.masks[module]] == 0).all())
            assert torch.equal(p, dict(model.named_parameters()).get(name, model.state_dict()[name]))
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)


def test_lori_s_loads_its_own_checkpoint_and_refuses_entries_outside_the_mask():
    dense = get_lori_model(load_model(TINY).model, config(), seed=5)
    with torch.no_grad():
        for name in b_weights(dense):
            dict(dense.named_parameters())[name].uniform_(0.1, 1.0)
    mask = extract_masks(dense, 0.5)
    model = get_lori_model(load_model(TINY).model, config(), method="lori-s", seed=5, mask=mask)
    state = {k: v * 0 + 0.5 * (v == v) for k, v in model.state_dict().items() if "lora_B" in k}
    kept_only = {k: v * mask.masks[k.split("base_model.model.")[1].split(".lora_B")[0]] for k, v in state.items()}
    model.load_state_dict(kept_only, strict=False)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept_only.items())
    with pytest.raises(RuntimeError, match="non-zero entries outside this model's LoRI-S mask"):
        model.load_state_dict(state, strict=False)


def test_sequence_classification_keeps_the_head_trainable(tmp_path):
    base = load_model(TINY, head="classification", num_labels=3).model
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    dense = get_lori_model(base, cfg, task="sst2")
    with torch.no_grad():  # as if trained: an untrained B (all zero) has no magnitudes to rank
        for name in b_weights(dense):
            dict(dense.named_parameters())[name].normal_()
    mask = extract_masks(dense, 0.5, scope="module")
    model = get_lori_model(load_model(TINY, head="classification", num_labels=3).model,
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS"),
                           method="lori-s", task="sst2", mask=mask)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("score" in n for n in names) and not any("lora_A" in n for n in names)
    out = save_lori_adapter(model, tmp_path / "clf")
    assert any("score" in k for k in load_file(str(out / "adapter_model.safetensors")))


def test_extract_masks_of_a_model_equals_that_of_its_saved_adapter(tmp_path):
    model = get_lori_model(load_model(TINY).model, config(), seed=9)
    with torch.no_grad():
        for name in b_weights(model):
            dict(model.named_parameters())[name].normal_()
    folder = save_lori_adapter(model, tmp_path / "d")
    live, saved = extract_masks(model, [0.9, 0.5]), extract_masks(folder, [0.9, 0.5])
    for x, y in zip(live, saved):
        assert x.kept == y.kept and all(torch.equal(x.masks[k], y.masks[k]) for k in y.masks)


# ---- OSRM ---------------------------------------------------------------------------------------
def loader(texts, tok, batch=2):
    from lorikit.data.tokenize import pad_right

    ids = [tok(t).input_ids for t in texts]
    return [dict(zip(("input_ids", "attention_mask"), pad_right(ids[i:i + batch], tok.pad_token_id)))
            for i in range(0, len(ids), batch)]


def test_osrm_init_from_dataloaders_is_orthogonal_to_the_other_tasks(tmp_path):
    bundle = load_model(TINY)
    tok = bundle.tokenizer
    loaders = {"a": loader(["what is 3 + 4?", "what is 10 - 2?", "12 + 30"], tok),
               "b": loader(["reverse: red green blue", "reverse: one two"], tok),
               "c": loader(["is 4 > 3? true", "is 1 > 9? false"], tok)}
    peft = get_peft(bundle.model)
    record = initialize_osrm_weights(peft, loaders, task="a", mode="mean")
    assert record["other_tasks"] == ["b", "c"] and peft.lorikit_info["a_init"] == "osrm"
    stats = {k: collect_osrm_stats(load_model(TINY).model, v) for k, v in loaders.items()}
    for name, layer in __import__("lorikit").adapters.build.lora_layers(peft):
        A = layer.lora_A["default"].weight.detach().double()
        assert torch.allclose(A @ A.T, torch.eye(A.shape[0], dtype=torch.float64), atol=1e-5)
        for other in ("b", "c"):
            mu = stats[other].get(name, "mean")
            assert float((A @ mu).abs().max()) < 1e-5 * float(mu.norm())
        assert float(layer.lora_B["default"].weight.detach().abs().sum()) == 0
    # collected stats give the same A as the dataloaders (the adapter is switched off while recording)
    again = get_peft(load_model(TINY).model)
    initialize_osrm_weights(again, stats, task="a", mode="cov")
    cov = get_peft(load_model(TINY).model)
    initialize_osrm_weights(cov, loaders, task="a", mode="cov")
    for (n1, p1), (n2, p2) in zip(again.named_parameters(), cov.named_parameters()):
        assert torch.allclose(p1, p2, atol=1e-6), n1
    with pytest.raises(UsageError, match="task='zz'"):
        initialize_osrm_weights(get_peft(load_model(TINY).model), stats, task="zz")


def get_peft(model):
    from peft import get_peft_model

    return get_peft_model(model, config())


def test_collect_osrm_stats_ignores_padding():
    bundle = load_model(TINY)
    tok = bundle.tokenizer
    short = collect_osrm_stats(bundle.model, loader(["abc"], tok, batch=1))
    padded = collect_osrm_stats(bundle.model, loader(["abc", "a much longer text here"], tok, batch=2))
    alone = collect_osrm_stats(bundle.model, loader(["abc", "a much longer text here"], tok, batch=1))
    assert short.tokens == len(tok("abc").input_ids)
    assert padded.tokens == alone.tokens
    key = "model.layers.0.self_attn.q_proj"
    assert torch.allclose(padded.get(key, "mean"), alone.get(key, "mean"), atol=1e-5)


# ---- Trainer and TRL end to end ------------------------------------------------------------------
@pytest.mark.parametrize("example", ["hf_trainer_lori", "trl_sft_lori"])
def test_example_scripts_train_lori_d_then_lori_s(tmp_path, example, capsys):
    out = tmp_path / "run"
    load_example(example).main(["--out", str(out), "--steps", "4", "--rows", "16"])
    mask_file = out / "lori-d" / "masks" / "0.9_mask.pt"
    check_stock_lori_s(out / "lori-s", mask_file)
    for ckpt in ("checkpoint-2", "checkpoint-4"):  # every save_steps checkpoint: stock adapter + lorikit.json
        check_stock_lori_s(out / "lori-s" / ckpt, mask_file)
        assert json.loads((out / "lori-s" / ckpt / "lorikit.json").read_text())["train"]["steps"] == int(ckpt[-1])
    for folder in (out / "lori-d", out / "lori-s", out / "lori-s" / "checkpoint-2"):
        check_auto_peft_loads(folder)
    d_meta = json.loads((out / "lori-d" / "lorikit.json").read_text())
    s_meta = json.loads((out / "lori-s" / "lorikit.json").read_text())
    assert s_meta["seed"] == d_meta["seed"] == task_seed("builtin:arithmetic")  # LoRI-S reuses LoRI-D's A
    assert s_meta["train"]["final_loss"] is not None and s_meta["hyperparameters"]["learning_rate"] == 1e-2
    d_A = load_file(str(out / "lori-d" / "adapter_model.safetensors"))
    s_A = load_file(str(out / "lori-s" / "adapter_model.safetensors"))
    assert all(torch.equal(d_A[k], s_A[k]) for k in d_A if "lora_A" in k)
    # the same adapters go through lorikit merge and lorikit eval
    merged = tmp_path / "merged"
    assert cli_main(["merge", str(out / "lori-d"), str(out / "lori-s"), "--method", "cat", "--weights", "0.5",
                     "0.5", "--out", str(merged)]) == 0
    result = tmp_path / "eval.json"
    assert cli_main(["eval", "--model", TINY, "--adapter", str(out / "lori-s"), "--task", "builtin", "--data",
                     "builtin:arithmetic:test", "--limit", "2", "--builtin-rows", "4", "--max-new-tokens", "4",
                     "--out", str(result)]) == 0
    assert json.loads(result.read_text())["n"] == 2
    assert load_file(str(merged / "adapter_model.safetensors"))


def test_attach_adapter_refuses_an_unchosen_lori_seed():
    from lorikit import AdapterConfig, attach_adapter
    from lorikit.train import TrainConfig

    with pytest.raises(UsageError, match="AdapterConfig.seed: lori-d needs a per-task seed"):
        attach_adapter(load_model(TINY).model, AdapterConfig(method="lori-d", rank=4))
    assert attach_adapter(load_model(TINY).model, AdapterConfig(method="lori-d", rank=4, seed=0)) is not None
    # training derives the seed from the data, so the same config trains without a seed
    cfg = TrainConfig(out="x", model=TINY, data="builtin:compare", adapter=AdapterConfig(method="lori-d", rank=4))
    assert attach_adapter(load_model(TINY).model, cfg.adapter) is not None


def test_mixed_adapter_batch_equals_each_adapter_alone(make_adapter):
    from lorikit.eval.generate import GenerationConfig, generate
    from lorikit.eval.mixed import BASE, generate_mixed, load_adapters

    a = make_adapter(method="lori-d", data="builtin:compare", seed=1, steps=3, lr=5e-2)
    b = make_adapter(method="lora", data="builtin:arithmetic", seed=2, steps=3, lr=5e-2)
    bundle = load_model(TINY)
    model = load_adapters(bundle.model, {"a": a, "b": b})
    prompts = ["Is 4 > 3?\n", "What is 2 + 2?\n", "hello\n", "Is 9 > 1?\n"]
    names = ["a", "b", BASE, "b"]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=4)
    mixed = generate_mixed(model, bundle.tokenizer, prompts, names, cfg, progress=False)
    for name, adapter in (("a", a), ("b", b), (BASE, None)):
        base = load_model(TINY)
        single = PeftModel.from_pretrained(base.model, str(adapter)) if adapter else base.model
        rows = [i for i, n in enumerate(names) if n == name]
        alone = generate(single, base.tokenizer, [prompts[i] for i in rows], GenerationConfig(max_new_tokens=6,
                                                                                               batch_size=1),
                         progress=False)
        assert [mixed[i] for i in rows] == [x[0] for x in alone], name
    assert len(set(mixed)) > 1  # the adapters really differ
    with pytest.raises(UsageError, match="'c' is not loaded"):
        generate_mixed(model, bundle.tokenizer, prompts[:1], ["c"], cfg)


def test_lorikit_eval_adapters_scores_each_adapter_as_a_separate_eval_would(make_adapter, tmp_path, capsys):
    from lorikit.cli import main

    a = make_adapter(method="lori-d", data="builtin:reverse", seed=1, steps=3, lr=5e-2)
    b = make_adapter(method="lora", data="builtin:reverse", seed=2, steps=3, lr=5e-2)
    common = ["--model", TINY, "--task", "builtin", "--data", "builtin:reverse:test", "--limit", "5",
              "--max-new-tokens", "8", "--batch-size", "4", "--no-merge-for-speed"]
    out = tmp_path / "mixed.json"
    assert main(["eval", *common, "--adapters", f"a={a}", str(b), "base", "--out", str(out)]) == 0
    mixed = json.loads(out.read_text())
    assert list(mixed["adapters"]) == ["a", b.name, "base"] and mixed["settings"]["mixed_batches"]
    assert f"{b.name} score" in capsys.readouterr().out  # the table names every adapter
    for name, adapter in (("a", a), (b.name, b), ("base", None)):
        alone = tmp_path / f"{name}.json"
        assert main(["eval", *common, *(["--adapter", str(adapter)] if adapter else []), "--out", str(alone)]) == 0
        single = json.loads(alone.read_text())
        got = mixed["adapters"][name]
        assert [r["response"] for r in got["records"]] == [r["response"] for r in single["records"]], name
        assert got["score"] == single["score"] and got["n"] == 5


@pytest.mark.parametrize("flags, message", [
    (["--adapters", "a=x", "a=y"], "the name 'a' is given twice"),
    (["--adapters", "a=x", "--scoring", "loglik", "--data", "builtin:compare:test"], "decode greedily"),
    (["--adapters", "a=x", "--adapter", "y"], "drop --adapter"),
])
def test_lorikit_eval_adapters_bad_input(flags, message, tmp_path, capsys):
    from lorikit.cli import main

    argv = ["eval", "--model", TINY, "--task", "builtin", "--out", str(tmp_path / "r.json"), *flags]
    if "--data" not in flags:
        argv += ["--data", "builtin:reverse:test"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "r.json").exists()
