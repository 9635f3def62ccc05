"""Reliability tally: run every hostile input of the error catalogues and count the outcomes.

    python bench/bench_reliability.py [--json bench/results/reliability.json]

The cases are those of ``tests/test_errors.py`` (bad inputs of every command) and
``tests/test_trust.py`` (silent wrong results, data loss, integrity; issue 14) and
``tests/test_hostile_inputs.py`` (issue 30: planted pickles in checkpoints, the output guard of
every command, ReDoS and invalid regexes in adapter configs, YAML alias bombs and recursive
anchors, forged ``.lori`` headers; each case timed), run through the CLI in-process on
tiny-random-llama fixtures, and the hostile programs of ``tests/test_sandbox.py``
(``reliability_sandbox.py``: escapes and forged verdicts, as root and as an ordinary uid). Every
CLI case must end in an error; each outcome is:

- clear error: exit code ≠ 0, exactly one ``lorikit: error:`` line, no traceback;
- traceback: an exception escaped, or ``Traceback`` was printed;
- silent wrong result: exit code 0 (the command accepted a broken or hostile input);
- data loss: a file of the fixtures (the inputs) was changed or removed;
- unclear: any other failure (several error lines, none, or a different exit code than documented).

A sandbox case is ``contained``, an ``escape`` or a ``forged pass`` (``reliability_sandbox.py``).
Prints a table and writes the JSON (with the load average: the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from lorikit.utils.atomic import atomic_write_json  # noqa: E402
import reliability_sandbox  # noqa: E402
import test_errors  # noqa: E402
import test_hostile_inputs  # noqa: E402
import test_trust  # noqa: E402


class _Factory:  # what pytest's tmp_path_factory offers the fixtures
    def __init__(self, root: Path):
        self.root = root

    def mktemp(self, name: str) -> Path:
        (self.root / name).mkdir()
        return self.root / name


def _hashes(roots: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in root.rglob("*") if p.is_file()}


def classify(argv: list[str], code: int, inputs: list[Path], run) -> tuple[str, str]:
    before = _hashes(inputs)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            got = run(argv)
    except BaseException as exc:  # noqa: BLE001 — an escaped exception is what we count
        return "traceback", f"{type(exc).__name__}: {exc}"
    after = _hashes(inputs)
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.startswith("lorikit: error: ")]
    if any(before[p] != after.get(p) for p in before):
        return "data loss", next(p for p in before if before[p] != after.get(p))
    if "Traceback" in text:
        return "traceback", text.strip().splitlines()[-1]
    if got == 0:
        return "silent wrong result", "exit 0"
    if len(lines) == 1 and got == code:
        return "clear error", lines[0]
    return "unclear", f"exit {got}: {text.strip()[:200]}"


def run_catalogue(name: str, cases, fixtures: dict[str, Path], fill, run, inputs: list[Path]) -> list[dict]:
    rows = []
    for case in cases:
        case_id, argv, code = case[0], case[1], case[2]
        t0 = time.perf_counter()
        outcome, detail = classify([fill(a, fixtures) for a in argv], code, inputs, run)
        rows.append({"catalogue": name, "id": case_id, "outcome": outcome, "detail": detail,
                     "seconds": round(time.perf_counter() - t0, 2)})
        print(f"  {outcome:20s} {name}:{case_id}", file=sys.stderr)
    return rows


def _cli_catalogues(tmp: Path) -> list[dict]:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        errs = test_errors.build_inputs(tmp / "errors")
        (tmp / "trust-root").mkdir()
        trust = test_trust.fx.__wrapped__(_Factory(tmp / "trust-root"))
    rows = run_catalogue("errors", test_errors.CASES, errs, test_errors.fill, test_errors.run_cli,
                         [errs["G"], errs["B"]])
    rows += run_catalogue("trust", test_trust.HOSTILE, trust, test_trust.fill, test_trust.run_cli,
                          [trust["G"], trust["B"]])
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        hostile = test_hostile_inputs.build(tmp / "hostile")
    os.chdir(hostile["W"])  # the output-guard cases name their inputs relative to it
    try:
        rows += run_catalogue("inputs", test_hostile_inputs.CASES, hostile, test_hostile_inputs.fill,
                              test_hostile_inputs.run_cli, [hostile[k] for k in ("G", "B", "C", "W")])
    finally:
        os.chdir(ROOT)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="default bench/results/reliability.json (reliability-sandbox.json with "
                                   "--sandbox-only)")
    ap.add_argument("--sandbox-only", action="store_true",
                    help="only the sandbox's classes (a minute instead of several)")
    args = ap.parse_args()
    args.json = args.json or str(ROOT / "bench/results" / (
        "reliability-sandbox.json" if args.sandbox_only else "reliability.json"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    rows: list[dict] = []
    if not args.sandbox_only:
        with tempfile.TemporaryDirectory() as tmp:
            rows += _cli_catalogues(Path(tmp))
    sandbox_rows = reliability_sandbox.run(sys.stderr)
    outcomes = ["clear error", "traceback", "silent wrong result", "data loss", "unclear"]
    counts = {o: sum(r["outcome"] == o for r in rows) for o in outcomes}
    sandbox_outcomes = ["contained", "escape", "forged pass"]
    sandbox_counts = {m: {o: sum(r["outcome"] == o for r in sandbox_rows if r["catalogue"] == m)
                          for o in sandbox_outcomes} for m in dict.fromkeys(r["catalogue"] for r in sandbox_rows)}
    load = os.getloadavg()
    print(f"\nReliability: {len(rows)} hostile inputs, load average {load[0]:.1f} "
          f"({os.cpu_count()} CPUs), {time.perf_counter() - t0:.0f} s\n")
    print("| outcome | cases | goal |\n|---|---:|---|")
    print(f"| cases tried | {len(rows)} | |")
    for o in outcomes:
        print(f"| {o} | {counts[o]} | {'all' if o == 'clear error' else '0'} |")
    if rows:
        slowest = max(rows, key=lambda r: r["seconds"])
        print(f"\nslowest CLI case: {slowest['catalogue']}:{slowest['id']} {slowest['seconds']} s")
    classes = sorted({r["class"] for r in sandbox_rows})
    print(f"\n| sandbox ({', '.join(classes)}) | cases | contained | escape | forged pass |\n|---|---:|---:|---:|---:|")
    for mode, c in sandbox_counts.items():
        print(f"| {mode} | {sum(c.values())} | {c['contained']} | {c['escape']} | {c['forged pass']} |")
    bad = [r for r in rows if r["outcome"] != "clear error"] + [r for r in sandbox_rows if r["outcome"] != "contained"]
    for r in bad:
        print(f"- {r['outcome']}: {r['catalogue']}:{r['id']}: {r['detail']}")
    atomic_write_json(args.json, {"cases": len(rows), "counts": counts, "rows": rows,
                                  "sandbox_cases": len(sandbox_rows), "sandbox_counts": sandbox_counts,
                                  "sandbox_rows": sandbox_rows,
                                  "load_average": load, "cpus": os.cpu_count(), "platform": platform.platform(),
                                  "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
