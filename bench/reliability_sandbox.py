"""The sandbox's classes of the reliability tally (issue 30): escapes and forged verdicts.

Used by ``bench/bench_reliability.py``. Every hostile program of ``tests/test_sandbox.py`` runs
once as whoever runs the bench (root on the developers' machines) and once as an ordinary uid (the
bench drops to one when it is root), each case judged on its own evidence:

- ``sandbox-as-root``: the host uids of every process of the sandboxes (never 0), every kernel
  setting under ``/proc/sys``, ``/proc/irq``, ``/proc/bus`` and ``/proc/sysrq-trigger`` opened for
  writing (none may open), ``ptrace`` / ``process_vm_readv`` / ``unshare``, the processes in
  sight (only the program itself) and pid 1's seccomp filter, no-new-privs and capabilities;
- ``files``, ``processes``, ``network``: each payload against its own host folder, marker or
  listener, checked afterwards;
- ``kill``: a sample that kills what it can reach fails, and the honest one after it still passes;
- ``forge``: a wrong solution plus a trick to be scored passed (fd and execve forges, objects
  equal to everything, forged answers, ...).

Outcomes: ``contained``, ``escape`` (the host changed, a process outlived its sample, a
connection arrived, a kernel setting opened for writing, a sandbox process ran as root) or
``forged pass`` (a forgery scored passed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import test_sandbox as ts

from lorikit.eval.sandbox import SandboxConfig, run_programs

HOSTILE_CFG = SandboxConfig(timeout=4, memory_mb=512, workers=2)


def _host_folder() -> Path:
    host = Path(tempfile.mkdtemp(prefix="lorikit-reliability-"))
    host.chmod(0o777)  # writable by the ordinary uid too: only the sandbox stands in the way
    (host / "sub").mkdir(mode=0o777)
    for path, text in ((host / "canary.txt", "precious"), (host / "sub" / "inner.txt", "inner")):
        path.write_text(text)
        path.chmod(0o666)
    return host


def _cases() -> tuple[list[dict], list]:
    """Cases (class, id, how to judge) and the resources to release afterwards."""
    cases, listeners = [], []
    for i in range(len(ts._file_payloads("/x"))):
        host = _host_folder()
        cases.append({"class": "files", "id": f"files-{i}", "item": ts._file_payloads(str(host))[i],
                      "host": host, "before": ts._snapshot(host)})
    for i in range(len(ts._process_payloads(Path("/x"), "0"))):
        host, marker = _host_folder(), ts._marker()
        cases.append({"class": "processes", "id": f"processes-{i}", "item": ts._process_payloads(host, marker)[i],
                      "host": host, "before": ts._snapshot(host), "marker": marker})
    for i in range(len(ts._network_payloads(1))):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        listeners.append(listener)
        cases.append({"class": "network", "id": f"network-{i}",
                      "item": ts._network_payloads(listener.getsockname()[1])[i], "listener": listener})
    for i, sample in enumerate(ts._killer_samples()):
        cases.append({"class": "kill", "id": f"kill-{i // 2}" + ("" if i % 2 == 0 else "-next-honest"),
                      "item": sample, "honest": i % 2 == 1})
    for name, trick in ts.FORGERIES.items():
        cases.append({"class": "forge", "id": name, "item": ts._program(trick)})
    return cases, listeners


def _judge(case: dict, status: str, stdout: str) -> str:
    kind = case["class"]
    if kind in ("files", "processes"):
        changed = ts._snapshot(case["host"]) != case["before"]
        leftover = kind == "processes" and ts._host_processes(case["marker"]) != []
        return "escape" if changed or leftover or status == "passed" else "contained"
    if kind == "network":
        try:
            case["listener"].accept()
            return "escape"
        except BlockingIOError:
            return "contained"
    if kind == "kill":
        return "contained" if status == ("passed" if case["honest"] else "failed") else "escape"
    if kind == "forge":
        return "forged pass" if status == "passed" else "contained"
    raise ValueError(kind)


def _os_checks(bare: list) -> list[tuple[str, str, str]]:
    """(id, outcome, detail) of the sysctl, peek and thread checks run with the OS layers alone."""
    rows = []
    (sys_status, sys_out, sys_err), (peek_status, peek_out, peek_err) = bare[0], bare[1]
    if sys_status != "passed":
        rows.append(("sysctl-writes", "contained", f"the probe could not run: {sys_err[-200:]}"))
    else:
        report = json.loads(sys_out)
        bad = report["opened"] + report["wrote"]
        rows.append(("sysctl-writes", "escape" if bad else "contained",
                     f"{len(bad)} of {report['tried']} writable" + (f": {bad[:5]}" if bad else "")))
    if peek_status != "passed":
        rows.append(("ptrace-and-peers", "contained", f"the probe could not run: {peek_err[-200:]}"))
    else:
        peek = json.loads(peek_out)
        open_doors = [k for k in ("ptrace", "vm_readv", "unshare") if peek[k][0] != -1]
        others = [p for p in peek["procs"] if p != peek["pid"]]
        unfiltered = peek["pid1"] != ["2", "1", "0000000000000000"]  # seccomp, no-new-privs, no capabilities
        rows.append(("ptrace-and-peers", "escape" if open_doors or others or unfiltered else "contained",
                     f"allowed: {open_doors}, other processes: {others}, pid 1 (seccomp, nnp, caps): {peek['pid1']}"))
    return rows


def _run_as_self(items: list, cfg: SandboxConfig) -> tuple[list, dict]:
    seen: dict = {}
    done = threading.Event()
    watcher = threading.Thread(target=ts._watch, args=(os.getpid(), seen, done))
    watcher.start()
    try:
        results = run_programs(items, cfg, progress=False)
    finally:
        done.set()
        watcher.join()
    return [[r.status, r.stdout, r.stderr] for r in results], seen


def run(log) -> list[dict]:
    """Every case as this user and as an ordinary uid; one row per case and mode."""
    rows = []
    modes = [("as-root" if os.geteuid() == 0 else "as-user", False)]
    if os.geteuid() == 0:
        modes.append(("as-ordinary-uid", True))
    for mode, drop in modes:
        cases, listeners = _cases()
        try:
            items = [c["item"] for c in cases]
            os_items = [ts.SYSCTL_WRITES, ts.PEEK]
            if drop:
                (results, bare), seen = ts._as_ordinary_user([(HOSTILE_CFG, items), (ts.BARE_OS, os_items)])
                expected_uid = ts.ORDINARY_UID
            else:
                results, seen = _run_as_self(items, HOSTILE_CFG)
                bare, seen_bare = _run_as_self(os_items, ts.BARE_OS)
                seen.update(seen_bare)
                expected_uid = HOSTILE_CFG.host_uid if os.geteuid() == 0 else os.geteuid()
            for case, (status, stdout, _) in zip(cases, results):
                rows.append({"catalogue": f"sandbox-{mode}", "class": case["class"], "id": case["id"],
                             "outcome": _judge(case, status, stdout), "detail": status})
            for case_id, outcome, detail in _os_checks(bare):
                rows.append({"catalogue": f"sandbox-{mode}", "class": "sandbox-as-root", "id": case_id,
                             "outcome": outcome, "detail": detail})
            sandboxed = ts._sandboxed(seen)
            uids = sorted({u for ids in sandboxed.values() for u in ids})
            as_root = 0 in uids or uids != [expected_uid]
            rows.append({"catalogue": f"sandbox-{mode}", "class": "sandbox-as-root", "id": "host-uid",
                         "outcome": "escape" if as_root or not sandboxed else "contained",
                         "detail": f"{len(sandboxed)} sandbox processes seen, host uids {uids}"})
        finally:
            for listener in listeners:
                listener.close()
            for case in cases:
                if "host" in case:
                    shutil.rmtree(case["host"], ignore_errors=True)
        for row in rows[-(len(cases) + 3):]:
            print(f"  {row['outcome']:20s} {row['catalogue']}:{row['id']}", file=log)
    return rows
