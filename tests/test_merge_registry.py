"""The merge registry drives the CLI, YAML (lorikit and mergekit), recipes and docs/merge.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
from lorikit.cli import main as cli
from lorikit.errors import UsageError
from lorikit.merge import MergeConfig
from lorikit.merge.doc_table import generated, rewrite
from lorikit.merge.registry import get_method, methods

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"model.layers.0.self_attn.q_proj": (16, 12), "model.layers.0.mlp.up_proj": (20, 12)}


def adapter(path, seed: int, rank: int = 3, base: str = "org/base") -> str:
    gen = torch.Generator().manual_seed(seed)
    mods = [LoraModule(n, torch.randn(rank, i, generator=gen), torch.randn(o, rank, generator=gen), 2.0)
            for n, (o, i) in SHAPES.items()]
    config = {"peft_type": "LORA", "base_model_name_or_path": base, "r": rank, "lora_alpha": 2.0 * rank,
              "target_modules": ["q_proj", "up_proj"]}
    AdapterState.from_modules(mods, config).save(path)
    return str(path)


@pytest.fixture
def pair(tmp_path):
    return [adapter(tmp_path / "a", 1), adapter(tmp_path / "b", 2, rank=5)]


def delta(path, module="model.layers.0.self_attn.q_proj") -> torch.Tensor:
    return load_adapter(path).modules()[module].delta().double()


# ---- the registry is the single source ----------------------------------------------------------
def test_every_method_is_reachable_documented_and_tested(tmp_path):
    pair = [adapter(tmp_path / "a", 1), adapter(tmp_path / "b", 2)]  # equal ranks: linear needs them
    doc = (ROOT / "docs" / "merge.md").read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for name, method in methods().items():
        assert f"| `{name}` |" in doc, f"{name} missing from docs/merge.md's table"
        assert f'"{name}"' in tests.replace(f'"{name}" in', ""), f"{name} has no test naming it"
        out = tmp_path / f"out-{name}"
        extra = ["--task", "a"] if method.kind.per_task else []
        assert cli(["merge", *pair, "--method", name, "--names", "a", "b", *extra, "--out", str(out)]) == 0, name
        assert json.loads((out / "lorikit.json").read_text())["merge"]["method"] == name


def test_docs_tables_are_generated_from_the_registry():
    doc = (ROOT / "docs" / "merge.md").read_text()
    assert rewrite(doc) == doc, "run: python -m lorikit.merge.doc_table docs/merge.md"
    assert generated() in doc


def test_a_new_method_file_is_all_it_takes(tmp_path, pair, monkeypatch):
    """Registering a method (as a new file in merge/methods/ does) makes it a CLI choice with its flags."""
    from lorikit.merge import registry

    flip = registry.Param("flip_sign", bool, False, "negate the sum")

    @registry.register("toy-sum", "delta", params=(flip,), summary="Σ w_i ΔW_i, optionally negated")
    def toy(deltas, weights, params):
        total = sum(w * d for w, d in zip(weights.tolist(), deltas))
        return -total if params.flip_sign else total

    try:
        out = tmp_path / "toy"
        assert cli(["merge", *pair, "--method", "toy_sum", "--flip-sign", "--out", str(out), "--rank", "8"]) == 0
        expected = -(delta(pair[0]) + delta(pair[1]))
        assert torch.allclose(delta(out), expected, rtol=1e-4, atol=1e-6)
        assert json.loads((out / "lorikit.json").read_text())["merge"]["params"] == {"flip_sign": True}
        assert "| `toy-sum` |" in generated()
    finally:
        registry._METHODS.pop("toy-sum")


# ---- PEFT / mergekit spellings -------------------------------------------------------------------
def test_peft_spellings_and_density_for_dare(tmp_path, pair):
    a = tmp_path / "a1"
    b = tmp_path / "b1"
    assert cli(["merge", *pair, "--method", "dare_ties", "--density", "0.25", "--seed", "4", "--out", str(a)]) == 0
    assert cli(["merge", *pair, "--method", "dare-ties", "--drop-rate", "0.75", "--seed", "4", "--out", str(b)]) == 0
    assert json.loads((a / "lorikit.json").read_text())["merge"]["params"] == {"lam": 1.0, "drop_rate": 0.75, "seed": 4,
                                                                                 "divide_by": "count"}
    assert torch.equal(delta(a), delta(b))
    c = tmp_path / "c1"
    assert cli(["merge", *pair, "--method", "task_arithmetic", "--lambda", "0.5", "--out", str(c), "--rank", "8"]) == 0
    assert torch.allclose(delta(c), 0.5 * (delta(pair[0]) + delta(pair[1])), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--method", "dare_ties", "--density", "0.3", "--drop-rate", "0.5"], "--density and --drop-rate: give one"),
    (["--method", "knots", "--inner", "nope"], "--inner 'nope': choose from"),
    (["--method", "knots", "--inner", "ties", "--drop-rate", "0.5"], "--drop-rate: not used by --method knots"),
    (["--method", "iso-cts", "--common-space-fraction", "1.5"], "--common-space-fraction 1.5: must be in [0, 1]"),
    (["--method", "tsv-m", "--density", "0.5"], "--density: not used by --method tsv-m"),
    (["--method", "ties", "--lambda", "nan"], "--lambda nan: must be a finite number"),
    (["--weights", "1", "inf"], "--weights: 'inf' is not a finite number"),
    (["--method", "knots", "--weights", "1"], "--weights: 1 weight(s) for 2 adapter(s)"),
])
def test_bad_method_options_exit_2_nothing_written(tmp_path, pair, capsys, args, message):
    out = tmp_path / "out"
    try:
        code = cli(["merge", *pair, *args, "--out", str(out)])
    except SystemExit as exc:  # argparse's own checks (finite numbers) exit from the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_single_adapter_where_two_are_needed(tmp_path, pair, capsys):
    out = tmp_path / "out"
    assert cli(["merge", pair[0], "--method", "core-space", "--out", str(out)]) == 2
    assert "--method core-space: needs at least 2 adapters, got 1" in capsys.readouterr().err
    assert not out.exists()


def test_base_model_mismatch_names_the_adapter(tmp_path, pair, capsys):
    out = tmp_path / "out"
    assert cli(["merge", *pair, "--method", "knots", "--base-model", "org/other", "--out", str(out)]) == 1
    assert "base model 'org/base' differs from base_model 'org/other'" in capsys.readouterr().err
    other = adapter(tmp_path / "c", 3, base="org/other")
    assert cli(["merge", pair[0], other, "--method", "iso-cts", "--out", str(out)]) == 1
    assert "base model 'org/other' differs" in capsys.readouterr().err
    assert not out.exists()


# ---- recipes: the stage kind validates against the registry --------------------------------------
def test_merge_stage_takes_method_parameters(tmp_path, pair):
    from lorikit.pipeline.kinds.merge import KIND

    prepared = KIND.validate("m", {"adapters": pair, "method": "knots", "inner": "ties", "density": 0.3,
                                   "lambda": 0.7}, tmp_path / "m")
    assert prepared.config.used_params() == {"inner": "ties", "lam": 0.7, "density": 0.3, "divide_by": "count"}
    assert prepared.plan.params.values == prepared.config.used_params()  # resolved at validation, run as is
    assert (prepared.plan.method.name, prepared.plan.inner.name) == ("knots", "ties")
    with pytest.raises(UsageError, match="stage 'm' \\(merge\\): --density: not used by --method cat"):
        KIND.validate("m", {"adapters": pair, "density": 0.3}, tmp_path / "m")
    with pytest.raises(UsageError, match="unknown setting 'densty'"):
        KIND.validate("m", {"adapters": pair, "densty": 0.3}, tmp_path / "m")



def test_a_merge_looks_its_method_up_once(tmp_path, pair, monkeypatch):
    """Validation resolves the request into a MergePlan (the method, and an ``inner`` method, each
    looked up once); the merge, the pipeline's run and every module take it as is."""
    from lorikit.merge import registry
    from lorikit.pipeline.kinds.merge import KIND

    seen: list[str] = []
    find = registry.methods().canonical
    monkeypatch.setattr(registry.methods(), "canonical", lambda name: seen.append(str(name)) or find(name))
    assert cli(["merge", *pair, "--method", "ties", "--out", str(tmp_path / "t")]) == 0
    assert seen == ["ties"]
    seen.clear()
    assert cli(["merge", *pair, "--method", "knots", "--inner", "dare_ties", "--out", str(tmp_path / "k")]) == 0
    assert seen == ["knots", "dare_ties"]  # not once more per module (2 modules here)
    seen.clear()
    prepared = KIND.validate("m", {"adapters": pair, "method": "knots", "inner": "ties"}, tmp_path / "m")
    KIND.run(prepared, tmp_path / "m")
    assert seen == ["knots", "ties"] and (tmp_path / "m" / "lorikit.json").is_file()

# ---- mergekit YAML ---------------------------------------------------------------------------------
def write(tmp_path, text: str) -> str:
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    return str(path)


def test_mergekit_yaml_dare_ties(tmp_path, pair):
    cfg = write(tmp_path, f"""merge_method: dare_ties
base_model: org/base
models:
  - model: org/base
  - model: {pair[0]}
    parameters: {{weight: 0.5, density: 0.3}}
  - model: org/base+{pair[1]}
    parameters: {{weight: 0.5, density: 0.3}}
parameters: {{lambda: 0.8, int8_mask: true}}
dtype: bfloat16
""")
    out, ref = tmp_path / "mk", tmp_path / "ref"
    assert cli(["merge", "--config", cfg, "--out", str(out)]) == 0
    meta = json.loads((out / "lorikit.json").read_text())["merge"]
    assert meta["method"] == "dare-ties" and meta["weights"] == [0.5, 0.5]
    assert meta["params"] == {"lam": 0.8, "drop_rate": pytest.approx(0.7), "seed": 0, "divide_by": "weights"}
    assert cli(["merge", *pair, "--method", "dare-ties", "--drop-rate", str(1 - 0.3), "--lambda", "0.8",
                "--weights", "0.5", "0.5", "--divide-by", "weights", "--out", str(ref)]) == 0
    assert torch.equal(delta(out), delta(ref))
    # equal weights: mergekit's normalisation is PEFT's count-divided mean of weight-1 tasks
    assert cli(["merge", *pair, "--method", "dare_ties", "--density", "0.3", "--lambda", "0.8",
                "--out", str(tmp_path / "peft")]) == 0
    torch.testing.assert_close(delta(out), delta(tmp_path / "peft"), rtol=1e-5, atol=1e-6)


def mergekit_ties(deltas: list[torch.Tensor], weights: list[float], density: float, normalize: bool) -> torch.Tensor:
    """mergekit's generalized task arithmetic for ties (magnitude sparsification, consensus 'sum'), dense."""
    trimmed = []
    for d in deltas:
        k = int(density * d.numel())
        threshold = d.abs().flatten().topk(k).values[-1]
        trimmed.append(torch.where(d.abs() >= threshold, d, torch.zeros_like(d)))
    w = torch.tensor(weights, dtype=torch.float64).view(-1, 1, 1)
    weighted = torch.stack(trimmed) * w
    mask = weighted.sign() == torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
    mixed = (weighted * mask).sum(0)
    divisor = (w * mask).sum(0)
    divisor[divisor == 0] = 1
    return mixed / divisor if normalize else mixed


@pytest.mark.parametrize("normalize", [True, False])
def test_mergekit_ties_with_unequal_weights_is_mergekits_formula(tmp_path, pair, normalize):
    cfg = write(tmp_path, f"""merge_method: ties
models:
  - {{model: {pair[0]}, parameters: {{weight: 0.7, density: 0.4}}}}
  - {{model: {pair[1]}, parameters: {{weight: -0.2, density: 0.4}}}}
parameters: {{normalize: {str(normalize).lower()}}}
into_model: false
""")
    out = tmp_path / "mk"
    assert cli(["merge", "--config", cfg, "--rank", "12", "--out", str(out)]) == 0  # rank 12 = full: no SVD loss
    expected = mergekit_ties([delta(p) for p in pair], [0.7, -0.2], 0.4, normalize)
    torch.testing.assert_close(delta(out), expected, rtol=1e-5, atol=1e-5)
    assert json.loads((out / "lorikit.json").read_text())["merge"]["params"]["divide_by"] == (
        "weights" if normalize else "none")


def test_mergekit_base_model_alias_matches_the_recorded_folder(tmp_path, make_adapter):
    """base_model: tiny-random-llama names the model the adapters record as its cache folder."""
    a, b = make_adapter(steps=1, rank=2), make_adapter(steps=1, rank=2, seed=1)
    cfg = write(tmp_path, f"merge_method: ties\nbase_model: tiny-random-llama\nmodels: [{{model: {a}}}, {{model: {b}}}]\n")
    assert cli(["merge", "--config", cfg, "--out", str(tmp_path / "m")]) == 0


@pytest.mark.parametrize("alias, method", [("svd", "task-arithmetic"), ("ties_svd", "ties"),
                                           ("dare_ties_svd", "dare-ties"), ("dare_linear_svd", "dare-linear"),
                                           ("magnitude_prune_svd", "magnitude-prune")])
def test_peft_svd_combination_types_are_the_delta_space_methods(alias, method):
    assert get_method(alias).name == method


def test_mergekit_linear_normalises_weights(tmp_path, pair):
    cfg = write(tmp_path, f"""merge_method: linear
models:
  - {{model: {pair[0]}, parameters: {{weight: 3}}}}
  - {{model: {pair[1]}, parameters: {{weight: 1}}}}
rank: 8
""")
    out = tmp_path / "lin"
    assert cli(["merge", "--config", cfg, "--out", str(out)]) == 0
    expected = 0.75 * delta(pair[0]) + 0.25 * delta(pair[1])
    assert torch.allclose(delta(out), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("body, message", [
    ("merge_method: slerp\nmodels: [{model: A}, {model: B}]\n", "merge_method 'slerp' is not available in lorikit"),
    ("merge_method: ties\nmodels: [{model: A, parameters: {weight: 1, density: 0.5}}, "
     "{model: B, parameters: {weight: 1, density: 0.3}}]\n", "different densities"),
    ("merge_method: ties\nmodels: [{model: A, parameters: {weight: [0, 1]}}, {model: B}]\n", "per-layer values"),
    ("merge_method: ties\nmodels: [{model: A, parameters: {gamma: 0.1}}, {model: B}]\n",
     "models[0].parameters.gamma: not supported"),
    ("merge_method: ties\nslices: []\nmodels: [{model: A}, {model: B}]\n", "mergekit's 'slices' is not supported"),
    ("merge_method: dare_ties\nmodels: [{model: A}, {model: B}]\nparameters: {rescale: false}\n",
     "rescale: false is not supported"),
    ("models: [{model: A}, {model: B}]\n", "'merge_method' is required"),
    # did you mean: the method, a model's keys and parameters, the global parameters, enum values
    ("merge_method: dare_tie\nmodels: [{model: A}, {model: B}]\n",
     "merge_method 'dare_tie' is not available in lorikit (did you mean 'dare_ties'?)"),
    ("merge_method: task_arithmatic\nmodels: [{model: A}, {model: B}]\n", "(did you mean 'task_arithmetic'?)"),
    ("merge_method: ties\nmodels: [{model: A, parameters: {weigth: 1}}, {model: B}]\n",
     "models[0].parameters.weigth: not supported by lorikit (did you mean 'weight'?)"),
    ("merge_method: ties\nmodels: [{model: A, paramters: {weight: 1}}, {model: B}]\n",
     "models[0]: 'paramters' is not supported by lorikit (did you mean 'parameters'?)"),
    ("merge_method: ties\nmodels: [{model: A}, {model: B}]\nparameters: {densty: 0.5}\n",
     "parameters.densty: not supported by lorikit (did you mean 'density'?)"),
    ("merge_method: ties\nmodels: [{model: A}, {model: B}]\nparameters: {normalize: true}\ndivide_by: weight\n",
     "(did you mean 'weights'?)"),
    ("method: knots\ninner: tie\nadapters: [A, B]\n", "tsv-m (did you mean 'ties'?)"),
    ("method: tie\nadapters: [A, B]\n", "--method 'tie': unknown merge method (did you mean 'ties'?)"),
])
def test_mergekit_yaml_refusals(tmp_path, capsys, body, message):
    out = tmp_path / "out"
    assert cli(["merge", "--config", write(tmp_path, body), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_lorikit_yaml_takes_method_parameters(tmp_path, pair):
    cfg = MergeConfig.from_yaml(write(tmp_path, f"method: core-space\ninner: ties\ndensity: 0.4\nlambda: 2\n"
                                                f"adapters: [{pair[0]}, {pair[1]}]\nout: x\n"),
                                {"method_params": {"density": 0.5}})
    cfg.validate()
    assert cfg.used_params() == {"inner": "ties", "lam": 2.0, "density": 0.5, "divide_by": "count"}
    assert math.isclose(cfg.density, 0.5) and get_method("core_space").name == "core-space"
    assert re.search(r"core-space", generated())


def test_registrations_carry_title_and_paper_shown_in_docs_and_the_merged_card(pair, tmp_path):
    doc = (ROOT / "docs" / "merge.md").read_text()
    for name, method in methods().items():
        assert method.title, name
        if method.paper:
            assert f"{method.title}: {method.paper}" in doc, name
    out = tmp_path / "ties"
    assert cli(["merge", *pair, "--method", "ties", "--out", str(out)]) == 0
    paper = json.loads((out / "lorikit.json").read_text())["merge"]["paper"]
    assert paper.startswith("TIES-Merging: Yadav et al. 2023")
    assert f"| paper | {paper} |" in (out / "README.md").read_text()
