"""bench/bench_bf16_quality.py keeps per-item outcomes, written after each task, that recompute its figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def test_quality_file_holds_per_item_outcomes_that_recompute_its_accuracies(tmp_path, monkeypatch):
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_bf16_quality.py"
    spec = importlib.util.spec_from_file_location("bench_bf16_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "q.json"
    monkeypatch.setattr(sys, "argv", ["bench_bf16_quality.py", "--model", "tiny-random-llama", "--tasks", "pair-max",
                                      "--max-steps", "3", "--min-steps", "2", "--eval-every", "1", "--patience", "1", "--dev-limit", "4",
                                      "--rows", "24", "--limit", "6", "--bootstrap", "20", "--workdir", str(tmp_path),
                                      "--out", str(out)])
    module.main()
    data = json.loads(out.read_text())
    assert data["finished"] == ["pair-max"] and not out.with_suffix(".tmp").exists()
    row = data["rows"][0]
    assert data["budget"]["min_steps"] == 2 and data["budget"]["shared_prefix"] is True
    assert row["train"]["float32"]["steps"] >= 2  # a plateau after step 1 does not stop it before --min-steps
    items = row["items"]
    for dtype in ("float32", "bfloat16"):
        own = items[f"{dtype}-adapter-as-{dtype}"]
        assert len(own["ids"]) == len(own["picks"]) == 6
        assert abs(own["correct"].count("1") / 6 - row["accuracy"][dtype]["accuracy"]) < 1e-4
    same = sum(a == b for a, b in zip(items["float32-adapter-as-float32"]["picks"],
                                      items["float32-adapter-as-bfloat16"]["picks"]))
    assert same == row["eval_agreement"]["fp32_adapter"]["agree"]
