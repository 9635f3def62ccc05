"""Every study table bench/RESULTS.md quotes recomputes, character for character, from the per-item
outcomes committed under bench/results/ (`python bench/bench_study.py --verify`, run here as CI runs it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench_study():
    spec = importlib.util.spec_from_file_location("bench_study", ROOT / "bench" / "bench_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_md_quotes_every_finished_study_and_every_quoted_table_recomputes_from_its_outcomes(capsys):
    bench = _bench_study()
    quoted = [m["name"] for m in bench.BLOCK.finditer(bench.RESULTS.read_text())]
    finished = [p.name.removeprefix("science-").removesuffix("-outcomes.json.gz")
                for p in (ROOT / "bench" / "results").glob("science-*-outcomes.json.gz")]
    assert "headline" in finished and set(finished) <= set(quoted), (finished, quoted)
    assert bench.verify(bench.RESULTS, ROOT / "bench" / "results") == 0, capsys.readouterr().err
    assert f"study:headline: " in capsys.readouterr().out
