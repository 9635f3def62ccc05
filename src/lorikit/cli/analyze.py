"""``lorikit analyze``: the interference report of a set of adapters."""

from __future__ import annotations

from ..utils.outputs import guard_output


def register(sub) -> None:
    p = sub.add_parser("analyze", help="interference report: subspace overlap, ΔW cosine, output shift, masks",
                       description="Compare adapters (ΔW row/column-space overlap, cosine, output shift on each "
                                   "task's data, LoRI-S mask Jaccard) and write report.md with PNG figures.")
    p.add_argument("adapters", nargs="+", metavar="ADAPTER",
                   help="adapter folders, as PATH (named after the folder) or NAME=PATH")
    p.add_argument("--data", nargs="+", metavar="TASK=SPEC", default=None,
                   help="each task's data (file or builtin:NAME); adds the output-shift matrix")
    p.add_argument("--model", default=None,
                   help="base model for the output shift (default: the adapters' recorded base model)")
    p.add_argument("--samples", type=int, default=16, help="examples per task for the output shift (default: 16)")
    p.add_argument("--max-length", type=int, default=256, help="tokens per example (default: 256)")
    p.add_argument("--masks", nargs="+", metavar="MASK", default=None,
                   help="LoRI-S mask files (reference format), PATH or NAME=PATH; adds the Jaccard matrix")
    p.add_argument("--scores", default=None,
                   help="JSON scores [{adapter, task, score}] or {adapter: {task: score}}; adds the score table")
    p.add_argument("--sweep", default=None, metavar="JSON",
                   help="merge-weight sweep {series: {weight: score or eval folder}}; adds the score-vs-weight plot")
    p.add_argument("--device", default="cpu", help="device for the output-shift forward passes (default: cpu)")
    p.add_argument("--out", required=True, help="report folder (report.md, PNGs, analysis.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis import analyze

    guard_output(args.out, [args.adapters, args.data, args.masks, args.scores, args.sweep, args.model])
    out = analyze(args.adapters, args.out, data=args.data, model=args.model, samples=args.samples,
                  max_length=args.max_length, masks=args.masks, scores=args.scores, sweep=args.sweep, overwrite=args.overwrite,
                  device=args.device)
    print(f"lorikit: report written to {out}/report.md")
    return 0
