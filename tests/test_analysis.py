"""Analysis metrics against hand-computed cases, output shift against PEFT's own forward, report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lorikit.adapters.state import AdapterState, LoraModule, lora_key
from lorikit.analysis import (compare_adapters, delta_bases, load_mask, load_scores, mask_overlap,
                              module_cosine, module_overlap, output_shift, score_table, write_report)
from lorikit.errors import LorikitError, UsageError

OUT, IN, R = 12, 10, 2


def eye_rows(idx, n):
    return torch.eye(n)[list(idx)]


def module(A, B, scaling=2.0, name="model.layers.0.self_attn.q_proj"):
    return LoraModule(name, A.float(), B.float(), scaling)


def state(mods):
    return AdapterState.from_modules(mods, {"peft_type": "LORA", "r": R, "lora_alpha": 2 * R})


def test_orthogonal_adapters_have_zero_overlap_and_cosine():
    m1 = module(eye_rows([0, 1], IN), eye_rows([0, 1], OUT).T * 3)
    m2 = module(eye_rows([2, 3], IN), eye_rows([4, 5], OUT).T * 0.5)
    got = module_overlap(m1, m2)
    assert got["row"] == pytest.approx(0.0, abs=1e-12) and got["col"] == pytest.approx(0.0, abs=1e-12)
    assert module_cosine(m1, m2) == pytest.approx(0.0, abs=1e-12)


def test_identical_subspaces_have_overlap_one_even_in_another_basis():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(R, IN, generator=g)
    B = torch.randn(OUT, R, generator=g)
    M = torch.tensor([[2.0, 1.0], [0.5, -1.0]])  # invertible mix: same spans, different factors
    m1, m2 = module(A, B), module(M @ A, B @ M.T)
    got = module_overlap(m1, m2)
    assert got["row"] == pytest.approx(1.0, abs=1e-9) and got["col"] == pytest.approx(1.0, abs=1e-9)
    assert module_overlap(m1, m1) == {"row": pytest.approx(1.0), "col": pytest.approx(1.0)}


def test_overlap_of_lines_at_an_angle_is_cos_squared():
    theta = 0.3
    a1 = torch.zeros(1, IN); a1[0, 0] = 1
    a2 = torch.zeros(1, IN); a2[0, 0], a2[0, 1] = math.cos(theta), math.sin(theta)
    b = torch.zeros(OUT, 1); b[0, 0] = 1
    got = module_overlap(module(a1, b), module(a2, b))
    assert got["row"] == pytest.approx(math.cos(theta) ** 2, abs=1e-7)  # factors are float32
    assert got["col"] == pytest.approx(1.0)


def test_rank_comes_from_delta_w_not_the_factor_shapes():
    A = torch.randn(3, IN)
    B = torch.randn(OUT, 3)
    B[:, 1] = 0  # a pruned/untrained column: ΔW has rank 2
    assert delta_bases(module(A, B)).rank == 2
    zero = module(A, torch.zeros(OUT, 3))
    assert delta_bases(zero).rank == 0
    assert math.isnan(module_overlap(zero, module(A, B))["row"])


def test_cosine_from_factors_equals_cosine_of_dense_delta():
    g = torch.Generator().manual_seed(1)
    mods1 = [module(torch.randn(R, IN, generator=g), torch.randn(OUT, R, generator=g), 2.0, f"model.layers.{i}.mlp.up_proj")
             for i in range(2)]
    mods2 = [module(torch.randn(3, IN, generator=g), torch.randn(OUT, 3, generator=g), 0.7, f"model.layers.{i}.mlp.up_proj")
             for i in range(2)]
    dense = torch.nn.functional.cosine_similarity(mods1[0].delta().flatten(), mods2[0].delta().flatten(), dim=0)
    assert module_cosine(mods1[0], mods2[0]) == pytest.approx(float(dense), abs=1e-6)
    cmp = compare_adapters({"a": state(mods1), "b": state(mods2)})
    flat1 = torch.cat([m.delta().flatten() for m in mods1])
    flat2 = torch.cat([m.delta().flatten() for m in mods2])
    whole = torch.nn.functional.cosine_similarity(flat1, flat2, dim=0)
    assert cmp.overall_cosine[0, 1] == pytest.approx(float(whole), abs=1e-6)
    assert cmp.overall_cosine[0, 0] == pytest.approx(1.0)
    assert cmp.row.shape == (2, 2, 2) and list(cmp.ranks[1]) == [3, 3]


def test_compare_refuses_adapters_on_different_modules():
    a = state([module(torch.randn(R, IN), torch.randn(OUT, R), name="model.layers.0.self_attn.q_proj")])
    b = state([module(torch.randn(R, IN), torch.randn(OUT, R), name="model.layers.0.self_attn.v_proj")])
    with pytest.raises(LorikitError, match="different modules"):
        compare_adapters({"a": a, "b": b})


def test_mask_jaccard_of_hand_masks(tmp_path):
    key_q = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"
    key_v = "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"  # no .default: also accepted
    m1 = {key_q: torch.tensor([[1, 1], [0, 0]], dtype=torch.bool), key_v: torch.tensor([[1, 0]], dtype=torch.bool)}
    m2 = {key_q: torch.tensor([[1, 0], [1, 0]], dtype=torch.bool), key_v: torch.tensor([[0, 1]], dtype=torch.bool)}
    torch.save(m1, tmp_path / "m1.pt")
    torch.save(m2, tmp_path / "m2.pt")
    loaded = {"a": load_mask(tmp_path / "m1.pt"), "b": load_mask(tmp_path / "m2.pt")}
    assert set(loaded["a"]) == {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"}
    res = mask_overlap(loaded)
    assert res.per_module[0, 1, 0] == pytest.approx(1 / 3)  # q: ∩ 1, ∪ 3
    assert res.per_module[0, 1, 1] == pytest.approx(0.0)  # v: disjoint
    assert res.overall[0, 1] == pytest.approx(1 / 5)  # pooled: ∩ 1, ∪ 5
    assert res.overall[0, 0] == pytest.approx(1.0)
    assert res.density == [pytest.approx(0.5), pytest.approx(0.5)]
    torch.save({key_q: torch.ones(3, 2, dtype=torch.bool)}, tmp_path / "m3.pt")
    with pytest.raises(LorikitError, match="different modules"):
        mask_overlap({"a": loaded["a"], "c": load_mask(tmp_path / "m3.pt")})
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(LorikitError, match="bad.pt"):
        load_mask(tmp_path / "bad.pt")


def test_score_table_retention_and_loading(tmp_path):
    scores = {("arith", "arith"): 0.8, ("rev", "rev"): 0.5, ("merged", "arith"): 0.6, ("merged", "rev"): 0.5}
    table = score_table(scores, single_of={"arith": "arith", "rev": "rev"})
    assert table.rows == ["arith", "rev", "merged"] and table.tasks == ["arith", "rev"]
    assert math.isnan(table.scores[0, 1])
    assert table.retention[2].tolist() == pytest.approx([0.75, 1.0])
    assert table.average_retention()[2] == pytest.approx(0.875)
    assert "88%" in table.markdown()
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"adapter": a, "task": t, "score": s} for (a, t), s in scores.items()]))
    assert load_scores(path) == scores
    path.write_text(json.dumps({"arith": {"arith": 0.8}}))
    assert load_scores(path) == {("arith", "arith"): 0.8}
    path.write_text(json.dumps([{"adapter": "x"}]))
    with pytest.raises(LorikitError, match="record 0"):
        load_scores(path)


def test_output_shift_matches_peft_forward(make_adapter, tiny_bundle):
    """‖ΔW h‖/‖W h‖ from the hooks equals PEFT's (LoRA layer − base layer) output on the base model's h."""
    from peft import PeftModel

    from lorikit.adapters.build import lora_layers
    from lorikit.adapters.state import load_adapter
    from lorikit.data import collate, load_examples, tokenize_example
    from lorikit.models import load_model

    paths = {"a": make_adapter(method="lora", data="builtin:arithmetic", seed=1, steps=2),
             "b": make_adapter(method="lori-d", data="builtin:reverse", seed=2, steps=2)}
    states = {k: load_adapter(p) for k, p in paths.items()}
    data = {"arith": "builtin:arithmetic", "rev": "builtin:reverse"}
    got = output_shift(tiny_bundle.model, tiny_bundle.tokenizer, states, data, samples=3, batch_size=2, max_length=64)
    assert got.per_module.shape == (2, 2, 14)
    assert (got.per_module > 0).all()

    # the inputs every target module sees in the base model, real tokens only
    base = load_model("tiny-random-llama").model.eval()
    inputs: dict[str, dict[str, list[torch.Tensor]]] = {t: {} for t in data}
    for t, spec in data.items():
        tok = [tokenize_example(tiny_bundle.tokenizer, e.prompt, e.response, 64) for e in load_examples(spec, limit=3)]
        batch = collate(tok, tiny_bundle.tokenizer.pad_token_id)
        mask = batch["attention_mask"].bool()
        handles = [base.get_submodule(m).register_forward_hook(
            lambda layer, inp, out, m=m: inputs[t].setdefault(m, []).append(inp[0][mask])) for m in got.modules]
        with torch.no_grad():
            base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        for h in handles:
            h.remove()
    for i, name in enumerate(paths):
        layers = dict(lora_layers(PeftModel.from_pretrained(load_model("tiny-random-llama").model, str(paths[name]))))
        for t, task in enumerate(data):
            for k, mod in enumerate(got.modules):
                h = torch.cat(inputs[task][mod])
                with torch.no_grad():
                    delta = layers[mod](h) - layers[mod].base_layer(h)
                    wh = h @ layers[mod].base_layer.weight.T
                assert got.per_module[i, t, k] == pytest.approx(float(delta.norm() / wh.norm()), rel=1e-4)


def test_report_writes_pngs_and_markdown(tmp_path):
    g = torch.Generator().manual_seed(3)
    names = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    states = {n: state([module(torch.randn(R, IN, generator=g), torch.randn(OUT, R, generator=g), name=m) for m in names])
              for n in ("x", "y", "z")}
    cmp = compare_adapters(states)
    table = score_table({("x", "t1"): 0.5, ("y", "t2"): 0.4, ("merged", "t1"): 0.45, ("merged", "t2"): 0.2},
                        single_of={"t1": "x", "t2": "y"})
    logs = {"x": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]}
    out = write_report(tmp_path / "rep", comparison=cmp, scores=table, train_logs=logs,
                       sweep={"cat": [(0.3, 0.4), (0.5, 0.5), (0.7, 0.45)]})
    files = {p.name for p in out.iterdir()}
    assert {"report.md", "analysis.json", "overlap.png", "scores.png", "sweep.png", "training.png",
            "layers-x-y.png", "layers-x-z.png", "layers-y-z.png"} <= files
    md = (out / "report.md").read_text()
    for png in {name for name in files if name.endswith(".png")}:
        assert f"]({png})" in md
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads((out / "analysis.json").read_text())
    assert payload["comparison"]["overall"]["row_overlap"][0][0] == pytest.approx(1.0)
    with pytest.raises(UsageError, match="not empty"):
        write_report(tmp_path / "rep", comparison=cmp)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep")]  # no temp leftovers


def test_cli_analyze(make_adapter, tmp_path, capsys):
    from lorikit.cli import main

    a = make_adapter(method="lori-d", seed=1, steps=2)
    b = make_adapter(method="lori-d", seed=1, steps=2, data="builtin:reverse")
    out = tmp_path / "report"
    assert main(["analyze", f"first={a}", f"second={b}", "--out", str(out)]) == 0
    payload = json.loads((out / "analysis.json").read_text())
    assert payload["comparison"]["adapters"] == ["first", "second"]
    # same seed → same frozen A → identical row spaces, whatever B learned
    assert payload["comparison"]["overall"]["row_overlap"][0][1] == pytest.approx(1.0, abs=1e-6)
    assert (out / "training.png").is_file()
    assert main(["analyze", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "r2")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


def test_load_sweep_reads_scores_and_eval_outputs(tmp_path):
    from lorikit.analysis import load_sweep

    ev = tmp_path / "eval-w0p7"
    ev.mkdir()
    (ev / "result.json").write_text(json.dumps({"task": "builtin", "score": 0.25, "n": 4}))
    (tmp_path / "r.json").write_text(json.dumps({"score": 0.75}))
    spec = {"cat: a": {0.7: str(ev), "0.3": 0.5, 0.5: str(tmp_path / "r.json")}}
    assert load_sweep(spec) == {"cat: a": [(0.3, 0.5), (0.5, 0.75), (0.7, 0.25)]}  # sorted by weight
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"cat: a": {"0.3": 0.5, "0.7": str(ev)}}))
    assert load_sweep(path) == {"cat: a": [(0.3, 0.5), (0.7, 0.25)]}
    for bad, message in [({"s": {"heavy": 0.1}}, "weight 'heavy': the weight is not a number"),
                         ({"s": {0.5: str(tmp_path / "none")}}, "no such eval result"),
                         ({"s": {0.5: 0.1, "0.50": 0.2}}, "weight 0.5 given twice"),
                         ({"s": {0.5: True}}, "not a score"),
                         ({"s": {}}, "series 's': expected a non-empty mapping"),
                         ({}, "expected a non-empty mapping")]:
        with pytest.raises(LorikitError, match=message):
            load_sweep(bad)
    (ev / "result.json").write_text(json.dumps({"task": "builtin"}))
    with pytest.raises(LorikitError, match="no numeric 'score'"):
        load_sweep({"s": {0.5: str(ev)}})
    with pytest.raises(LorikitError, match="--sweep .*missing.json: no such file"):
        load_sweep(tmp_path / "missing.json")


def test_cli_analyze_sweep_plots_score_vs_weight(make_adapter, tmp_path, capsys):
    from lorikit.cli import main

    a = make_adapter(method="lori-d", seed=1, steps=2)
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"cat: arithmetic": {"0.3": 0.2, "0.5": 0.4, "0.7": 0.3}}))
    out = tmp_path / "report"
    assert main(["analyze", str(a), "--sweep", str(sweep), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "![sweep](sweep.png)" in md and "| cat: arithmetic | 0.7 | 0.300 |" in md
    assert json.loads((out / "analysis.json").read_text())["sweep"] == {
        "cat: arithmetic": [[0.3, 0.2], [0.5, 0.4], [0.7, 0.3]]}
    sweep.write_text(json.dumps({"cat": {"x": 0.1}}))
    assert main(["analyze", str(a), "--sweep", str(sweep), "--out", str(tmp_path / "r2")]) != 0
    assert "weight 'x'" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
