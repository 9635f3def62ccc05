"""``lorikit study``: recipe structure, the whole study end to end on tiny-random-llama (incl. resume),
and the table's statistics on hand-made eval results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lorikit.cli import main
from lorikit.errors import UsageError
from lorikit.pipeline import plan_recipe
from lorikit.pipeline.recipe import parse_recipe
from lorikit.study import StudyConfig, load_study_config, study_recipe
from lorikit.analysis.study.outcomes import collect
from lorikit.analysis.study.report import verdicts
from lorikit.analysis.study.table import Stats, headline, merge_rows, primary_rows

TINY = {"model": "tiny-random-llama", "seeds": [1, 2], "weights": [0.5], "max_steps": 2, "eval_every": 1,
        "patience": 1, "builtin_rows": 24, "dev_limit": 4, "eval_examples": 4, "max_new_tokens": 4,
        "samples": 2, "osrm_samples": 4, "dev_examples": 4}


def test_recipe_has_every_method_seed_weight_and_pair(tmp_path):
    cfg = StudyConfig(workdir=str(tmp_path), tasks=["pair-add", "pair-max", "pair-greater"],
                      continual={"first": "pair-greater", "then": "pair-add"})
    stages = study_recipe(cfg)["stages"]
    for m in ("lora", "lori-d", "lori-s", "osrm"):
        for s in (1, 2, 3):
            assert stages[f"{m}-s{s}-pair-add"]["kind"] == "train"
            for w in ("w0p3", "w0p5", "w0p7"):
                assert stages[f"{m}-s{s}-pair-max-{w}"]["weights"] == [float(w[1:].replace("p", "."))]
                assert len(stages[f"{m}-s{s}-merged-{w}"]["adapters"]) == 3
            assert stages[f"{m}-s{s}-pair-pair-add-pair-max"]["weights"] == [1.0, 1.0]
    # the same rule for every method: every training run stops on the dev plateau under the same cap
    defaults = study_recipe(cfg)["defaults"]
    assert defaults["train"]["eval_every"] == 25 and defaults["train"]["max_steps"] == 300
    # a study trains with --shared-prefix unless told not to; off, the key is absent (older stages keep their hash)
    assert defaults["train"]["shared_prefix"] is True
    off = StudyConfig(workdir=str(tmp_path), tasks=["pair-add", "pair-max"], shared_prefix=False)
    assert "shared_prefix" not in study_recipe(off)["defaults"]["train"]
    headline = Path(__file__).resolve().parents[1] / "bench" / "studies" / "headline.yaml"
    assert load_study_config(str(headline)).shared_prefix is False  # it started without it: same stages
    assert "min_steps" not in defaults["train"]  # likewise absent unless set
    held = StudyConfig(workdir=str(tmp_path), tasks=["pair-add", "pair-max"], min_steps=150)
    assert study_recipe(held)["defaults"]["train"]["min_steps"] == 150
    assert load_study_config(str(headline.with_name("conflict.yaml"))).min_steps == 150  # declared before it runs
    with pytest.raises(UsageError, match="--min-steps 400: must be between 0 and --max-steps"):
        StudyConfig(workdir=str(tmp_path), tasks=["pair-add", "pair-max"], min_steps=400)
    assert stages["lori-s-s2-pair-max"]["mask"] == "$masks-lori-s-s2-pair-max/masks/0.9_mask.pt"
    assert stages["masks-lori-s-s2-pair-max"]["adapter"] == "$lori-d-s2-pair-max"
    assert stages["osrm-s1-pair-add"]["init"] == "osrm"
    # choice tasks by log-likelihood, generation for the rest; ≥ 200 test items by default
    assert stages["eval-lora-s1-pair-max"]["scoring"] == "loglik"
    assert stages["eval-lora-s1-pair-add"]["scoring"] == "generate"
    assert study_recipe(cfg)["defaults"]["eval"]["limit"] == 200
    assert set(stages["table"]["continual"]["methods"]) == {"lora (B only)", "lori-d", "lori-s"}
    assert stages["continual-lori-s-s1-pair-greater-pair-add"]["from_adapter"] == "$lori-s-s1-pair-greater"
    # each run chooses its merge weight on the task's dev split, never on the test items
    dev = stages["dev-lora-s2-merged-w0p5-pair-max"]
    assert dev["data"] == "builtin:pair-max:dev" and dev["adapter"] == "$lora-s2-merged-w0p5"
    assert stages["table"]["primary"] == "dev" and stages["table"]["equivalence_margin"] == 0.05
    # seed-major: a study stopped part-way holds whole seeds of every method
    order = [n for n in stages if stages[n]["kind"] == "train" and not n.startswith("continual")]
    assert order.index("osrm-s1-pair-max") < order.index("lora-s2-pair-add")


@pytest.mark.parametrize("settings,message", [
    ({"tasks": ["pair-add"]}, "at least two tasks"),
    ({"methods": ["lora", "dora"]}, "'dora'"),
    ({"methods": ["lora", "lori-s"]}, "lori-s needs lori-d"),
    ({"seeds": [1, 1]}, "distinct seeds"),
    ({"weights": [0]}, "merge weight"),
    ({"tasks": ["pair-add", "nope"]}, "not built in"),
    ({"continual": {"first": "pair-add"}}, "continual"),
    ({"scoring": "bogus"}, "scoring"),
    ({"learned_at": 0}, "--learned-at 0"),
    ({"learned_at": 1.5}, "--learned-at 1.5"),
    # a test carved out of the training file needs the complementary carve as training data
    ({"tasks": {"pair-add": None, "q": {"train": "q.jsonl", "test": "q.jsonl?split=dev&seed=7"}}},
     r"'q': test 'q.jsonl\?split=dev&seed=7' overlaps train 'q.jsonl' .*train on 'q.jsonl\?split=train&seed=7'"),
    ({"tasks": {"pair-add": None, "q": {"train": "q.jsonl?split=train&seed=8", "test": "q.jsonl?split=dev&seed=7"}}},
     "overlaps train"),
    ({"tasks": {"pair-add": None, "q": {"train": "q.jsonl", "test": "q.jsonl"}}}, "carve the test rows"),
])
def test_bad_study_settings_are_one_line_usage_errors(settings, message):
    with pytest.raises(UsageError, match=message):
        StudyConfig(**settings)


def test_real_data_with_a_carved_test_split_gets_nested_dev_carves():
    train, test = "q.jsonl?split=train&fraction=0.2&seed=7", "q.jsonl?split=dev&fraction=0.2&seed=7"
    cfg = StudyConfig(tasks={"pair-add": None, "q": {"train": train, "test": test, "task": "nlu"}},
                      methods=["lora"], seeds=[1], weights=[0.5])
    stages = study_recipe(cfg)["stages"]
    assert stages["lora-s1-q"]["data"] == train and stages["eval-lora-s1-q"]["data"] == test
    assert stages["shift-lora-s1"]["data"]["q"] == f"{train}?split=dev&fraction=0.1"
    # the merge weight is chosen on the training source's dev carve, never on the test rows
    assert stages["dev-lora-s1-merged-w0p5-q"]["data"] == f"{train}?split=dev&fraction=0.1"
    # no pairwise merges: no interference report to set against them
    no_pairs = study_recipe(StudyConfig(tasks=["pair-add", "pair-max"], methods=["lora"], seeds=[1], pair_weight=None))
    assert not any(n.startswith("shift-") for n in no_pairs["stages"])


def test_study_file_unknown_key_is_named(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("tasks: [pair-add, pair-max]\nsteps: 3\n")
    with pytest.raises(UsageError, match=r"s.yaml: unknown study setting 'steps'"):
        load_study_config(str(f))


def _fake_eval(path: Path, correct: list[int]) -> str:
    path.mkdir(parents=True)
    records = [{"id": str(i), "prompt": f"q{i}", "correct": bool(c)} for i, c in enumerate(correct)]
    (path / "result.json").write_text(json.dumps({"score": float(np.mean(correct)), "records": records}))
    return str(path)


def _hand_made_runs(tmp_path, merged_of: dict, seeds=("1", "2", "3"), jitter=True, full_right=None) -> dict:
    """Two tasks x the given seeds: full weight right on 80 of 100 (or ``full_right[task]``), w 0.5 on 60;
    merges as given."""
    runs = {}
    for method, merged in merged_of.items():
        runs[method] = {}
        for k, seed in enumerate(seeds):
            root = tmp_path / method / seed
            shift = k if jitter else 0  # per-seed variation: each run gets one more item right
            full_of = {t: [1] * ((full_right or {}).get(t, 80) + shift) + [0] * (100 - (full_right or {}).get(t, 80) - shift)
                       for t in "xy"}
            half = [1] * (60 + shift) + [0] * (40 - shift)
            m = [1] * (merged + shift) + [0] * (100 - merged - shift)
            ev = lambda name, c: _fake_eval(root / f"eval-{method}-{seed}-{name}", c)  # noqa: E731 (unique stage names)
            runs[method][seed] = {
                "single": {"1": {t: ev(f"s1-{t}", full_of[t]) for t in "xy"},
                           "0.5": {t: ev(f"s05-{t}", half) for t in "xy"}},
                "merged": {"1": {t: ev(f"m1-{t}", m) for t in "xy"}, "0.5": {t: ev(f"m05-{t}", m) for t in "xy"}},
                "dev_merged": {"1": {t: ev(f"d1-{t}", [1] * 10) for t in "xy"},
                               "0.5": {t: ev(f"d05-{t}", [0] * 10) for t in "xy"}}}
    return runs


def test_table_separates_down_weighting_from_interference_at_the_run_level(tmp_path):
    """Hand-made outcomes: scaling to 0.5 loses 20 of 100 items, merging loses 30 more (method a) or none (b)."""
    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60})
    store = collect(runs, {"x": runs["a"]["1"]["single"]["1"]["x"]}, None)
    st = Stats(alpha=0.05, margin=0.05)
    rows = {(r["method"], r["task"], r["weight"]): r for r in merge_rows(store, store.layout["runs"], st)}
    r = rows[("a", "x", 0.5)]
    assert r["downweighting_loss"]["estimate"] == pytest.approx(0.2) and r["downweighting_loss"]["verdict"] == "different"
    assert r["interference"]["estimate"] == pytest.approx(0.3) and r["interference"]["n_seeds"] == 3
    b = rows[("b", "x", 0.5)]
    assert b["interference"]["estimate"] == 0 and b["interference"]["verdict"] == "equivalent"
    assert b["interference_vs_ref"]["estimate"] == pytest.approx(-0.3) and b["interference_vs_ref"]["significant"]
    assert r["single"]["n_items"] == 100 and r["single"]["seeds"] == 3
    assert r["single"]["per_seed"] == pytest.approx([0.60, 0.61, 0.62])
    assert r["single"]["low"] < 0.61 < r["single"]["high"]  # a t-interval over the three runs
    # the summary pools both tasks: b's merged model keeps 0.6, a's 0.3, at both weights
    heads = {(h["method"], h["weight"]): h for h in headline(store, store.layout["runs"], st)}
    assert set(heads) == {(m, w) for m in "ab" for w in (0.5, 1.0)}
    kept = heads[("b", 0.5)]["merged_vs_ref"]
    assert kept["estimate"] == pytest.approx(0.3) and kept["verdict"] == "different" and kept["n_items"] == 200
    assert heads[("b", 0.5)]["merged"]["mean"] == pytest.approx(0.61) and "merged_vs_ref" not in heads[("a", 0.5)]
    assert "merged accuracy 0.610" in "\n".join(verdicts(list(heads.values()), "a"))


def test_primary_endpoint_uses_each_runs_dev_chosen_weight(tmp_path):
    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60})
    store = collect(runs, {"x": runs["a"]["1"]["single"]["1"]["x"]}, None)
    primary = primary_rows(store, store.layout["runs"], Stats(0.05, 0.05), "dev")
    rows = {r["method"]: r for r in primary["rows"]}
    assert rows["b"]["weights"] == {"1": "1", "2": "1", "3": "1"}  # dev: all right at w = 1, none at 0.5
    assert rows["b"]["vs_ref"]["estimate"] == pytest.approx(0.3) and rows["b"]["vs_ref"]["p_holm"] < 0.05
    assert "p_holm" not in rows["a"]  # the reference


def test_an_exploratory_primary_endpoint_reads_only_the_tasks_every_run_learned(tmp_path):
    from lorikit.analysis.study.report import markdown
    from lorikit.analysis.study.summary import summarize

    # x learned (95-97 of 100 at w = 1) by every run of both methods, y by none (80-82): the exploratory
    # endpoint is the primary one over x alone, labelled as not declared, with its own Holm family
    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60}, full_right={"x": 95})
    base = {t: runs["a"]["1"]["single"]["1"][t] for t in "xy"}
    study = summarize(collect(runs, base, None))
    learned = study["primary_learned"]
    assert learned["tasks"] == ["x"] and study["primary"]["tasks"] == ["x", "y"]
    b = next(r for r in learned["rows"] if r["method"] == "b")["vs_ref"]
    assert b["n_items"] == 100 and b["estimate"] == pytest.approx(0.3) and "p_holm" in b
    text = markdown(study, figures=False)
    assert "## Exploratory: the primary endpoint over the tasks every run learned" in text
    assert "over the test items of x only" in text and "Not declared before the study ran" in text
    # every task learned, or none: nothing exploratory to add
    for full in ({"x": 95, "y": 95}, {}):
        runs = _hand_made_runs(tmp_path / str(len(full)), {"a": 30, "b": 60}, full_right=full)
        assert "primary_learned" not in summarize(collect(runs, {t: runs["a"]["1"]["single"]["1"][t] for t in "xy"}, None))


def test_one_seed_gives_no_run_level_interval(tmp_path):
    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60}, seeds=("1",))
    store = collect(runs, {"x": runs["a"]["1"]["single"]["1"]["x"]}, None)
    rows = merge_rows(store, store.layout["runs"], Stats(0.05, 0.05))
    r = next(r for r in rows if r["method"] == "b" and r["weight"] == 0.5)
    assert np.isnan(r["interference_vs_ref"]["low"]) and r["interference_vs_ref"]["verdict"] == "inconclusive"
    from lorikit.analysis.study.cells import comparison
    assert comparison(r["interference_vs_ref"]).endswith("no test with one run")


def test_holm_adjusts_the_secondary_comparisons_together(tmp_path):
    from lorikit.analysis.study.summary import summarize

    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60})
    store = collect(runs, {"x": runs["a"]["1"]["single"]["1"]["x"], "y": runs["a"]["1"]["single"]["1"]["y"]}, None)
    study = summarize(store)
    comps = [r["interference"] for r in study["merge"]]
    assert all("p_holm" in c and c["p_holm"] >= c["p"] for c in comps)
    assert study["n_secondary"] > len(comps)


def test_holm_adjusts_the_equivalence_tests_of_a_family_too():
    from lorikit.analysis.study.cells import comparison, holm_verdict
    from lorikit.analysis.study.table import adjust

    # three TOSTs at 0.035, 0.3, 0.4: alone the first says "equivalent", Holm over three makes it 0.105
    family = [{"estimate": 0.01, "low": -0.02, "high": 0.04, "p": 0.5, "tost_p": t, "verdict": v}
              for t, v in ((0.035, "equivalent"), (0.3, "inconclusive"), (0.4, "inconclusive"))]
    adjust(family, 0.05)
    assert family[0]["tost_p_holm"] == pytest.approx(0.105) and not family[0]["equivalent_holm"]
    assert holm_verdict(family[0]) == "inconclusive (equivalent before Holm)"
    assert "inconclusive (equivalent before Holm)" in comparison(family[0])
    alone = [dict(family[0])]
    adjust(alone, 0.05)  # a family of one: nothing to adjust
    assert alone[0]["equivalent_holm"] and holm_verdict(alone[0]) == "equivalent"


def test_outcomes_file_recomputes_the_same_study(tmp_path):
    from lorikit.analysis.study.outcomes import load
    from lorikit.analysis.study.summary import summarize

    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60})
    store = collect(runs, {"x": runs["a"]["1"]["single"]["1"]["x"]}, None)
    store.save(tmp_path / "o.json.gz")
    again = load(tmp_path / "o.json.gz")
    assert json.dumps(summarize(again), default=str) == json.dumps(summarize(store), default=str)
    store.save(tmp_path / "o2.json.gz")  # the same outcomes, byte for byte
    assert (tmp_path / "o.json.gz").read_bytes() == (tmp_path / "o2.json.gz").read_bytes()


def test_evals_on_different_items_are_refused(tmp_path):
    runs = _hand_made_runs(tmp_path, {"a": 30, "b": 60})
    bad = runs["b"]["2"]["merged"]["0.5"]["x"]
    record = json.loads((Path(bad) / "result.json").read_text())
    record["records"][0]["id"] = "other"
    (Path(bad) / "result.json").write_text(json.dumps(record))
    store = collect(runs, {"x": runs["a"]["1"]["single"]["1"]["x"]}, None)
    with pytest.raises(Exception, match="different test items"):
        merge_rows(store, store.layout["runs"], Stats(0.05, 0.05))


@pytest.mark.slow  # ~120 stages; the demo test runs the study path (one seed) in the fast suite
def test_study_runs_end_to_end_on_tiny_model_and_resumes(tmp_path, capsys):
    cfg = {**TINY, "workdir": str(tmp_path / "study"), "tasks": ["pair-greater", "pair-add"],
           "methods": ["lora", "lori-d", "lori-s"], "continual": {"first": "pair-greater", "then": "pair-add"}}
    f = tmp_path / "study.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert main(["study", str(f)]) == 0
    out = capsys.readouterr().out
    assert "## Merging: down-weighting vs interference" in out and "## Continual learning" in out
    study = json.loads((tmp_path / "study" / "table" / "study.json").read_text())
    assert study["seeds"] == ["1", "2"] and study["n_items"] == {"pair-greater": 4, "pair-add": 4}
    assert {(r["method"], r["weight"]) for r in study["merge"]} == {(m, w) for m in ("lora", "lori-d", "lori-s")
                                                                    for w in (0.5, 1.0)}
    row = study["merge"][0]
    assert {"single", "merged", "downweighting_loss", "interference"} <= set(row)
    assert [r["method"] for r in study["continual"]] == ["lora (B only)", "lori-d", "lori-s"]
    # every training counts in the plateau share, the continual arm's second trainings too
    kinds = [st["kind"] for st in study_recipe(StudyConfig(**cfg))["stages"].values()]
    assert study["convergence"]["adapters"] == kinds.count("train") == 12 + 6
    assert len(study["prediction"]["points"]) == 6  # 3 methods × 2 seeds × 1 pair
    assert (tmp_path / "study" / "table" / "interference.png").is_file()
    meta = json.loads((tmp_path / "study" / "lori-d-s2-pair-add" / "lorikit.json").read_text())
    assert meta["early_stopping"]["chosen_step"] in (1, 2)
    # resume: nothing left to run
    assert main(["study", str(f)]) == 0
    assert " 0 to run" in capsys.readouterr().out

    # bench_study.py --progress: every finished eval's items and every training's record, no table
    from lorikit.analysis.study.outcomes import load
    assert _bench_study().main([str(f), "--name", "tiny", "--progress", "--results", str(tmp_path / "res")]) == 0
    progress = load(tmp_path / "res" / "science-tiny-progress.json.gz").data
    kinds = [st["kind"] for st in study_recipe(StudyConfig(**cfg))["stages"].values()]
    assert len(progress["evals"]) == kinds.count("eval") and len(progress["trainings"]) == kinds.count("train")
    assert len(progress["evals"]["eval-lora-s1-merged-w1-pair-add"]["ids"]) == 4
    capsys.readouterr()

    # --status: everything done; then one eval's record gone and a training under way
    assert main(["study", str(f), "--status"]) == 0
    out = capsys.readouterr().out
    stages = parse_recipe(study_recipe(StudyConfig(**cfg)), workdir=tmp_path / "study").stages
    n, trainings = len(stages), sum(st.kind == "train" for st in stages.values())
    assert f"{n} of {n} stages done" in out and "time left at the measured costs: 0 s of stage time" in out
    assert f"trainings finished: {trainings}; " in out and "steps run median" in out
    assert "seeds finished for every method: 1, 2 of 2" in out
    (tmp_path / "study" / "eval-lora-s1-merged-w1-pair-add" / "lorikit-stage.json").unlink()
    (tmp_path / "study" / "lora-s1-pair-add" / "lorikit-stage.json").unlink()
    state = tmp_path / "study" / "lora-s1-pair-add.ckpt" / "step-000001"
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps({"step": 1}))
    assert main(["study", str(f), "--status"]) == 0
    out = capsys.readouterr().out
    plans = plan_recipe(parse_recipe(study_recipe(StudyConfig(**cfg)), workdir=tmp_path / "study"), resume=True)
    left = [p.name for p in plans if p.status != "done"]  # the two and everything downstream of them
    assert {"eval-lora-s1-merged-w1-pair-add", "lora-s1-pair-add", "table"} <= set(left) and len(left) < n
    assert f"{n - len(left)} of {n} stages done" in out
    assert "seeds finished for every method: 2 of 2" in out  # seed 1 lost a training and an eval
    assert "under way: lora-s1-pair-add: resume state at step 1 (cap 2)" in out
    assert "measured: train builtin:pair-add:" in out and "of stage time" in out
    # tiny stages take a second or less: the estimate is read from the status, not its rounded text
    from lorikit.study.progress import study_status
    assert study_status(StudyConfig(**cfg))["seconds_left"] > 0


def test_status_of_a_study_not_started_estimates_nothing_and_writes_nothing(tmp_path, capsys):
    cfg = {**TINY, "workdir": str(tmp_path / "study"), "tasks": ["pair-greater", "pair-add"], "methods": ["lora"]}
    f = tmp_path / "study.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert main(["study", str(f), "--status"]) == 0
    out = capsys.readouterr().out
    n = len(study_recipe(StudyConfig(**cfg))["stages"])
    assert f"0 of {n} stages done" in out and "seeds finished for every method: none of 2" in out
    assert "time left: not estimated (no stage has finished yet" in out and "of stage time" not in out
    assert not (tmp_path / "study").exists()


def test_status_left_only_with_unmeasured_kinds_says_not_estimated_not_zero():
    from lorikit.study.progress import format_status

    status = {"workdir": "w", "stages": 10, "resume_from": None, "seeds_whole": [], "seeds": [1],
              "kinds": {"train": {"done": 1, "missing": 3}}, "trainings_stopped": {}, "steps_run": [],
              "under_way": [], "seconds_left": 0.0, "not_estimated": {"train": 3}, "workers": 2,
              "costs": {"osrm-stats": (1, 150.0)}}
    out = format_status(status)
    assert "time left: not estimated (nothing of their kind finished yet: 3 train)" in out and "of stage time" not in out
    status["seconds_left"], status["not_estimated"] = 300.0, {}
    assert "time left at the measured costs: 5.0 min of stage time, about 2.5 min with 2 workers" in format_status(status)


def test_status_names_the_seeds_whose_merges_are_finished_apart_from_the_continual_arm():
    from lorikit.study.progress import format_status

    status = {"workdir": "w", "stages": 10, "resume_from": None, "seeds_whole": [], "seeds_merges_whole": [1, 2],
              "seeds": [1, 2], "kinds": {"train": {"done": 4, "missing": 2}}, "trainings_stopped": {},
              "steps_run": [], "under_way": [], "seconds_left": 60.0, "not_estimated": {}, "workers": 1,
              "costs": {"train": (4, 30.0)}}
    out = format_status(status)
    assert "seeds finished for every method: 1, 2 of 2; with the continual arm: none of 2" in out
    status["seeds_whole"] = [1, 2]
    assert "seeds finished for every method: 1, 2 of 2\n" in format_status(status) + "\n"


def test_choice_tasks_come_from_the_builtin_registry():
    from lorikit.data.builtin import TASKS, builtin_rows
    from lorikit.study.config import CHOICE_BUILTINS, parse_task

    assert set(CHOICE_BUILTINS) == {"compare", "pair-max", "pair-min", "pair-greater", "sentiment", "py-type", "parity"}
    for name, task in TASKS.items():  # a task with options in its rows is scored by loglik in a study
        row = builtin_rows(name, "test", 1)[0]
        assert task.choice == ("options" in row or task.scorer == "nlu"), name
        assert parse_task(name, None, "s.yaml", "loglik").scoring == ("loglik" if task.choice else "generate")


STUDIES = sorted((Path(__file__).resolve().parents[1] / "bench" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_committed_study_files_load_and_build_valid_recipes(path):
    from lorikit.pipeline.recipe import parse_recipe
    cfg = load_study_config(str(path))
    recipe = parse_recipe(study_recipe(cfg), source=str(path), workdir=cfg.workdir)
    assert "table" in recipe.stages and any(s.startswith("eval-") for s in recipe.stages)


def test_real_data_replication_reuses_the_seed_one_stages():
    # the replication file says it reuses smollm2-real.yaml's stages: same names must mean same settings
    studies = {p.stem: study_recipe(load_study_config(str(p)))["stages"] for p in STUDIES}
    arm, replication = studies["smollm2-real"], studies["smollm2-real-seeds"]
    shared = (set(arm) & set(replication)) - {"table"}
    assert {"lora-s1-safety", "lori-d-s1-boolq", "eval-lori-d-s1-merged-w0p5-safety"} <= shared
    assert {name for name in shared if arm[name] != replication[name]} == set()
    assert "lora-s3-safety" in replication and "lora-s3-safety" not in arm


def _labelled_eval(path: Path, answers: list[str], golds: list[str]) -> str:
    path.mkdir(parents=True)
    records = [{"id": str(i), "extracted": a, "gold": g, "correct": a == g} for i, (a, g) in enumerate(zip(answers, golds))]
    (path / "result.json").write_text(json.dumps({"score": float(np.mean([r["correct"] for r in records])),
                                                  "records": records}))
    return str(path)


def test_one_answer_check_flags_an_adapter_that_learned_the_label_prior(tmp_path):
    from lorikit.analysis.study.checks import one_answer_adapters
    from lorikit.analysis.study.report import one_answer_section
    golds = ["true"] * 60 + ["false"] * 40
    prior = _labelled_eval(tmp_path / "prior", ["true"] * 97 + ["false"] * 3, golds)
    learned = _labelled_eval(tmp_path / "learned", golds[:90] + ["true"] * 10, golds)  # right on 90 %
    no_gold = _fake_eval(tmp_path / "refusals", [1] * 100)  # refusal-style records: no gold answers
    runs = {"lora": {"1": {"single": {"1": {"boolq": prior, "safety": no_gold}}}},
            "lori-d": {"1": {"single": {"1": {"boolq": learned, "safety": no_gold}}}}}
    flags = one_answer_adapters(collect(runs, {}, None), collect(runs, {}, None).layout["runs"])
    assert [(f["method"], f["task"], f["answer"]) for f in flags] == [("lora", "boolq", "true")]
    assert flags[0]["share"] == pytest.approx(0.97) and flags[0]["gold_share"] == pytest.approx(0.6)
    text = "\n".join(one_answer_section(flags))
    assert "lora seed 1, boolq: answers 'true' on 97% of the 100 items" in text and "60%" in text
    assert one_answer_section([]) == []


def test_default_suite_reads_different_inputs_and_the_conflict_suite_the_same():
    from lorikit.data.builtin import TASKS, builtin_rows, content_key
    from lorikit.demo import DemoConfig, study_config

    default = StudyConfig()
    assert default.suite == "papers" and list(default.task_specs) == ["pair-max", "words-reverse", "parity", "py-type"]
    full = study_config(DemoConfig(full=True))
    assert full.task_specs.keys() == default.task_specs.keys() and full.continual["plain_lora"] is True
    # the papers' setting: no two default tasks share a family or any test input's content
    assert len({TASKS[t].family or t for t in default.task_specs}) == len(default.task_specs)
    keys = {t: {content_key(r["input"]) for r in builtin_rows(t, "test", 100)} for t in default.task_specs}
    assert all(not keys[a] & keys[b] for a in keys for b in keys if a < b)
    # the stress test: one family, the same test inputs for every task
    conflict = StudyConfig(suite="conflict")
    inputs = {t: [r["input"] for r in builtin_rows(t, "test", 20)] for t in conflict.task_specs}
    assert len({tuple(v) for v in inputs.values()}) == 1 and len(inputs) == 4


def test_primary_endpoint_must_be_declared_as_dev_or_a_weight():
    assert StudyConfig(primary="0.5").primary_weight == "0.5"
    with pytest.raises(UsageError, match="--primary '0.4'"):
        StudyConfig(primary="0.4")


def _bench_study():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_study.py"
    spec = importlib.util.spec_from_file_location("bench_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verify_recomputes_a_committed_tiny_study_and_catches_any_changed_number(tmp_path, capsys):
    """The check `bench_study.py --verify` runs on bench/RESULTS.md, on a tiny committed study."""
    bench = _bench_study()
    data = Path(__file__).parent / "data" / "study"
    assert bench.verify(data / "RESULTS.md", data) == 0
    text = (data / "RESULTS.md").read_text()
    assert "0.610 [0.585, 0.635]" in text
    tampered = tmp_path / "RESULTS.md"
    tampered.write_text(text.replace("0.610 [0.585, 0.635]", "0.610 [0.584, 0.635]", 1))
    assert bench.verify(tampered, data) == 1
    assert "differs from the numbers recomputed" in capsys.readouterr().err
    assert bench.verify(data / "RESULTS.md", tmp_path) == 1  # the outcomes file is missing


def test_quote_writes_a_study_block_that_verify_then_accepts(tmp_path, capsys):
    """`bench_study.py --quote NAME` rewrites only NAME's block, from its committed outcomes."""
    bench = _bench_study()
    data = Path(__file__).parent / "data" / "study"
    text = (data / "RESULTS.md").read_text()
    stale = tmp_path / "RESULTS.md"
    stale.write_text("intro\n" + text.replace("0.610 [0.585, 0.635]", "0.999 [0.585, 0.635]", 1) + "outro\n")
    assert bench.verify(stale, data) == 1
    assert bench.main(["--quote", "tiny", "--results-md", str(stale), "--results", str(data)]) == 0
    assert stale.read_text() == "intro\n" + text + "outro\n" and bench.verify(stale, data) == 0
    assert not stale.with_suffix(".md.tmp").exists()
    capsys.readouterr()
    assert bench.main(["--quote", "other", "--results-md", str(stale), "--results", str(data)]) == 2
    assert "no <!-- study:other --> ... <!-- /study:other --> markers" in capsys.readouterr().err
    (tmp_path / "m.md").write_text("<!-- study:tiny -->\nold\n<!-- /study:tiny -->\n")
    assert bench.main(["--quote", "tiny", "--results-md", str(tmp_path / "m.md"), "--results", str(tmp_path)]) == 2
    assert "science-tiny-outcomes.json.gz: missing" in capsys.readouterr().err
    assert "old" in (tmp_path / "m.md").read_text()  # nothing half-written



def test_plateau_threshold_reaches_every_training_and_is_validated():
    # with min_delta 0 a dev loss creeping down by 1e-5 near zero never plateaus: the study's rule is 1e-3
    cfg = StudyConfig(tasks=["pair-max", "parity"], methods=["lora"], seeds=[1])
    assert cfg.min_delta == 1e-3
    assert study_recipe(cfg)["defaults"]["train"]["min_delta"] == 1e-3
    with pytest.raises(UsageError, match="--min-delta -0.1"):
        StudyConfig(min_delta=-0.1)


def test_workers_run_each_seed_share_in_its_own_process_and_make_the_same_study(tmp_path, capsys):
    import gzip

    import torch

    # tasks as a mapping, as study files give real data: the workers' settings must carry it over
    base = {**TINY, "tasks": {"pair-max": None, "parity": None}, "methods": ["lora"], "pair_weight": None}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers get cores // 2 threads: one on CI's 2 cores
    try:
        for name, workers in (("one", 1), ("two", 2)):
            f = tmp_path / f"{name}.yaml"
            f.write_text(yaml.safe_dump({**base, "workdir": str(tmp_path / name), "workers": workers}))
            assert main(["study", str(f)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "2 groups of stages, 2 workers" in out
    logs = [(tmp_path / "two" / "workers" / f"worker-{k}.log").read_text() for k in (0, 1)]
    # each seed's group ran in exactly one worker, whole (a group is claimed once)
    for seed in (1, 2):
        ran = [log for log in logs if f"lora-s{seed}-pair-max done" in log]
        assert len(ran) == 1 and f"eval-lora-s{seed}-merged-w0p5-parity done" in ran[0]
    assert "eval-base-parity done" not in "".join(logs)  # the shared stages ran once, in the parent
    assert not list((tmp_path / "two" / "workers").glob("claims-*"))

    def outcomes(name):
        with gzip.open(tmp_path / name / "table" / "outcomes.json.gz", "rt") as fh:
            return json.load(fh)

    one, two = outcomes("one"), outcomes("two")
    assert len(one["evals"]) > 10 and one["evals"] == two["evals"] and one["trainings"] == two["trainings"]
    assert (tmp_path / "one" / "table" / "table.md").read_text() == (tmp_path / "two" / "table" / "table.md").read_text()
    # --fresh with workers redoes every stage, the table too (its hash is of settings, not of its inputs)
    record = tmp_path / "two" / "table" / "lorikit-stage.json"
    before = json.loads(record.read_text())["finished"]
    time.sleep(1.1)
    assert main(["study", str(tmp_path / "two.yaml"), "--fresh"]) == 0
    assert json.loads(record.read_text())["finished"] != before


def test_stage_groups_are_independent_and_keep_lori_s_with_its_lori_d(tmp_path):
    from lorikit.pipeline.recipe import parse_recipe
    from lorikit.study.workers import TABLE, claim, shared_stages, stage_groups, stages_by_seed

    cfg = StudyConfig(tasks=["pair-max", "parity"], methods=["lora", "lori-d", "lori-s", "osrm"], seeds=[1, 2])
    recipe = parse_recipe(study_recipe(cfg), workdir=tmp_path)
    shared = shared_stages(stages_by_seed(cfg)) | {TABLE}
    assert "osrm-stats" in shared and "eval-base-parity" in shared
    groups = stage_groups(recipe, shared)
    assert len(groups) == 2 * 3  # per seed: lora, osrm, and lori-d with the lori-s runs that use its mask
    where = {n: i for i, g in enumerate(groups) for n in g}
    for name, stage in recipe.stages.items():
        for parent in stage.parents:
            if name in where and parent in where:
                assert where[name] == where[parent], (name, parent)
    assert where["lori-s-s1-pair-max"] == where["lori-d-s1-pair-max"] != where["lori-d-s2-pair-max"]
    assert set(where) == set(recipe.stages) - shared
    assert claim(tmp_path, 0) and not claim(tmp_path, 0) and claim(tmp_path, 1)


def test_the_queue_takes_groups_a_run_started_first_then_seed_by_seed_largest_first(tmp_path):
    from types import SimpleNamespace

    from lorikit.study.workers import queue_order

    def plan(kind: str, done: bool, name: str = "x") -> SimpleNamespace:
        return SimpleNamespace(kind=kind, status="done" if done else "missing", out=tmp_path / name)

    plans = {"a1": plan("train", False), "a1e": plan("eval", False),  # seed 1, small, not started
             "b1": plan("train", False), "b1t": plan("train", False),  # seed 1, larger, not started
             "c2": plan("train", True), "c2t": plan("train", False),  # seed 2, started here
             "d2": plan("train", False)}  # seed 2, not started
    rank = {"a1": 0, "b1": 0, "c2": 1, "d2": 1}
    groups = [["a1", "a1e"], ["b1", "b1t"], ["d2"], ["c2", "c2t"]]
    assert queue_order(groups, plans, rank) == [["c2", "c2t"], ["b1", "b1t"], ["a1", "a1e"], ["d2"]]
    # a training killed mid-way (a resume state, nothing finished) counts as started too
    plans["d2"] = plan("train", False, "d2")
    state = tmp_path / "d2.ckpt" / "step-000020"
    state.mkdir(parents=True)
    (state / "state.json").write_text('{"step": 20}')
    assert queue_order(groups, plans, rank)[:2] == [["d2"], ["c2", "c2t"]]


def test_workers_are_counted_in_groups_not_seeds():
    # one seed holds a group per method family (LoRA, LoRI-D with its LoRI-S, OSRM): two workers can share it
    assert StudyConfig(seeds=[5], workers=2).workers == 2
    with pytest.raises(UsageError, match="--workers 0: must be at least 1"):
        StudyConfig(seeds=[1, 2], workers=0)


def test_a_task_can_cut_its_own_training_rows_and_only_its_stages_change():
    safety = {"train": "../rows.jsonl", "test": "../test.jsonl", "task": "safety"}
    plain = study_recipe(StudyConfig(tasks={"pair-max": None, "safety": safety}, methods=["lora"], seeds=[1]))
    cut = study_recipe(StudyConfig(tasks={"pair-max": None, "safety": {**safety, "max_length": 192}},
                                   methods=["lora"], seeds=[1]))
    assert cut["stages"]["lora-s1-safety"]["max_length"] == 192 and "max_length" not in plain["stages"]["lora-s1-safety"]
    assert cut["stages"]["lora-s1-pair-max"] == plain["stages"]["lora-s1-pair-max"]
    assert cut["defaults"] == plain["defaults"]
    with pytest.raises(UsageError, match="max_length must be a positive number of tokens"):
        StudyConfig(tasks={"pair-max": None, "safety": {**safety, "max_length": 0}})


def _accuracy_eval(path: Path, right: int) -> str:
    return _fake_eval(path, [1] * right + [0] * (100 - right))


def test_learned_counts_runs_at_the_declared_accuracy_and_checks_the_suite_premise(tmp_path):
    from lorikit.analysis.study.checks import learned_rows
    from lorikit.analysis.study.report import learned_section

    right = {"a": {"x": (95, 90, 100), "y": (97, 96, 99)}, "b": {"x": (89, 99, 99), "y": (99, 99, 99)}}
    runs = {m: {str(s + 1): {"single": {"1": {t: _accuracy_eval(tmp_path / f"{m}-{s}-{t}", right[m][t][s])
                                              for t in "xy"}}} for s in range(3)} for m in "ab"}
    store = collect(runs, {}, None)
    rows = {(r["task"], r["method"]): r for r in learned_rows(store, store.layout["runs"], 0.9, 0.05)}
    assert rows[("x", "a")]["learned_runs"] == 3  # 0.90 exactly counts as learned
    assert rows[("x", "b")]["learned_runs"] == 2 and rows[("x", "b")]["not_learned"] == ["1"]
    from statsmodels.stats.proportion import proportion_confint
    # pooled over runs: 285 of 300, Wilson lower bound 0.919 (statsmodels' Wilson as the reference): met
    low, _ = proportion_confint(285, 300, alpha=0.05, method="wilson")
    assert rows[("x", "a")]["pooled"]["low"] == pytest.approx(low, abs=1e-9) and rows[("x", "a")]["premise_met"]
    assert rows[("y", "b")]["premise_met"] and rows[("y", "b")]["pooled"]["n"] == 300
    strict = {(r["task"], r["method"]): r for r in learned_rows(store, store.layout["runs"], 0.95, 0.05)}
    assert not strict[("x", "a")]["premise_met"] and strict[("x", "a")]["learned_runs"] == 2
    two = {m: {s: runs[m][s] for s in ("1", "2")} for m in runs}  # two runs: the premise needs three
    assert not any(r["premise_met"] for r in learned_rows(collect(two, {}, None), collect(two, {}, None).layout["runs"],
                                                          0.5, 0.05))
    text = "\n".join(learned_section(list(rows.values()), 0.9, 0.05))
    assert "| x | b | 2 of 3 (not: seed 1) | 0.957 [" in text and "**not met**" not in text.split("| x | a |")[1][:80]


def test_plain_lora_control_adds_its_own_adapters_trained_a_and_b_and_leaves_the_study_s_stages(tmp_path):
    """continual.plain_lora: per seed a LoRA adapter of the arm's own on `first`, continued on `then`
    with --continue-a (A and B), scored before and after, and first in the layout (the reference);
    every other stage is the one the study had without it."""
    common = dict(workdir=str(tmp_path), tasks=["pair-add", "pair-max", "pair-greater"], seeds=[1, 2],
                  methods=["lora", "lori-d", "lori-s"])
    without = study_recipe(StudyConfig(**common, continual={"first": "pair-greater", "then": "pair-add"}))
    plain = study_recipe(StudyConfig(**common, continual={"first": "pair-greater", "then": "pair-add",
                                                          "plain_lora": True}))
    added = set(plain["stages"]) - set(without["stages"])
    assert all(plain["stages"][n] == without["stages"][n] for n in without["stages"] if n != "table")
    for s in (1, 2):
        own, after = f"plain-lora-s{s}-pair-greater", f"continual-plain-lora-s{s}-pair-greater-pair-add"
        assert {own, after, f"eval-{own}", f"eval-{own}-on-pair-add", f"eval-{after}-pair-greater",
                f"eval-{after}-pair-add"} <= added
        assert plain["stages"][own] == without["stages"][f"lora-s{s}-pair-greater"]
        cont = plain["stages"][after]
        assert cont["continue_a"] is True and cont["method"] == "lora" and cont["from_adapter"] == f"${own}"
        assert "seed" not in cont  # A, B and the run's seed come from the arm's own adapter
        # the B-only LoRA arm is still there, as it was
        assert "continue_a" not in plain["stages"][f"continual-lora-s{s}-pair-greater-pair-add"]
    assert len(added) == 12
    layout = plain["stages"]["table"]["continual"]["methods"]
    # the LoRA arm continued by lorikit's --from rule trains B alone, and is named so
    assert list(layout)[0] == "plain-lora" and list(layout)[1:] == ["lora (B only)", "lori-d", "lori-s"]
    assert layout["plain-lora"]["1"]["single"] == {"pair-add": "$eval-lora-s1-pair-add"}
    with pytest.raises(UsageError, match="plain_lora: expected true or false"):
        StudyConfig(**common, continual={"first": "pair-greater", "then": "pair-add", "plain_lora": "yes"})
    with pytest.raises(UsageError, match="plain_lora: needs lora among 'methods'"):
        StudyConfig(**{**common, "methods": ["lori-d", "lori-s"]},
                    continual={"first": "pair-greater", "then": "pair-add", "plain_lora": True})


def test_the_headline_study_s_committed_stages_keep_their_hashes(tmp_path):
    """Every stage whose result bench/results/science-headline-progress.json.gz holds is planned with the
    same hash by today's code and study file: --resume-from keeps taking them (plain_lora added stages)."""
    import gzip

    root = Path(__file__).resolve().parents[1]
    cfg = load_study_config(str(root / "bench/studies/headline.yaml"))
    cfg.workdir = str(tmp_path / "w")
    hashes = {p.name: p.hash for p in plan_recipe(parse_recipe(study_recipe(cfg), source="t", workdir=cfg.workdir))}
    committed = json.loads(gzip.decompress((root / "bench/results/science-headline-progress.json.gz").read_bytes()))
    changed = [n for n, h in committed["stage_hashes"].items() if hashes.get(n) != h]
    assert len(committed["stage_hashes"]) > 600 and not changed, changed[:5]
    assert cfg.continual["plain_lora"] is True and "continual-plain-lora-s5-safety-parity" in hashes


def test_continual_forgetting_is_compared_again_on_the_runs_that_learned_both_tasks(tmp_path):
    from lorikit.analysis.study.report import continual_table
    from lorikit.analysis.study.table import continual_rows

    # (first before, first after, then after) per seed; lora's seed 2 never learned 'then' (0.50)
    plan = {"lora": [(95, 75, 95), (96, 96, 50), (94, 74, 97)], "lori-s": [(95, 93, 95), (97, 77, 96), (93, 92, 91)]}
    methods = {}
    for method, seeds in plan.items():
        methods[method] = {}
        for k, (before, after, then_after) in enumerate(seeds, 1):
            ev = lambda name, right, m=method, k=k: _accuracy_eval(tmp_path / f"{m}-{k}-{name}", right)  # noqa: E731
            methods[method][str(k)] = {"before": {"f": ev("bf", before), "t": ev("bt", 50)},
                                       "after": {"f": ev("af", after), "t": ev("at", then_after)},
                                       "single": {"t": ev("st", 98)}}
    store = collect({}, {}, {"first": "f", "then": "t", "methods": methods})
    rows = {r["method"]: r for r in continual_rows(store, store.layout["continual"], Stats(0.05, 0.05), 0.9)}
    assert rows["lora"]["learned_both"] == ["1", "3"] and rows["lori-s"]["learned_both"] == ["1", "2", "3"]
    every = rows["lori-s"]["forgetting_vs_ref"]  # (2, 20, 1) - (20, 0, 20) over all three runs
    assert every["n_seeds"] == 3 and every["estimate"] == pytest.approx((-18 + 20 - 19) / 300)
    learned = rows["lori-s"]["forgetting_vs_ref_learned"]  # seeds 1 and 3 only: lora's seed 2 did not learn 't'
    assert rows["lori-s"]["learned_both_with_ref"] == ["1", "3"]
    assert learned["n_seeds"] == 2 and learned["estimate"] == pytest.approx((-18 - 19) / 200)
    table = continual_table(list(rows.values()), 0.9)
    assert "| 2 of 3 (seeds 1, 3) | control |" in table and "| 3 of 3 | -0.185 [" in table

    from PIL import Image

    from lorikit.analysis.study.figures import plot_continual

    plot_continual(tmp_path / "continual.png", list(rows.values()), 0.05)
    with Image.open(tmp_path / "continual.png") as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def test_figures_of_a_committed_study_are_written_from_its_numbers(tmp_path, capsys):
    """bench_study.py collects a study's figures beside its table: real PNGs, one per plot with data."""
    from PIL import Image

    from lorikit.analysis.study.figures import write_figures
    from lorikit.analysis.study.outcomes import load
    from lorikit.analysis.study.summary import summarize

    study = summarize(load(Path(__file__).parent / "data" / "study" / "science-tiny-outcomes.json.gz"))
    paths = write_figures(tmp_path, study, prefix="science-tiny-")
    assert [p.name for p in paths] == ["science-tiny-primary.png", "science-tiny-interference.png"]  # no pairs
    for p in paths:
        with Image.open(p) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    one = {**study, "primary": {**study["primary"], "rows": [
        {**r, "merged": {**r["merged"], "low": float("nan"), "high": float("nan")}} for r in study["primary"]["rows"]]}}
    write_figures(tmp_path, one)  # one run (no interval) still draws
    assert (tmp_path / "primary.png").stat().st_size > 0


def test_a_study_with_a_continual_arm_draws_and_links_its_continual_figure(tmp_path):
    """The headline's committed outcomes (continual arm included): continual.png is written and linked from
    the table's markdown only where figures are written (RESULTS.md quotes the table without figures)."""
    from lorikit.analysis.study.figures import write_figures
    from lorikit.analysis.study.outcomes import load
    from lorikit.analysis.study.report import markdown
    from lorikit.analysis.study.summary import summarize

    root = Path(__file__).resolve().parents[1]
    study = summarize(load(root / "bench" / "results" / "science-headline-outcomes.json.gz"))
    assert [r["method"] for r in study["continual"]][0] == "plain-lora"
    names = [p.name for p in write_figures(tmp_path, study)]
    assert names == ["primary.png", "interference.png", "continual.png"]
    assert "![continual](continual.png)" in markdown(study, figures=True)
    assert "continual.png" not in markdown(study, figures=False)
