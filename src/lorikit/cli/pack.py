"""``lorikit pack`` and ``lorikit unpack``."""

from __future__ import annotations

from ..utils.outputs import guard_output


def register(sub) -> None:
    p = sub.add_parser("pack", help="write an adapter as one compact .lori file (sparse B, A from its seed)",
                       description="Kept B values + LZMA-compressed mask bits; A regenerated from the seed "
                                   "when it reproduces bit for bit, stored otherwise. `lorikit unpack` restores "
                                   "the identical PEFT adapter (one with rank_pattern / alpha_pattern in the "
                                   "portable form, unless --rank-pattern keep).")
    p.add_argument("adapter", help="PEFT LoRA adapter folder")
    p.add_argument("--out", required=True, help="the .lori file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run_pack)
    u = sub.add_parser("unpack", help="expand a .lori file back into a PEFT adapter folder")
    u.add_argument("packed", help="a file written by `lorikit pack`")
    u.add_argument("--out", required=True, help="output adapter folder")
    u.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    u.add_argument("--rank-pattern", choices=("pad", "keep"), default="pad",
                   help="pad (default): an adapter with rank_pattern / alpha_pattern is written with one rank and "
                        "one scale for every module (lower ranks padded with zero rank-columns, scales folded "
                        "into B, the same update), which vLLM and other servers read correctly; keep: the "
                        "packed files as they were (default: pad)")
    u.set_defaults(func=run_unpack)


def run_pack(args) -> int:
    from ..adapters.pack import pack_adapter

    guard_output(args.out, [args.adapter])
    r = pack_adapter(args.adapter, args.out, args.overwrite)
    print(f"lorikit: packed {args.adapter} into {r.path}: {r.packed_bytes:,} bytes = {r.ratio:.2%} of the "
          f"PEFT weights ({r.peft_bytes:,}); B values kept {r.kept:,}/{r.b_entries:,}; "
          f"A from seed for {r.a_regenerated}/{r.modules} modules")
    return 0


def run_unpack(args) -> int:
    from ..adapters.pack import unpack_adapter

    guard_output(args.out, [args.packed])
    out = unpack_adapter(args.packed, args.out, args.overwrite, args.rank_pattern)
    print(f"lorikit: adapter written to {out}")
    return 0
