"""``lorikit study --resume-from``: a study resumed on a machine without its workdir, from committed outcomes."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

from lorikit.analysis.study.outcomes import load
from lorikit.cli import main
from lorikit.errors import UsageError
from lorikit.pipeline.recipe import parse_recipe
from lorikit.study import StudyConfig, study_recipe
from lorikit.study.resume import archived_stages, needed_stages, settled_stages

from test_study import TINY, _bench_study

SMALL = {**TINY, "tasks": {"pair-max": None, "parity": None}, "methods": ["lora"], "pair_weight": None}


def _recipe(tmp_path, **extra):
    return parse_recipe(study_recipe(StudyConfig(**{**SMALL, "workdir": str(tmp_path / "w"), **extra})),
                        workdir=tmp_path / "w")


def test_needed_stages_are_the_missing_results_and_everything_they_are_computed_from(tmp_path):
    recipe = _recipe(tmp_path)
    everything = set(recipe.stages) - {"table"}
    assert set(needed_stages(recipe, set())) == everything  # nothing committed: the whole study runs
    results = {n for n in everything if recipe.stages[n].kind in ("eval", "train")}
    assert needed_stages(recipe, results) == []
    gone = "eval-lora-s2-merged-w0p5-parity"
    needed = needed_stages(recipe, results - {gone})
    assert set(needed) == {gone, "lora-s2-merged-w0p5", "lora-s2-pair-max", "lora-s2-parity"}
    assert needed == [n for n in recipe.order() if n in needed]  # parents before children
    settled = settled_stages(recipe, results - {gone}, needed)
    # the two trainings run again (their merge needs them), so the table reads them from here
    assert gone not in settled and "lora-s2-parity" not in settled and "eval-lora-s1-parity" in settled


def _archive(path, recipe, names, **changes):
    """An outcomes file holding ``names`` (evals and trainings) with the hashes ``recipe`` gives them."""
    from lorikit.pipeline import plan_recipe

    hashes = {p.name: p.hash for p in plan_recipe(recipe, resume=True)}
    data = {"format": "lorikit-study-outcomes", "version": 1, "layout": {}, "declared": {}, "analyses": {},
            "evals": {n: {"ids": [], "correct": "", "answers": [], "gold": []} for n in names
                      if recipe.stages[n].kind == "eval"},
            "trainings": {n: None for n in names if recipe.stages[n].kind == "train"},
            "stage_hashes": {**{n: hashes[n] for n in names}, **changes}}
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    return path


def test_a_result_is_taken_only_while_its_stage_hash_is_the_same(tmp_path, caplog):
    recipe = _recipe(tmp_path)
    results = {n for n in recipe.stages if recipe.stages[n].kind in ("eval", "train")}
    archive = _archive(tmp_path / "a.json.gz", recipe, results, **{"eval-lora-s1-parity": "0" * 64})
    with caplog.at_level("WARNING", logger="lorikit.study.resume"):
        taken = archived_stages(archive, recipe)
    assert taken == results - {"eval-lora-s1-parity"}  # a hash that differs: run again
    assert "1 of its" in caplog.text and "eval-lora-s1-parity" in caplog.text
    # another learning rate changes every training's hash and, through them, every result under them
    other = archived_stages(archive, _recipe(tmp_path, lr=0.002))
    assert other == {n for n in results if n.startswith("eval-base-")}
    # a folder of that name left in the workdir by other settings: the table would read it, so the stage runs again
    stale = tmp_path / "w" / "eval-lora-s2-parity"
    stale.mkdir(parents=True)
    (stale / "lorikit-stage.json").write_text(json.dumps({"hash": "1" * 64}))
    assert archived_stages(archive, recipe) == results - {"eval-lora-s1-parity", "eval-lora-s2-parity"}
    assert set(needed_stages(recipe, archived_stages(archive, recipe))) >= {"eval-lora-s2-parity", "lora-s2-parity"}
    data = json.loads(gzip.decompress(archive.read_bytes()))
    del data["stage_hashes"]
    archive.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(UsageError, match="records no stage hashes, so its results cannot be matched"):
        archived_stages(archive, recipe)


def test_whole_seeds_counts_plain_layout_values_as_finished(tmp_path):
    # a run's layout holds values that name no stage (a pair weight): they never hold a seed back
    runs = {"lora": {"1": {"merged": {"pair-max": "$eval-a"}, "pair_weight": 1.0},
                     "2": {"merged": {"pair-max": "$eval-b"}, "pair_weight": 1.0}}}
    (tmp_path / "eval-a").mkdir()
    (tmp_path / "eval-a" / "lorikit-stage.json").write_text("{}")
    _, _, seeds = _bench_study().whole_seeds({"runs": runs, "base": {}}, tmp_path)
    assert seeds == ["1"]
    assert _bench_study().whole_seeds({"runs": runs, "base": {}}, tmp_path, {"eval-b"})[2] == ["1", "2"]


def test_an_unreadable_outcomes_file_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "outcomes.json.gz"
    bad.write_bytes(gzip.compress(b'{"format": "something else"}'))
    with pytest.raises(UsageError, match=f"--resume-from {bad}: .*not a lorikit-study-outcomes v1 file"):
        archived_stages(bad, _recipe(tmp_path))
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({**SMALL, "workdir": str(tmp_path / "w"), "resume_from": str(tmp_path / "nope.gz")}))
    assert main(["study", str(f)]) != 0
    assert "--resume-from" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_a_study_resumes_on_a_fresh_workdir_from_its_committed_outcomes(tmp_path, capsys, caplog):
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({**SMALL, "workdir": str(tmp_path / "first")}))
    assert main(["study", str(first)]) == 0
    assert _bench_study().main([str(first), "--name", "s", "--progress", "--results", str(tmp_path / "res")]) == 0
    full = load(tmp_path / "res" / "science-s-progress.json.gz").data
    # the machine is gone, and with it the workdir; the committed file lacks one eval of seed 2
    gone = "eval-lora-s2-merged-w0p5-parity"
    partial = {**full, "evals": {k: v for k, v in full["evals"].items() if k != gone}}
    archive = tmp_path / "committed.json.gz"
    archive.write_bytes(gzip.compress(json.dumps(partial).encode()))
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({**SMALL, "workdir": str(tmp_path / "again"), "resume_from": str(archive)}))
    capsys.readouterr()

    assert main(["study", str(again), "--status"]) == 0
    status = capsys.readouterr().out
    assert "settled by" in status and "seeds finished for every method: 1 of 2" in status
    # the plateau share counts the trainings the committed file settles, not only those run here
    settled = [n for n in full["trainings"] if "-s1-" in n]  # seed 2 lacks an eval: its group runs again whole
    assert settled and f"trainings finished: {len(settled)}; " in status
    # nothing has run here yet: the time left comes from the wall times the committed file recorded
    assert "measured: train builtin:pair-max:" in status and "time left at the measured costs" in status
    # before anything ran here, bench_study.py summarises the seed the committed file already holds whole
    assert _bench_study().main([str(first), "--workdir", str(tmp_path / "again"), "--resume-from", str(archive),
                                "--name", "part", "--results", str(tmp_path / "res")]) == 0
    assert "seeds complete for every method: 1;" in capsys.readouterr().out
    # the cost adds up the wall times the committed file recorded: nothing ran here, nothing is missing
    cost = json.loads((tmp_path / "res" / "science-part.json").read_text())
    assert cost["stages_without_wall_time"] == 0 and cost["seconds_by_kind"]["train"]["n"] == len(full["trainings"])

    assert main(["study", str(again)]) == 0
    out = capsys.readouterr().out
    assert "stages to run or resume here" in out and "1 groups of stages stopped part-way there" in caplog.text
    ran = {p.name for p in (tmp_path / "again").iterdir() if (p / "lorikit-stage.json").is_file()}
    # the run it belongs to (LoRA, seed 2) stopped part-way in the file: it runs again whole, on one machine
    group = {n for n in _recipe(tmp_path).stages if n.startswith(("lora-s2-", "eval-lora-s2-", "dev-lora-s2-"))}
    assert gone in group and len(group) > 10 and ran == group | {"table"}
    # the same table as the study that ran whole in one workdir: training and evaluation are deterministic here
    table = (tmp_path / "again" / "table" / "table.md").read_text()
    assert table == (tmp_path / "first" / "table" / "table.md").read_text()

    # two workers: the one group with something left runs in a worker, and the table is the same
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        two = tmp_path / "two.yaml"
        two.write_text(yaml.safe_dump({**SMALL, "workdir": str(tmp_path / "two"), "resume_from": str(archive),
                                       "workers": 2}))
        assert main(["study", str(two)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "1 groups of stages, 1 workers" in capsys.readouterr().out
    assert (tmp_path / "two" / "table" / "table.md").read_text() == table

    # the progress file carries the committed outcomes over, compares what ran again, and is whole again
    assert _bench_study().main([str(again), "--name", "t", "--progress", "--results", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    evals_again = sum(1 for n in group if n in full["evals"]) - 1
    assert f"evals run again here that {archive} also holds: {evals_again}, identical: {evals_again}" in out
    assert "trainings run again here that" in out and "also holds: 2, identical: 2" in out
    merged = load(tmp_path / "res" / "science-t-progress.json.gz").data
    assert merged["evals"] == full["evals"] and merged["trainings"] == full["trainings"]
    # the wall times of both machines' stages, the table of the first included
    assert set(merged["stage_seconds"]) == set(full["stage_seconds"])  # every stage of the study, once
    assert merged["stage_seconds"]["lora-s2-parity"][0] == "train" and merged["stage_seconds"]["lora-s2-parity"][1] > 0

    # a newer commit of the outcomes makes a new table (the file's SHA-256 is in the table's hash)
    assert main(["study", str(again)]) == 0 and " 0 to run" in capsys.readouterr().out
    archive.write_bytes(gzip.compress(json.dumps(full).encode()))
    capsys.readouterr()
    assert main(["study", str(again), "--status"]) == 0  # the table, stale now, ran here once: its cost is known
    status = capsys.readouterr().out
    assert "study-table 0/1" in status and "measured: study-table" in status and "not estimated" not in status
    assert main(["study", str(again)]) == 0
    assert "table (study-table): redo" in capsys.readouterr().out
