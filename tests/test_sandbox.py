"""The sandbox: model-written code can hang, fork, allocate or exit, and the evaluator carries on."""

from __future__ import annotations

import os
import time

import pytest

from lorikit.eval.sandbox import SandboxConfig, minimal_env, run_program, run_programs
from lorikit.eval.scorers import humaneval

FAST = SandboxConfig(timeout=3, memory_mb=512)
SENTINEL = "SENTINEL-123"
PROBLEM = {"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add",
           "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}


def test_passing_program_prints_and_exits_zero():
    r = run_program(humaneval.program(PROBLEM, "    return a + b\n", SENTINEL), FAST)
    assert r.status == "ok" and r.passed(SENTINEL)


def test_wrong_solution_fails():
    r = run_program(humaneval.program(PROBLEM, "    return a - b\n", SENTINEL), FAST)
    assert r.status == "error" and not r.passed(SENTINEL)
    assert "AssertionError" in r.stderr


def test_sys_exit_before_tests_counts_as_failure():
    # exits with status 0 before check() runs: only the missing sentinel reveals it
    for completion in ("    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n"):
        source = humaneval.program(PROBLEM, completion + "add(1, 2)\n", SENTINEL)
        r = run_program(source, FAST)
        assert r.returncode == 0 and r.status == "ok"
        assert not r.passed(SENTINEL)


def test_infinite_loop_is_killed_at_the_timeout():
    t0 = time.monotonic()
    r = run_program("while True:\n    pass\n", SandboxConfig(timeout=1.5))
    assert r.status == "timeout" and not r.passed()
    assert time.monotonic() - t0 < 10


def test_memory_bomb_fails_cleanly():
    r = run_program("x = bytearray(8 * 1024**3)\nprint('allocated')\n", SandboxConfig(timeout=10, memory_mb=256))
    assert r.status == "error" and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_fork_bomb_is_contained_by_the_guard():
    r = run_program("import os\nwhile True:\n    os.fork()\n", FAST)
    assert r.status == "error" and r.seconds < 3


def test_subprocess_and_ctypes_are_unavailable():
    r = run_program("import subprocess\nsubprocess.run(['true'])\n", FAST)
    assert r.status == "error"
    r = run_program("import ctypes\n", FAST)
    assert r.status == "error" and "ctypes" in r.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\tZ" not in next(line for line in fh if line.startswith("State:"))
    except FileNotFoundError:
        return False


def test_forked_children_die_with_the_process_group():
    # guard off: the children are real processes; the whole group must be killed at the timeout
    source = ("import os, time\n"
              "for _ in range(8):\n"
              "    pid = os.fork()\n"
              "    if pid == 0:\n"
              "        time.sleep(120); os._exit(0)\n"
              "    print(pid, flush=True)\n"
              "time.sleep(120)\n")
    r = run_program(source, SandboxConfig(timeout=1.5, guard=False))
    assert r.status == "timeout"
    pids = [int(p) for p in r.stdout.split()]
    assert len(pids) == 8
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_limits_are_set_in_the_child():
    source = ("import resource\n"
              "print(resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_AS)[0],\n"
              "      resource.getrlimit(resource.RLIMIT_FSIZE)[0], resource.getrlimit(resource.RLIMIT_CPU)[0])\n")
    r = run_program(source, SandboxConfig(timeout=5, memory_mb=300, max_processes=7, max_file_mb=2, guard=False))
    assert r.stdout.split() == ["7", str(300 * 2**20), str(2 * 2**20), "6"]


def test_file_size_limit_stops_a_disk_filler():
    r = run_program("with open('big', 'wb') as f:\n    f.write(b'0' * (8 * 2**20))\nprint('wrote')\n",
                    SandboxConfig(timeout=5, max_file_mb=1))
    assert r.status == "error" and "wrote" not in r.stdout


def test_secrets_in_the_environment_are_not_visible(monkeypatch):
    monkeypatch.setenv("LORIKIT_TEST_SECRET", "hunter2")
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    r = run_program("import os\nprint(dict(os.environ))\n", FAST)
    assert r.status == "ok"
    assert "hunter2" not in r.stdout and "hf_dummy" not in r.stdout and "LORIKIT_TEST_SECRET" not in r.stdout
    assert set(minimal_env("/x")) >= {"PATH", "HOME"}


def test_runs_in_a_fresh_temporary_folder():
    r1 = run_program("import os\nprint(os.getcwd())\nopen('mark', 'w').write('x')\n", FAST)
    r2 = run_program("import os\nprint(os.getcwd(), os.listdir('.'))\n", FAST)
    cwd1 = r1.stdout.strip()
    assert cwd1 != os.getcwd() and not os.path.exists(cwd1)  # deleted afterwards
    assert "mark" not in r2.stdout


def test_run_programs_keeps_order_and_survives_crashes():
    sources = ["print(1)", "raise SystemExit(3)", "import sys; sys.stdout.write('x' * 10**6)", "print(4)"]
    results = run_programs(sources, SandboxConfig(timeout=5, workers=2), progress=False)
    assert [r.status for r in results] == ["ok", "error", "ok", "ok"]
    assert results[0].stdout.strip() == "1" and results[3].stdout.strip() == "4"
    assert results[1].returncode == 3
    assert len(results[2].stdout) < 70 * 1024  # output is truncated, not held whole


def test_sandbox_config_rejects_nonsense():
    from lorikit.errors import UsageError

    with pytest.raises(UsageError):
        SandboxConfig(timeout=0)
