"""One output rule for every command: --out (or a workdir) never is, holds or lies inside an input.

Each case gives a command an output that collides with one of its inputs; the command must stop
before any work (exit 2, one line naming the input) and every input file must be byte-identical.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorikit.cli import main
from lorikit.errors import UsageError
from lorikit.utils.outputs import guard_output, input_paths


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def make_inputs(root: Path) -> Path:
    """Two adapter folders, a data file, a packed file, a statistics folder, a recipe and a study file."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("d0", "d1"):
        (root / name).mkdir()
        (root / name / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
        (root / name / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
    (root / "d.jsonl").write_text('{"instruction": "1+1", "output": "2"}\n')
    (root / "pk").mkdir()
    (root / "pk" / "d0.lori").write_bytes(b"LORI packed")
    (root / "st").mkdir()
    (root / "st" / "osrm_stats.json").write_text("{}")
    (root / "data").mkdir()
    (root / "data" / "t.jsonl").write_text('{"instruction": "2+2", "output": "4"}\n')
    (root / "recipe.yaml").write_text("name: r\nworkdir: runs\nstages:\n  a:\n    kind: train\n"
                                      "    data: data/t.jsonl\n")
    (root / "study.yaml").write_text("tasks:\n  t:\n    train: data/t.jsonl?split=train\n"
                                     "    test: data/t.jsonl?split=dev\n    task: exact\n  pair-add:\n")
    return root


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return make_inputs(tmp_path)


MODEL = ["--model", "tiny-random-llama"]
CASES = {
    "train-is-data": (["train", *MODEL, "--data", "d.jsonl", "--out", "d.jsonl"], "is the input d.jsonl"),
    "train-inside-from": (["train", *MODEL, "--from", "d0", "--out", "d0/sub"], "lies inside the input d0"),
    "train-output_dir-alias": (["train", *MODEL, "--data", "d.jsonl", "--output_dir", "."], "holds the input"),
    "merge-is-adapter": (["merge", "d0", "d1", "--out", "d0", "--overwrite"], "is the input d0"),
    "merge-holds-adapters": (["merge", "d0", "d1", "--out", ".", "--overwrite"], "holds the input"),
    "merge-search": (["merge-search", "d0", "d1", "--dev", "d.jsonl", "d.jsonl", "--out", "d1", "--overwrite"],
                     "is the input d1"),
    "analyze": (["analyze", "d0", "d1", "--out", "d0/report", "--overwrite"], "lies inside the input d0"),
    "analyze-named": (["analyze", "a=d0", "b=d1", "--out", "d1", "--overwrite"], "is the input d1"),
    "pack": (["pack", "d0", "--out", "d0/adapter_model.safetensors", "--overwrite"], "lies inside the input d0"),
    "unpack": (["unpack", "pk/d0.lori", "--out", "pk", "--overwrite"], "holds the input pk/d0.lori"),
    "eval-own-data": (["eval", *MODEL, "--task", "exact", "--data", "d.jsonl", "--out", "d.jsonl", "--overwrite"],
                      "is the input d.jsonl"),
    "eval-adapter-file": (["eval", *MODEL, "--task", "exact", "--data", "d.jsonl", "--adapter", "d0",
                           "--out", "d0/adapter_config.json", "--overwrite"], "lies inside the input d0"),
    "eval-adapters": (["eval", *MODEL, "--task", "exact", "--data", "d.jsonl", "--adapters", "x=d1",
                       "--out", "d1/r.json"], "lies inside the input d1"),
    "study": (["study", "study.yaml", "--workdir", "data"], "holds the input data/t.jsonl"),
    "run": (["run", "recipe.yaml", "--workdir", "data"], "holds the input data/t.jsonl"),
    "osrm-stats": (["osrm-stats", *MODEL, "--data", "t=d.jsonl", "--out", "d.jsonl"], "is the input d.jsonl"),
    "osrm-transform": (["osrm-transform", "d0", "--osrm-stats", "st", "--task", "t", "--out", "st/a"],
                       "lies inside the input st"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_command_refuses_an_output_that_collides_with_an_input(inputs, capsys, name):
    argv, expected = CASES[name]
    before = snapshot(inputs)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0, err
    assert "lorikit never replaces or writes into its inputs" in err
    assert snapshot(inputs) == before  # nothing written, nothing replaced


def test_symlinks_and_hard_links_are_followed(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="holds the input"):
        guard_output(tmp_path / "link", [data])
    os.link(data, tmp_path / "hard.jsonl")
    with pytest.raises(UsageError, match="is the input"):
        guard_output(tmp_path / "hard.jsonl", [data])
    with pytest.raises(UsageError, match="is the input"):
        guard_output(f"{tmp_path}/./sub/../d.jsonl", [data])


def test_names_that_are_not_paths_are_not_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert input_paths(["builtin:compare", "tiny-random-llama", "org/model", None, 3]) == []
    (tmp_path / "d.jsonl").write_text("{}\n")
    assert input_paths([{"t": "d.jsonl?split=dev"}, ["x=d.jsonl"], "d.jsonl"]) == ["d.jsonl"]
    guard_output(tmp_path / "elsewhere", ["d.jsonl", "builtin:compare"])  # no collision: no error


def test_merge_search_refuses_a_foreign_folder_before_searching(inputs, capsys):
    user = inputs / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    assert main(["merge-search", "d0", "d1", "--dev", "d.jsonl", "d.jsonl", "--out", "mine", "--overwrite"]) == 2
    assert "--overwrite replaces only a folder lorikit wrote" in capsys.readouterr().err
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]  # no search_log.jsonl left there


def test_the_python_api_refuses_too(inputs):
    """The library entry points run the same guard (the CLI calls it first, before heavy imports)."""
    from lorikit.adapters.pack import pack_adapter, unpack_adapter
    from lorikit.eval.config import EvalConfig
    from lorikit.eval.runner import evaluate
    from lorikit.osrm.transform import TransformConfig, transform

    before = snapshot(inputs)
    with pytest.raises(UsageError, match="lies inside the input d0"):
        pack_adapter("d0", "d0/x.lori")
    with pytest.raises(UsageError, match="holds the input pk/d0.lori"):
        unpack_adapter("pk/d0.lori", "pk", overwrite=True)
    with pytest.raises(UsageError, match="is the input d.jsonl"):
        evaluate(EvalConfig(model="tiny-random-llama", task="exact", data="d.jsonl", out="d.jsonl", overwrite=True))
    with pytest.raises(UsageError, match="lies inside the input st"):
        transform(TransformConfig(source="d0", osrm_stats="st", task="t", out="st/a"))
    assert snapshot(inputs) == before
