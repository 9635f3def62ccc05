"""Merging: each method against a direct tensor implementation of its docs/methods.md#merging formula."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lorikit.adapters.state import AdapterState, LoraModule, load_adapter
from lorikit.cli import main as cli
from lorikit.errors import LorikitError, UsageError
from lorikit.merge import Merger, MergeConfig, materialize_emr, merge
from lorikit.merge.registry import DeltaParams

TINY = "tiny-random-llama"
SHAPES = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
          "self_attn.o_proj": (64, 64), "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64),
          "mlp.down_proj": (64, 128)}
MODULES = {f"model.layers.{i}.{name}": shape for i in range(2) for name, shape in SHAPES.items()}


def random_adapter(seed: int, rank: int = 4, alpha: float = 8.0, base: str = TINY, modules=None) -> AdapterState:
    """A LoRA adapter for tiny-random-llama with random A and (non-zero) random B."""
    gen = torch.Generator().manual_seed(seed)
    mods = []
    for name, (out, inp) in (modules or MODULES).items():
        A = torch.randn(rank, inp, generator=gen) / math.sqrt(inp)
        B = torch.randn(out, rank, generator=gen) * 0.05
        mods.append(LoraModule(name, A, B, alpha / rank))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": rank,
              "lora_alpha": alpha, "target_modules": sorted({n.rsplit(".", 1)[-1] for n in (modules or MODULES)}),
              "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False}
    state = AdapterState.from_modules(mods, config)
    state.source = f"random-{seed}"
    return state


def save(state: AdapterState, path) -> str:
    state.save(path)
    return str(path)


def direct_delta(state: AdapterState, module: str) -> torch.Tensor:
    m = state.modules()[module]
    return m.scaling * m.B.double() @ m.A.double()


def top_k(t: torch.Tensor, density: float) -> torch.Tensor:
    k = int(density * t.numel())
    threshold = t.abs().flatten().sort(descending=True).values[k - 1]
    return torch.where(t.abs() >= threshold, t, torch.zeros_like(t))


def disjoint_mean(tensors: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    total = sum(tensors)
    sign = torch.where(total >= 0, 1.0, -1.0).to(total.dtype)
    agree = [(torch.sign(t) == sign) for t in tensors]
    num = sum(w * t * a for w, t, a in zip(weights, tensors, agree))
    return num / torch.clamp(sum(a.to(total.dtype) for a in agree), min=1.0)


@pytest.fixture
def adapters():
    return [random_adapter(s) for s in (1, 2, 3)]


WEIGHTS = [0.5, 0.4, -0.3]


# ---- adapter-space ---------------------------------------------------------------------------
def test_cat_is_exact_for_different_A_and_ranks():
    states = [random_adapter(1, rank=4), random_adapter(2, rank=8, alpha=8.0), random_adapter(3, rank=2, alpha=6.0)]
    merger = Merger(states, "cat", WEIGHTS)
    state, report = merger.to_adapter()
    assert report is None
    for module in MODULES:
        expected = sum(w * direct_delta(s, module) for w, s in zip(WEIGHTS, states))
        got = state.modules()[module]
        assert got.rank == 14
        torch.testing.assert_close(got.delta(torch.float64), expected, rtol=1e-5, atol=1e-6)


def test_cat_adapter_in_stock_peft_matches_weights_plus_sum(tmp_path, adapters, tiny_bundle):
    from peft import PeftModel

    from lorikit.merge import in_memory_model
    from lorikit.models import load_model

    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    out = tmp_path / "cat"
    assert cli(["merge", *paths, "--method", "cat", "--weights", *map(str, WEIGHTS), "--out", str(out)]) == 0
    ids = torch.randint(4, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    peft_model = PeftModel.from_pretrained(tiny_bundle.model, str(out))
    with torch.no_grad():
        got = peft_model(input_ids=ids).logits
    reference = load_model(TINY).model
    in_memory_model(reference, ((m, sum(w * direct_delta(s, m) for w, s in zip(WEIGHTS, adapters)).float())
                                for m in MODULES))
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["method"] == "merge:cat"
    assert meta["merge"]["weights"] == WEIGHTS
    assert [p["path"] for p in meta["merge"]["parents"]] == paths


def test_linear_equals_peft_add_weighted_adapter(tmp_path, adapters, tiny_bundle):
    from peft import PeftModel

    from lorikit.adapters.build import lora_layers

    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    model = PeftModel.from_pretrained(tiny_bundle.model, paths[0], adapter_name="t0")
    for i, p in enumerate(paths[1:], 1):
        model.load_adapter(p, adapter_name=f"t{i}")
    # PEFT < 0.19 mishandles negative weights (0.17 raises, 0.18 signs both factors): compare at |w| there
    import peft
    from packaging.version import Version
    weights = WEIGHTS if Version(peft.__version__) >= Version("0.19") else [abs(w) for w in WEIGHTS]
    model.add_weighted_adapter(["t0", "t1", "t2"], weights, "merged", combination_type="linear")
    ours, _ = Merger(adapters, "linear", weights).to_adapter()
    ours_mods = ours.modules()
    for name, layer in lora_layers(model, "merged"):
        assert layer.scaling["merged"] == pytest.approx(ours_mods[name].scaling)
        torch.testing.assert_close(layer.lora_A["merged"].weight, ours_mods[name].A, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(layer.lora_B["merged"].weight, ours_mods[name].B, rtol=1e-6, atol=1e-7)


def test_linear_refuses_different_ranks():
    with pytest.raises(LorikitError, match="equal ranks"):
        Merger([random_adapter(1, rank=4), random_adapter(2, rank=8)], "linear").to_adapter()


# ---- delta-space vs direct formulas ------------------------------------------------------------
def _deltas(states, module):
    return [direct_delta(s, module) for s in states]


def test_task_arithmetic_formula(adapters):
    merger = Merger(adapters, "task-arithmetic", WEIGHTS, DeltaParams(lam=0.7))
    for module in MODULES:
        expected = 0.7 * sum(w * d for w, d in zip(WEIGHTS, _deltas(adapters, module)))
        torch.testing.assert_close(merger.delta(module).double(), expected, rtol=1e-5, atol=1e-7)


def test_ties_formula_trims_per_task_and_module(adapters):
    merger = Merger(adapters, "ties", WEIGHTS, DeltaParams(lam=1.3, density=0.2))
    for module in MODULES:
        trimmed = [top_k(d, 0.2) for d in _deltas(adapters, module)]
        for t in trimmed:  # the trim keeps 20 % of this module's own entries
            assert (t != 0).sum().item() == int(0.2 * t.numel())
        expected = 1.3 * disjoint_mean(trimmed, WEIGHTS)
        torch.testing.assert_close(merger.delta(module).double(), expected, rtol=1e-5, atol=1e-7)


def test_magnitude_prune_formula(adapters):
    merger = Merger(adapters, "magnitude-prune", WEIGHTS, DeltaParams(lam=0.5, density=0.3))
    for module in MODULES:
        expected = 0.5 * sum(w * top_k(d, 0.3) for w, d in zip(WEIGHTS, _deltas(adapters, module)))
        torch.testing.assert_close(merger.delta(module).double(), expected, rtol=1e-5, atol=1e-7)


def _dare_task(adapters, i, p, seed, module):
    """Task i's dropped-and-rescaled update, isolated by a one-hot weight vector."""
    one_hot = [1.0 if j == i else 0.0 for j in range(len(adapters))]
    return Merger(adapters, "dare-linear", one_hot, DeltaParams(drop_rate=p, seed=seed)).delta(module).double()


def test_dare_drops_with_rate_p_and_rescales_survivors(adapters):
    p, module = 0.9, "model.layers.0.mlp.gate_proj"
    for i, state in enumerate(adapters):
        dropped = _dare_task(adapters, i, p, 0, module)
        kept = dropped != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 0.02
        torch.testing.assert_close(dropped[kept], direct_delta(state, module)[kept] / (1 - p), rtol=1e-5, atol=1e-7)


def test_dare_linear_and_ties_formulas(adapters):
    p, seed = 0.5, 7
    lin = Merger(adapters, "dare-linear", WEIGHTS, DeltaParams(lam=0.8, drop_rate=p, seed=seed))
    ties = Merger(adapters, "dare-ties", WEIGHTS, DeltaParams(lam=0.8, drop_rate=p, seed=seed))
    for module in list(MODULES)[:4]:
        taus = [_dare_task(adapters, i, p, seed, module) for i in range(3)]
        torch.testing.assert_close(lin.delta(module).double(), 0.8 * sum(w * t for w, t in zip(WEIGHTS, taus)),
                                   rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ties.delta(module).double(), 0.8 * disjoint_mean(taus, WEIGHTS),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["ties", "dare-linear", "dare-ties"])
def test_seeded_methods_are_deterministic(adapters, method):
    module = "model.layers.1.self_attn.q_proj"
    params = DeltaParams(seed=3, density=0.2, drop_rate=0.9)
    first = Merger(adapters, method, WEIGHTS, params).delta(module)
    again = Merger(adapters, method, WEIGHTS, params).delta(module)
    assert torch.equal(first, again)
    if method.startswith("dare"):
        other = Merger(adapters, method, WEIGHTS, DeltaParams(seed=4, drop_rate=0.9)).delta(module)
        assert not torch.equal(first, other)


def test_emr_formula_and_global_rescalers(adapters):
    weights = [1.0, 1.0, 1.0]
    merger = Merger(adapters, "emr", weights)
    task_abs, masked_abs = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    expected_masked = {}
    for module in MODULES:
        deltas = _deltas(adapters, module)
        sign = torch.sign(sum(deltas))
        masks = [(d * sign > 0) for d in deltas]
        tau = sign * torch.stack([d.abs() * m for d, m in zip(deltas, masks)]).amax(0)
        for i, (d, m) in enumerate(zip(deltas, masks)):
            task_abs[i] += d.abs().sum()
            masked_abs[i] += (m * tau).abs().sum()
        expected_masked[module] = [m * tau for m in masks]
    scales = (task_abs / masked_abs).tolist()
    assert merger.emr_scales() == pytest.approx(scales, rel=1e-5)
    for module in MODULES:
        for i in range(3):
            torch.testing.assert_close(merger.delta(module, i).double(), scales[i] * expected_masked[module][i],
                                       rtol=1e-5, atol=1e-7)


def test_emr_folder_task_materialises_like_merge_task(tmp_path, adapters):
    paths = [save(s, tmp_path / n) for s, n in zip(adapters, ["code", "math", "nlu"])]
    out = tmp_path / "emr"
    assert cli(["merge", *paths, "--method", "emr", "--out", str(out)]) == 0
    emr_meta = json.loads((out / "emr.json").read_text())
    assert emr_meta["tasks"] == ["code", "math", "nlu"]
    # the stored τ_uni + bit-mask + λ reproduce task 'math' exactly (rank 64 ≥ every module's min dim)
    state = materialize_emr(out, "math", rank=64)
    merger = Merger(adapters, "emr")
    for module in MODULES:
        torch.testing.assert_close(state.modules()[module].delta(), merger.delta(module, 1), rtol=1e-4, atol=1e-6)
    assert state.meta["svd"]["relative_frobenius_error"] < 1e-5
    task_out = tmp_path / "emr-math"
    assert cli(["merge", *paths, "--method", "emr", "--task", "math", "--rank", "64", "--out", str(task_out)]) == 0
    via_cli = load_adapter(task_out)
    for module in MODULES:
        torch.testing.assert_close(via_cli.modules()[module].delta(), state.modules()[module].delta(),
                                   rtol=1e-4, atol=1e-6)
    with pytest.raises(UsageError, match="not a task"):
        materialize_emr(out, "poetry")


# ---- outputs ---------------------------------------------------------------------------------
def test_delta_method_to_adapter_reports_svd_error(tmp_path, adapters):
    from peft import PeftModel

    from lorikit.models import load_model

    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    out = tmp_path / "ties"
    assert cli(["merge", *paths, "--method", "ties", "--density", "0.3", "--rank", "8", "--out", str(out)]) == 0
    errors = json.loads((out / "svd_errors.json").read_text())
    merged = load_adapter(out)
    merger = Merger(adapters, "ties", params=DeltaParams(density=0.3))
    residual = total = 0.0
    for module in MODULES:
        full = merger.delta(module).double()
        approx = merged.modules()[module].delta(torch.float64)
        assert merged.modules()[module].rank == 8
        err = (full - approx).norm().item()
        assert errors["per_module"][module] == pytest.approx(err / full.norm().item(), rel=1e-3)
        residual, total = residual + err ** 2, total + full.norm().item() ** 2
    assert errors["relative_frobenius_error"] == pytest.approx(math.sqrt(residual / total), rel=1e-3)
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["merge"]["params"] == {"lam": 1.0, "density": 0.3, "divide_by": "count"}
    assert meta["svd"]["relative_frobenius_error"] == pytest.approx(errors["relative_frobenius_error"])
    PeftModel.from_pretrained(load_model(TINY).model, str(out))  # stock PEFT loads it


@pytest.mark.parametrize("shard", ["2GB", "60KB"])
def test_into_model_loads_and_matches_in_memory_merge(tmp_path, adapters, shard):
    from transformers import AutoModelForCausalLM

    from lorikit.merge import in_memory_model
    from lorikit.models import load_model

    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    out = tmp_path / "model"
    assert cli(["merge", *paths, "--method", "ties", "--into-model", "--max-shard-size", shard,
                "--out", str(out)]) == 0
    if shard == "60KB":
        assert (out / "model.safetensors.index.json").is_file()
        assert len(list(out.glob("model-*-of-*.safetensors"))) > 2
    else:
        assert (out / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(out))
    reference = in_memory_model(load_model(TINY).model, Merger(adapters, "ties").iter_deltas())
    ids = torch.randint(4, 200, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert (out / "tokenizer.json").is_file() or (out / "tokenizer_config.json").is_file()
    assert json.loads((out / "lorikit.json").read_text())["output"] == "model"


def test_into_model_from_a_model_folder(tmp_path, adapters, tiny_bundle):
    """A base model given as a folder is streamed from its own shards."""
    from transformers import AutoModelForCausalLM

    from lorikit.merge import in_memory_model
    from lorikit.models import load_model

    base = tmp_path / "base"
    tiny_bundle.model.save_pretrained(base, max_shard_size="100KB")
    tiny_bundle.tokenizer.save_pretrained(base)
    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    out = tmp_path / "model"
    cfg = MergeConfig(adapters=paths, method="cat", weights=WEIGHTS, into_model=True, model=str(base), out=str(out))
    merge(cfg)
    loaded = AutoModelForCausalLM.from_pretrained(str(out))
    reference = in_memory_model(load_model(TINY).model, Merger(adapters, "cat", WEIGHTS).iter_deltas())
    for (name, a), (_, b) in zip(loaded.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_yaml_config_and_cli_override(tmp_path, adapters):
    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    yaml_path = tmp_path / "merge.yaml"
    yaml_path.write_text("method: magnitude-prune\nlambda: 0.5\ndensity: 0.3\nadapters:\n"
                         + "".join(f"  - path: {p}\n    weight: {w}\n" for p, w in zip(paths, WEIGHTS))
                         + f"out: {tmp_path / 'yaml-out'}\n")
    assert cli(["merge", "--config", str(yaml_path)]) == 0
    meta = json.loads((tmp_path / "yaml-out" / "lorikit.json").read_text())
    assert meta["merge"]["weights"] == WEIGHTS
    assert meta["merge"]["params"] == {"lam": 0.5, "density": 0.3}
    cfg = MergeConfig.from_yaml(yaml_path, {"density": 0.1, "out": "x"})
    assert (cfg.density, cfg.lam, cfg.out) == (0.1, 0.5, "x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: ties\ndensty: 0.2\n")
    assert cli(["merge", "--config", str(bad)]) == 2


# ---- refusals --------------------------------------------------------------------------------
def test_mismatched_adapters_are_refused_naming_the_mismatch(tmp_path, capsys):
    a = save(random_adapter(1), tmp_path / "a")
    other_base = save(random_adapter(2, base="smollm2-135m"), tmp_path / "b")
    fewer = save(random_adapter(3, modules={k: v for k, v in MODULES.items() if "k_proj" not in k}), tmp_path / "c")
    shapes = dict(MODULES, **{"model.layers.1.mlp.up_proj": (96, 64)})
    wrong_shape = save(random_adapter(4, modules=shapes), tmp_path / "d")
    for other, expected in ((other_base, "base model"), (fewer, "target modules differ: no model.layers.0.self_attn.k_proj"),
                            (wrong_shape, "module model.layers.1.mlp.up_proj is 96×64")):
        out = tmp_path / "out"
        assert cli(["merge", a, other, "--method", "cat", "--out", str(out)]) == 1
        assert expected in capsys.readouterr().err
        assert not out.exists()
    dora = random_adapter(5)
    dora.config["use_dora"] = True
    with pytest.raises(LorikitError, match="DoRA"):
        Merger([random_adapter(1), dora], "cat")


@pytest.mark.parametrize("args, message", [
    (["--weights", "0.5"], "--weights: 1 weight(s) for 2 adapter(s)"),
    (["--method", "ties", "--density", "0"], "--density 0.0: must be in (0, 1]"),
    (["--method", "ties", "--density", "1.5"], "--density 1.5: must be in (0, 1]"),
    (["--method", "dare-ties", "--drop-rate", "1"], "--drop-rate 1.0: must be in [0, 1)"),
    (["--method", "cat", "--density", "0.2"], "--density: not used by --method cat"),
    (["--method", "emr", "--into-model"], "needs --task"),
    (["--method", "nope"], "unknown merge method"),
])
def test_bad_requests_exit_2(tmp_path, capsys, args, message):
    paths = [save(random_adapter(s), tmp_path / f"a{s}") for s in (1, 2)]
    out = tmp_path / "out"
    try:
        code = cli(["merge", *paths, *args, "--out", str(out)])
    except SystemExit as exc:  # argparse's own refusals (unknown choice) exit directly
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_failed_merge_leaves_no_output(tmp_path, adapters):
    paths = [save(s, tmp_path / f"a{i}") for i, s in enumerate(adapters)]
    out = tmp_path / "model"
    # smollm2's weights have other shapes: the streaming writer fails midway; nothing is left behind
    with pytest.raises(LorikitError):
        merge(MergeConfig(adapters=paths, method="cat", into_model=True, model=str(tmp_path / "nope"), out=str(out)))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_trained_lori_adapters_cat(tmp_path, make_adapter):
    """Real adapters from the trainer (LoRI-D, different seeds → different A) merge and load in PEFT."""
    from peft import PeftModel

    from lorikit.models import load_model

    a = make_adapter(method="lori-d", data="builtin:compare", seed=1, steps=2)
    b = make_adapter(method="lori-d", data="builtin:reverse", seed=2, steps=2)
    out = tmp_path / "cat"
    assert cli(["merge", str(a), str(b), "--method", "cat", "--weights", "0.5", "0.5", "--out", str(out)]) == 0
    states = [load_adapter(a), load_adapter(b)]
    merged = load_adapter(out)
    for module in states[0].modules():
        expected = sum(0.5 * direct_delta(s, module) for s in states)
        torch.testing.assert_close(merged.modules()[module].delta(torch.float64), expected, rtol=1e-5, atol=1e-7)
    PeftModel.from_pretrained(load_model(TINY).model, str(out))
