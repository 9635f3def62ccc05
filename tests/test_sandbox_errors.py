"""Sandbox errors (docs/errors.md, "Sandbox"): one line, the fix named, before any generation."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

import lorikit.eval.items as eval_items
from lorikit.cli import main
from lorikit.errors import LorikitError
from lorikit.eval.sandbox import SandboxConfig, check_sandbox
from lorikit.eval.sandbox import runner as sandbox_runner

TINY = "tiny-random-llama"


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps({"task_id": "x/0", "prompt": "def one():\n", "entry_point": "one",
                                "test": "def check(f):\n    assert f() == 1\n"}) + "\n")
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the evaluation gets as far as loading the model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the sandbox was checked")
    monkeypatch.setattr(eval_items, "load_for_eval", refuse)


@pytest.fixture(autouse=True)
def _fresh_probe():
    sandbox_runner._probe.cache_clear()
    yield
    sandbox_runner._probe.cache_clear()


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lorikit: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _eval(problems, tmp_path, *extra) -> int:
    return main(["eval", "--model", TINY, "--task", "humaneval", "--data", str(problems),
                 "--allow-code-execution", "--out", str(tmp_path / "out.json"), *extra])


def test_eval_no_bwrap(problems, tmp_path, capsys, monkeypatch, no_model):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert _eval(problems, tmp_path) == 1
    line = _error_line(capsys)
    assert line == ("lorikit: error: --allow-code-execution: the bwrap sandbox cannot run programs here "
                    "(bwrap not found); install bubblewrap (apt-get install bubblewrap) or pass --sandbox none "
                    "to run it WITHOUT isolation (unsafe)")
    assert not (tmp_path / "out.json").exists()


def test_eval_bwrap_broken(problems, tmp_path, capsys, monkeypatch, no_model):
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    assert _eval(problems, tmp_path) == 1
    line = _error_line(capsys)
    assert re.search(r"--allow-code-execution: the bwrap sandbox cannot run programs here \(bwrap: No permissions "
                     r"to creating new namespace\); install bubblewrap .* or pass --sandbox none", line)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("value,shown", [("nan", "nan"), ("inf", "inf"), ("-1", "-1.0"), ("0", "0.0")])
def test_eval_timeout_not_positive(problems, tmp_path, capsys, no_model, value, shown):
    code = _eval_code(problems, tmp_path, "--timeout", value)
    assert code == 2
    expected = (f"lorikit: error: argument --timeout: '{value}' is not a finite number" if value in ("nan", "inf")
                else f"lorikit: error: --timeout {shown}: must be a positive number of seconds")  # nan/inf: parser
    assert _error_line(capsys) == expected


def _eval_code(problems, tmp_path, *extra) -> int:
    try:
        return _eval(problems, tmp_path, *extra)
    except SystemExit as exc:  # the parser refuses nan/inf itself
        return exc.code


def test_eval_sandbox_unknown(problems, tmp_path, capsys, no_model):
    with pytest.raises(SystemExit) as exc:
        _eval(problems, tmp_path, "--sandbox", "docker")
    assert exc.value.code == 2
    assert _error_line(capsys) == ("lorikit: error: argument --sandbox: invalid choice: 'docker' "
                                   "(choose from 'bwrap', 'none')")


def test_every_entry_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs/errors.md").read_text()
    names = [n[len("test_"):].replace("_", "-") for n in globals() if n.startswith("test_eval_")]
    assert len(names) == 4 and all(f"| `{n}` |" in doc for n in names), names


def test_probe_runs_once_per_run(monkeypatch):
    calls = []
    real = sandbox_runner.run_program
    monkeypatch.setattr(sandbox_runner, "run_program", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        check_sandbox(SandboxConfig(timeout=5))
    assert len(calls) == 1


def test_sandbox_none_warns_and_runs(caplog):
    with caplog.at_level(logging.WARNING):
        check_sandbox(SandboxConfig(sandbox="none"))
    assert "WITHOUT isolation" in caplog.text


def test_sandbox_config_rejects_nonsense():
    for bad in ({"timeout": 0}, {"timeout": float("nan")}, {"memory_mb": 0}, {"sandbox": "docker"},
                {"max_output_kb": -1}):
        with pytest.raises(LorikitError):
            SandboxConfig(**bad)
