"""Recipes: parsing, references, stage graph, validation before running, resume and redo."""

from __future__ import annotations

import json

import pytest
import yaml

from lorikit.errors import UsageError
from lorikit.pipeline import load_recipe, parse_recipe, plan_recipe, run_recipe
from lorikit.pipeline.runner import STAGE_RECORD

TRAIN = {"model": "tiny-random-llama", "max_steps": 2, "batch_size": 4, "builtin_rows": 16, "rank": 4,
         "lr": 0.01, "method": "lori-d"}


def recipe_dict(**stages):
    return {"workdir": "unused", "defaults": {"train": TRAIN}, "stages": stages}


def test_references_order_and_defaults(tmp_path):
    r = parse_recipe(recipe_dict(
        report={"kind": "analyze", "adapters": ["$b", "$a"], "masks": ["$a/masks/0.9_mask.pt"], "scores": "cost$$.json"},
        a={"kind": "train", "data": "builtin:compare"},
        b={"kind": "train", "data": "builtin:reverse", "seed": 3}), workdir=tmp_path)
    assert r.order() == ["a", "b", "report"]
    assert r.stages["report"].parents == ["b", "a"]
    resolved = r.resolve("report")
    assert resolved["adapters"] == [str(tmp_path / "b"), str(tmp_path / "a")]
    assert resolved["masks"] == [str(tmp_path / "a" / "masks" / "0.9_mask.pt")]
    assert resolved["scores"] == "cost$.json"
    assert r.stages["b"].settings["max_steps"] == 2 and r.stages["b"].settings["seed"] == 3


def test_unknown_reference_and_cycle_are_named():
    with pytest.raises(UsageError, match=r"stage 'report' refers to unknown stage \$missing"):
        parse_recipe(recipe_dict(report={"kind": "analyze", "adapters": ["$missing"]}))
    with pytest.raises(UsageError, match="cycle: .*a -> b -> c -> a|cycle: .*b -> c -> a -> b|cycle: .*c -> a -> b -> c"):
        parse_recipe(recipe_dict(a={"kind": "train", "data": "$c/x.json"}, b={"kind": "train", "data": "$a/x.json"},
                                 c={"kind": "train", "data": "$b/x.json"}, d={"kind": "train"}))
    with pytest.raises(UsageError, match="own output"):
        parse_recipe(recipe_dict(a={"kind": "train", "data": "$a/x.json"}))
    with pytest.raises(UsageError, match="unknown top-level key 'stage'"):
        parse_recipe({"stage": {}})
    with pytest.raises(UsageError, match="missing 'kind'"):
        parse_recipe(recipe_dict(a={"data": "x"}))


def test_validation_fails_before_anything_runs(tmp_path):
    good = {"kind": "train", "data": "builtin:compare"}
    r = parse_recipe(recipe_dict(a=good, m={"kind": "mergee", "adapters": ["$a"]}), workdir=tmp_path / "w")
    with pytest.raises(UsageError, match="stage 'm': unknown kind 'mergee' .*registered kinds: analyze, eval, masks, merge, merge-search, osrm-stats, scores, study-table, train"):
        run_recipe(r, echo=lambda s: None)
    r = parse_recipe(recipe_dict(a=good, b={"kind": "train", "max_stepz": 3}), workdir=tmp_path / "w")
    with pytest.raises(UsageError, match="stage 'b' \\(train\\): unknown setting 'max_stepz'"):
        run_recipe(r, echo=lambda s: None)
    r = parse_recipe(recipe_dict(a=good, b={"kind": "train", "max_steps": "many"}), workdir=tmp_path / "w")
    with pytest.raises(UsageError, match="'max_steps' = 'many' is not"):
        run_recipe(r, echo=lambda s: None)
    r = parse_recipe(recipe_dict(a=good, b={"kind": "train", "rank": -1}), workdir=tmp_path / "w")
    with pytest.raises(UsageError, match="stage 'b' \\(train\\): --rank -1"):
        run_recipe(r, echo=lambda s: None)
    assert not (tmp_path / "w").exists()


def test_resume_skips_done_stages_and_redoes_changed_ones(tmp_path, capsys):
    from lorikit.cli import main

    stages = {"a": {"kind": "train", "data": "builtin:compare", "seed": 1},
              "b": {"kind": "train", "data": "builtin:reverse", "seed": 2},
              "report": {"kind": "analyze", "adapters": ["$a", "$b"]}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"workdir": str(tmp_path / "w"), "defaults": {"train": TRAIN}, "stages": stages}))

    assert main(["run", str(path), "--dry-run"]) == 0
    assert not (tmp_path / "w").exists()
    assert main(["run", str(path)]) == 0
    records = {s: json.loads((tmp_path / "w" / s / STAGE_RECORD).read_text()) for s in stages}
    assert records["report"]["parents"] == {"a": records["a"]["hash"], "b": records["b"]["hash"]}
    assert json.loads((tmp_path / "w" / "report" / "analysis.json").read_text())["comparison"]["adapters"] == ["a", "b"]
    mtimes = {s: (tmp_path / "w" / s / STAGE_RECORD).stat().st_mtime_ns for s in stages}

    # plain rerun refuses to clobber; --resume skips everything
    assert main(["run", str(path)]) == 2
    assert "--resume" in capsys.readouterr().err
    plans = run_recipe(load_recipe(path), resume=True, echo=lambda s: None)
    assert [p.action for p in plans] == ["skip", "skip", "skip"]
    assert {s: (tmp_path / "w" / s / STAGE_RECORD).stat().st_mtime_ns for s in stages} == mtimes

    # change b: b and its child report are redone, a is kept
    stages["b"]["seed"] = 5
    path.write_text(yaml.safe_dump({"workdir": str(tmp_path / "w"), "defaults": {"train": TRAIN}, "stages": stages}))
    plans = run_recipe(load_recipe(path), resume=True, echo=lambda s: None)
    assert [(p.name, p.action) for p in plans] == [("a", "skip"), ("b", "run"), ("report", "run")]
    assert (tmp_path / "w" / "a" / STAGE_RECORD).stat().st_mtime_ns == mtimes["a"]
    assert (tmp_path / "w" / "b" / STAGE_RECORD).stat().st_mtime_ns != mtimes["b"]
    assert json.loads((tmp_path / "w" / "b" / "lorikit.json").read_text())["seed"] == 5

    # an interrupted stage (output without a record) is redone, and so is everything downstream
    (tmp_path / "w" / "a" / STAGE_RECORD).unlink()
    plans = plan_recipe(load_recipe(path), resume=True)
    assert [(p.name, p.status, p.action) for p in plans] == [("a", "stale", "run"), ("b", "done", "skip"),
                                                             ("report", "stale", "run")]
    # --only needs done parents
    with pytest.raises(UsageError, match="--only report: needs stage 'a', which is stale"):
        plan_recipe(load_recipe(path), resume=True, only=["report"])
    plans = plan_recipe(load_recipe(path), resume=True, only=["a"])
    assert [p.action for p in plans] == ["run", "skip", "skip"]
    plans = plan_recipe(load_recipe(path), resume=True, only=["b"])  # a's record is gone: not up to date
    assert plans[0].describe().startswith("a (train): skip (not selected; stale)")
    assert plans[1].describe().startswith("b (train): skip (up to date)")
    with pytest.raises(UsageError, match="--only nope: no such stage"):
        plan_recipe(load_recipe(path), only=["nope"])


def test_cli_run_rejects_unknown_kind_and_bad_yaml(tmp_path, capsys):
    from lorikit.cli import main

    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  x: {kind: evaluate, adapter: foo}\n")
    assert main(["run", str(path), "--workdir", str(tmp_path / "w")]) == 2
    assert "stage 'x': unknown kind 'evaluate'" in capsys.readouterr().err
    path.write_text("stages: [unclosed\n")
    assert main(["run", str(path)]) == 2
    assert "malformed YAML" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_shipped_recipe_validates(tmp_path):
    from pathlib import Path

    import lorikit

    path = Path(lorikit.__file__).parent / "recipes" / "interference-3tasks.yaml"
    plans = plan_recipe(load_recipe(path, workdir=tmp_path / "w"))
    assert [p.name for p in plans] == ["arithmetic", "reverse", "compare", "report"]
    assert all(p.action == "run" and p.status == "missing" for p in plans)


def test_demo_recipe_runs_end_to_end_on_tiny_model(tmp_path, capsys):
    """The demo study (LoRA/LoRI-D/LoRI-S on pair-max + pair-min, w 0.5 and 1) on tiny-random-llama."""
    import json

    from lorikit.cli import main

    work = tmp_path / "demo"
    args = ["demo", "--model", "tiny-random-llama", "--workdir", str(work), "--steps", "2", "--eval-every", "1",
            "--eval-examples", "6", "--samples", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "## Primary endpoint" in out and "## Fixed weights (all tasks' test items pooled)" in out and "| method | task | w | single@w | merged@w" in out
    for method in ("lora", "lori-d", "lori-s"):
        assert f"- **{method}, w = 0.5**: interference " in out
    study = json.loads((work / "table" / "study.json").read_text())
    assert study["methods"] == ["lora", "lori-d", "lori-s"] and study["n_items"] == {"pair-max": 6, "pair-min": 6}
    # choice tasks scored by log-likelihood, the same items for every adapter
    result = json.loads((work / "eval-lori-s-s1-pair-max-w0p5-pair-max" / "result.json").read_text())
    assert result["settings"]["scoring"] == "loglik" and result["n"] == 6
    assert json.loads((work / "lori-s-s1-merged-w0p5" / "lorikit.json").read_text())["method"] == "merge:cat"
    assert (work / "table" / "interference.png").is_file() and (work / "table" / "primary.png").is_file()
    assert "![primary endpoint](primary.png)" in (work / "table" / "table.md").read_text()
    # a second run resumes: every stage is already complete
    assert main(args) == 0
    assert " 0 to run" in capsys.readouterr().out
    # --sweep adds weights; finished stages are reused
    assert main(args + ["--sweep", "0.5", "0.3"]) == 0
    study = json.loads((work / "table" / "study.json").read_text())
    assert {r["weight"] for r in study["merge"]} == {0.3, 0.5}
    assert main(args + ["--sweep", "-1"]) != 0
    assert "--sweep -1" in capsys.readouterr().err


def test_demo_with_osrm_adds_a_fourth_method(tmp_path, capsys):
    import json

    from lorikit.cli import main

    work = tmp_path / "demo"
    args = ["demo", "--model", "tiny-random-llama", "--workdir", str(work), "--steps", "1",
            "--eval-examples", "2", "--samples", "2", "--osrm", "--osrm-samples", "4"]
    assert main(args) == 0
    assert "- **osrm, w = 0.5**" in capsys.readouterr().out
    study = json.loads((work / "table" / "study.json").read_text())
    assert study["methods"] == ["lora", "lori-d", "lori-s", "osrm"]
    meta = json.loads((work / "osrm-s1-pair-max" / "lorikit.json").read_text())
    assert meta["init"]["kind"] == "osrm" and meta["init"]["task"] == "pair-max"
    assert set(meta["init"]["other_tasks"]) == {"pair-min"}


def test_settings_are_validated_by_schema_numbers_from_yaml_strings_and_did_you_mean(tmp_path):
    from lorikit.pipeline.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  a: {kind: train, data: 'builtin:compare', lr: 1e-3, max_steps: '2'}\n")
    r = load_recipe(recipe, workdir=tmp_path / "w", overrides=["a.weight_decay=1e-2"])
    kind_cfg = r.stages["a"].settings
    assert kind_cfg["lr"] == "1e-3"  # YAML 1.1 reads 1e-3 as a string
    from lorikit.pipeline.kinds import get_kind

    train_kind = get_kind("train", "a")
    cfg = train_kind.validate("a", kind_cfg, tmp_path / "w" / "a").config
    assert cfg.lr == 1e-3 and cfg.max_steps == 2 and cfg.weight_decay == 1e-2
    with pytest.raises(UsageError, match=r"unknown setting 'max_stpes' \(did you mean 'max_steps'\?\)"):
        train_kind.validate("a", {"data": "builtin:compare", "max_stpes": 3}, tmp_path / "w" / "a")
    with pytest.raises(UsageError, match="'lr' = True is not float"):
        train_kind.validate("a", {"data": "builtin:compare", "lr": True}, tmp_path / "w" / "a")


def test_demo_without_matplotlib_writes_the_tables_and_says_the_figures_were_skipped(tmp_path, monkeypatch, capsys):
    """`pip install lorikit` has no matplotlib (the report extra): the demo still ends with its table."""
    import lorikit.analysis.study.report as report
    from lorikit.cli import main

    monkeypatch.setattr(report, "have_matplotlib", lambda: False)
    work = tmp_path / "demo"
    assert main(["demo", "--model", "tiny-random-llama", "--workdir", str(work), "--steps", "1",
                 "--eval-examples", "2", "--samples", "2"]) == 0
    table = (work / "table" / "table.md").read_text()
    assert "figures skipped: pip install 'lorikit[report]'" in table and "| lora | pair-max |" in table
    assert not (work / "table" / "interference.png").exists()
    assert "figures skipped" in capsys.readouterr().err


def test_merge_search_plot_without_matplotlib_is_a_one_line_error(tmp_path, monkeypatch):
    import sys

    from lorikit.errors import LorikitError
    from lorikit.search.plot import plot_search

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(LorikitError, match=r"pip install 'lorikit\[search\]'"):
        plot_search([{"eval": 1, "objective": 1.0}], tmp_path / "s.png", "y", "t")
