"""Upload an adapter folder to the Hugging Face Hub (``lorikit push ADAPTER REPO_ID``).

The folder is checked first (a readable PEFT LoRA adapter), and everything but training leftovers
(Trainer checkpoints, optimizer states, resume folders) is uploaded with ``huggingface_hub``. The
folder itself is never changed: the upload is made from a temporary copy (hard links where the
file system allows), to which a model card generated from ``lorikit.json`` is added when the folder
has no ``README.md`` of its own (a hand-written card is uploaded as it is). Needs network access
and a token (``huggingface-cli login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
from pathlib import Path

from .adapters.card import CARD, write_model_card
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
    api = HfApi(token=token)
    message = commit_message or f"Upload {state.method} adapter with lorikit"
    with tempfile.TemporaryDirectory(prefix="lorikit-push-") as tmp:
        upload = _upload_copy(folder, Path(tmp) / folder.name)
        if state.meta is not None and not (upload / CARD).exists():
            write_model_card(upload, state.meta)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(folder_path=str(upload), repo_id=repo_id, repo_type="model",
                                     commit_message=message, ignore_patterns=IGNORE, revision=revision)
        except Exception as exc:  # offline, auth, permissions: one line naming the repo
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise LorikitError(f"push to {repo_id}: {type(exc).__name__}: {first}") from exc
    return str(getattr(info, "commit_url", info))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy
        shutil.copy2(src, dst)


def _upload_copy(folder: Path, dest: Path) -> Path:
    """What is uploaded, beside the folder rather than in it (training leftovers left out)."""
    def ignored(where: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(where, folder)
        return {n for n in names if any(fnmatch.fnmatch(n if rel == "." else f"{rel}/{n}", p) for p in IGNORE)}

    try:
        shutil.copytree(folder, dest, ignore=ignored, copy_function=_link_or_copy)
    except (OSError, shutil.Error) as exc:
        raise LorikitError(f"{folder}: cannot stage the upload: {exc}".splitlines()[0]) from exc
    return dest
