"""A bf16 base model on a CPU without native bf16: Linears as float32 GEMMs, the same arithmetic."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lorikit.models import device as devmod
from lorikit.models.cpu_bf16 import Float32GemmLinear, use_float32_gemms
from lorikit.models.loading import load_model

BF16_ULP = 2.0 ** -7  # spacing of bfloat16 values relative to their magnitude (8 significant bits)


def _layer(seed: int = 0, bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(96, 64, bias=bias).to(torch.bfloat16)


def _within_rounding(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal but for the last bit of a few sums: two kernels that add the same products in another order."""
    a, b = a.float(), b.float()
    assert ((a - b).abs() <= BF16_ULP * b.abs().clamp_min(1e-2)).all()
    assert (a != b).float().mean() < 0.02


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_backward_equal_torch_bf16_linear_up_to_rounding(bias):
    layer = _layer(bias=bias)
    x = torch.randn(5, 7, 96).to(torch.bfloat16).requires_grad_()
    want = layer(x)
    want.float().square().sum().backward()
    grad_x, grad_w = x.grad.clone(), layer.weight.grad.clone()
    x.grad, layer.weight.grad = None, None
    use_float32_gemms(layer)
    assert type(layer) is Float32GemmLinear and isinstance(layer, torch.nn.Linear)
    got = layer(x)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    wb = None if layer.bias is None else layer.bias.float()
    assert torch.equal(got, F.linear(x.float(), layer.weight.float(), wb).to(torch.bfloat16))
    _within_rounding(got, want)
    got.float().square().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and layer.weight.grad.dtype == torch.bfloat16
    _within_rounding(x.grad, grad_x)
    _within_rounding(layer.weight.grad, grad_w)


def test_only_bf16_linears_change_and_float32_layers_keep_torch_forward():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4).to(torch.bfloat16), torch.nn.Linear(4, 4), torch.nn.Embedding(3, 4))
    assert use_float32_gemms(model) == 1
    assert [type(m) for m in model] == [Float32GemmLinear, torch.nn.Linear, torch.nn.Embedding]
    model[0].float()  # a layer cast to float32 afterwards computes as a plain Linear
    x = torch.randn(2, 4)
    assert torch.equal(model[0](x), F.linear(x, model[0].weight, model[0].bias))


def test_load_model_uses_float32_gemms_only_where_the_cpu_emulates_bf16(monkeypatch):
    def linear_types(dtype):
        model = load_model("tiny-random-llama", dtype=dtype).model
        return {type(m) for m in model.modules() if isinstance(m, torch.nn.Linear)}

    monkeypatch.setenv(devmod.CPU_BF16_ENV, "0")
    assert linear_types("bfloat16") == {Float32GemmLinear}
    assert linear_types("float32") == {torch.nn.Linear}
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "1")
    assert linear_types("bfloat16") == {torch.nn.Linear}


def test_peft_wraps_copies_and_saves_a_float32_gemm_model(tmp_path, monkeypatch):
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file

    monkeypatch.setenv(devmod.CPU_BF16_ENV, "0")
    bundle = load_model("tiny-random-llama", dtype="bfloat16")
    ids = torch.randint(0, 100, (2, 9))
    peft_model = get_peft_model(bundle.model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    q_proj = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer) is Float32GemmLinear
    logits = peft_model(input_ids=ids).logits
    assert torch.isfinite(logits).all()
    twin = copy.deepcopy(peft_model)
    assert type(twin.base_model.model.model.layers[0].self_attn.q_proj.base_layer) is Float32GemmLinear
    assert torch.equal(twin(input_ids=ids).logits, logits)
    peft_model.save_pretrained(tmp_path / "a")
    saved = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    assert saved and all(".base_layer." not in k for k in saved)
    monkeypatch.setenv(devmod.CPU_BF16_ENV, "1")  # reloaded where bf16 is native: the same adapter, plain Linears
    again = PeftModel.from_pretrained(load_model("tiny-random-llama", dtype="bfloat16").model, tmp_path / "a")
    _within_rounding(again(input_ids=ids).logits, logits)


def test_training_a_bf16_base_on_an_emulating_cpu_matches_the_native_path(tmp_path, monkeypatch):
    """The same run with torch's bf16 Linear and with float32 GEMMs: the losses and the adapter agree
    to bf16 rounding (the trainable adapter is float32 in both)."""
    from safetensors.torch import load_file

    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig
    from lorikit.train.trainer import Trainer

    def train(flag: str, out: str):
        monkeypatch.setenv(devmod.CPU_BF16_ENV, flag)
        cfg = TrainConfig(out=str(tmp_path / out), model="tiny-random-llama", data="builtin:compare", builtin_rows=16,
                          max_steps=4, batch_size=4, lr=1e-2, device="cpu", dtype="bfloat16",
                          adapter=AdapterConfig(method="lora", rank=2, seed=1))
        trainer = Trainer(cfg)
        folder = trainer.run()
        layer = trainer.peft_model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
        losses = [record["loss"] for record in trainer.log]
        return type(layer), losses, load_file(str(folder / "adapter_model.safetensors"))

    native_type, native_losses, native = train("1", "native")
    gemm_type, gemm_losses, gemm = train("0", "gemm")
    assert (native_type, gemm_type) == (torch.nn.Linear, Float32GemmLinear)
    assert native_losses and len(gemm_losses) == len(native_losses)
    assert gemm_losses == pytest.approx(native_losses, rel=2e-2)
    assert native.keys() == gemm.keys()
    for key in native:
        assert torch.allclose(gemm[key], native[key], rtol=5e-2, atol=5e-3), key
