"""Evaluation routes that join two parts of lorikit: classification adapters and EMR merges."""

from __future__ import annotations

import json

import torch

from lorikit.adapters.build import AdapterConfig
from lorikit.eval.config import EvalConfig
from lorikit.eval.runner import evaluate
from lorikit.train import TrainConfig, train

TINY = "tiny-random-llama"


def test_classification_eval_matches_stock_peft_predictions(tmp_path):
    from peft import PeftModel

    from lorikit.models import load_model

    rows = [{"sentence1": f"item {i}", "sentence2": "yes" if i % 2 else "no", "label": i % 2} for i in range(12)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = train(TrainConfig(out=str(tmp_path / "clf"), model=TINY, data=str(data), head="classification",
                            num_labels=2, max_steps=3, batch_size=4, lr=1e-2,
                            adapter=AdapterConfig(method="lora", rank=4, target_modules=["q_proj", "v_proj"])))
    result = evaluate(EvalConfig(model=TINY, adapter=str(out), task="classification", data=str(data),
                                 batch_size=5), progress=False)
    assert result["n"] == 12 and set(result) >= {"accuracy", "f1", "matthews"}

    bundle = load_model(TINY, head="classification", num_labels=2)
    model = PeftModel.from_pretrained(bundle.model, str(out)).eval()
    tok = bundle.tokenizer
    expected = []
    with torch.no_grad():
        for r in rows:  # one at a time: no padding at all
            ids = tok(f"{r['sentence1']}\n{r['sentence2']}", return_tensors="pt")
            expected.append(int(model(**ids).logits.argmax(-1)))
    assert [rec["extracted"] for rec in result["records"]] == expected
    assert result["accuracy"] == sum(e == r["label"] for e, r in zip(expected, rows)) / 12


def test_emr_task_eval_equals_the_materialised_adapter(tmp_path, make_adapter):
    from lorikit.merge.config import MergeConfig
    from lorikit.merge.core import merge

    a = make_adapter(method="lori-d", data="builtin:compare", seed=1)
    b = make_adapter(method="lori-d", data="builtin:arithmetic", seed=2)
    emr = merge(MergeConfig(adapters=[str(a), str(b)], method="emr", names=["compare", "arith"],
                            out=str(tmp_path / "emr")))
    task_adapter = merge(MergeConfig(adapters=[str(a), str(b)], method="emr", names=["compare", "arith"],
                                     task="compare", out=str(tmp_path / "emr-compare")))
    common = dict(model=TINY, task="builtin", data="builtin:compare:test", limit=4, builtin_rows=4,
                  max_new_tokens=6)
    via_emr = evaluate(EvalConfig(adapter=str(emr), emr_task="compare", **common), progress=False)
    via_adapter = evaluate(EvalConfig(adapter=str(task_adapter), **common), progress=False)
    assert [r["response"] for r in via_emr["records"]] == [r["response"] for r in via_adapter["records"]]
