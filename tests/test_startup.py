"""The command line starts without torch, transformers or PEFT: ``--help``, ``--version`` and every
``COMMAND --help`` are built from light modules, and ``import lorikit`` loads its heavy names on
first use (PEP 562)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "transformers", "peft")


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def imported_top_level(importtime_stderr: str) -> set[str]:
    """Top-level package names in ``python -X importtime`` output (one line per module imported)."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_import_no_torch_transformers_or_peft(argv):
    proc = run_python("-X", "importtime", "-m", "lorikit", *argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = imported_top_level(proc.stderr)
    assert "lorikit" in modules and "argparse" in modules  # the import log is really there
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert ("lorikit " if argv == ["--version"] else "usage: lorikit") in proc.stdout


def test_every_command_help_imports_no_heavy_module():
    # one process for all commands: a heavy import by any one of them stays in sys.modules
    code = (
        "import sys, contextlib, io\n"
        "from lorikit.cli import build_parser, main\n"
        "names = list(build_parser().commands)\n"
        "for name in names:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([name, '--help'])\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (name, exc.code)\n"
        "    assert out.getvalue().startswith('usage: lorikit ' + name), name\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), len(names))\n")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    heavy, count = proc.stdout.split("] ")
    assert heavy == "[" and int(count) >= 16


def test_import_lorikit_is_lazy_and_every_public_name_resolves():
    code = (
        "import sys, lorikit\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "import lorikit.train.config, lorikit.osrm.transform, lorikit.merge.methods.ties  # submodules sharing\n"
        "# an exported name: lorikit.train, lorikit.osrm.transform, lorikit.merge.methods stay the functions\n"
        "for name in lorikit.__all__:\n"
        "    getattr(lorikit, name)\n"
        "from lorikit import train, TrainConfig, generate, GenerationConfig, load_adapter, AdapterConfig\n"
        "from lorikit.train.trainer import train as eager_train\n"
        "from lorikit.osrm import transform\n"
        "from lorikit.osrm.transform import transform as eager_transform\n"
        "assert train is eager_train and callable(train), train\n"
        "assert transform is eager_transform, transform\n"
        "from lorikit.merge import methods\n"
        "from lorikit.merge.registry import methods as eager_methods\n"
        "assert methods is eager_methods, methods\n"
        "assert TrainConfig.__module__ == 'lorikit.train.config' and 'train' in dir(lorikit)\n"
        "print('ok')\n")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[]", "ok"]
    proc = run_python("-c", "import lorikit; lorikit.no_such_name")
    assert "module 'lorikit' has no attribute 'no_such_name'" in proc.stderr
