"""Write outputs completely or not at all, never over someone else's files.

Every command that produces a folder or file writes it under a temporary name beside the
destination and renames it into place only once everything is written, so an interrupted or
failed run never leaves a half-written adapter, model or report behind. Before the rename every
``*.safetensors`` tensor is checked to be finite (an adapter with NaN/inf is never written), the
folder gets lorikit's marker file (``.lorikit-output``) and modes that follow the umask.

``--overwrite`` replaces only an empty folder or one lorikit wrote (marker file, or the
``lorikit.json`` of older versions), never one that holds a command's inputs or the current
folder. A lock file beside the destination (``.NAME.lock``) keeps two runs from writing to one
``--out``; holding it, a run removes the ``.NAME.tmp-*`` / ``.NAME.old-*`` folders a killed run
left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from safetensors import SafetensorError

from ..errors import LorikitError, UsageError
from .finite import check_saved_tensors_finite
from .outputs import guard_output

MARKER = ".lorikit-output"
# Files whose presence shows that lorikit wrote a folder before the marker existed.
LEGACY_MARKERS = ("lorikit.json", "lorikit-stage.json")
_HELD: dict[str, list] = {}  # lock path -> [depth, fd]: a process may nest its own locks


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def written_by_lorikit(folder: Path) -> bool:
    return any((folder / name).is_file() for name in (MARKER, *LEGACY_MARKERS))


def _check_not_holding(out: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an --out that is, or contains, the current folder, or is, holds or lies inside an input."""
    target = out.resolve()
    if target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
        raise UsageError(f"--out {out}: is the current folder or one above it; give the name of a new folder")
    guard_output(out, inputs)


def check_output_dir(out: str | os.PathLike, overwrite: bool = False,
                     inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse an existing non-empty output folder unless ``overwrite`` is set and lorikit wrote it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    _check_not_holding(out, inputs)
    if out.is_dir() and any(out.iterdir()):
        # a run still writing (its checkpoint-N folders are already there): say so, not "not empty"
        lock = (out.parent if str(out.parent) else Path(".")) / f".{out.name}.lock"
        if str(lock.absolute()) not in _HELD and _lock_is_live(lock):
            raise LorikitError(f"--out {out}: another lorikit run is writing to it (it holds {lock.absolute()}); "
                               f"wait for it to finish or choose another --out")
        if not overwrite:
            raise UsageError(f"--out {out}: folder exists and is not empty (pass --overwrite to replace it)")
        if not written_by_lorikit(out):
            raise UsageError(f"--out {out}: --overwrite replaces only a folder lorikit wrote, and this one "
                             f"was not (no {MARKER}); remove it yourself or choose another --out")
    # Caught here, before any work: the rename at the end would fail after hours of training.
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UsageError(f"--out {out}: {blocking} is a file, not a folder")
    return out


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``out``: a second run to the same ``out`` fails at once."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    path = str((parent / f".{out.name}.lock").absolute())
    if path in _HELD:
        _HELD[path][0] += 1
        try:
            yield
        finally:
            _HELD[path][0] -= 1
        return
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # removed again if left empty
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, out)
    except OSError as exc:
        raise LorikitError(f"--out {out}: cannot create output folder: {exc.strerror or exc}") from exc
    _HELD[path] = [1, fd]
    try:
        yield
    finally:
        del _HELD[path]
        with contextlib.suppress(OSError):
            os.unlink(path)  # still holding the lock: a waiting run re-checks the inode (below)
        os.close(fd)
        for folder in created:  # a failed run leaves no empty parent folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()


def _acquire(path: str, out: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LorikitError(f"--out {out}: another lorikit run is writing to it (it holds {path}); "
                               f"wait for it to finish or choose another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we opened it: take the new one


def _remove_leftovers(out: Path, parent: Path) -> None:
    """Temporary folders of killed runs to this ``out`` (only called while holding its lock)."""
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*"):
        for path in parent.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


# What ``atomic_output_dir`` / ``output_lock`` leave beside a destination NAME when the process is
# killed mid-write: mkdtemp's ``.NAME.tmp-XXXXXXXX`` / ``.NAME.old-XXXXXXXX`` folders and ``.NAME.lock``.
LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:(?:tmp|old)-[A-Za-z0-9_]{8}|(?P<lock>lock))$")


def _lock_is_live(path: Path) -> bool:
    """Whether a live process holds the lock file ``path`` (flock dies with its holder, even on kill -9)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable: not provably stale, so not ours to remove
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def stale_leftovers(folder: str | os.PathLike, names: re.Pattern) -> list[Path]:
    """What killed lorikit writes left in ``folder`` for destinations whose name ``names`` matches:
    their temporary folders and lock files, unless a live process still holds that destination's lock
    (then it is still writing). Anything else, user files with similar names included, is not listed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = LEFTOVER.match(path.name)
        if not m or not names.fullmatch(m.group("name")) or path.is_symlink():
            continue
        if (path.is_file() if m.group("lock") else path.is_dir()) and \
                not _lock_is_live(folder / f".{m.group('name')}.lock"):
            found.append(path)
    return found


def remove_stale_leftovers(folder: str | os.PathLike, names: re.Pattern) -> None:
    """Remove ``stale_leftovers(folder, names)``; a lock file only while holding it, as ``output_lock``
    releases one (a run that opened it meanwhile re-checks the inode and takes a new file)."""
    for path in stale_leftovers(folder, names):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            continue
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
            finally:
                os.close(fd)


def mark_output_dir(folder: Path) -> None:
    """Mark ``folder`` as lorikit's, so that ``--overwrite`` (or a resumed run) may replace it."""
    (folder / MARKER).write_text("written by lorikit; `--overwrite` may replace this folder\n")


def _finish(tmp: Path, out: Path) -> None:
    """Last checks and touches on a complete temporary folder, just before its rename."""
    check_saved_tensors_finite(tmp, out)
    mark_output_dir(tmp)
    mask = current_umask()
    for root, dirs, files in os.walk(tmp):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False,
                      inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block finishes without error."""
    inputs = list(inputs)
    out = check_output_dir(out, overwrite, inputs)
    parent = out.parent if str(out.parent) else Path(".")
    with output_lock(out):
        try:
            _remove_leftovers(out, parent)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
            raise LorikitError(f"--out {out}: cannot create output folder: {exc.strerror or exc}{where}") from exc
        try:
            try:
                yield tmp
            except (OSError, SafetensorError) as exc:  # disk full, quota, permissions while writing
                raise write_error(out, exc) from exc
            _finish(tmp, out)
            check_output_dir(out, overwrite, inputs)  # the folder may have appeared meanwhile
            if out.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
                os.replace(out, trash / out.name)
                os.replace(tmp, out)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_error(out: Path, exc: BaseException) -> LorikitError:
    """One line for a failed write: the destination and the system's reason (e.g. disk full)."""
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
    if isinstance(exc, SafetensorError):  # the OS reason inside safetensors' wording, old or new
        code = re.search(r"\bcode: (\d+)", reason)  # < 0.6: IoError(Os { code: 28, kind: StorageFull, ... })
        if code:
            reason = os.strerror(int(code.group(1)))
        elif "I/O error: " in reason:  # >= 0.6: I/O error: No space left on device (os error 28)
            reason = reason.split("I/O error: ", 1)[1]
    return LorikitError(f"{out}: cannot write: {reason} (nothing was written)")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename (fsynced, umask modes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
