"""Compact .lori files: pack / unpack round trip to the identical PEFT adapter."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from lorikit.adapters.pack import pack_adapter, read_packed, unpack_adapter
from lorikit.adapters.seeded import seeded_projection
from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
from lorikit.errors import LorikitError, UsageError

SHAPES = {"model.layers.0.self_attn.q_proj": (64, 64), "model.layers.0.mlp.down_proj": (64, 128),
          "model.layers.1.self_attn.v_proj": (32, 64)}


def sparse_adapter(tmp_path, seeded=True, dtype=torch.float32, density=0.1, name="a"):
    gen = torch.Generator().manual_seed(0)
    mods = []
    for module, (out, inp) in SHAPES.items():
        A = seeded_projection(11, module, 8, inp).to(dtype) if seeded else torch.randn(8, inp, generator=gen).to(dtype)
        B = torch.randn(out, 8, generator=gen)
        B = torch.where(torch.rand(out, 8, generator=gen) < density, B, torch.zeros(()))  # +0.0, not -0.0
        mods.append(LoraModule(module, A, B.to(dtype), 2.0))
    meta = {"method": "lori-s", "seed": 11, "a_init": "kaiming"} if seeded else None
    state = AdapterState.from_modules(mods, {"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                             "target_modules": ["q_proj", "v_proj", "down_proj"]}, meta=meta)
    return state.save(tmp_path / name)


def assert_identical(a_dir, b_dir):
    a, b = load_adapter(a_dir), load_adapter(b_dir)
    assert list(a.tensors) == list(b.tensors)
    for k in a.tensors:
        assert a.tensors[k].dtype == b.tensors[k].dtype and a.tensors[k].shape == b.tensors[k].shape
        ints = {2: torch.int16, 4: torch.int32}[a.tensors[k].element_size()]
        assert torch.equal(a.tensors[k].view(ints), b.tensors[k].view(ints)), k
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        assert (a_dir / f).read_bytes() == (b_dir / f).read_bytes(), f
    assert (a_dir / "lorikit.json").exists() == (b_dir / "lorikit.json").exists()


def test_seeded_sparse_adapter_round_trip_and_size(tmp_path):
    src = sparse_adapter(tmp_path)
    report = pack_adapter(src, tmp_path / "a.lori")
    assert report.a_regenerated == report.modules == 3
    with safe_open(str(tmp_path / "a.lori"), "pt") as fh:
        assert not any(k.startswith("T:") for k in fh.keys())  # no A stored: regenerated from the seed
    b_entries = sum(o * 8 for o, _ in SHAPES.values())
    assert report.b_entries == b_entries and report.kept < 0.2 * b_entries
    assert report.packed_bytes < 0.25 * report.peft_bytes
    out = unpack_adapter(tmp_path / "a.lori", tmp_path / "back")
    assert_identical(src, out)
    assert json.loads((out / "lorikit.json").read_text())["seed"] == 11


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unseeded_adapter_stores_a_and_keeps_negative_zero(tmp_path, dtype):
    src = sparse_adapter(tmp_path, seeded=False, dtype=dtype)
    state = load_adapter(src)
    key = next(k for k in state.tensors if "lora_B" in k)
    state.tensors[key][0, 0] = -0.0  # bit pattern != +0.0: must survive the round trip
    state.save(tmp_path / "negzero")
    report = pack_adapter(tmp_path / "negzero", tmp_path / "n.lori")
    assert report.a_regenerated == 0
    back, _ = read_packed(tmp_path / "n.lori")
    assert torch.signbit(back.tensors[key][0, 0])
    assert_identical(tmp_path / "negzero", unpack_adapter(tmp_path / "n.lori", tmp_path / "back"))


def test_a_that_does_not_match_its_seed_is_stored(tmp_path):
    src = sparse_adapter(tmp_path)
    meta = json.loads((src / "lorikit.json").read_text())
    meta["seed"] = 12  # lies about the seed: regeneration check must catch it
    (src / "lorikit.json").write_text(json.dumps(meta))
    report = pack_adapter(src, tmp_path / "a.lori")
    assert report.a_regenerated == 0
    assert_identical(src, unpack_adapter(tmp_path / "a.lori", tmp_path / "back"))


def test_errors_and_atomicity(tmp_path):
    src = sparse_adapter(tmp_path)
    pack_adapter(src, tmp_path / "a.lori")
    with pytest.raises(UsageError, match="exists"):
        pack_adapter(src, tmp_path / "a.lori")
    (tmp_path / "junk.lori").write_bytes(b"not safetensors at all")
    with pytest.raises(LorikitError, match="not a readable .lori file"):
        unpack_adapter(tmp_path / "junk.lori", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    data = (tmp_path / "a.lori").read_bytes()
    (tmp_path / "cut.lori").write_bytes(data[: len(data) // 2])
    with pytest.raises(LorikitError):
        unpack_adapter(tmp_path / "cut.lori", tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_cli_pack_unpack(tmp_path, capsys):
    from lorikit.cli import main

    src = sparse_adapter(tmp_path)
    assert main(["pack", str(src), "--out", str(tmp_path / "c.lori")]) == 0
    assert "of the PEFT weights" in capsys.readouterr().out
    assert main(["unpack", str(tmp_path / "c.lori"), "--out", str(tmp_path / "c")]) == 0
    assert_identical(src, tmp_path / "c")
    assert main(["unpack", str(tmp_path / "missing.lori"), "--out", str(tmp_path / "d")]) == 2


def test_trained_lori_s_round_trip_loads_in_peft(make_adapter, tmp_path, tiny_bundle):
    from lorikit.adapters.masks import write_masks
    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig, train
    from peft import PeftModel

    d = make_adapter(method="lori-d", steps=1, seed=3)
    [(mask, _)] = write_masks(d, [0.9])
    s = train(TrainConfig(out=str(tmp_path / "s"), model="tiny-random-llama", data="builtin:compare", max_steps=1,
                          lr=1e-2, batch_size=4, builtin_rows=16, mask=str(mask), adapter=AdapterConfig(method="lori-s")))
    report = pack_adapter(s, tmp_path / "s.lori")
    assert report.a_regenerated == report.modules
    back = unpack_adapter(tmp_path / "s.lori", tmp_path / "s-back")
    assert_identical(s, back)
    PeftModel.from_pretrained(tiny_bundle.model, str(back))


# ---- a foreign PEFT adapter with per-module ranks and scales ----------------------------------------
def _stock_peft_adapter(folder, seed: int, **config):
    """Written by PEFT itself (random non-zero B); returns PEFT's own ΔW per module."""
    from peft import LoraConfig, get_peft_model

    from lorikit.adapters.build import lora_layers
    from lorikit.models import load_model

    torch.manual_seed(seed)
    model = get_peft_model(load_model("tiny-random-llama").model, LoraConfig(
        target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False, **config))
    model.save_pretrained(str(folder))
    with torch.no_grad():
        return {name: layer.get_delta_weight("default").double() for name, layer in lora_layers(model)}


def _served_deltas(folder) -> dict[str, torch.Tensor]:
    """ΔW as a server applying one lora_alpha / r to every module reads it (vLLM's rule: rank_pattern and
    alpha_pattern ignored); every module must have rank r."""
    from safetensors.torch import load_file

    from lorikit.adapters.state import module_name_from_key

    config = json.loads((folder / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / (config["r"] ** 0.5 if config.get("use_rslora") else config["r"])
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(folder / "adapter_model.safetensors")).items():
        module, which = module_name_from_key(key)
        pairs.setdefault(module, {})[which] = t.double()
    assert {p["A"].shape[0] for p in pairs.values()} == {config["r"]}
    return {m: scale * p["B"] @ p["A"] for m, p in pairs.items()}


@pytest.mark.parametrize("config", [
    {"r": 8, "lora_alpha": 16, "rank_pattern": {"q_proj": 4, "layers.1.mlp.down_proj": 2}, "alpha_pattern": {"v_proj": 4}},
    {"r": 4, "lora_alpha": 8, "use_rslora": True, "rank_pattern": {"v_proj": 6}, "alpha_pattern": {"down_proj": 3}},
], ids=["patterns", "rslora-patterns"])
def test_unpack_of_a_peft_adapter_with_rank_pattern_is_portable(tmp_path, config):
    """Packed from a stock PEFT adapter with rank_pattern / alpha_pattern, unpacked: one r and one lora_alpha,
    no patterns, and the same ΔW as PEFT's for every module, read by PEFT or by vLLM's one-scale rule.
    --rank-pattern keep gives back the original files."""
    from peft import PeftModel

    from lorikit.adapters.build import lora_layers
    from lorikit.cli import main
    from lorikit.models import load_model

    src = tmp_path / "peft"
    expected = _stock_peft_adapter(src, seed=3, **config)
    assert main(["pack", str(src), "--out", str(tmp_path / "p.lori")]) == 0
    assert main(["unpack", str(tmp_path / "p.lori"), "--out", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert not written["rank_pattern"] and not written["alpha_pattern"] and written["use_rslora"] is False
    assert written["r"] == max([config["r"], *config["rank_pattern"].values()])
    served = _served_deltas(tmp_path / "out")
    loaded = PeftModel.from_pretrained(load_model("tiny-random-llama").model, str(tmp_path / "out"))
    with torch.no_grad():
        stock = {name: layer.get_delta_weight("default").double() for name, layer in lora_layers(loaded)}
    assert set(served) == set(stock) == set(expected)
    for name, want in expected.items():
        assert float((served[name] - want).norm()) <= 1e-6 * float(want.norm()), name
        assert float((stock[name] - want).norm()) <= 1e-6 * float(want.norm()), name

    assert main(["unpack", str(tmp_path / "p.lori"), "--out", str(tmp_path / "keep"), "--rank-pattern", "keep"]) == 0
    assert_identical(src, tmp_path / "keep")
