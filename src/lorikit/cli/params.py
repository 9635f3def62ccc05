"""``lorikit params``."""

from __future__ import annotations

from ..adapters.methods import method_names
from ..utils.validate import finite_float


def register(sub) -> None:
    p = sub.add_parser("params", help=f"exact trainable-parameter count of {' / '.join(method_names())} (no weights loaded)",
                       description="Instantiates the model config on the meta device and wraps it with PEFT. "
                                   "LoRI-S counts k = int((1 - sparsity) * number of B entries) (global mask).")
    p.add_argument("--model", default="smollm2-135m",
                   help="alias, model folder, config.json file or Hub id (default: smollm2-135m)")
    p.add_argument("--rank", type=int, default=32, help="LoRA rank r (default: 32)")
    p.add_argument("--method", choices=method_names(), nargs="+", default=list(method_names()),
                   help="one or more methods (default: all)")
    p.add_argument("--sparsity", type=finite_float, default=0.9, help="LoRI-S mask sparsity (default: 0.9)")
    p.add_argument("--scope", choices=("global", "module"), default="global", help="LoRI-S mask scope (default: global)")
    p.add_argument("--target-modules", nargs="+", default=None, help="module names to adapt (default: the 7 projections)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..adapters.params import count_parameters

    rows = [count_parameters(args.model, args.rank, m, args.sparsity, args.scope, args.target_modules)
            for m in args.method]
    print(f"model {args.model}: {rows[0].base:,} base parameters, {rows[0].modules} adapted modules, r = {args.rank}")
    print(f"{'method':<14} {'trainable':>14} {'% of LoRA':>10} {'% of base':>10}")
    for r in rows:
        label = r.method + (f" s={r.sparsity}" if r.sparsity is not None else "")
        print(f"{label:<14} {r.trainable:>14,} {100 * r.fraction_of_lora:>9.2f}% {100 * r.fraction_of_base:>9.3f}%")
    return 0
