"""Upload an adapter folder to the Hugging Face Hub (``lorikit push ADAPTER REPO_ID``).

The folder is checked first (a readable PEFT LoRA adapter), and everything but training leftovers
(Trainer checkpoints, optimizer states, resume folders) is uploaded with ``huggingface_hub``. The
folder itself is never changed: the upload is made from a temporary copy (hard links where the
file system allows), to which a model card generated from ``lorikit.json`` is added when the folder
has no ``README.md`` of its own (a hand-written card is uploaded as it is, less a ``base_model``
that is a local folder: ``stage_upload``). Needs network access
and a token (``huggingface-cli login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .adapters.card import CARD, eval_results, hub_id, write_model_card
from .utils.atomic import atomic_write_bytes
from .adapters.state import load_adapter
from .errors import LorikitError, UsageError

IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.ckpt/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
          "training_args.bin", "trainer_state.json", ".*"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def push_adapter(adapter: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
                 commit_message: str | None = None, revision: str | None = None,
                 eval_files: list[str] | None = None) -> str:
    """Create ``repo_id`` if needed and upload the adapter; returns the commit URL. ``eval_files``: results
    of ``lorikit eval --out`` for this adapter, shown as the card's ``model-index``."""
    from huggingface_hub import HfApi

    folder = Path(adapter)
    if not folder.is_dir():
        raise UsageError(f"{adapter}: not an adapter folder")
    if not _REPO_ID.match(repo_id):
        raise UsageError(f"REPO_ID {repo_id!r}: expected OWNER/NAME")
    state = load_adapter(folder)  # refuses a broken folder before anything is sent
    scores = eval_scores(eval_files or [], folder)
    api = HfApi(token=token)
    message = commit_message or f"Upload {state.method} adapter with lorikit"
    with tempfile.TemporaryDirectory(prefix="lorikit-push-") as tmp:
        upload = stage_upload(folder, Path(tmp) / folder.name, state.meta, scores)
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


def eval_scores(paths: list[str], adapter: Path) -> dict[str, dict]:
    """``{data set: {"score", "metric", "data"}}`` from result files of ``lorikit eval --out`` that scored
    ``adapter`` (a result of another adapter, or of the base model alone, is refused)."""
    scores: dict[str, dict] = {}
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--eval {path}: unreadable ({str(exc).splitlines()[0]})") from None
        score = result.get("score") if isinstance(result, dict) else None
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not isinstance(result.get("settings"), dict):
            raise UsageError(f"--eval {path}: not a result file of `lorikit eval --out` (no score and settings)")
        settings = result["settings"]
        scored = settings.get("adapter")
        if not scored:
            raise UsageError(f"--eval {path}: scores the base model alone (no --adapter), not {adapter}")
        if Path(scored).exists() and Path(scored).resolve() != adapter.resolve():
            raise UsageError(f"--eval {path}: scores the adapter {scored}, not {adapter}")
        name = str(settings.get("data") or result.get("task"))
        scores[name] = {"score": score, "metric": result.get("metric") or "accuracy", "data": settings.get("data")}
    return scores


def stage_upload(folder: Path, dest: Path, meta: dict | None, scores: dict[str, dict] | None = None) -> Path:
    """The copy of ``folder`` that is uploaded: training leftovers left out, lorikit's card added when
    there is none, and a card's ``base_model`` entries that are local folders dropped (PEFT's
    ``save_pretrained``, which ``Trainer`` calls, writes the base's local path there; the Hub accepts
    only model ids). ``scores`` become the card's ``model-index`` (in a card of the folder's own, only its
    metadata block changes)."""
    upload = _upload_copy(folder, dest)
    if meta is not None and not (upload / CARD).exists():
        write_model_card(upload, meta, scores)
    elif scores:
        add_eval_results(upload / CARD, scores, meta or {}, folder.name)
    drop_local_base_model(upload / CARD)
    return upload


def add_eval_results(card_path: Path, scores: dict[str, dict], meta: dict, name: str) -> None:
    """Put ``scores`` into the metadata of the card at ``card_path`` (a minimal card when there is none)."""
    from huggingface_hub import ModelCard, ModelCardData

    text = card_path.read_text(errors="replace") if card_path.is_file() else ""
    card = ModelCard(text) if text.startswith("---") else ModelCard(
        f"---\n{ModelCardData(library_name='peft').to_yaml()}\n---\n{text or f'# {name}' + chr(10)}")
    pipeline = card.data.pipeline_tag or "text-generation"
    card.data.eval_results = eval_results(scores, pipeline)
    card.data.model_name = card.data.model_name or f"{meta.get('method', 'LoRA')} adapter {name}"
    if card_path.exists():
        card_path.unlink()  # a hard link to the user's card: write a new file
    atomic_write_bytes(card_path, str(card).encode())


def drop_local_base_model(card_path: Path) -> None:
    """Remove ``base_model`` values (and ``base_model:...`` tags) that are not Hub ids from a card's metadata
    (written as a new file:
    the staged card may be a hard link to the user's)."""
    from huggingface_hub import ModelCard

    if not card_path.is_file() or not card_path.read_text(errors="replace").startswith("---"):
        return  # no metadata block: nothing names a base model
    try:
        card = ModelCard.load(card_path)
    except Exception:  # a hand-written card the Hub would judge itself: uploaded as it is
        return
    base = card.data.base_model
    values = base if isinstance(base, list) else [base] if base else []
    kept = [b for b in values if hub_id(b)]
    tags = list(card.data.tags or [])
    # PEFT also tags the card base_model:adapter:<base>
    kept_tags = [t for t in tags if not str(t).startswith("base_model:") or hub_id(str(t).rsplit(":", 1)[-1])]
    if kept == values and kept_tags == tags:
        return
    card.data.base_model = kept if isinstance(base, list) and kept else (kept[0] if kept else None)
    card.data.tags = kept_tags or None
    card_path.unlink()
    atomic_write_bytes(card_path, str(card).encode())


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
