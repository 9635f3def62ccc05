"""Settings and result of running one model-written program."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import UsageError

SANDBOXES = ("bwrap", "none")


@dataclass
class SandboxConfig:
    """How generated code is isolated and limited (defaults fit HumanEval)."""

    sandbox: str = field(default="bwrap", metadata={
        "help": "bwrap: bubblewrap namespaces + seccomp (default); none: no isolation (UNSAFE)",
        "choices": SANDBOXES})
    timeout: float = field(default=10.0, metadata={"help": "wall-clock seconds per program"})
    memory_mb: int = field(default=1024, metadata={"help": "address-space limit per program (MiB)"})
    max_processes: int = field(default=64, metadata={
        "help": "RLIMIT_NPROC: processes and threads of one sample (its sandbox's own count; process "
                "creation is blocked anyway unless allow_processes)"})
    max_file_mb: int = field(default=16, metadata={"help": "largest file a program may write (MiB)"})
    tmp_mb: int = field(default=64, metadata={"help": "size of the program's writable tmpfs (MiB)"})
    max_output_kb: int = field(default=1024, metadata={
        "help": "stdout + stderr a program may write before it is killed (KiB)"})
    allow_processes: bool = field(default=False, metadata={
        "help": "let programs fork/spawn processes (inside the sandbox's pid namespace, at most "
                "max_processes)"})
    guard: bool = field(default=True, metadata={
        "help": "second, Python-level layer: remove fork/kill/subprocess/ctypes and confine file "
                "deletion/renaming to the program's temporary folder"})
    workers: int = field(default=2, metadata={"help": "programs run in parallel"})
    bwrap: str = field(default="bwrap", metadata={"help": "the bubblewrap executable"})
    host_uid: int = field(default=2_000_000_000, metadata={
        "help": "when lorikit runs as root: the unprivileged host uid and gid sandboxed code runs as "
                "(model-written code never runs as root); a uid no other process uses, so RLIMIT_NPROC "
                "counts only the sample's own processes"})

    def __post_init__(self):
        if self.sandbox not in SANDBOXES:
            raise UsageError(f"--sandbox {self.sandbox!r}: unknown (choose from {', '.join(SANDBOXES)})")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError(f"--timeout {self.timeout}: must be a positive number of seconds")
        for name in ("memory_mb", "max_processes", "max_file_mb", "tmp_mb", "max_output_kb", "workers"):
            if getattr(self, name) <= 0:
                raise UsageError(f"sandbox {name} {getattr(self, name)}: must be positive")
        if not 0 < self.host_uid < 2**32 - 1:
            raise UsageError(f"sandbox host_uid {self.host_uid}: must be an unprivileged uid (1 .. 2**32 - 2)")


@dataclass(frozen=True)
class Sample:
    """A program and the trusted test that checks it, run in two separate sandboxes.

    ``program`` (untrusted, e.g. prompt + completion) defines ``entry_point``; ``test`` defines
    ``check(candidate)``, which is called with a stand-in for ``entry_point`` that passes plain
    values to the program's process and back; ``context`` is trusted code the test runs first (the
    prompt: its imports and helper functions, in place of anything the program redefines).
    """

    program: str
    test: str
    entry_point: str
    context: str = ""

    def __post_init__(self):
        if not self.entry_point.isidentifier():
            raise UsageError(f"entry_point {self.entry_point!r}: not a Python identifier")


@dataclass
class SandboxResult:
    """What became of one program.

    ``status``: ``passed`` (for a ``Sample``: the test's process returned from ``check`` and said so
    on its own channel; for a script: the harness ran it to its end), ``failed`` (an exception, an
    exit before the end, a signal, too much output),
    ``timeout`` (killed at the wall-clock limit) or ``error`` (the sandbox itself could not run).
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"
