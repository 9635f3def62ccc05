"""The command line that starts the harness: inside bubblewrap, or (``--sandbox none``) bare.

bubblewrap gives the program new user, pid, network, ipc, uts (and, where possible, cgroup)
namespaces, no capabilities, no further user namespaces, its own session, and a file system made of
read-only binds of ``/usr`` (plus the ``/bin``, ``/lib*`` links or folders) and of the folders the
interpreter lives in, a fresh ``/proc`` whose kernel knobs (``/proc/sys``, ``sysrq-trigger``,
``irq``, ``bus``) are read-only binds, and a minimal ``/dev``; the only writable place is a
size-limited tmpfs on ``/tmp`` (working folder, HOME and TMPDIR). The harness is the sandbox's pid
1 (``--as-pid-1``): there is no other process in it, so no process without the seccomp filter the
program could reach through ``/proc/1/mem``. The sandbox dies with the evaluator
(``--die-with-parent``), and everything in it dies with its pid 1. Who bubblewrap runs as on the
host: ``identity.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import SandboxConfig

# The harness: the protocol's code, then the harness's own (which finds it already defined).
CHILD_SOURCE = "\n".join((Path(__file__).parent / name).read_text(encoding="utf-8")
                         for name in ("protocol.py", "child.py"))
SANDBOX_TMP = "/tmp"
_SANDBOX_UID = "65534"  # "nobody" inside the sandbox's user namespace
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Kernel settings and hardware under /proc: bound read-only over the sandbox's fresh /proc (a
# sysctl the program's uid may write, as in a network namespace it owns, stays unwritable).
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")


def minimal_env(workdir: str) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing from the evaluator's."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            # glibc reserves 64 MiB of address space per thread's malloc arena: under the default
            # 1 GiB limit a program could start only ~20 threads; with 2 arenas, the process limit binds
            "MALLOC_ARENA_MAX": "2"}


def python_dirs() -> list[str]:
    """Host folders the interpreter needs (prefixes of the venv and its base), outside ``/usr``."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(os.path.realpath(sys.executable)).parent.parent)}
    real = sorted({os.path.realpath(p) for p in candidates} | candidates)
    keep: list[str] = []
    for path in real:
        if path in ("/", "/usr") or path.startswith("/usr/") or not os.path.isdir(path):
            continue
        if not any(path.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(path)
    return keep


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


def bwrap_command(bwrap: str, cfg: SandboxConfig, seccomp_fd: int | None, info_fd: int) -> list[str]:
    """``bwrap ... -- python -I -c <harness>``; ``seccomp_fd`` holds the filter (or None), bwrap
    writes the host pid of the sandbox's pid 1 (the harness) on ``info_fd``."""
    args = [bwrap, "--info-fd", str(info_fd), "--unshare-user", "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--die-with-parent",
            "--new-session", "--as-pid-1", "--uid", _SANDBOX_UID, "--gid", _SANDBOX_UID, "--hostname", "sandbox",
            *_system_binds(), "--proc", "/proc"]
    for path in PROC_READ_ONLY:
        args += ["--ro-bind-try", path, path]
    # The tmpfs first: an interpreter or virtual environment that lives under /tmp is bound on top
    # of it (read-only) instead of being hidden by it.
    args += ["--dev", "/dev", "--size", str(cfg.tmp_mb * 2**20), "--tmpfs", SANDBOX_TMP]
    for path in python_dirs():
        args += ["--ro-bind", path, path]
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SANDBOX_TMP, "--clearenv"]
    for key, value in minimal_env(SANDBOX_TMP).items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args + ["--", sys.executable, "-I", "-c", CHILD_SOURCE]


def bare_command() -> list[str]:
    """``--sandbox none``: the same harness with its rlimits and guard, and no isolation (UNSAFE)."""
    return [sys.executable, "-I", "-c", CHILD_SOURCE]
