"""bfloat16 base models on a CPU without native bfloat16: each Linear computed as a float32 GEMM.

torch multiplies bfloat16 matrices on such a CPU (no AVX512-BF16, AMX or Arm BF16) in a slow
fallback kernel: a SmolLM2-135M LoRA training step took 109 s on an AVX2-only EPYC, against 5.1 s in
float32 (``bench/bench_cpu_bf16.py --train-step``). A bfloat16 GEMM is bf16 operands, products summed in float32 and the sum rounded to bf16;
casting the operands up (exact: every bf16 value is a float32 value), multiplying in float32 and
rounding the result to bf16 is that arithmetic, up to the order of the sums — the same freedom any
two CPUs' kernels have. The weights stay stored in bf16; the step took 6.0 s, 1.18x its float32 time.

Only ``torch.nn.Linear`` layers whose weight is bf16 are changed (every projection and the LM head:
nearly all of a transformer's FLOPs), by class, so ``isinstance`` checks, PEFT's wrapping, copies
and ``save_pretrained`` see a ``Linear``. On a CUDA device the layer computes as a plain ``Linear``;
on the CPU autocast is off inside it (its output is bf16 either way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Float32GemmLinear(torch.nn.Linear):
    """A ``Linear`` with bf16 weights whose product is computed in float32 and rounded to bf16 on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype != torch.bfloat16 or self.weight.device.type != "cpu":
            return super().forward(x)
        bias = None if self.bias is None else self.bias.float()
        with torch.autocast("cpu", enabled=False):
            return F.linear(x.float(), self.weight.float(), bias).to(torch.bfloat16)


def use_float32_gemms(model: torch.nn.Module) -> int:
    """Turn every bf16 ``Linear`` of ``model`` into a ``Float32GemmLinear`` in place; the count changed."""
    changed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype == torch.bfloat16:
            module.__class__ = Float32GemmLinear
            changed += 1
    return changed
