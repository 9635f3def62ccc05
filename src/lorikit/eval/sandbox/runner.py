"""The supervisor: start the harness, feed it the job, relay its verdict, kill what is left.

The supervisor stays outside the sandbox. It hands the harness two pipes the program is never
told about: a one-time random nonce to read and a verdict pipe to write it back on. A sample
passes only if the verdict pipe carries exactly that nonce *and* the harness exited 0 in time.
The program's stdout and stderr are read through pipes, capped, and a program that writes more
than ``max_output_kb`` is killed. The whole sandbox (bwrap started in its own session, and with
it the sandbox's pid namespace) is SIGKILLed at the timeout and after every run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from ...errors import LorikitError
from .bwrap import SANDBOX_TMP, bare_command, bwrap_command, minimal_env
from .config import SandboxConfig, SandboxResult
from .seccomp import build_filter

log = logging.getLogger(__name__)

_KEEP = 64 * 1024  # bytes of stdout / stderr kept in the result
_VERDICT_MAX = 256
_MAX_OPEN_FILES = 1024  # descriptors are kernel memory; the evaluator's own limit may be a million


def _limits(cfg: SandboxConfig) -> dict[str, int]:
    return {"RLIMIT_CPU": int(cfg.timeout) + 1, "RLIMIT_AS": cfg.memory_mb * 2**20,
            "RLIMIT_NPROC": cfg.max_processes, "RLIMIT_FSIZE": cfg.max_file_mb * 2**20, "RLIMIT_CORE": 0,
            "RLIMIT_NOFILE": _MAX_OPEN_FILES}


def _close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def _filled_pipe(data: bytes) -> int:
    """Read end of a pipe that already holds ``data`` and whose write end is closed."""
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    return r


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # bwrap (or the bare harness) and its process group
    except (ProcessLookupError, PermissionError):
        pass


def _readable(fd: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``fd`` to become readable (poll: no FD_SETSIZE limit)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(seconds * 1000))))


def _sandbox_pidfd(info_r: int, deadline: float) -> int | None:
    """A pidfd of the sandbox's pid 1, from bwrap's ``--info-fd`` JSON (None if bwrap failed).

    The kernel kills every process of a pid namespace before its pid 1 counts as exited, so once
    this pidfd is readable nothing the program started is left.
    """
    data = b""
    while time.monotonic() < deadline:
        chunk = os.read(info_r, 4096) if _readable(info_r, deadline - time.monotonic()) else b""
        if not chunk:
            break
        data += chunk
        try:  # complete as soon as it parses: do not rely on bwrap closing the descriptor
            return os.pidfd_open(int(json.loads(data)["child-pid"]))
        except ValueError:
            continue
        except (KeyError, TypeError, OSError):
            return None
    return None


def _wait_gone(pidfd: int | None, seconds: float = 10.0) -> None:
    if pidfd is not None:
        try:
            _readable(pidfd, seconds)
        finally:
            os.close(pidfd)


def _feed(stdin, job: bytes) -> None:
    """Write the job and close stdin (in a thread: a large job must not block the timeout)."""
    try:
        with stdin:
            stdin.write(job)
    except (BrokenPipeError, OSError, ValueError):
        pass  # the sandbox died first: it fails like any other program that did not finish


def _collect(proc: subprocess.Popen, verdict_r: int, deadline: float, cap: int) -> tuple[dict, str | None]:
    """Read stdout, stderr and the verdict until all close; stop at the deadline or output cap."""
    sel = selectors.DefaultSelector()
    for fd, name in ((proc.stdout.fileno(), "stdout"), (proc.stderr.fileno(), "stderr"), (verdict_r, "verdict")):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, name)
    bufs = {"stdout": bytearray(), "stderr": bytearray(), "verdict": bytearray()}
    total, reason = 0, None
    try:
        while sel.get_map() and reason is None:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                keep = _VERDICT_MAX if key.data == "verdict" else _KEEP
                buf = bufs[key.data]
                buf += chunk[: max(0, keep + 1 - len(buf))]
                if key.data != "verdict":
                    total += len(chunk)
                    if total > cap:
                        reason = "output"
                        break
    finally:
        sel.close()
    return bufs, reason


def _text(data: bytearray) -> str:
    text = bytes(data[:_KEEP]).decode("utf-8", errors="replace")
    return text + ("\n[... truncated]" if len(data) > _KEEP else "")


def _supervise(source: str, cfg: SandboxConfig, workdir: str | None, t0: float) -> SandboxResult:
    nonce = secrets.token_hex(16).encode()
    nonce_r = _filled_pipe(nonce)
    verdict_r, verdict_w = os.pipe()
    inherited, info_r, pidfd = [nonce_r, verdict_w], None, None
    if workdir is None:
        flt = build_filter(cfg.allow_processes)
        seccomp_r = _filled_pipe(flt) if flt is not None else None
        info_r, info_w = os.pipe()
        inherited += [info_w] + ([seccomp_r] if seccomp_r is not None else [])
        argv, cwd, child_dir = bwrap_command(cfg, seccomp_r, info_w), "/", SANDBOX_TMP
        env = {"PATH": os.environ.get("PATH", "")}
    else:
        argv, cwd, env, child_dir = bare_command(), workdir, minimal_env(workdir), workdir
    job = json.dumps({"code": source, "limits": _limits(cfg), "guard": cfg.guard, "workdir": child_dir,
                      "nonce_fd": nonce_r, "verdict_fd": verdict_w}).encode()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=inherited, start_new_session=True)
    except OSError:
        _close(verdict_r, info_r)
        raise
    finally:
        _close(*inherited)
    try:
        if info_r is not None:
            pidfd = _sandbox_pidfd(info_r, t0 + cfg.timeout)
        threading.Thread(target=_feed, args=(proc.stdin, job), daemon=True).start()
        bufs, reason = _collect(proc, verdict_r, t0 + cfg.timeout, cfg.max_output_kb * 1024)
    finally:
        _kill(proc)
        proc.wait()
        _wait_gone(pidfd)
        _close(verdict_r, info_r)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    stdout, stderr = _text(bufs["stdout"]), _text(bufs["stderr"])
    if reason == "timeout":
        return SandboxResult("timeout", None, stdout, stderr, time.monotonic() - t0)
    if reason == "output":
        stderr += f"\n[sandbox: killed after writing more than {cfg.max_output_kb} KiB of output]"
    passed = reason is None and proc.returncode == 0 and bytes(bufs["verdict"]) == nonce
    return SandboxResult("passed" if passed else "failed", proc.returncode, stdout, stderr, time.monotonic() - t0)


def run_program(source: str, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Run ``source`` as ``__main__`` under ``cfg``; never raises for anything the program does.

    It passes if its code runs to the end without raising (for HumanEval: ``check(...)`` returned).
    """
    cfg = cfg or SandboxConfig()
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="lorikit-sandbox-") if cfg.sandbox == "none" else None
    try:
        return _supervise(source, cfg, workdir, t0)
    except OSError as exc:  # could not even start (no such executable, no descriptors, ...)
        return SandboxResult("error", None, "", f"sandbox: {exc}", time.monotonic() - t0)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def _probe(sandbox: str, bwrap: str) -> str | None:
    """None if a trivial program passes in this sandbox, else why not (cached: once per run)."""
    if sandbox == "bwrap" and shutil.which(bwrap) is None:
        return f"{bwrap} not found"
    cfg = SandboxConfig(sandbox=sandbox, bwrap=bwrap, timeout=30, workers=1)
    result = run_program("import tempfile\ntempfile.gettempdir()\n", cfg)
    if result.passed:
        return None
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"status {result.status}, exit code {result.returncode}"


def check_sandbox(cfg: SandboxConfig) -> None:
    """Raise a one-line error unless programs can run in the chosen sandbox (probed once)."""
    if cfg.sandbox == "none":
        log.warning("--sandbox none: model-written code runs WITHOUT isolation, with your user's rights")
    reason = _probe(cfg.sandbox, cfg.bwrap)
    if reason is not None:
        fix = ("install bubblewrap (apt-get install bubblewrap) or pass --sandbox none to run it WITHOUT "
               "isolation (unsafe)") if cfg.sandbox == "bwrap" else "see the message above"
        raise LorikitError(f"--allow-code-execution: the {cfg.sandbox} sandbox cannot run programs here "
                           f"({reason}); {fix}")


def run_programs(sources: list[str], cfg: SandboxConfig | None = None, progress: bool = True) -> list[SandboxResult]:
    """``run_program`` on each source, ``cfg.workers`` at a time, results in input order."""
    cfg = cfg or SandboxConfig()
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        return list(tqdm(pool.map(lambda s: run_program(s, cfg), sources), total=len(sources),
                         desc="execute", unit="program", disable=not progress or len(sources) < 2))
