"""``lorikit push ADAPTER REPO_ID``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("push", help="upload an adapter folder to the Hugging Face Hub",
                       description="Upload an adapter (PEFT files, lorikit.json, masks, model card) to a Hub "
                                   "model repo, created if needed. Needs network and a token (HF_TOKEN or "
                                   "huggingface-cli login).")
    p.add_argument("adapter", help="adapter folder")
    p.add_argument("repo_id", help="Hub repo OWNER/NAME")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", default=None, help="branch to push to (default: main)")
    p.add_argument("--commit-message", default=None, help="commit message")
    p.add_argument("--eval", nargs="+", default=None, metavar="RESULT.json",
                   help="results of `lorikit eval --adapter ADAPTER --out RESULT.json`: shown on the Hub as the "
                        "card's model-index (one entry per data set)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..hub import push_adapter

    url = push_adapter(args.adapter, args.repo_id, private=args.private, commit_message=args.commit_message,
                       revision=args.revision, eval_files=args.eval)
    print(f"lorikit: pushed {args.adapter} to {url}")
    return 0
