"""Upload an adapter folder to the Hugging Face Hub (``lorikit push ADAPTER REPO_ID``).

The folder is checked first (a readable PEFT LoRA adapter), its model card is (re)written from
``lorikit.json``, and everything but training leftovers (Trainer checkpoints, optimizer states,
resume folders) is uploaded with ``huggingface_hub``. Needs network access and a token
(``huggingface-cli login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .adapters.card import write_model_card
from .adapters.state import load_adapter
from .errors import LorikitError, UsageError

IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.ckpt/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
          "training_args.bin", "trainer_state.json", ".*"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def push_adapter(adapter: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
                 commit_message: str | None = None, revision: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload the adapter; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(adapter)
    if not folder.is_dir():
        raise UsageError(f"{adapter}: not an adapter folder")
    if not _REPO_ID.match(repo_id):
        raise UsageError(f"REPO_ID {repo_id!r}: expected OWNER/NAME")
    state = load_adapter(folder)  # refuses a broken folder before anything is sent
    if state.meta is not None:
        write_model_card(folder, state.meta)
    api = HfApi(token=token)
    message = commit_message or f"Upload {state.method} adapter with lorikit"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message=message, ignore_patterns=IGNORE, revision=revision)
    except Exception as exc:  # offline, auth, permissions: one line naming the repo
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise LorikitError(f"push to {repo_id}: {type(exc).__name__}: {first}") from exc
    return str(getattr(info, "commit_url", info))
