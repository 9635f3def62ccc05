"""Start-up cost of the command line: ``python -m lorikit --help`` and friends as whole processes.

Each command runs ``--runs`` times after one warm-up, each in a fresh interpreter with the
bytecode cache on (as after ``pip install``, which compiles it); wall time, CPU time (user + sys)
and peak RSS come from the operating system's accounting of the finished child (``os.wait4``).
With ``--baseline SRC`` the same commands run from another source tree too, alternating A B A B,
and the table gives the ratio pair by pair (other jobs on the machine then slow both alike).

    python bench/bench_startup.py --runs 5
    python bench/bench_startup.py --runs 5 --baseline /path/to/old/src

Prints a table and writes ``bench/results/startup.json``. Quote medians, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["--version"], ["train", "--help"], ["merge", "--help"], ["eval", "--help"]]
HEAVY = ("torch", "transformers", "peft")


def run_once(src: str, argv: list[str], pycache: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "PYTHONPYCACHEPREFIX": pycache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "lorikit", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024,
            "rc": proc.returncode, "heavy_imported": sorted(imported & set(HEAVY))}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="another source tree (its src/ folder) to compare with")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = ap.parse_args()
    trees = {"this": str(ROOT / "src")}
    if args.baseline:
        trees["baseline"] = args.baseline
    results: dict[str, dict[str, list[dict]]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as pycache:
        for argv in COMMANDS:
            key = " ".join(argv)
            for name, src in trees.items():  # warm-up: writes the bytecode cache
                run_once(src, argv, os.path.join(pycache, name))
                results[name][key] = []
            for _ in range(args.runs):
                for name, src in trees.items():  # alternating A B A B
                    results[name][key].append(run_once(src, argv, os.path.join(pycache, name)))
    load = os.getloadavg()
    header = f"{'command':<22} {'wall s':>8} {'cpu s':>7} {'RSS MiB':>8}  heavy imports"
    if args.baseline:
        header += f"   {'base wall s':>11} {'base RSS':>8} {'wall ratio':>10}"
    print(header)
    for argv in COMMANDS:
        key = " ".join(argv)
        rows = results["this"][key]
        line = (f"{'lorikit ' + key:<22} {median(rows, 'wall_s'):>8.3f} {median(rows, 'cpu_s'):>7.3f} "
                f"{median(rows, 'max_rss_mib'):>8.1f}  {','.join(rows[0]['heavy_imported']) or 'none'}")
        if args.baseline:
            base = results["baseline"][key]
            ratio = statistics.median(a["wall_s"] / b["wall_s"] for a, b in zip(rows, base))
            line += f"   {median(base, 'wall_s'):>11.3f} {median(base, 'max_rss_mib'):>8.1f} {ratio:>10.3f}"
        print(line)
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.runs} runs after 1 warm-up")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": args.runs, "load_average": load, "python": sys.version.split()[0],
                                          "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
