"""``lorikit masks``."""

from __future__ import annotations

from ..utils.validate import finite_float


def register(sub) -> None:
    p = sub.add_parser("masks", help="extract LoRI-S masks (top-k |B|) from a trained LoRI-D adapter",
                       description="Keep the largest |B| entries: k = int((1 - sparsity) * N), mask = |B| >= "
                                   "k-th largest. Writes ADAPTER/masks/{sparsity}_mask.pt in the reference format "
                                   "(full PEFT name with .default -> bool [out, r], True = kept).")
    p.add_argument("adapter", help="PEFT LoRA adapter folder (lorikit.json optional)")
    p.add_argument("--sparsity", type=finite_float, nargs="+", default=[0.9],
                   help="fraction of B entries zeroed, in (0, 1); several values write several files (default: 0.9)")
    p.add_argument("--scope", choices=("global", "module"), default="global",
                   help="global: one top-k over all modules (the reference); module: top-k within each B "
                        "(default: global)")
    p.add_argument("--out-dir", default=None, help="folder for the mask files (default: ADAPTER/masks)")
    p.add_argument("--per-module", action="store_true", help="also print the kept fraction of every module")
    p.add_argument("--overwrite", action="store_true", help="replace existing mask files")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..adapters.masks import write_masks

    results = write_masks(args.adapter, args.sparsity, args.scope, args.out_dir, args.overwrite)
    for path, r in results:
        print(f"{path}: sparsity {r.sparsity} ({r.scope}): kept {r.kept:,} of {r.total:,} "
              f"= {r.kept_fraction:.6f} (target k = {r.target_kept:,})")
        print("  layer  kept fraction")
        for layer, row in sorted(r.per_layer.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0)):
            print(f"  {layer:>5}  {row['kept_fraction']:.4f}  ({row['kept']:,}/{row['total']:,})")
        if args.per_module:
            for name, row in r.per_module.items():
                print(f"  {name}  {row['kept_fraction']:.4f}")
    return 0
