"""Who the sandboxed code runs as: never the host's root.

As an ordinary user, bubblewrap runs as that user (and the sandbox's ``nobody`` is that user on
the host). As root, a sandbox that simply ran bubblewrap would map its ``nobody`` to host uid 0:
files owned by root (``/proc/sys/kernel/core_pattern`` among them) would be the program's own.
So as root every sandbox is started as ``SandboxConfig.host_uid`` (gid the same, no
supplementary groups): the program, the sandbox's pid 1 and bubblewrap itself are that
unprivileged uid on the host, and RLIMIT_NPROC (which Linux does not apply to root) counts the
sample's own processes. Where that uid can reach every folder the sandbox binds (interpreter,
bubblewrap), ``subprocess`` drops to it before bubblewrap starts. Where it cannot (pyenv or conda
under ``/root``), ``nsenter -S UID -G GID`` (util-linux) drops to it inside a private mount
namespace in which those folders can be reached (``expose.py``), built once per process and per
set of folders.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

from ...errors import LorikitError

EXPOSE_SOURCE = (Path(__file__).parent / "expose.py").read_text(encoding="utf-8")
_LOCK = threading.Lock()


def is_root() -> bool:
    return os.geteuid() == 0


def _passable(path: str) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def exposure_plan(folders: list[str]) -> dict[str, list[str]]:
    """Which folders an unprivileged uid cannot pass on the way to ``folders`` (``blockers``) and
    which folders must be bound in a tmpfs over them (``expose``). A folder that is itself not
    readable and passable by others is refused: exposing the way would not help."""
    blockers: set[str] = set()
    expose: list[str] = []
    for folder in sorted({os.path.realpath(f) for f in folders}):
        mode = os.stat(folder).st_mode
        if not (mode & stat.S_IROTH and mode & stat.S_IXOTH):
            raise LorikitError(f"the sandbox needs {folder}, which other users cannot read (mode "
                               f"{stat.S_IMODE(mode):o}); as root, sandboxed code runs as an unprivileged uid")
        parts = Path(folder).parts
        ancestors = [str(Path(*parts[:i])) for i in range(2, len(parts))]
        blocked = next((a for a in ancestors if not _passable(a)), None)
        if blocked is not None:
            blockers.add(blocked)
            expose.append(folder)
    outermost = sorted(b for b in blockers if not any(b.startswith(o + "/") for o in blockers))
    return {"blockers": outermost, "expose": expose}


@functools.lru_cache(maxsize=None)
def _namespace_fd(folders: tuple[str, ...]) -> int:
    """A descriptor of a private mount namespace in which ``folders`` can be reached (kept open:
    the namespace lives as long as this process)."""
    plan = exposure_plan(list(folders))
    proc = subprocess.Popen([sys.executable, "-I", "-c", EXPOSE_SOURCE, json.dumps(plan)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        if proc.stdout.readline().strip() != b"ready":
            proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise LorikitError(f"cannot prepare the sandbox's mount namespace: {err[-1] if err else 'no reason given'}")
        return os.open(f"/proc/{proc.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def launcher(host_uid: int, folders: list[str]) -> tuple[list[str], list[int], dict]:
    """How to start bubblewrap as ``host_uid``: a command prefix, the descriptors it needs and
    ``subprocess.Popen`` arguments (nothing when lorikit is not root: bubblewrap then runs as the
    user who runs lorikit)."""
    if not is_root():
        return [], [], {}
    if not exposure_plan(folders)["blockers"]:
        return [], [], {"user": host_uid, "group": host_uid, "extra_groups": []}
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise LorikitError("nsenter not found (util-linux): as root, lorikit needs it to run sandboxed code "
                           "as an unprivileged uid")
    with _LOCK:
        fd = _namespace_fd(tuple(sorted(set(folders))))
    uid = str(host_uid)
    # nsenter, started as root with no supplementary groups, drops to the uid once inside
    return [nsenter, f"--mount=/proc/self/fd/{fd}", "-S", uid, "-G", uid, "--"], [fd], {"extra_groups": []}
