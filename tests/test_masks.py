"""Mask extraction (global / per-module top-k of |B|) and the reference mask file format."""

from __future__ import annotations

import pytest
import torch

from lorikit.adapters.masks import extract_masks, kept_count, load_mask, save_mask, write_masks
from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
from lorikit.errors import LorikitError, UsageError

SHAPES = {"model.layers.0.self_attn.q_proj": (64, 4), "model.layers.0.mlp.down_proj": (32, 4),
          "model.layers.1.self_attn.q_proj": (64, 4), "model.layers.1.mlp.down_proj": (32, 4)}


def fake_adapter(seed=0, dtype=torch.float32) -> AdapterState:
    gen = torch.Generator().manual_seed(seed)
    mods = [LoraModule(name, torch.randn(r, 16, generator=gen).to(dtype), torch.randn(out, r, generator=gen).to(dtype), 2.0)
            for name, (out, r) in SHAPES.items()]
    # B of layer 1 is 4x larger, so a global top-k must favour it over layer 0
    for m in mods:
        if ".layers.1." in m.name:
            m.B = m.B * 4
    return AdapterState.from_modules(mods, {"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                            "target_modules": ["q_proj", "down_proj"]})


def test_global_mask_is_exact_topk_over_all_modules():
    state = fake_adapter()
    (result,) = extract_masks(state, 0.9)
    all_b = torch.cat([m.B.abs().flatten() for m in state.modules().values()])
    n = all_b.numel()
    k = int((1 - 0.9) * n)
    assert result.target_kept == k == kept_count(0.9, n)
    assert result.kept == k  # random floats: no ties
    assert result.kept_fraction == pytest.approx(k / n)
    threshold = all_b.topk(k).values.min()
    for name, m in state.modules().items():
        assert result.masks[name].dtype == torch.bool
        assert torch.equal(result.masks[name], m.B.abs() >= threshold)
    # one global threshold: the scaled-up layer keeps far more than layer 0
    assert result.per_layer["1"]["kept"] > 3 * result.per_layer["0"]["kept"]
    assert sum(row["kept"] for row in result.per_layer.values()) == result.kept
    assert sum(row["kept"] for row in result.per_module.values()) == result.kept


def test_module_scope_keeps_topk_within_each_b():
    state = fake_adapter()
    (result,) = extract_masks(state, 0.75, scope="module")
    for name, m in state.modules().items():
        k = int(0.25 * m.B.numel())
        assert int(result.masks[name].sum()) == k
        kept_min = m.B.abs()[result.masks[name]].min()
        assert (m.B.abs()[~result.masks[name]] <= kept_min).all()


def test_several_sparsities_in_one_call_and_ties_reported():
    state = fake_adapter()
    for m in state.modules().values():
        m.B.fill_(1.0)  # all tied: |B| >= threshold keeps everything
    results = extract_masks(state, [0.5, 0.9])
    assert [r.sparsity for r in results] == [0.5, 0.9]
    assert all(r.kept == r.total and r.kept > r.target_kept for r in results)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_sparsity_must_be_in_open_interval(bad):
    with pytest.raises(UsageError, match="--sparsity"):
        extract_masks(fake_adapter(), bad)


def test_written_file_is_reference_format(tmp_path):
    fake_adapter().save(tmp_path / "d")
    [(path, result)] = write_masks(tmp_path / "d", [0.9])
    assert path == tmp_path / "d" / "masks" / "0.9_mask.pt"
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {f"base_model.model.{n}.lora_B.default.weight" for n in SHAPES}
    for key, value in raw.items():
        name = key[len("base_model.model."):-len(".lora_B.default.weight")]
        assert value.dtype == torch.bool and tuple(value.shape) == SHAPES[name]
        assert torch.equal(value, result.masks[name])
    with pytest.raises(UsageError, match="exists"):
        write_masks(tmp_path / "d", [0.9])


@pytest.mark.parametrize("segment", [".default", ""])
def test_reads_hand_built_reference_file_with_or_without_default(tmp_path, segment):
    state = fake_adapter()
    state.save(tmp_path / "d")
    gen = torch.Generator().manual_seed(1)
    raw = {f"base_model.model.{n}.lora_B{segment}.weight": torch.rand(shape, generator=gen) < 0.3
           for n, shape in SHAPES.items()}
    torch.save(raw, tmp_path / "m.pt")
    masks = load_mask(tmp_path / "m.pt", load_adapter(tmp_path / "d"))
    assert set(masks) == set(SHAPES)
    for n in SHAPES:
        assert torch.equal(masks[n], raw[f"base_model.model.{n}.lora_B{segment}.weight"])


def test_mismatched_mask_names_the_first_bad_key(tmp_path):
    state = fake_adapter()
    good = {n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()}
    save_mask(good, tmp_path / "ok.pt")
    load_mask(tmp_path / "ok.pt", state)

    wrong_shape = dict(good, **{"model.layers.0.mlp.down_proj": torch.ones(32, 8, dtype=torch.bool)})
    save_mask(wrong_shape, tmp_path / "shape.pt")
    with pytest.raises(LorikitError, match=r"model\.layers\.0\.mlp\.down_proj\.lora_B\.default\.weight.*shape"):
        load_mask(tmp_path / "shape.pt", state)

    extra = dict(good, **{"model.layers.9.mlp.up_proj": torch.ones(4, 4, dtype=torch.bool)})
    save_mask(extra, tmp_path / "extra.pt")
    with pytest.raises(LorikitError, match=r"layers\.9\.mlp\.up_proj.*no module"):
        load_mask(tmp_path / "extra.pt", state)

    missing = {n: m for n, m in good.items() if "layers.1.self_attn" not in n}
    save_mask(missing, tmp_path / "missing.pt")
    with pytest.raises(LorikitError, match=r"no entry for key .*layers\.1\.self_attn\.q_proj"):
        load_mask(tmp_path / "missing.pt", state)

    torch.save({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(4, 16)}, tmp_path / "a.pt")
    with pytest.raises(LorikitError, match="not a lora_B weight"):
        load_mask(tmp_path / "a.pt", state)


def test_corrupt_mask_file_is_one_line_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x04garbage that is not a zip or pickle")
    with pytest.raises(LorikitError, match="not a readable mask file") as err:
        load_mask(tmp_path / "bad.pt")
    assert "\n" not in str(err.value)


def test_cli_masks_writes_files_and_rejects_bad_sparsity(tmp_path, capsys):
    from lorikit.cli import main

    fake_adapter().save(tmp_path / "d")
    assert main(["masks", str(tmp_path / "d"), "--sparsity", "0.9", "0.5", "--scope", "module"]) == 0
    out = capsys.readouterr().out
    assert "0.9_mask.pt" in out and "0.5_mask.pt" in out and "kept fraction" in out
    assert (tmp_path / "d" / "masks" / "0.5_mask.pt").is_file()
    assert main(["masks", str(tmp_path / "d"), "--sparsity", "1.0", "--overwrite"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
