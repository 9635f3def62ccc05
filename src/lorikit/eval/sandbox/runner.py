"""The supervisor: start the harnesses, feed them their jobs, read the verdict, kill what is left.

The supervisor stays outside the sandboxes. A ``Sample`` runs as two sandboxes that share only two
pipes: the program's (which serves its entry point) and the test's (which calls it with plain
values and runs ``check``). Only the test's sandbox holds the verdict pipe: the sample passes
only if the verdict pipe carries ``passed`` *and* the test's harness exited 0 in time. Nothing the
program's process can reach (its descriptors, its memory, its exit code, its output) decides it.
A script (a plain ``str``) runs alone and passes if it ran to its end: its harness echoes a one-time
nonce from a pipe on the verdict pipe (``child.py`` says why that role never scores a test).
Stdout and stderr are read through pipes, capped, and a sample that writes more than
``max_output_kb`` is killed. Every sandbox (bwrap started in its own session, and with it the
sandbox's pid namespace) is SIGKILLed at the timeout and after every run.
"""

from __future__ import annotations

import errno
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
from .bwrap import SANDBOX_TMP, bare_command, bwrap_command, minimal_env, python_dirs
from .config import Sample, SandboxConfig, SandboxResult
from .identity import launcher
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


def _collect(procs: list[subprocess.Popen], verdict_r: int, deadline: float, cap: int):
    """Read every stdout, stderr and the verdict until all close; stop at the deadline or output cap."""
    sel = selectors.DefaultSelector()
    bufs: dict = {"verdict": bytearray()}
    sel.register(verdict_r, selectors.EVENT_READ, "verdict")
    os.set_blocking(verdict_r, False)
    for i, proc in enumerate(procs):
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream.fileno(), selectors.EVENT_READ, (i, name))
            bufs[(i, name)] = bytearray()
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


def _jobs(item: str | Sample, cfg: SandboxConfig) -> tuple[list[tuple[dict, list[int]]], int, bytes]:
    """The harness jobs of ``item`` with the descriptors each inherits, the verdict pipe's read
    end, and the bytes the verdict must be. The last job is the one that reports."""
    common = {"limits": _limits(cfg), "guard": cfg.guard}
    verdict_r, verdict_w = os.pipe()
    if isinstance(item, str):
        nonce = secrets.token_hex(16).encode()
        nonce_r = _filled_pipe(nonce)
        job = {**common, "role": "script", "code": item, "nonce_fd": nonce_r, "verdict_fd": verdict_w}
        return [(job, [nonce_r, verdict_w])], verdict_r, nonce
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    program = {**common, "role": "program", "code": item.program, "entry_point": item.entry_point,
               "request_fd": request_r, "reply_fd": reply_w}
    test = {**common, "role": "test", "code": item.test, "context": item.context, "entry_point": item.entry_point,
            "request_fd": request_w, "reply_fd": reply_r, "verdict_fd": verdict_w}
    return [(program, [request_r, reply_w]), (test, [request_w, reply_r, verdict_w])], verdict_r, b"passed"


def _start(job: dict, fds: list[int], cfg: SandboxConfig, workdir: str | None, bwrap: str | None,
           started: list, held: list) -> None:
    """Start one harness; append (Popen, info read end or None) to ``started``."""
    inherited, info_r = list(fds), None
    try:
        if workdir is None:
            flt = build_filter(cfg.allow_processes)
            seccomp_r = _filled_pipe(flt) if flt is not None else None
            info_r, info_w = os.pipe()
            held.append(info_r)
            inherited += [info_w] + ([seccomp_r] if seccomp_r is not None else [])
            prefix, prefix_fds, drop = launcher(cfg.host_uid, [*python_dirs(), os.path.dirname(bwrap)])
            argv, cwd, child_dir = prefix + bwrap_command(bwrap, cfg, seccomp_r, info_w), "/", SANDBOX_TMP
            env = {"PATH": os.environ.get("PATH", "")}
            pass_fds = inherited + prefix_fds
        else:
            argv, cwd, env, child_dir, pass_fds = bare_command(), workdir, minimal_env(workdir), workdir, inherited
            drop = {}
        job["workdir"] = child_dir
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=True, **drop)
        started.append((proc, info_r))
    finally:
        _close(*[fd for fd in inherited if fd not in fds])  # the job's own pipes: closed by the caller


def _supervise(item: str | Sample, cfg: SandboxConfig, workdirs: list[str | None], t0: float) -> SandboxResult:
    deadline = t0 + cfg.timeout
    bwrap = None
    if workdirs[0] is None:
        bwrap = shutil.which(cfg.bwrap)
        if bwrap is None:
            raise FileNotFoundError(errno.ENOENT, "bubblewrap not found", cfg.bwrap)
    jobs, verdict_r, expected = _jobs(item, cfg)
    started: list = []
    held: list[int] = [verdict_r]
    pidfds: list[int] = []
    child_fds = [fd for _, fds in jobs for fd in fds]
    try:
        try:
            for (job, fds), workdir in zip(jobs, workdirs):
                _start(job, fds, cfg, workdir, bwrap, started, held)
        finally:
            _close(*child_fds)  # the children hold their ends now (or never will)
        for proc, info_r in started:
            if info_r is not None:
                pidfd = _sandbox_pidfd(info_r, deadline)
                if pidfd is not None:
                    pidfds.append(pidfd)
        for (job, _), (proc, _) in zip(jobs, started):
            threading.Thread(target=_feed, args=(proc.stdin, json.dumps(job).encode()), daemon=True).start()
        bufs, reason = _collect([p for p, _ in started], verdict_r, deadline, cfg.max_output_kb * 1024)
    finally:
        for proc, _ in started:
            _kill(proc)
        for proc, _ in started:
            proc.wait()
        for pidfd in pidfds:
            _wait_gone(pidfd)
        _close(*held)
        for proc, _ in started:
            proc.stdout.close()
            proc.stderr.close()
    stdout = _text(b"".join(bufs[(i, "stdout")] for i in range(len(started))))
    stderr = _text(b"".join(bufs[(i, "stderr")] for i in range(len(started))))
    reporter = started[-1][0]
    if reason == "timeout":
        return SandboxResult("timeout", None, stdout, stderr, time.monotonic() - t0)
    if reason == "output":
        stderr += f"\n[sandbox: killed after writing more than {cfg.max_output_kb} KiB of output]"
    passed = reason is None and reporter.returncode == 0 and bytes(bufs["verdict"]) == expected
    return SandboxResult("passed" if passed else "failed", reporter.returncode, stdout, stderr,
                         time.monotonic() - t0)


def run_program(item: str | Sample, cfg: SandboxConfig | None = None) -> SandboxResult:
    """Run ``item`` under ``cfg``; never raises for anything the program does.

    A ``Sample`` passes if its test's ``check`` returned, calling the program only through plain
    values; a script (``str``) passes if its code runs to the end without raising.
    """
    cfg = cfg or SandboxConfig()
    t0 = time.monotonic()
    roles = 1 if isinstance(item, str) else 2
    workdirs: list[str | None] = [None] * roles
    try:
        if cfg.sandbox == "none":
            workdirs = [tempfile.mkdtemp(prefix="lorikit-sandbox-") for _ in range(roles)]
        return _supervise(item, cfg, workdirs, t0)
    except (OSError, LorikitError) as exc:  # could not even start (no such executable, no descriptors, ...)
        return SandboxResult("error", None, "", f"sandbox: {exc}", time.monotonic() - t0)
    finally:
        for workdir in workdirs:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)


# a trivial sample: both sandboxes, the pipes between them and the verdict
_PROBE = Sample(program="import tempfile\ndef f(x):\n    return tempfile.gettempdir(), x + 1\n",
                test="def check(f):\n    assert f(1)[1] == 2\n", entry_point="f")


@functools.lru_cache(maxsize=None)
def _probe(sandbox: str, bwrap: str) -> str | None:
    """None if a trivial program passes in this sandbox, else why not (cached: once per run)."""
    if sandbox == "bwrap" and shutil.which(bwrap) is None:
        return f"{bwrap} not found"
    cfg = SandboxConfig(sandbox=sandbox, bwrap=bwrap, timeout=30, workers=1)
    result = run_program(_PROBE, cfg)
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


def run_programs(sources: list[str | Sample], cfg: SandboxConfig | None = None,
                 progress: bool = True) -> list[SandboxResult]:
    """``run_program`` on each sample or script, ``cfg.workers`` at a time, results in input order."""
    cfg = cfg or SandboxConfig()
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        return list(tqdm(pool.map(lambda s: run_program(s, cfg), sources), total=len(sources),
                         desc="execute", unit="program", disable=not progress or len(sources) < 2))
