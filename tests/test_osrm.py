"""OSRM: statistics, analytical A, training with --init osrm, transform, sequence classification."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from lorikit.errors import LorikitError, UsageError
from lorikit.models.loading import canonical_model_id

TINY = "tiny-random-llama"
TASKS = ["arith=builtin:arithmetic", "rev=builtin:reverse", "cmp=builtin:compare"]


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    from lorikit.osrm import StatsConfig, collect_stats

    out = tmp_path_factory.mktemp("osrm") / "stats"
    return collect_stats(StatsConfig(out=str(out), model=TINY, data=TASKS, samples=12, max_length=48, batch_size=4))


def _orthonormal(A: torch.Tensor, atol=1e-5) -> bool:
    A = A.double()
    return torch.allclose(A @ A.T, torch.eye(A.shape[0], dtype=torch.float64), atol=atol)


# ---- statistics -------------------------------------------------------------------------------
def test_stats_manifest_and_shared_inputs_stored_once(stats_dir):
    manifest = json.loads((stats_dir / "osrm_stats.json").read_text())
    assert canonical_model_id(manifest["model"]) == TINY and list(manifest["tasks"]) == ["arith", "rev", "cmp"]
    assert manifest["max_length"] == 48 and manifest["samples"] == 12 and manifest["padding"] == "excluded"
    modules = manifest["modules"]
    assert len(modules) == 14  # 7 projections × 2 layers
    for layer in (0, 1):
        p = f"model.layers.{layer}"
        q = modules[f"{p}.self_attn.q_proj"]
        assert modules[f"{p}.self_attn.k_proj"] == q == modules[f"{p}.self_attn.v_proj"]
        assert modules[f"{p}.mlp.up_proj"] == modules[f"{p}.mlp.gate_proj"]
        assert len({q, modules[f"{p}.self_attn.o_proj"], modules[f"{p}.mlp.gate_proj"], modules[f"{p}.mlp.down_proj"]}) == 4
    with safe_open(str(stats_dir / "arith.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        assert fh.get_tensor("model.layers.0.self_attn.q_proj.second_moment").dtype == torch.float64
    groups = set(modules.values())
    assert len(groups) == 8
    assert keys == {f"{g}.{t}" for g in groups for t in ("count", "mean", "second_moment")}
    assert manifest["dims"]["model.layers.0.mlp.down_proj"] == 128


def _capture_inputs(model, module_name, batches):
    """Brute force: every real-token input vector of one module."""
    rows = []
    mod = dict(model.named_modules())[module_name]
    state = {}
    handle = mod.register_forward_pre_hook(lambda m, a: rows.append(a[0][state["mask"]].double()))
    try:
        with torch.no_grad():
            for ids, mask in batches:
                state["mask"] = mask.bool()
                model.model(input_ids=ids, attention_mask=mask)
    finally:
        handle.remove()
    return torch.cat(rows)


def _record(model, tok, texts, batch_size, max_length=64, second_moment=True):
    from lorikit.osrm.stats import InputRecorder, record_task, token_batches

    rec = InputRecorder(model, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        second_moment)
    try:
        record_task(rec, model, token_batches(tok, texts, max_length, batch_size), torch.device("cpu"))
    finally:
        rec.close()
    return rec.tensors(), rec


def test_streamed_statistics_equal_brute_force(tiny_bundle):
    from lorikit.osrm.stats import token_batches

    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    texts = [f"example number {i} " * (1 + i % 4) for i in range(10)]
    stats, _ = _record(model, tok, texts, batch_size=3)
    for module in ("model.layers.1.self_attn.q_proj", "model.layers.0.mlp.down_proj"):
        H = _capture_inputs(model, module, token_batches(tok, texts, 64, 3))
        assert int(stats[f"{module}.count"][0]) == H.shape[0]
        assert torch.allclose(stats[f"{module}.mean"], H.mean(0), atol=1e-6)
        assert torch.allclose(stats[f"{module}.second_moment"], H.T @ H, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("d,dtype", [(100, torch.float64), (800, torch.float64), (1536, torch.float32)])
def test_upper_triangle_gram_panels_equal_full_product(d, dtype):
    from lorikit.osrm.stats import add_upper_gram

    h = torch.randn(40, d, dtype=torch.float64)
    acc = torch.zeros(d, d, dtype=torch.float64)
    add_upper_gram(acc, h.to(dtype))
    add_upper_gram(acc, h.to(dtype))
    full = torch.triu(acc) + torch.triu(acc, 1).T
    assert torch.allclose(full, 2 * h.T @ h, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-4)


def test_padding_excluded_from_statistics(tiny_bundle):
    """One 120-token text among 2–5-token ones: in one batch most positions are padding."""
    from lorikit.osrm.stats import token_batches

    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    texts = ["a" * 120, "hi", "yes", "no!", "ok", "abcde"]
    padded, _ = _record(model, tok, texts, batch_size=len(texts), max_length=128)
    unpadded, _ = _record(model, tok, texts, batch_size=1, max_length=128)
    ids, mask = next(token_batches(tok, texts, 128, len(texts)))
    assert (mask == 0).float().mean() > 0.7  # heavy padding indeed
    assert padded.keys() == unpadded.keys()
    for key in padded:  # equal to float32 summation noise, relative to the statistic's scale
        scale = unpadded[key].double().abs().max()
        assert (padded[key].double() - unpadded[key].double()).abs().max() <= 1e-5 * scale, key
    # the reference's averaging over padded positions would give a different mean
    module = "model.layers.0.self_attn.q_proj"
    all_positions = _capture_inputs(model, module, [(ids, torch.ones_like(mask))])
    assert not torch.allclose(all_positions.mean(0), padded[f"{module}.mean"], atol=1e-3)


def test_stats_errors(tmp_path, stats_dir):
    from lorikit.osrm import OsrmStats, StatsConfig

    with pytest.raises(UsageError, match="TASK=SPEC"):
        StatsConfig(out=str(tmp_path / "x"), data=["builtin:arithmetic"])
    with pytest.raises(UsageError, match="given twice"):
        StatsConfig(out=str(tmp_path / "x"), data=["a=builtin:reverse", "a=builtin:compare"])
    with pytest.raises(UsageError, match="no osrm_stats.json"):
        OsrmStats(tmp_path)
    stats = OsrmStats(stats_dir)
    with pytest.raises(UsageError, match="'code'.*arith, rev, cmp"):
        stats.mean("code", "model.layers.0.self_attn.q_proj")
    with pytest.raises(UsageError, match="no statistics for module 'model.layers.9.self_attn.q_proj'"):
        stats.mean("arith", "model.layers.9.self_attn.q_proj")
    with pytest.raises(UsageError, match="model 'tiny-random-llama', not of 'other/model'"):
        stats.check_model("other/model")


# ---- analytical A -----------------------------------------------------------------------------
def test_mean_mode_is_orthonormal_null_space_of_other_means(stats_dir):
    from lorikit.osrm import OsrmStats, osrm_projection

    stats = OsrmStats(stats_dir)
    for module in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
        A = osrm_projection(stats, "arith", module, 8, "mean")
        assert A.shape[0] == 8 and _orthonormal(A, 1e-10)
        for other in ("rev", "cmp"):
            mu = stats.mean(other, module)
            assert (A @ mu).abs().max() < 1e-10 * mu.norm()
        # the task's own mean is not annihilated: this is about the *other* tasks
        assert (A @ stats.mean("arith", module)).norm() > 1e-6 * stats.mean("arith", module).norm()


def test_cov_mode_spans_bottom_eigenspace(stats_dir):
    from lorikit.osrm import OsrmStats, osrm_projection

    stats = OsrmStats(stats_dir)
    module = "model.layers.1.self_attn.o_proj"
    r = 6
    A = osrm_projection(stats, "rev", module, r, "cov")
    assert _orthonormal(A, 1e-10)
    C = (stats.second_moment("arith", module) + stats.second_moment("cmp", module)).numpy()
    w, V = np.linalg.eigh(C)
    assert w[r] - w[r - 1] > 1e-8 * w[-1]  # a gap, so the bottom-r eigenspace is well defined
    Vr = V[:, :r]
    np.testing.assert_allclose(A.numpy().T @ A.numpy(), Vr @ Vr.T, atol=1e-8)
    # and it is the minimiser: energy of the other tasks' inputs = sum of the r smallest eigenvalues
    assert np.isclose(np.trace(A.numpy() @ C @ A.numpy().T), w[:r].sum(), rtol=1e-8)


def test_rank_beyond_available_basis_is_refused_with_numbers():
    from lorikit.osrm import cov_basis, mean_basis

    means = torch.randn(2, 10, dtype=torch.float64)
    assert mean_basis(means, 8).shape == (8, 10)
    with pytest.raises(UsageError, match=r"rank 9 > null space.*d = 10, 2 mean\(s\) of rank 2, null space 8"):
        mean_basis(means, 9, "m")
    with pytest.raises(UsageError, match="rank 11 > input dimension 10"):
        cov_basis(torch.eye(10, dtype=torch.float64), 11)


def test_single_task_stats_refused(tmp_path):
    from lorikit.osrm import OsrmStats, StatsConfig, collect_stats, osrm_projection

    out = collect_stats(StatsConfig(out=str(tmp_path / "one"), model=TINY, data=["only=builtin:compare"],
                                    samples=2, max_length=16, second_moment=False))
    stats = OsrmStats(out)
    with pytest.raises(UsageError, match="at least one other task"):
        osrm_projection(stats, "only", "model.layers.0.self_attn.q_proj", 2)
    with pytest.raises(UsageError, match="without the second moment"):
        stats.second_moment("only", "model.layers.0.self_attn.q_proj")


# ---- training with --init osrm ------------------------------------------------------------------
def _layer_As(adapter_dir):
    from lorikit.adapters.state import load_adapter

    return {n: m.A for n, m in load_adapter(adapter_dir).modules().items()}


def test_train_init_osrm_frozen_A_stays_orthonormal(make_adapter, stats_dir):
    from lorikit.osrm import OsrmStats, osrm_projection

    out = make_adapter(method="lora", data="builtin:arithmetic", rank=4, steps=3, init="osrm",
                       osrm_stats=str(stats_dir), task="arith", osrm_mode="cov", freeze="A")
    stats = OsrmStats(stats_dir)
    for name, A in _layer_As(out).items():
        assert _orthonormal(A)
        assert torch.allclose(A.double(), osrm_projection(stats, "arith", name, 4, "cov"), atol=1e-6)
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["init"]["kind"] == "osrm" and meta["init"]["mode"] == "cov" and meta["init"]["task"] == "arith"
    assert meta["init"]["other_tasks"] == ["rev", "cmp"] and meta["freeze"] == "A" and meta["a_init"] == "osrm"


def test_train_init_osrm_unfrozen_trains_A_and_lori_d_keeps_it(make_adapter, stats_dir):
    from lorikit.osrm import OsrmStats, osrm_projection

    stats = OsrmStats(stats_dir)
    trained = make_adapter(method="lora", data="builtin:arithmetic", rank=4, steps=3, lr=5e-2, init="osrm",
                           osrm_stats=str(stats_dir), task="arith")
    moved = [not torch.allclose(A.double(), osrm_projection(stats, "arith", n, 4, "mean"), atol=1e-4)
             for n, A in _layer_As(trained).items()]
    assert all(moved)  # --freeze none (OSRM's default) trains A too
    lori = make_adapter(method="lori-d", data="builtin:arithmetic", rank=4, steps=2, init="osrm",
                        osrm_stats=str(stats_dir), task="arith", osrm_scale="kaiming")
    for name, A in _layer_As(lori).items():
        assert torch.allclose(A.double(), osrm_projection(stats, "arith", name, 4, "mean") / 3 ** 0.5, atol=1e-6)


def test_train_init_osrm_errors(tmp_path, stats_dir):
    from lorikit.adapters.build import AdapterConfig
    from lorikit.osrm.init import OsrmInitConfig
    from lorikit.train import TrainConfig, train

    with pytest.raises(UsageError, match="--freeze B"):
        TrainConfig(out=str(tmp_path / "x"), freeze="B")
    with pytest.raises(UsageError, match="needs --osrm-stats"):
        TrainConfig(out=str(tmp_path / "x"), init="osrm", osrm=OsrmInitConfig(task="arith"))
    with pytest.raises(UsageError, match="--osrm-scale 'big'"):
        TrainConfig(out=str(tmp_path / "x"), init="osrm",
                    osrm=OsrmInitConfig(task="arith", osrm_stats=str(stats_dir), osrm_scale="big"))
    cfg = TrainConfig(out=str(tmp_path / "y"), model=TINY, max_steps=1, init="osrm",
                      osrm=OsrmInitConfig(osrm_stats=str(stats_dir), task="arith"), adapter=AdapterConfig(rank=63))
    with pytest.raises(UsageError, match="rank 63 > null space.*d = 64.*null space 62"):
        train(cfg)
    assert not (tmp_path / "y").exists()


# ---- transform ----------------------------------------------------------------------------------
def test_transform_keeps_exactly_the_projection_and_loads_in_peft(make_adapter, stats_dir, tmp_path, tiny_bundle):
    from peft import PeftModel

    from lorikit.adapters.state import load_adapter
    from lorikit.osrm import OsrmStats, TransformConfig, osrm_projection, transform

    src = make_adapter(method="lora", data="builtin:reverse", rank=4, steps=3, lr=5e-2)
    lines = []
    out, kept = transform(TransformConfig(source=str(src), osrm_stats=str(stats_dir), task="rev",
                                          out=str(tmp_path / "t"), osrm_mode="cov"), report=lines.append)
    assert lines[-1].startswith("overall: kept") and len(lines) == 15
    before, after, stats = load_adapter(src).modules(), load_adapter(out).modules(), OsrmStats(stats_dir)
    total_kept = total = 0.0
    for name, m in before.items():
        U = osrm_projection(stats, "rev", name, 4, "cov")
        dW = m.delta(torch.float64)
        expected = dW @ U.T @ U
        assert torch.allclose(after[name].delta(torch.float64), expected, atol=1e-6)
        assert _orthonormal(after[name].A)
        assert kept[name] == pytest.approx(float(expected.norm() ** 2 / dW.norm() ** 2), rel=1e-6)
        total_kept += float(expected.norm() ** 2)
        total += float(dW.norm() ** 2)
    assert kept["overall"] == pytest.approx(total_kept / total, rel=1e-6) and 0 < kept["overall"] < 1
    peft_model = PeftModel.from_pretrained(tiny_bundle.model, str(out))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    merged = peft_model.merge_and_unload()
    assert torch.isfinite(merged(input_ids=ids).logits).all()
    q = "model.layers.0.self_attn.q_proj"
    from lorikit.models import load_model

    base_w = dict(load_model(TINY).model.named_modules())[q].weight.double()
    w = dict(merged.named_modules())[q].weight.double()
    assert torch.allclose(w - base_w, after[q].delta(torch.float64), atol=1e-5)


def test_transform_of_osrm_trained_frozen_adapter_keeps_everything(make_adapter, stats_dir, tmp_path):
    from lorikit.osrm import TransformConfig, transform

    src = make_adapter(method="lora", data="builtin:arithmetic", rank=4, steps=2, lr=5e-2, init="osrm",
                       osrm_stats=str(stats_dir), task="arith", freeze="A")
    _, kept = transform(TransformConfig(source=str(src), osrm_stats=str(stats_dir), task="arith",
                                        out=str(tmp_path / "t")), report=lambda s: None)
    assert kept["overall"] == pytest.approx(1.0, abs=1e-6)


def test_transform_full_model_folder_with_head(stats_dir, tmp_path):
    from peft import PeftModel

    from lorikit.adapters.state import load_adapter
    from lorikit.models import load_model
    from lorikit.osrm import OsrmStats, TransformConfig, osrm_projection, transform

    tuned = load_model(TINY, head="classification", num_labels=3).model
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    tuned.save_pretrained(tmp_path / "ft")
    out, kept = transform(TransformConfig(source=str(tmp_path / "ft"), osrm_stats=str(stats_dir), task="cmp",
                                          out=str(tmp_path / "t"), rank=4), report=lambda s: None)
    state = load_adapter(out)
    assert state.config["task_type"] == "SEQ_CLS" and state.config["modules_to_save"] == ["score"]
    assert torch.equal(state.other_tensors()["base_model.model.score.weight"], tuned.score.weight)
    base = dict(load_model(TINY).model.named_modules())
    module = "model.layers.1.mlp.up_proj"
    dW = dict(tuned.named_modules())[module].weight.double() - base[module].weight.double()
    U = osrm_projection(OsrmStats(stats_dir), "cmp", module, 4, "mean")
    assert torch.allclose(state.modules()[module].delta(torch.float64), dW @ U.T @ U, atol=1e-6)
    fresh = load_model(TINY, head="classification", num_labels=3).model
    reloaded = PeftModel.from_pretrained(fresh, str(out))
    assert torch.equal(reloaded.base_model.model.score.modules_to_save["default"].weight, tuned.score.weight)


def test_transform_refuses_other_model_and_task(make_adapter, stats_dir, tmp_path):
    from lorikit.osrm import TransformConfig, transform

    src = make_adapter(method="lora", rank=2, steps=1)
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "some/other-model"
    (src / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="'some/other-model'"):
        transform(TransformConfig(source=str(src), osrm_stats=str(stats_dir), task="arith", out=str(tmp_path / "a")))
    with pytest.raises(UsageError, match="--task 'nope'"):
        transform(TransformConfig(source=str(src), osrm_stats=str(stats_dir), task="nope", out=str(tmp_path / "b")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---- sequence classification --------------------------------------------------------------------
def _glue_file(path, n=24, regression=False, pairs=False):
    rows = []
    for i in range(n):
        label = (i % 5) / 4 if regression else i % 2
        text = ("good great fine " if i % 2 else "bad awful poor ") + str(i)
        rows.append({"sentence1": text, "sentence2": "yes" if i % 3 else "no", "label": label} if pairs
                    else {"text": text, "label": label})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_classification_adapter_round_trips_with_its_head(tmp_path):
    from peft import PeftModel

    from lorikit.adapters.build import AdapterConfig
    from lorikit.eval.scorers.classification import predict_classification
    from lorikit.models import load_model
    from lorikit.train import TrainConfig
    from lorikit.train.trainer import Trainer

    class Keep(Trainer):
        def save(self, bundle, peft_model, *args):
            self.kept = (bundle, peft_model)
            return super().save(bundle, peft_model, *args)

    data = _glue_file(tmp_path / "glue.jsonl", pairs=True)
    cfg = TrainConfig(out=str(tmp_path / "clf"), model=TINY, data=str(data), head="classification", num_labels=3,
                      max_steps=4, lr=1e-2, batch_size=8, max_length=64,
                      adapter=AdapterConfig(rank=4, target_modules=["q_proj", "v_proj"]))
    trainer = Keep(cfg)
    out = trainer.run()
    bundle, trained = trainer.kept
    texts = [("good great fine 1", "yes"), ("bad awful poor 2", "no"), "just text"]
    expected = predict_classification(trained, bundle.tokenizer, texts)
    untouched_head = load_model(TINY, head="classification", num_labels=3).model.score.weight
    reloaded = PeftModel.from_pretrained(load_model(TINY, head="classification", num_labels=3).model, str(out))
    assert torch.allclose(predict_classification(reloaded, bundle.tokenizer, texts), expected, atol=1e-5)
    assert not torch.allclose(reloaded.base_model.model.score.modules_to_save["default"].weight, untouched_head)
    meta = json.loads((out / "lorikit.json").read_text())
    assert meta["head"] == "classification" and meta["num_labels"] == 3
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["examples"] == 8


def test_regression_head_and_missing_field(tmp_path, make_adapter):
    data = _glue_file(tmp_path / "sts.jsonl", regression=True)
    out = make_adapter(method="lora", data=str(data), head="classification", num_labels=1, steps=2)
    assert json.loads((out / "lorikit.json").read_text())["num_labels"] == 1
    (tmp_path / "bad.jsonl").write_text(json.dumps({"premise": "x", "label": 1}) + "\n")
    with pytest.raises(LorikitError, match=r"bad.jsonl:1: classification rows need text fields .*the row has \['label', 'premise'\]"):
        make_adapter(method="lora", data=str(tmp_path / "bad.jsonl"), head="classification", steps=1)
    (tmp_path / "nolabel.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(LorikitError, match="nolabel.jsonl:1: missing field 'label'"):
        make_adapter(method="lora", data=str(tmp_path / "nolabel.jsonl"), head="classification", steps=1)
    (tmp_path / "range.jsonl").write_text(json.dumps({"text": "x", "label": 5}) + "\n")
    with pytest.raises(LorikitError, match=r"outside \[0, 2\)"):
        make_adapter(method="lora", data=str(tmp_path / "range.jsonl"), head="classification", steps=1)


def test_classification_metrics_against_known_values():
    from lorikit.eval.scorers.classification import (accuracy, classification_metrics, f1, matthews, pearson,
                                                     spearman)

    pred, gold = [1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 0, 0]
    assert accuracy(pred, gold) == pytest.approx(4 / 6)
    assert f1(pred, gold) == pytest.approx(2 * 2 / (2 * 2 + 2 + 0))  # TP 2, FP 2, FN 0
    # binary MCC = (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)) with TP 2, TN 2, FP 2, FN 0
    assert matthews(pred, gold) == pytest.approx((2 * 2 - 0) / np.sqrt(4 * 2 * 4 * 2))
    assert matthews([0, 0, 0], [0, 1, 0]) == 0.0
    assert matthews([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)
    x, y = [1.0, 2.0, 3.0, 5.0, 4.0], [2.0, 4.1, 5.9, 8.5, 9.0]
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert spearman(x, y) == pytest.approx(0.9)  # one swapped pair among 5: 1 − 6·2 / (5·24)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert set(classification_metrics([0.1, 0.5, 0.9], [0, 0.4, 1.0], 1)) == {"pearson", "spearman", "pearson_spearman"}
    assert classification_metrics([0, 2, 1], [0, 2, 2], 3)["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    with pytest.raises(LorikitError, match="3 predictions for 2 references"):
        accuracy([1, 0, 1], [1, 0])


# ---- command line -------------------------------------------------------------------------------
def test_cli_stats_and_transform(tmp_path, stats_dir, make_adapter, capsys):
    from lorikit.cli import main

    assert main(["osrm-stats", "--model", TINY, "--data", "builtin:compare", "--out", str(tmp_path / "s")]) == 2
    assert "TASK=SPEC" in capsys.readouterr().err
    src = make_adapter(method="lora", rank=2, steps=1)
    rc = main(["osrm-transform", str(src), "--osrm-stats", str(stats_dir), "--task", "cmp", "--out", str(tmp_path / "t"),
               "--osrm-mode", "cov"])
    out = capsys.readouterr().out
    assert rc == 0 and "overall: kept" in out and (tmp_path / "t" / "adapter_model.safetensors").is_file()
    rc = main(["osrm-transform", str(src), "--osrm-stats", str(stats_dir), "--task", "cmp", "--out", str(tmp_path / "u"),
               "--rank", "63"])
    assert rc == 2 and "null space 62" in capsys.readouterr().err and not (tmp_path / "u").exists()
