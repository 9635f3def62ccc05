"""Shipped recipes (validate, run end to end on tiny-random-llama), ``--set`` overrides, the
``osrm-stats`` stage kind and the ``FILE?split=dev`` data syntax."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorikit.adapters.masks import load_mask
from lorikit.adapters.state import load_adapter
from lorikit.cli import main
from lorikit.data import load_examples, load_rows
from lorikit.errors import LorikitError, UsageError
from lorikit.pipeline import load_recipe, parse_recipe, plan_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "src" / "lorikit" / "recipes").glob("*.yaml"))
BENCH = sorted((ROOT / "bench" / "recipes").glob("*.yaml"))
# Tiny budgets: 2 steps, 1 eval example of 4 new tokens, on the 2-layer random model.
TINY = ["model=tiny-random-llama", "max_steps=2", "builtin_rows=16", "batch_size=2", "limit=1", "max_new_tokens=4"]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def run_shipped(name: str, workdir: Path, extra: list[str] = ()) -> Path:
    recipe = load_recipe(ROOT / "src" / "lorikit" / "recipes" / f"{name}.yaml", workdir, TINY + list(extra))
    plans = run_recipe(recipe, echo=lambda _: None)
    assert all(p.status == "done" for p in plans)
    return workdir


def score(workdir: Path, stage: str) -> float:
    return json.loads((workdir / stage / "result.json").read_text())["score"]


# ---- every shipped recipe validates ------------------------------------------------------------

def test_recipes_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"lori-single-task", "merge-3tasks", "continual", "osrm-merge"} <= names
    assert {"real-merge", "real-continual", "real-osrm"} <= {p.stem for p in BENCH}


@pytest.mark.parametrize("path", SHIPPED + BENCH, ids=lambda p: p.name)
def test_every_recipe_validates_with_dry_run(path, tmp_path, capsys):
    assert main(["run", str(path), "--dry-run", "--workdir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "to run" in out and not (tmp_path / "w").exists()


# ---- --set / --model ---------------------------------------------------------------------------

RECIPE = {"defaults": {"train": {"model": "smollm2-135m", "max_steps": 30}, "eval": {"model": "smollm2-135m", "task": "builtin"}},
          "stages": {"a": {"kind": "train", "data": "builtin:arithmetic"},
                     "b": {"kind": "train", "data": "builtin:reverse", "max_steps": 5},
                     "e": {"kind": "eval", "adapter": "$a", "data": "builtin:arithmetic:test"}}}


def test_set_replaces_a_setting_wherever_it_is_and_stage_dot_key_sets_one(tmp_path):
    r = parse_recipe(RECIPE, workdir=tmp_path, overrides=["model=tiny-random-llama", "max_steps=2", "e.limit=3"])
    assert [r.stages[s].settings["model"] for s in "abe"] == ["tiny-random-llama"] * 3
    assert r.stages["a"].settings["max_steps"] == 2 and r.stages["b"].settings["max_steps"] == 2  # YAML int
    assert r.stages["e"].settings["limit"] == 3 and "limit" not in r.stages["a"].settings
    # overrides are part of the settings, so they change the stage hashes (and --resume redoes them)
    plain = {p.name: p.hash for p in plan_recipe(parse_recipe(RECIPE, workdir=tmp_path))}
    changed = {p.name: p.hash for p in plan_recipe(r)}
    assert all(plain[s] != changed[s] for s in "abe")


def test_set_can_add_a_reference_which_becomes_a_parent(tmp_path):
    r = parse_recipe(RECIPE, workdir=tmp_path, overrides=["b.from_adapter=$a"])
    assert r.stages["b"].parents == ["a"]


@pytest.mark.parametrize("item, message", [
    ("nope=1", "no stage of"), ("zz.limit=1", "no stage 'zz'"), ("model", "expected KEY=VALUE"),
    (".x=1", "expected KEY=VALUE"), ("e.adapter=$missing", "unknown stage $missing"),
])
def test_bad_overrides_are_refused_by_name(item, message, tmp_path):
    with pytest.raises(UsageError, match=message.replace("$", r"\$")):
        parse_recipe(RECIPE, workdir=tmp_path, overrides=[item])


def test_cli_model_shorthand_and_bad_set_exit_2(tmp_path, capsys):
    path = ROOT / "src" / "lorikit" / "recipes" / "lori-single-task.yaml"
    assert main(["run", str(path), "--dry-run", "--model", "tiny-random-llama", "--workdir", str(tmp_path)]) == 0
    assert main(["run", str(path), "--dry-run", "--set", "no_such_setting=1", "--workdir", str(tmp_path)]) == 2
    assert "no_such_setting" in capsys.readouterr().err


# ---- FILE?split=train|dev ----------------------------------------------------------------------

@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(50)))
    return path


def test_split_carves_disjoint_train_and_dev_covering_every_row(rows_file):
    train, _ = load_rows(f"{rows_file}?split=train")
    dev, _ = load_rows(f"{rows_file}?split=dev")
    assert len(dev) == 5 and len(train) == 45
    ids = lambda rows: {r["instruction"] for r in rows}
    assert not ids(train) & ids(dev) and len(ids(train) | ids(dev)) == 50
    assert load_rows(f"{rows_file}?split=dev")[0] == dev  # fixed seed: the same carve every time
    other, _ = load_rows(f"{rows_file}?split=dev&fraction=0.2&seed=3")
    assert len(other) == 10 and ids(other) != ids(dev)
    # limit applies within the split
    assert [e.prompt for e in load_examples(f"{rows_file}?split=dev", limit=2)] == \
           [e.prompt for e in load_examples(f"{rows_file}?split=dev")][:2]


def test_training_on_the_train_split_never_sees_the_dev_split(rows_file, tmp_path):
    from lorikit.train import Trainer, TrainConfig
    from lorikit.adapters.build import AdapterConfig

    cfg = TrainConfig(out=str(tmp_path / "a"), model="tiny-random-llama", data=f"{rows_file}?split=train",
                      max_steps=1, adapter=AdapterConfig(method="lori-d", rank=2))
    trainer = Trainer(cfg)
    bundle, _, _ = trainer.build_model()
    examples, _ = trainer.load_data(bundle.tokenizer)
    dev = {e.prompt for e in load_examples(f"{rows_file}?split=dev")}
    assert len(examples) == 45 and not {e.prompt for e in examples} & dev


def test_carves_nest_so_a_test_carve_stays_out_of_training_and_dev(rows_file, tmp_path):
    from lorikit.train import TrainConfig

    ids = lambda spec: {r["instruction"] for r in load_rows(spec)[0]}
    test = ids(f"{rows_file}?split=dev&fraction=0.2&seed=7")
    rest = f"{rows_file}?split=train&fraction=0.2&seed=7"
    train, dev = ids(f"{rest}?split=train&fraction=0.25"), ids(f"{rest}?split=dev&fraction=0.25")
    assert (len(test), len(train), len(dev)) == (10, 30, 10)
    assert not test & train and not test & dev and not train & dev and len(test | train | dev) == 50
    # a study's or the trainer's dev carve on data that already selects a split nests the same way
    cfg = TrainConfig(out=str(tmp_path / "x"), data=rest, eval_every=2, dev_fraction=0.25)
    assert ids(cfg.data) == train and ids(cfg.dev_data) == dev
    # the format and built-in scorer come from the source under every carve
    assert len(load_examples("builtin:compare?split=train?split=dev", n_builtin=40)) == 4


@pytest.mark.parametrize("query, message", [
    ("split=test", "split must be train or dev"), ("fraction=0.1", "split must be"),
    ("split=dev&fraction=1.5", "must be in"), ("split=dev&seed=x", "seed an integer"),
    ("split=dev&shuffle=1", "expected ?split"),
])
def test_bad_split_queries_are_usage_errors(rows_file, query, message):
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        load_rows(f"{rows_file}?{query}")


def test_split_of_a_one_row_file_is_refused(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    with pytest.raises(LorikitError, match="too few"):
        load_rows(f"{path}?split=dev")


# ---- osrm-stats kind ---------------------------------------------------------------------------

def test_osrm_stats_stage_validates_its_settings(tmp_path):
    bad = {"stages": {"s": {"kind": "osrm-stats", "data": {"a": 3}}}}
    with pytest.raises(UsageError, match="stage 's' \\(osrm-stats\\).*data"):
        plan_recipe(parse_recipe(bad, workdir=tmp_path))
    unknown = {"stages": {"s": {"kind": "osrm-stats", "data": {"a": "builtin:arithmetic"}, "sample": 3}}}
    with pytest.raises(UsageError, match="unknown setting 'sample'"):
        plan_recipe(parse_recipe(unknown, workdir=tmp_path))


# ---- shipped recipes end to end on tiny-random-llama -------------------------------------------

def test_single_task_recipe_runs_lori_d_masks_lori_s(tmp_path):
    wd = run_shipped("lori-single-task", tmp_path / "r")
    d, s = load_adapter(wd / "lori-d"), load_adapter(wd / "lori-s")
    masks = load_mask(wd / "masks" / "masks" / "0.9_mask.pt", s)
    for name, mod in s.modules().items():
        assert torch.equal(bits(mod.A), bits(d.modules()[name].A))  # LoRI-S keeps LoRI-D's A
        assert (mod.B[~masks[name]] == 0).all()
    for stage in ("eval-base", "eval-lora", "eval-lori-d", "eval-lori-s"):
        assert 0.0 <= score(wd, stage) <= 1.0


def test_merge_recipe_runs_cat_and_linear_with_reference_weights(tmp_path):
    wd = run_shipped("merge-3tasks", tmp_path / "r")
    cat = load_adapter(wd / "merge-lori-s-cat")
    assert cat.config["r"] == 3 * load_adapter(wd / "lori-s-arithmetic").config["r"]  # cat stacks ranks
    table = json.loads((wd / "scores" / "scores.json").read_text())["methods"]
    assert set(table) == {"lori-d cat", "lori-d linear", "lori-s cat", "lori-s linear"}
    assert all(set(t["merged"]) == {"arithmetic", "reverse", "compare"} for t in table.values())
    assert (wd / "scores" / "table.md").read_text().startswith("| method |")
    sweep = json.loads((wd / "report" / "analysis.json").read_text())["sweep"]
    assert [w for w, _ in sweep["lori-d cat: reverse"]] == [0.3, 0.5, 0.7]
    assert sweep["lori-d cat: reverse"][2][1] == score(wd, "eval-lori-d-cat-w0p7-reverse")
    assert (wd / "report" / "sweep.png").is_file() and (wd / "report" / "masks.png").is_file()


def test_continual_recipe_keeps_outside_the_mask_bit_identical_and_reports_forgetting(tmp_path):
    wd = run_shipped("continual", tmp_path / "r")
    parent, child = load_adapter(wd / "compare-s"), load_adapter(wd / "continual-s")
    masks = load_mask(wd / "arithmetic-masks" / "masks" / "0.9_mask.pt", child)
    changed = 0
    for name, mod in child.modules().items():
        p = parent.modules()[name]
        assert torch.equal(bits(mod.A), bits(p.A)), name
        assert torch.equal(bits(mod.B)[~masks[name]], bits(p.B)[~masks[name]]), name
        changed += int((mod.B[masks[name]] != p.B[masks[name]]).sum())
    assert changed > 0
    d_parent, d_child = load_adapter(wd / "compare-d"), load_adapter(wd / "continual-d")
    for name, mod in d_child.modules().items():  # LoRI-D variant: A frozen, B moves
        assert torch.equal(bits(mod.A), bits(d_parent.modules()[name].A))
    assert any(not torch.equal(m.B, d_parent.modules()[n].B) for n, m in d_child.modules().items())
    forgetting = json.loads((wd / "forgetting" / "scores.json").read_text())["methods"]
    assert forgetting["lori-s"]["before"]["compare"] == score(wd, "eval-compare-s-compare")
    assert forgetting["lori-s"]["after"]["compare"] == score(wd, "eval-continual-s-compare")
    assert "compare before" in (wd / "forgetting" / "table.md").read_text()


def test_osrm_recipe_runs_stats_osrm_init_and_ta_ties_emr(tmp_path):
    wd = run_shipped("osrm-merge", tmp_path / "r", ["samples=4"])
    manifest = json.loads((wd / "stats" / "osrm_stats.json").read_text())
    assert set(manifest["tasks"]) == {"arithmetic", "reverse", "compare"}
    meta = load_adapter(wd / "osrm-compare").meta
    assert meta["init"]["kind"] == "osrm" and meta["init"]["task"] == "compare"
    assert load_adapter(wd / "lora-compare").meta.get("init", {}).get("kind") != "osrm"
    emr_evals = [json.loads((wd / f"eval-osrm-emr-{t}" / "result.json").read_text()) for t in ("arithmetic", "compare")]
    assert [e["settings"]["emr_task"] for e in emr_evals] == ["arithmetic", "compare"]
    methods = json.loads((wd / "scores" / "scores.json").read_text())["methods"]
    assert set(methods) == {f"{i} {m}" for i in ("lora", "osrm") for m in ("task-arithmetic", "ties", "emr")}
    # --resume on a finished run skips every stage
    recipe = load_recipe(ROOT / "src" / "lorikit" / "recipes" / "osrm-merge.yaml", wd, TINY + ["samples=4"])
    assert all(p.action == "skip" for p in run_recipe(recipe, resume=True, echo=lambda _: None))
