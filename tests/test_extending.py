"""docs/extending.md's worked examples, built: every block of the guide is written into a temporary
copy of the repository exactly as printed (new files whole, registration lines as edits), then the
registry and architecture tests run on that copy, with one use of each new piece."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"```python\n# (new file|edit): (\S+)\n(.*?)```", re.S)

# One use of each example, run on the copy (the names are the guide's).
USES = '''
import json
import torch
from lorikit.cli import main


def test_lora_fa_counts_b_only_and_freezes_a(tmp_path):
    from lorikit.adapters.methods import get_method
    method = get_method("lora-fa")
    assert method.freezes_a and method.trainable_count([6, 6], [4, 4], 0.9, "global") == 8
    assert main(["params", "--model", "tiny-random-llama", "--method", "lora-fa", "--rank", "2"]) == 0


def test_orthogonal_init_draws_orthonormal_rows():
    from lorikit.adapters.seeded import seeded_projection
    a = seeded_projection(3, "model.layers.0.q_proj", 4, 16, "orthogonal")
    assert torch.allclose(a @ a.T, torch.eye(4), atol=1e-5)
    assert torch.equal(a, seeded_projection(3, "model.layers.0.q_proj", 4, 16, "orthogonal"))


def test_weighted_mean_merges(tmp_path):
    from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
    paths = []
    for seed in (1, 2):
        gen = torch.Generator().manual_seed(seed)
        mods = [LoraModule("model.layers.0.self_attn.q_proj", torch.randn(2, 8, generator=gen),
                           torch.randn(8, 2, generator=gen), 1.0)]
        AdapterState.from_modules(mods, {"peft_type": "LORA", "r": 2, "lora_alpha": 2.0,
                                         "base_model_name_or_path": "org/base",
                                         "target_modules": ["q_proj"]}).save(tmp_path / str(seed))
        paths.append(str(tmp_path / str(seed)))
    assert main(["merge", *paths, "--method", "weighted-mean", "--weights", "1", "3", "--rank", "8",
                 "--out", str(tmp_path / "m")]) == 0
    d = [load_adapter(p).modules()["model.layers.0.self_attn.q_proj"].delta() for p in paths]
    merged = load_adapter(tmp_path / "m").modules()["model.layers.0.self_attn.q_proj"].delta()
    assert torch.allclose(merged, (d[0] + 3 * d[1]) / 4, atol=1e-5)


def test_contains_task_scores():
    from lorikit.eval.tasks import TASKS
    spec = TASKS["contains"]
    item = spec.to_item({"instruction": "Capital of France?", "output": "Paris"}, "row 1")
    summary, records = spec.score([item], [["It is paris."]], None)
    assert records[0]["correct"] is True


def test_pack_stage_runs_in_a_recipe(tmp_path):
    from lorikit.adapters.state import AdapterState, LoraModule
    from lorikit.pipeline.kinds import get_kind
    gen = torch.Generator().manual_seed(0)
    mods = [LoraModule("model.layers.0.self_attn.q_proj", torch.randn(2, 8, generator=gen), torch.zeros(8, 2), 1.0)]
    AdapterState.from_modules(mods, {"peft_type": "LORA", "r": 2, "lora_alpha": 2.0,
                                     "target_modules": ["q_proj"]}).save(tmp_path / "a")
    kind = get_kind("pack", "pack-a")
    prepared = kind.validate("pack-a", {"adapter": str(tmp_path / "a")}, tmp_path / "out")
    kind.run(prepared, tmp_path / "out")
    assert kind.complete(tmp_path / "out")
'''


def apply(copy: Path, kind: str, rel: str, body: str) -> None:
    path = copy / rel
    if kind == "new file":
        assert not path.exists(), f"{rel}: the guide's new file already exists"
        path.write_text(body)
        return
    lines = path.read_text().splitlines()
    for new in body.strip().splitlines():
        sep = " = " if " = " in new else " import " if " import " in new else None
        key = new.split(sep)[0] + sep if sep else new
        hits = [i for i, line in enumerate(lines) if line.startswith(key)]
        assert len(hits) <= 1, f"{rel}: {key!r} starts {len(hits)} lines"
        if hits:
            lines[hits[0]] = new
        else:
            lines.append(new)
    path.write_text("\n".join(lines) + "\n")


def test_every_worked_example_builds_and_passes_the_registry_tests(tmp_path):
    blocks = BLOCK.findall(GUIDE.read_text())
    assert {rel.split("/")[3] for _, rel, _ in blocks} >= {"methods", "inits", "tasks", "kinds"}
    assert sum(kind == "new file" for kind, _, _ in blocks) == 5
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", ".venv", "*.egg-info", ".git", "runs")
    for part in ("src", "tests", "docs"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for kind, rel, body in blocks:
        apply(copy, kind, rel, body)
    (copy / "tests" / "test_worked_examples.py").write_text(USES)
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    for table, doc in (("lorikit.merge.doc_table", "docs/merge.md"), ("lorikit.train.doc_table", "docs/methods.md")):
        tables = subprocess.run([sys.executable, "-m", table, doc], cwd=copy, env=env, capture_output=True, text=True)
        assert tables.returncode == 0, tables.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_worked_examples.py",
         "tests/test_architecture.py", "tests/test_registries.py", "tests/test_merge_registry.py",
         "-k", "worked or architecture or choices or unknown or trainable or regenerable or docs_tables "
               "or new_method_file or seeded_inits or flat_keys"],
        cwd=copy, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
