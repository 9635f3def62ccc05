"""merge-search: CMA-ES over merge weights on dev data — planted optima, resume, CLI, stage kind, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
from lorikit.cli import main as cli
from lorikit.data.builtin import builtin_rows
from lorikit.errors import LorikitError, UsageError
from lorikit.search import SearchConfig, merge_search
from lorikit.search import run as search_run
from lorikit.search.cmaes import Space, minimize
from lorikit.search.log import LOG_NAME, EvalLog

pytest.importorskip("cma", reason="the search extra (pip install 'lorikit[search]') provides cma")

TINY = "tiny-random-llama"
SHAPES = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
          "self_attn.o_proj": (64, 64), "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64),
          "mlp.down_proj": (64, 128)}
MODULES = {f"model.layers.{i}.{name}": shape for i in range(2) for name, shape in SHAPES.items()}


def random_adapter(path, seed: int, rank: int = 4, scale: float = 0.05) -> str:
    gen = torch.Generator().manual_seed(seed)
    mods = [LoraModule(name, torch.randn(rank, inp, generator=gen) / math.sqrt(inp),
                       torch.randn(out, rank, generator=gen) * scale, 2.0) for name, (out, inp) in MODULES.items()]
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": TINY, "r": rank,
              "lora_alpha": 2.0 * rank, "target_modules": sorted({n.rsplit(".", 1)[-1] for n in MODULES}),
              "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False}
    AdapterState.from_modules(mods, config).save(path)
    return str(path)


def dev_file(path, task: str = "compare", n: int = 8) -> str:
    rows = builtin_rows(task, "dev", 200, 0)[:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def pair(tmp_path):
    """Two random adapters and a dev set for each."""
    return ([random_adapter(tmp_path / "a", 1), random_adapter(tmp_path / "b", 2)],
            [dev_file(tmp_path / "dev-a.jsonl", "compare"), dev_file(tmp_path / "dev-b.jsonl", "reverse")])


def config(adapters, dev, out, **kw) -> SearchConfig:
    return SearchConfig(adapters=adapters, dev=dev, out=str(out), **{"budget": 6, "limit": 4, "device": "cpu", **kw})


# ---- the optimiser on its own ----------------------------------------------------------------------
def test_minimize_finds_a_planted_quadratic_optimum_with_a_knob(tmp_path):
    target = [0.7, -0.4, 0.3]  # two weights in [-1.5, 1.5], a density in [0.05, 1]
    space = Space(["w:a", "w:b", "density"], [-1.5, -1.5, 0.05], [1.5, 1.5, 1.0])

    def f(values):
        return {"objective": sum((v - t) ** 2 for v, t in zip(values, target))}

    records = minimize(f, space, [0.5, 0.5, 0.525], 0.2, 150, 0, EvalLog.open(tmp_path / LOG_NAME, {}),
                       progress=False)
    best = min(records, key=lambda r: r["objective"])
    assert len(records) <= 150 and records[0]["x"] == space.unit([0.5, 0.5, 0.525])
    assert all(abs(v - t) < 0.03 for v, t in zip(space.values(best["x"]), target)), best


def test_minimize_resume_asks_the_same_points_and_evaluates_only_the_rest(tmp_path):
    space = Space(["a", "b"], [-1, -1], [1, 1])
    calls = []

    def f(values):
        calls.append(values)
        if len(calls) == 8 and interrupt:
            raise KeyboardInterrupt
        return {"objective": (values[0] - 0.2) ** 2 + abs(values[1])}

    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        minimize(f, space, [0, 0], 0.3, 20, 3, EvalLog.open(tmp_path / "log.jsonl", {"k": 1}), progress=False)
    assert len(EvalLog.open(tmp_path / "log.jsonl", {"k": 1}).records) == 7
    interrupt, calls[:] = False, []
    resumed = minimize(f, space, [0, 0], 0.3, 20, 3, EvalLog.open(tmp_path / "log.jsonl", {"k": 1}), progress=False)
    assert len(calls) == 13
    fresh = minimize(f, space, [0, 0], 0.3, 20, 3, EvalLog.open(tmp_path / "other.jsonl", {"k": 1}), progress=False)
    assert [r["x"] for r in resumed] == [r["x"] for r in fresh]
    assert [r["objective"] for r in resumed] == [r["objective"] for r in fresh]
    with pytest.raises(UsageError, match="other settings .*k: 1"):
        EvalLog.open(tmp_path / "log.jsonl", {"k": 2})


def test_torn_last_line_is_redone(tmp_path):
    path = tmp_path / "log.jsonl"
    eval_log = EvalLog.open(path, {})
    eval_log.append({"x": [0.1], "objective": 1.0})
    with open(path, "a") as fh:
        fh.write('{"eval": 1, "x": [0.')
    again = EvalLog.open(path, {})
    assert len(again.records) == 1
    again.append({"x": [0.2], "objective": 2.0})
    assert [json.loads(line).get("eval") for line in path.read_text().splitlines()] == [None, 0, 1]


# ---- merging inside the loop ------------------------------------------------------------------------
@pytest.mark.parametrize("method,knobs", [("cat", {}), ("task-arithmetic", {"lam": 0.8})])
def test_scaled_adapters_equal_the_merge_api_and_the_written_adapter(tmp_path, pair, method, knobs):
    from lorikit.adapters.build import load_peft
    from lorikit.merge import merge
    from lorikit.models import load_model
    from lorikit.search.apply import LINEAR_IN_WEIGHTS, MergedWeights, ScaledAdapters
    from lorikit.search.objective import mean_nll, nll_dev_set

    adapters, dev = pair
    weights = [0.9, -0.6]
    cfg = config(adapters, dev, tmp_path / "unused", method=method, **knobs)
    bundle = load_model(TINY)
    data = nll_dev_set("a", dev[0], bundle.tokenizer, limit=4)
    fast = mean_nll(ScaledAdapters(bundle.model, adapters, LINEAR_IN_WEIGHTS[method]).apply(weights, knobs), data)
    states = [load_adapter(a) for a in adapters]
    general = MergedWeights(load_model(TINY).model, states, method,
                            lambda k: search_run.merge_config(cfg, weights, k, "-").params(), adapters)
    slow = mean_nll(general.apply(weights, knobs), data)
    merge(search_run.merge_config(cfg, weights, knobs, str(tmp_path / "merged")))
    written = mean_nll(load_peft(load_model(TINY).model, tmp_path / "merged"), data)
    base = mean_nll(load_model(TINY).model, data)
    assert fast == pytest.approx(slow, rel=1e-5)
    if method == "cat":  # exact factors; task arithmetic is written by a truncated SVD
        assert fast == pytest.approx(written, rel=1e-5)
    assert abs(fast - base) > 1e-3  # the adapters do change the model


# ---- the search end to end: a planted optimum --------------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A LoRI-D adapter T fitted to a dev set (B only, full batch, L-BFGS to a stationary point), and two
    adapters built from it: X = T with B / 0.7 and N = T's A with a random B. With cat the merge is
    B' = (w_X / 0.7) B_T + w_N B_N on T's own A: a point of the space T was fitted in, so the dev loss is
    stationary at w = (0.7, 0), with clear curvature along w_N (along w_X the tiny model's RMSNorm makes
    it nearly flat, so only the value is planted there)."""
    from lorikit.adapters.build import AdapterConfig, attach_adapter
    from lorikit.models import load_model
    from lorikit.search.objective import nll_dev_set
    from lorikit.train.loss import sft_loss_sum

    root = tmp_path_factory.mktemp("planted")
    dev = dev_file(root / "dev.jsonl", "compare", 8)
    bundle = load_model(TINY)
    batch = nll_dev_set("dev", dev, bundle.tokenizer, batch_size=8).batches[0]
    model = attach_adapter(bundle.model, AdapterConfig(method="lori-d", rank=2, seed=0,
                                                       target_modules=["v_proj", "down_proj"]), TINY)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, max_iter=40, tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss, n = sft_loss_sum(model, batch)
        (loss / n).backward()
        return loss / n

    opt.step(closure)
    closure()
    assert torch.cat([p.grad.flatten() for p in params]).norm() < 1e-3  # stationary
    model.save_pretrained(str(root / "t"))
    trained = load_adapter(root / "t")
    gen = torch.Generator().manual_seed(5)
    x = [LoraModule(m.name, m.A, m.B / 0.7, m.scaling) for m in trained.modules().values()]
    n = [LoraModule(m.name, m.A, torch.randn(m.B.shape, generator=gen) * m.B.std(), m.scaling)
         for m in trained.modules().values()]
    AdapterState.from_modules(x, trained.config).save(root / "x")
    AdapterState.from_modules(n, trained.config).save(root / "noise")
    return [str(root / "x"), str(root / "noise")], dev


def test_search_finds_the_planted_optimum(tmp_path, planted):
    adapters, dev = planted
    result = merge_search(config(adapters, [dev, dev], tmp_path / "out", budget=40, limit=None, batch_size=8,
                                 init_weights=[0.2, 0.8]), progress=False)
    planted_value = _objective_at(adapters, dev, [0.7, 0.0])
    w_x, w_n = result.best["weights"]
    assert abs(w_n) < 0.1 and w_x > 0.3, result.best  # the noise adapter is switched off, T is kept
    assert result.best["objective"] < planted_value + 1e-3
    assert result.best["objective"] < result.start["objective"] - 0.05
    summary = json.loads((tmp_path / "out" / "best.json").read_text())
    assert summary["weights"] == result.best["weights"]
    meta = json.loads((tmp_path / "out" / "lorikit.json").read_text())
    assert meta["merge"]["weights"] == pytest.approx(result.best["weights"])
    assert summary["written_adapter"]["loss"] == pytest.approx(result.best["loss"], rel=1e-5)  # cat is exact
    assert (tmp_path / "out" / "search.png").stat().st_size > 1000


def _objective_at(adapters, dev, weights) -> float:
    from lorikit.models import load_model
    from lorikit.search.apply import LINEAR_IN_WEIGHTS, ScaledAdapters
    from lorikit.search.objective import mean_nll, nll_dev_set

    bundle = load_model(TINY)
    data = nll_dev_set("dev", dev, bundle.tokenizer, batch_size=8)
    return mean_nll(ScaledAdapters(bundle.model, adapters, LINEAR_IN_WEIGHTS["cat"]).apply(weights, {}), data)


def test_search_with_a_knob_and_l1(tmp_path, pair):
    adapters, dev = pair
    result = merge_search(config(adapters, dev, tmp_path / "out", method="ties", search=["density=0.1:0.9"], l1=0.5,
                                 budget=5), progress=False)
    records = [json.loads(line) for line in (tmp_path / "out" / LOG_NAME).read_text().splitlines()[1:]]
    assert len(records) == 5 and records[0]["knobs"] == {"density": pytest.approx(0.5)}
    for r in records:
        assert 0.1 <= r["knobs"]["density"] <= 0.9
        assert r["penalty"] == pytest.approx(0.5 * sum(abs(w) for w in r["weights"]) / 2)
        assert r["objective"] == pytest.approx(r["loss"] + r["penalty"])
    meta = json.loads((tmp_path / "out" / "lorikit.json").read_text())
    assert meta["merge"]["params"]["density"] == pytest.approx(result.best["knobs"]["density"])
    assert (tmp_path / "out" / "svd_errors.json").is_file()


def test_score_objective_generates_and_scores(tmp_path, tmp_path_factory):
    adapters = [random_adapter(tmp_path / "a", 1), random_adapter(tmp_path / "b", 2)]
    result = merge_search(config(adapters, ["builtin:compare:dev", "builtin:arithmetic:dev"], tmp_path / "out",
                                 objective="score", budget=2, limit=2, max_new_tokens=4), progress=False)
    for task_value in result.best["tasks"].values():
        assert 0.0 <= task_value <= 1.0
    assert result.best["objective"] == pytest.approx(-sum(result.best["tasks"].values()) / 2)


# ---- resume ----------------------------------------------------------------------------------------
def test_killed_search_resumes_without_reevaluating(tmp_path, pair, monkeypatch):
    adapters, dev = pair
    real = search_run.evaluate_tasks
    calls = {"n": 0, "stop_at": 4}

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt  # killed during the 4th evaluation
        return real(*args, **kwargs)

    monkeypatch.setattr(search_run, "evaluate_tasks", counting)
    cfg = config(adapters, dev, tmp_path / "out", budget=9)
    with pytest.raises(KeyboardInterrupt):
        merge_search(cfg, progress=False)
    assert not (tmp_path / "out" / "best.json").exists()
    assert len((tmp_path / "out" / LOG_NAME).read_text().splitlines()) == 1 + 3
    calls.update(n=0, stop_at=-1)
    resumed = merge_search(cfg, progress=False)
    assert calls["n"] == 9 - 3 + 1  # the rest, plus the written adapter's check
    calls["n"] = 0
    fresh = merge_search(config(adapters, dev, tmp_path / "fresh", budget=9), progress=False)
    assert calls["n"] == 9 + 1
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.records]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in fresh.records]
    calls["n"] = 0  # a larger budget continues the finished search
    longer = merge_search(config(adapters, dev, tmp_path / "out", budget=11), progress=False)
    assert calls["n"] == 2 + 1 and len(longer.records) == 11


def test_other_settings_are_refused_then_overwritten(tmp_path, pair):
    adapters, dev = pair
    merge_search(config(adapters, dev, tmp_path / "out", budget=2), progress=False)
    with pytest.raises(UsageError, match="other settings .*seed"):
        merge_search(config(adapters, dev, tmp_path / "out", budget=2, seed=1), progress=False)
    again = merge_search(config(adapters, dev, tmp_path / "out", budget=2, seed=1, overwrite=True), progress=False)
    assert len(again.records) == 2


# ---- command line, recipe stage, errors ---------------------------------------------------------------
def test_cli_writes_a_loadable_adapter_and_prints_the_table(tmp_path, pair, capsys):
    from lorikit.adapters.build import load_peft
    from lorikit.models import load_model

    adapters, dev = pair
    out = tmp_path / "cli"
    code = cli(["merge-search", *adapters, "--dev", *dev, "--budget", "3", "--limit", "4", "--device", "cpu",
                "--init-weights", "0.4", "0.6", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "best (evaluation" in printed and str(out) in printed
    assert json.loads((out / "best.json").read_text())["start"]["weights"] == {"a": 0.4, "b": 0.6}
    load_peft(load_model(TINY).model, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_recipe_stage_kind(tmp_path, pair):
    from lorikit.pipeline.recipe import load_recipe
    from lorikit.pipeline.runner import run_recipe

    adapters, dev = pair
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"workdir": str(tmp_path / "w"), "stages": {
        "searched": {"kind": "merge-search", "adapters": adapters, "dev": dev, "budget": 2, "limit": 2,
                     "device": "cpu"},
        "ev": {"kind": "eval", "model": TINY, "adapter": "$searched", "task": "builtin",
               "data": "builtin:compare:test", "limit": 2, "max_new_tokens": 2, "device": "cpu"}}}))
    plans = run_recipe(load_recipe(str(recipe)), echo=lambda s: None)
    assert [p.status for p in plans] == ["done", "done"]
    assert (tmp_path / "w" / "searched" / "best.json").is_file()
    plans = run_recipe(load_recipe(str(recipe)), resume=True, echo=lambda s: None)
    assert [p.action for p in plans] == ["skip", "skip"]
    recipe.write_text(recipe.read_text().replace('"budget": 2', '"budget": 0'))
    with pytest.raises(UsageError, match="stage 'searched' \\(merge-search\\): --budget 0"):
        run_recipe(load_recipe(str(recipe)), resume=True, echo=lambda s: None)


@pytest.mark.parametrize("extra,message", [
    (["--dev", "D0"], "--dev: 1 dev set(s) for 2 adapter(s)"),
    (["--budget", "0"], "--budget 0: must be at least 1"),
    (["--method", "cat", "--search", "density"], "--density: not used by --method cat"),
    (["--method", "emr"], "--method emr: EMR keeps one update per task"),
    (["--search", "density=0:2", "--method", "ties"], "--search 'density=0:2': the range must be"),
    (["--init-weights", "0.5"], "--init-weights: 1 weight(s) for 2 adapter(s)"),
    (["--method", "nope"], "--method 'nope': unknown merge method"),
])
def test_bad_requests_exit_2_with_one_line(tmp_path, pair, capsys, extra, message):
    adapters, dev = pair
    args = ["merge-search", *adapters, "--out", str(tmp_path / "o"), "--device", "cpu"]
    args += extra if "--dev" in extra else ["--dev", *dev, *extra]
    assert cli([a.replace("D0", dev[0]) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_empty_dev_set_and_non_finite_objective_are_errors(tmp_path, pair, monkeypatch, capsys):
    adapters, dev = pair
    (tmp_path / "empty.jsonl").write_text("")
    assert cli(["merge-search", *adapters, "--dev", dev[0], str(tmp_path / "empty.jsonl"), "--device", "cpu",
                "--out", str(tmp_path / "o")]) == 1
    assert "empty.jsonl: no rows" in capsys.readouterr().err
    monkeypatch.setattr(search_run, "evaluate_tasks", lambda *a, **k: (float("nan"), {"a": float("nan")}))
    with pytest.raises(LorikitError, match="the objective is nan at evaluation 0 \\(w:a=0.5, w:b=0.5\\)"):
        merge_search(config(adapters, dev, tmp_path / "o2"), progress=False)
    assert not (tmp_path / "o2" / "adapter_config.json").exists()


def test_foreign_output_folder_is_refused(tmp_path, pair):
    adapters, dev = pair
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="holds no search_log.jsonl"):
        merge_search(config(adapters, dev, tmp_path / "mine"), progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_missing_cma_is_one_line(monkeypatch):
    import builtins

    from lorikit.search import cmaes

    real_import = builtins.__import__

    def no_cma(name, *args, **kwargs):
        if name == "cma":
            raise ImportError("No module named 'cma'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cma)
    with pytest.raises(LorikitError, match=r"pip install 'lorikit\[search\]'"):
        cmaes.make_strategy([0.5, 0.5], 0.2, 0, None)


def test_offset_skips_the_rows_an_eval_stage_scores(tmp_path):
    from lorikit.models import load_tokenizer
    from lorikit.search.objective import nll_dev_set

    tok = load_tokenizer(TINY)
    dev = dev_file(tmp_path / "dev.jsonl", "compare", 8)
    first = nll_dev_set("d", dev, tok, limit=5, batch_size=8).batches[0]["input_ids"]
    later = nll_dev_set("d", dev, tok, limit=5, offset=5, batch_size=8).batches[0]["input_ids"]
    assert first.shape[0] == 5 and later.shape[0] == 3
    rows = {tuple(r[r != tok.pad_token_id].tolist()) for r in first}
    assert not rows & {tuple(r[r != tok.pad_token_id].tolist()) for r in later}
    with pytest.raises(LorikitError, match="no rows after --offset 8"):
        nll_dev_set("d", dev, tok, limit=5, offset=8)
