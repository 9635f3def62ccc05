"""Hostile inputs of issue 30 (items 3-5) as one catalogue: planted pickles in checkpoints, outputs
that collide with an input for every command, backtracking and invalid regexes in adapter configs,
YAML alias bombs and recursive anchors in every YAML file, forged ``.lori`` headers.

Every case must end in exactly one ``lorikit: error:`` line with the documented exit code, within
seconds, with every input file unchanged: a planted pickle that ran would append to ``G/canary``
(an input), so code run from data shows up as a changed input. ``bench/bench_reliability.py``
counts the outcomes of this catalogue beside the others.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from lorikit.cli import main
from test_output_guard import CASES as GUARD_CASES
from test_output_guard import make_inputs

TINY = "tiny-random-llama"
TRAIN = ["--model", TINY, "--method", "lori-d", "--rank", "2", "--data", "builtin:compare", "--builtin-rows", "16",
         "--batch-size", "4", "--max-steps", "4", "--save-every", "2", "--lr", "1e-2"]


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def fill(text: str, fx: dict[str, Path]) -> str:
    for key, path in fx.items():
        text = text.replace("{" + key + "}", str(path))
    return text


class Planted:
    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"echo ran >> {self.canary}",))


def billion_laughs(levels: int = 12) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _adapter_with(src: Path, dst: Path, **fields) -> None:
    shutil.copytree(src, dst)
    config = json.loads((dst / "adapter_config.json").read_text())
    config.update(fields)
    (dst / "adapter_config.json").write_text(json.dumps(config))


def _forge(src: Path, dst: Path, edit) -> None:
    from safetensors import safe_open
    from safetensors.torch import save as st_save

    from lorikit.adapters import pack_checks

    with safe_open(str(src), "pt") as fh:
        metadata, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    index = edit(json.loads(lzma.decompress(tensors["index"].numpy().tobytes())))
    tensors["index"] = torch.frombuffer(bytearray(lzma.compress(json.dumps(index).encode())), dtype=torch.uint8)
    metadata[pack_checks.CHECKSUM_KEY] = pack_checks.digest(tensors, metadata)
    dst.write_bytes(st_save(tensors, metadata=metadata))


def _widen(index):
    seeded = next(e for e in index if e[1] == "seeded")
    seeded[3] = [seeded[3][0], seeded[3][1] + 1]
    return index


def _rank_up(index):
    return [[k, h, d, [s[0] + 1, s[1]] if h == "seeded" else s] for k, h, d, s in index]


def build(root: Path) -> dict[str, Path]:
    """G: good inputs (an adapter, its .lori, a canary), B: hostile files, C: checkpoints, W: guard inputs, O: outputs."""
    from lorikit.adapters.pack import pack_adapter

    G, B, C, O, W = (root / n for n in ("good", "bad", "ckpt", "out", "guard"))
    for d in (G, B, C, O):
        d.mkdir(parents=True)
    make_inputs(W)
    (G / "canary").write_text("untouched\n")
    assert main(["train", *TRAIN, "--max-steps", "1", "--save-every", "0", "--out", str(G / "a")]) == 0
    pack_adapter(G / "a", G / "a.lori")
    assert main(["train", *TRAIN, "--out", str(C / "run")]) == 0
    shutil.rmtree(C / "run")  # the checkpoints are left, as after a crash
    for name in ("optimizer.pt", "scheduler.pt", "rng-rank0.pt"):
        target = B / f"pickle-{name}" / "run.ckpt"
        shutil.copytree(C / "run.ckpt", target)
        torch.save({"state": Planted(G / "canary")}, target / "step-000002" / name)
    _adapter_with(G / "a", B / "redos-targets", target_modules="([a-z_.0-9]+)*X")
    _adapter_with(G / "a", B / "redos-rank", rank_pattern={"(?:\\w|\\.)*?" * 7 + "\\d{9}": 4})
    _adapter_with(G / "a", B / "regex-invalid", target_modules="(q_proj")
    _adapter_with(G / "a", B / "regex-invalid-alpha", alpha_pattern={"v_proj[": 4})
    (B / "bomb-train.yaml").write_text("x:\n  " + billion_laughs().replace("\n", "\n  "))
    (B / "bomb-recipe.yaml").write_text(billion_laughs() + "stages:\n  a: {kind: train, data: *a11}\n")
    (B / "bomb-study.yaml").write_text(billion_laughs())
    (B / "bomb-merge.yaml").write_text(billion_laughs())
    (B / "recursive-recipe.yaml").write_text("stages: &s\n  a: {kind: train, again: *s}\n")
    (B / "dup-train.yaml").write_text("lr: 0.1\nmax_steps: 2\nlr: 0.2\n")
    _forge(G / "a.lori", B / "wide.lori", _widen)
    _forge(G / "a.lori", B / "rank.lori", _rank_up)
    _forge(G / "a.lori", B / "many.lori", lambda index: index * (100_000 // len(index) + 1))
    return {"G": G, "B": B, "C": C, "O": O, "W": W}


REFUSED = r"refused: holds Python objects other than tensors"
CASES = [
    *[(f"resume-pickle-{n}", ["train", *TRAIN, "--resume", "--out", f"{{B}}/pickle-{n}/run"], 2,
       rf"pickle-{re.escape(n)}/run.ckpt/step-000002/{re.escape(n)}: {REFUSED}")
      for n in ("optimizer.pt", "scheduler.pt", "rng-rank0.pt")],
    *[(f"guard-{name}", list(argv), 2, re.escape(expected))
      for name, (argv, expected) in sorted(GUARD_CASES.items())],
    ("redos-target-modules", ["merge", "{B}/redos-targets", "{G}/a", "--method", "cat", "--out", "{O}/m"], 1,
     r"target_modules does not list"),
    ("redos-rank-pattern", ["merge", "{B}/redos-rank", "{G}/a", "--method", "cat", "--out", "{O}/m"], 1,
     r"field 'rank_pattern': the regex .* takes over 0.25 s .* refused"),
    ("regex-invalid", ["merge", "{B}/regex-invalid", "{G}/a", "--method", "cat", "--out", "{O}/m"], 1,
     r"field 'target_modules': '\(q_proj' is not a valid regex"),
    ("regex-invalid-alpha", ["merge", "{B}/regex-invalid-alpha", "{G}/a", "--method", "cat", "--out", "{O}/m"], 1,
     r"field 'alpha_pattern': 'v_proj\[' is not a valid regex"),
    ("yaml-bomb-train", ["train", "--config", "{B}/bomb-train.yaml", "--out", "{O}/t"], 2, r"refused: more than 20000"),
    ("yaml-bomb-recipe", ["run", "{B}/bomb-recipe.yaml", "--dry-run"], 2, r"refused: more than 20000"),
    ("yaml-bomb-study", ["study", "{B}/bomb-study.yaml"], 2, r"refused: more than 20000"),
    ("yaml-bomb-merge", ["merge", "--config", "{B}/bomb-merge.yaml", "--out", "{O}/m"], 2, r"refused: more than 20000"),
    ("yaml-recursive-anchor", ["run", "{B}/recursive-recipe.yaml", "--dry-run"], 2, r"an anchor that contains itself"),
    ("yaml-duplicate-key", ["train", "--config", "{B}/dup-train.yaml", "--out", "{O}/t"], 2,
     r"dup-train.yaml:3: duplicate key 'lr'"),
    ("lori-seeded-a-wider", ["unpack", "{B}/wide.lori", "--out", "{O}/u"], 1, r"columns, \S+ of the same kind has"),
    ("lori-seeded-a-rank", ["unpack", "{B}/rank.lori", "--out", "{O}/u"], 1, r"but the config's rank of"),
    ("lori-too-many-entries", ["unpack", "{B}/many.lori", "--out", "{O}/u"], 1, r"more than the 100000 allowed"),
]


def _fill_guard(argv: list[str], fx: dict[str, Path]) -> list[str]:
    return [fill(a, fx) for a in argv]


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("argv,code,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input(fx, capsys, monkeypatch, argv, code, pattern):
    monkeypatch.chdir(fx["W"])  # the output-guard cases name their inputs relative to it

    def snapshot():
        return {p: p.read_bytes() for key in ("G", "B", "C", "W") for p in fx[key].rglob("*") if p.is_file()}

    before = snapshot()
    t0 = time.perf_counter()
    got = run_cli(_fill_guard(argv, fx))
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lorikit: error: ")]
    assert got == code, err
    assert len(lines) == 1 and re.search(pattern, lines[0]), err
    assert snapshot() == before  # nothing ran from data, nothing written into an input
    assert seconds < 30, seconds
