"""LoRI-S training (sparse trainable state), continual learning, foreign adapters."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lorikit.adapters.build import AdapterConfig, lora_layers
from lorikit.adapters.masks import load_mask, write_masks
from lorikit.adapters.state import load_adapter
from lorikit.errors import LorikitError, UsageError
from lorikit.train import TrainConfig, Trainer, train
from lorikit.adapters.methods import SparsePlan

TINY = "tiny-random-llama"


def cfg_for(out, **kw):
    adapter = kw.pop("adapter", None) or AdapterConfig(method=kw.pop("method", "lori-s"), **kw.pop("adapter_kw", {}))
    base = dict(out=str(out), model=TINY, data="builtin:reverse", max_steps=2, lr=1e-2, batch_size=4, builtin_rows=32)
    base.update(kw)
    return TrainConfig(adapter=adapter, **base)


def bits(t):
    return t.contiguous().view(torch.int32)


@pytest.fixture(scope="module")
def lori_d(tmp_path_factory):
    """A trained LoRI-D adapter (seed 7, rank 4) with 0.9 and 0.5 masks in its masks/ folder."""
    root = tmp_path_factory.mktemp("lori_d")
    out = train(TrainConfig(out=str(root / "d"), model=TINY, data="builtin:compare", max_steps=2, lr=1e-2,
                            batch_size=4, builtin_rows=32, adapter=AdapterConfig(method="lori-d", rank=4, seed=7)))
    write_masks(out, [0.9, 0.5])
    return out


@pytest.fixture(scope="module")
def lori_s(lori_d, tmp_path_factory):
    out = tmp_path_factory.mktemp("lori_s") / "s"
    return train(cfg_for(out, mask=str(lori_d / "masks" / "0.9_mask.pt")))


def test_lori_s_output_zero_outside_mask_trained_inside_same_a(lori_d, lori_s):
    d, s = load_adapter(lori_d), load_adapter(lori_s)
    masks = load_mask(lori_d / "masks" / "0.9_mask.pt", s)
    trained = 0
    for name, mod in s.modules().items():
        assert torch.equal(bits(mod.A), bits(d.modules()[name].A)), f"{name}: A differs from the LoRI-D adapter's"
        assert (bits(mod.B)[~masks[name]] == 0).all(), f"{name}: masked-out entry not exactly 0"
        trained += int((mod.B[masks[name]] != 0).sum())
    assert trained > 0.9 * sum(int(m.sum()) for m in masks.values())
    meta = s.meta
    assert meta["method"] == "lori-s" and meta["seed"] == 7 and meta["a_init"] == "kaiming"
    assert meta["train"]["trainable_parameters"] == meta["mask"]["kept"] == sum(int(m.sum()) for m in masks.values())
    assert meta["a_from"] == str(lori_d)


def test_stock_peft_loads_lori_s(lori_s, tiny_bundle):
    from peft import PeftModel

    model = PeftModel.from_pretrained(tiny_bundle.model, str(lori_s))
    saved = load_adapter(lori_s).modules()
    for name, layer in lora_layers(model):
        assert torch.equal(layer.lora_B["default"].weight, saved[name].B)


def test_masked_entries_zero_every_step_and_state_is_sparse(lori_d, tmp_path):
    cfg = cfg_for(tmp_path / "x", mask=str(lori_d / "masks" / "0.9_mask.pt"))
    bundle, peft_model, plan = Trainer(cfg).build_model()
    assert isinstance(plan, SparsePlan)
    masks = load_mask(cfg.mask)
    params = plan.parameters()
    assert sum(p.numel() for p in params) == plan.kept == sum(int(m.sum()) for m in masks.values())
    assert all(p.dim() == 1 for p in params)
    # nothing else can receive a gradient: frozen dense B and A have requires_grad False
    assert {id(p) for p in peft_model.parameters() if p.requires_grad} == {id(p) for p in params}
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)  # decay must not touch masked entries either
    ids = torch.randint(4, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    layers = dict(lora_layers(peft_model))
    for _ in range(3):
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        for name, layer in layers.items():
            dense = layer.lora_B["default"].parametrizations.weight.original
            assert dense.grad is None and not dense.requires_grad
        opt.step()
        opt.zero_grad(set_to_none=True)
        for name, layer in layers.items():
            B = layer.lora_B["default"].weight
            assert (bits(B.detach())[~masks[name]] == 0).all()
    state_elems = sum(t.numel() for st in opt.state.values() for k, t in st.items() if k in ("exp_avg", "exp_avg_sq"))
    assert state_elems == 2 * plan.kept  # moments sized by kept entries, not out × r
    assert any((layers[n].lora_B["default"].weight[masks[n]] != 0).any() for n in layers)
    plan.finalize()
    for name, layer in layers.items():
        lin = layer.lora_B["default"]
        assert type(lin.weight) is torch.nn.Parameter and not lin.weight.requires_grad
        assert (bits(lin.weight.detach())[~masks[name]] == 0).all()
    assert set(k for k in peft_model.state_dict() if "lora_B" in k) == {
        f"base_model.model.{n}.lora_B.default.weight" for n in layers}


def test_seed_override_redraws_a_with_warning(lori_d, tmp_path):
    cfg = cfg_for(tmp_path / "x", mask=str(lori_d / "masks" / "0.9_mask.pt"), adapter_kw={"seed": 3})
    with pytest.warns(UserWarning, match="--seed 3 overrides"):
        _, peft_model, plan = Trainer(cfg).build_model()
    d = load_adapter(lori_d).modules()
    from lorikit.adapters.seeded import seeded_projection

    for name, layer in lora_layers(peft_model):
        A = layer.lora_A["default"].weight
        assert not torch.equal(A, d[name].A)
        assert torch.equal(A, seeded_projection(3, name, A.shape[0], A.shape[1]))
    assert plan.metadata()["seed"] == 3


def test_option_errors(lori_d, tmp_path):
    with pytest.raises(UsageError, match="needs --mask"):
        cfg_for(tmp_path / "x")
    with pytest.raises(UsageError, match="--mask: only with"):
        cfg_for(tmp_path / "x", method="lori-d", mask="m.pt")
    loose = tmp_path / "loose.pt"
    shutil.copy(lori_d / "masks" / "0.9_mask.pt", loose)
    with pytest.raises(UsageError, match="not inside an adapter's masks/ folder"):
        Trainer(cfg_for(tmp_path / "x", mask=str(loose))).build_model()
    with pytest.warns(UserWarning, match="no source adapter"):  # explicit seed: fresh A, mask still validated
        _, _, plan = Trainer(cfg_for(tmp_path / "x", mask=str(loose), adapter_kw={"seed": 7, "rank": 4})).build_model()
    assert plan.kept == sum(int(m.sum()) for m in load_mask(loose).values())
    with pytest.raises(LorikitError, match="lora_B.default.weight.*shape"):
        Trainer(cfg_for(tmp_path / "x", mask=str(loose), adapter_kw={"seed": 7, "rank": 8})).build_model()


def test_foreign_adapter_and_hand_built_mask(lori_d, tmp_path):
    """No lorikit.json: A comes from the file; a hand-built mask without .default in masks/ works."""
    foreign = tmp_path / "foreign"
    shutil.copytree(lori_d, foreign, ignore=shutil.ignore_patterns("lorikit.json", "masks", "train_log.jsonl"))
    state = load_adapter(foreign)
    assert state.meta is None
    gen = torch.Generator().manual_seed(5)
    raw = {f"base_model.model.{n}.lora_B.weight": torch.rand(tuple(m.B.shape), generator=gen) < 0.2
           for n, m in state.modules().items()}
    (foreign / "masks").mkdir()
    torch.save(raw, foreign / "masks" / "hand.pt")
    _, peft_model, plan = Trainer(cfg_for(tmp_path / "x", mask=str(foreign / "masks" / "hand.pt"))).build_model()
    for name, layer in lora_layers(peft_model):
        assert torch.equal(layer.lora_A["default"].weight, state.modules()[name].A)
        assert not layer.lora_B["default"].weight.any()
    meta = plan.metadata()
    assert meta["seed"] is None and meta["a_init"] == "from-file" and meta["rank"] == 4
    assert plan.kept == sum(int(m.sum()) for m in raw.values())


def test_continual_with_mask_keeps_outside_bit_identical(lori_d, lori_s, tmp_path):
    from lorikit.cli import main

    new_mask = lori_d / "masks" / "0.5_mask.pt"
    out = tmp_path / "continual"
    rc = main(["train", "--model", TINY, "--data", "builtin:compare", "--max-steps", "2", "--lr", "1e-2",
               "--batch-size", "4", "--builtin-rows", "32", "--from", str(lori_s), "--mask", str(new_mask),
               "--out", str(out)])
    assert rc == 0
    parent, child = load_adapter(lori_s), load_adapter(out)
    masks = load_mask(new_mask, child)
    changed = 0
    for name, mod in child.modules().items():
        p = parent.modules()[name]
        assert torch.equal(bits(mod.A), bits(p.A))
        assert torch.equal(bits(mod.B)[~masks[name]], bits(p.B)[~masks[name]]), name
        changed += int((mod.B[masks[name]] != p.B[masks[name]]).sum())
    assert changed > 0
    meta = child.meta
    assert meta["method"] == "lori-s" and meta["parent"]["path"] == str(lori_s) and meta["seed"] == 7
    parent_nz = {n: m.B != 0 for n, m in parent.modules().items()}
    both = sum(int((parent_nz[n] & masks[n]).sum()) for n in masks)
    assert meta["overlap"]["both"] == both
    assert meta["overlap"]["parent_nonzero"] == sum(int(v.sum()) for v in parent_nz.values())
    assert meta["overlap"]["mask_kept"] == meta["mask"]["kept"] == sum(int(m.sum()) for m in masks.values())
    assert 0 < meta["overlap"]["fraction_of_mask"] <= 1


def test_continual_without_mask_trains_all_of_b(lori_s, tmp_path):
    out = train(cfg_for(tmp_path / "c", method="lora", from_adapter=str(lori_s)))
    parent, child = load_adapter(lori_s), load_adapter(out)
    newly_nonzero = 0
    for name, mod in child.modules().items():
        p = parent.modules()[name]
        assert torch.equal(bits(mod.A), bits(p.A))
        newly_nonzero += int(((p.B == 0) & (mod.B != 0)).sum())
    assert newly_nonzero > 0  # entries outside the parent's mask were trained too
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["method"] == "lori-d" and meta["parent"]["method"] == "lori-s"
    assert meta["train"]["trainable_parameters"] == sum(m.B.numel() for m in parent.modules().values())


def test_continue_a_trains_a_and_b_of_a_lora_parent(tmp_path):
    """`--method lora --from P --continue-a`: plain LoRA continual fine-tuning — A and B both train on
    from P's values (the LoRI reference's LoRA baseline); without --continue-a, A stays bit-identical."""
    parent_dir = train(cfg_for(tmp_path / "p", method="lora", data="builtin:compare", adapter_kw={"seed": 3}))
    both = train(cfg_for(tmp_path / "ab", method="lora", from_adapter=str(parent_dir), continue_a=True))
    b_only = train(cfg_for(tmp_path / "b", method="lora", from_adapter=str(parent_dir)))
    parent = load_adapter(parent_dir)
    for child_dir, a_trains in ((both, True), (b_only, False)):
        child = load_adapter(child_dir)
        a_changed = [not torch.equal(bits(m.A), bits(parent.modules()[n].A)) for n, m in child.modules().items()]
        b_changed = [not torch.equal(bits(m.B), bits(parent.modules()[n].B)) for n, m in child.modules().items()]
        assert all(b_changed)
        assert all(a_changed) if a_trains else not any(a_changed)
        meta = json.loads((child_dir / "lorikit.json").read_text())
        assert meta["method"] == ("lora" if a_trains else "lori-d") and meta["parent"]["method"] == "lora"
        sizes = sum(m.B.numel() + (m.A.numel() if a_trains else 0) for m in parent.modules().values())
        assert meta["train"]["trainable_parameters"] == sizes
        assert meta["hyperparameters"]["continue_a"] is a_trains


def test_continue_a_option_errors(lori_d, tmp_path):
    with pytest.raises(UsageError, match="--continue-a: only with --from"):
        cfg_for(tmp_path / "x", method="lora", continue_a=True)
    with pytest.raises(UsageError, match="--continue-a: trains A, but --method lori-d keeps A frozen"):
        cfg_for(tmp_path / "x", method="lori-d", from_adapter=str(lori_d), continue_a=True)
    with pytest.raises(UsageError, match="--method lora with --mask keeps A frozen"):
        cfg_for(tmp_path / "x", method="lora", from_adapter=str(lori_d), continue_a=True,
                mask=str(lori_d / "masks" / "0.9_mask.pt"))
