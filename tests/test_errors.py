"""The bad-input catalogue (docs/errors.md): every entry run through the CLI in-process.

Each case checks the exit code (2 = malformed request, 1 = runtime failure), the one-line message,
that no traceback is printed, and that the output path it names does not exist afterwards (no
partial output, no temporary folder left beside it). Inputs are built once per module from tiny
adapters trained for one step on tiny-random-llama.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lorikit.cli import main

TINY = "tiny-random-llama"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _train(out: Path, seed: int = 0, rank: int = 4, steps: int = 1, **kw) -> Path:
    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig, train

    targets = {"target_modules": kw.pop("target_modules")} if "target_modules" in kw else {}
    return train(TrainConfig(out=str(out), model=TINY, data="builtin:compare", builtin_rows=8, batch_size=2,
                             max_steps=steps, adapter=AdapterConfig(method="lori-d", rank=rank, seed=seed, **targets),
                             **kw))


def build_inputs(root: Path) -> dict[str, Path]:
    """Good fixtures under root/good, broken ones under root/bad, an empty root/out for outputs."""
    from lorikit.adapters.state import LoraModule, load_adapter

    good, bad, out = root / "good", root / "bad", root / "out"
    for d in (good, bad, out):
        d.mkdir(parents=True)
    d0, d1 = _train(good / "d0"), _train(good / "d1", seed=1)
    _train(good / "r8", rank=8)
    _train(good / "qonly", target_modules=["q_proj"])
    _train(good / "ck", steps=2, save_every=1)  # leaves good/ck.ckpt/step-000001 behind
    shutil.rmtree(good / "ck")
    assert main(["masks", str(d0), "--sparsity", "0.9"]) == 0
    assert main(["pack", str(d0), "--out", str(good / "d0.lori")]) == 0
    assert main(["osrm-stats", "--model", TINY, "--data", "a=builtin:compare", "b=builtin:reverse",
                 "--samples", "4", "--out", str(good / "stats")]) == 0

    files = {
        "bad.jsonl": '{"instruction": "a", "output": "b"}\n{"instruction": "a", \n',
        "bad.json": '[{"instruction": "a", "output": "b"},\n {oops}]',
        "nofield.jsonl": '{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n',
        "badtype.jsonl": '{"instruction": "a", "output": ["b"]}\n',
        "nooptions.jsonl": '{"instruction": "a", "output": "b"}\n',
        "badoption.jsonl": '{"instruction": "a", "output": "c", "options": ["a", "b"]}\n',
        "rowlist.jsonl": "[1, 2]\n",
        "unknownfmt.jsonl": '{"foo": "a", "bar": "b"}\n',
        "gsmnofinal.jsonl": '{"question": "q", "answer": "no final line"}\n',
        "empty.jsonl": "",
        "blank.jsonl": "\n\n  \n",
        "scalar.json": "42",
        "data.txt": "hello",
        "badmerge.yaml": "method: cat\nadapters: [\n",
        "slerp.yaml": "merge_method: slerp\nmodels: [{model: a}, {model: b}]\n",
        "badrecipe.yaml": "name: r\nstages: [\n",
        "cycle.yaml": f"name: r\nworkdir: {out}/cycle\nstages:\n"
                      f"  a: {{kind: train, model: {TINY}, from_adapter: $b}}\n"
                      f"  b: {{kind: train, model: {TINY}, from_adapter: $a}}\n",
        "unknownstage.yaml": f"name: r\nworkdir: {out}/unknownstage\nstages:\n  a: {{kind: train, model: {TINY}}}\n"
                             "  r: {kind: analyze, adapters: [$a, $missing]}\n",
        "unknownkind.yaml": f"name: r\nworkdir: {out}/unknownkind\nstages:\n  a: {{kind: bake}}\n",
        "study-unknown.yaml": "tasks: [pair-add, pair-max]\nsteps: 3\n",
        "study-continual.yaml": "tasks: [pair-add, pair-max]\ncontinual: {first: pair-add, then: safety}\n",
        "unknownsetting.yaml": f"name: r\nworkdir: {out}/unknownsetting\nstages:\n  a: {{kind: train, rnak: 4}}\n",
    }
    for name, text in files.items():
        (bad / name).write_text(text)
    (bad / "notutf8.jsonl").write_bytes(b'\xff\xfe{"a": 1}\n')

    weights = (d0 / "adapter_model.safetensors").read_bytes()
    for name in ("trunc", "corrupt", "nocfg", "badcfg", "ia3"):
        shutil.copytree(d0, bad / name)
    (bad / "trunc/adapter_model.safetensors").write_bytes(weights[: len(weights) // 2])
    (bad / "corrupt/adapter_model.safetensors").write_bytes(b"garbage" * 100)
    (bad / "nocfg/adapter_config.json").unlink()
    (bad / "badcfg/adapter_config.json").write_text("{nope")
    config = json.loads((d1 / "adapter_config.json").read_text())
    for name, change in (("ia3", {"peft_type": "IA3"}), ("otherbase", {"base_model_name_or_path": "org/other"}),
                         ("dora", {"use_dora": True})):
        if not (bad / name).exists():
            shutil.copytree(d1, bad / name)
        (bad / name / "adapter_config.json").write_text(json.dumps({**config, **change}))
    state = load_adapter(d1)  # one module's A one column wider: an adapter of another model
    mods = state.modules()
    first = next(iter(mods))
    m = mods[first]
    mods[first] = LoraModule(m.name, torch.zeros(m.A.shape[0], m.A.shape[1] + 1), m.B, m.scaling)
    type(state).from_modules(list(mods.values()), state.config, meta=state.meta).save(bad / "shape")

    mods = load_adapter(d1).modules()  # a diverged training: NaN in one B
    m = mods[first]
    mods[first] = LoraModule(m.name, m.A, torch.full_like(m.B, float("nan")), m.scaling)
    type(state).from_modules(list(mods.values()), state.config, meta=state.meta).save_into(bad / "nan")  # bypass the writer's check

    mask_bytes = (d0 / "masks/0.9_mask.pt").read_bytes()
    mask = torch.load(d0 / "masks/0.9_mask.pt")
    key = next(iter(mask))
    variants = {"trunc": mask_bytes[: len(mask_bytes) // 2], "list": [1, 2], "notkey": {"a": torch.ones(2, 2)},
                "shape": {**mask, key: torch.ones(3, 3, dtype=torch.bool)},
                "keys": {**{k: v for k, v in mask.items() if k != key},
                         "base_model.model.nonsense.lora_B.default.weight": mask[key]}}
    for name, content in variants.items():  # masks live in an adapter's masks/ folder (its A is that adapter's)
        folder = bad / f"mask-{name}"
        shutil.copytree(d0, folder)
        target = folder / "masks/0.9_mask.pt"
        target.write_bytes(content) if isinstance(content, bytes) else torch.save(content, target)
    (bad / "mask-trunc.pt").write_bytes(mask_bytes[: len(mask_bytes) // 2])

    shutil.copytree(good / "stats", bad / "stats-other")  # statistics recorded on another model
    manifest = json.loads((good / "stats/osrm_stats.json").read_text())
    (bad / "stats-other/osrm_stats.json").write_text(json.dumps({**manifest, "model": "smollm2-135m"}))
    shutil.copytree(good / "stats", bad / "stats-trunc")
    (bad / "stats-trunc/a.safetensors").write_bytes(b"xx")
    (out / "exists").mkdir()
    (out / "exists/keep").write_text("x")
    return {"G": good, "B": bad, "O": out}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("errors"))


T = ["--model", TINY]
TD = T + ["--max-steps", "1"]
TB = TD + ["--data", "builtin:compare"]
LORI_S = TB + ["--method", "lori-s", "--mask"]
CK = T + ["--data", "builtin:compare", "--max-steps", "2", "--batch-size", "2", "--builtin-rows", "8", "--save-every", "1", "--rank", "4",
           "--out", "{G}/ck"]
D01 = ["{G}/d0", "{G}/d1"]
DEV2 = ["--dev", "builtin:compare:dev", "builtin:reverse:dev"]
STATS = ["--osrm-stats", "{G}/stats", "--task", "a"]

# (id, argv, exit code, message regex, output path that must not exist afterwards or None)
CASES = [
    # ---- train: data ----
    ("train-data-missing", ["train", *TD, "--data", "{B}/nope.jsonl", "--out", "{O}/t"], 2,
     r"--data \S*nope.jsonl: file not found", "{O}/t"),
    ("train-data-folder", ["train", *TD, "--data", "{B}", "--out", "{O}/t"], 2,
     r"--data \S*bad: is a folder \(give a .json or .jsonl file\)", "{O}/t"),
    ("train-data-type", ["train", *TD, "--data", "{B}/data.txt", "--out", "{O}/t"], 2,
     r"data.txt: unsupported file type '.txt' \(use .json or .jsonl\)", "{O}/t"),
    ("train-data-not-utf8", ["train", *TD, "--data", "{B}/notutf8.jsonl", "--out", "{O}/t"], 1,
     r"notutf8.jsonl: cannot read \('utf-8' codec can't decode byte 0xff", "{O}/t"),
    ("train-jsonl-malformed", ["train", *TD, "--data", "{B}/bad.jsonl", "--out", "{O}/t"], 1,
     r"bad.jsonl:2: malformed JSON \(Expecting property name", "{O}/t"),
    ("train-json-malformed", ["train", *TD, "--data", "{B}/bad.json", "--out", "{O}/t"], 1,
     r"bad.json:2: malformed JSON \(Expecting property name", "{O}/t"),
    ("train-json-not-list", ["train", *TD, "--data", "{B}/scalar.json", "--out", "{O}/t"], 1,
     r"scalar.json: expected a list of rows", "{O}/t"),
    ("train-row-missing-field", ["train", *TD, "--data", "{B}/nofield.jsonl", "--out", "{O}/t"], 1,
     r"nofield.jsonl:2: missing field 'output'", "{O}/t"),
    ("train-row-field-type", ["train", *TD, "--data", "{B}/badtype.jsonl", "--out", "{O}/t"], 1,
     r"badtype.jsonl:1: field 'output' is list, expected text", "{O}/t"),
    ("train-row-not-object", ["train", *TD, "--data", "{B}/rowlist.jsonl", "--out", "{O}/t"], 1,
     r"rowlist.jsonl:1: row is list, expected a JSON object", "{O}/t"),
    ("train-row-unknown-fields", ["train", *TD, "--data", "{B}/unknownfmt.jsonl", "--out", "{O}/t"], 1,
     r"unknownfmt.jsonl:1: cannot detect the format from fields \['bar', 'foo'\] \(pass --format", "{O}/t"),
    ("train-gsm8k-no-final", ["train", *TD, "--data", "{B}/gsmnofinal.jsonl", "--out", "{O}/t"], 1,
     r"gsmnofinal.jsonl:1: field 'answer': answer has no '#### N' final line", "{O}/t"),
    ("train-data-empty", ["train", *TD, "--data", "{B}/empty.jsonl", "--out", "{O}/t"], 1,
     r"empty.jsonl: no rows", "{O}/t"),
    ("train-data-blank-lines", ["train", *TD, "--data", "{B}/blank.jsonl", "--out", "{O}/t"], 1,
     r"blank.jsonl: no rows", "{O}/t"),
    ("train-unknown-task", ["train", *TD, "--data", "builtin:poetry", "--out", "{O}/t"], 2,
     r"--data builtin:poetry: unknown built-in task 'poetry' \(choose from arithmetic, reverse, compare, pair-add, "
     r"pair-sub, pair-max, pair-min, pair-greater, words-reverse, words-sort, sentiment, py-type, parity\)", "{O}/t"),
    ("train-unknown-split", ["train", *TD, "--data", "builtin:compare:xyz", "--out", "{O}/t"], 2,
     r"unknown split 'xyz' \(choose from train, dev, test\)", "{O}/t"),
    ("train-unknown-format", ["train", *TB, "--format", "csv", "--out", "{O}/t"], 2,
     r"argument --format: invalid choice: 'csv'", "{O}/t"),
    # ---- train: settings ----
    ("train-unknown-model", ["train", "--model", "no-such-model", "--data", "builtin:compare", "--out", "{O}/t"], 2,
     r"--model 'no-such-model': unknown model \(use smollm2-135m, tiny-random-llama", "{O}/t"),
    ("train-unknown-method", ["train", *TB, "--method", "dora", "--out", "{O}/t"], 2,
     r"argument --method: invalid choice: 'dora'", "{O}/t"),
    ("train-rank-zero", ["train", *TB, "--rank", "0", "--out", "{O}/t"], 2, r"--rank 0: must be a positive integer", "{O}/t"),
    ("train-rank-negative", ["train", *TB, "--rank", "-3", "--out", "{O}/t"], 2,
     r"--rank -3: must be a positive integer", "{O}/t"),
    ("train-lr-zero", ["train", *TB, "--lr", "0", "--out", "{O}/t"], 2, r"--lr 0.0: must be positive", "{O}/t"),
    ("train-unknown-target", ["train", *TB, "--target-modules", "foo_proj", "--out", "{O}/t"], 2,
     r"--target-modules: 'foo_proj' is not a module of this model", "{O}/t"),
    ("train-no-out", ["train", *TD], 2, r"--out: required", None),
    ("train-out-exists", ["train", *TB, "--out", "{O}/exists"], 2,
     r"--out \S*exists: folder exists and is not empty \(pass --overwrite to replace it\)", None),
    ("train-out-under-file", ["train", *TB, "--out", "{B}/data.txt/adapter"], 2,
     r"--out \S*data.txt/adapter: \S*data.txt is a file, not a folder", "{B}/data.txt/adapter"),
    # ---- train: masks (LoRI-S) and parents ----
    ("train-lori-s-without-mask", ["train", *TB, "--method", "lori-s", "--out", "{O}/t"], 2,
     r"--method lori-s: needs --mask FILE", "{O}/t"),
    ("train-mask-missing", ["train", *LORI_S, "{B}/nomask.pt", "--out", "{O}/t"], 2,
     r"--mask \S*nomask.pt: no such file", "{O}/t"),
    ("train-mask-truncated", ["train", *LORI_S, "{B}/mask-trunc/masks/0.9_mask.pt", "--out", "{O}/t"], 1,
     r"0.9_mask.pt: not a readable mask file \(truncated or not a torch.save file\)", "{O}/t"),
    ("train-mask-not-dict", ["train", *LORI_S, "{B}/mask-list/masks/0.9_mask.pt", "--out", "{O}/t"], 1,
     r"0.9_mask.pt: a mask file holds a non-empty dict of parameter name -> bool tensor", "{O}/t"),
    ("train-mask-bad-key", ["train", *LORI_S, "{B}/mask-notkey/masks/0.9_mask.pt", "--out", "{O}/t"], 1,
     r"0.9_mask.pt: key 'a' is not a lora_B weight name", "{O}/t"),
    ("train-mask-keys-mismatch", ["train", *LORI_S, "{B}/mask-keys/masks/0.9_mask.pt", "--out", "{O}/t"], 1,
     r"0.9_mask.pt: key 'base_model.model.nonsense.lora_B.default.weight' has no module in \S*mask-keys", "{O}/t"),
    ("train-mask-shape-mismatch", ["train", *LORI_S, "{B}/mask-shape/masks/0.9_mask.pt", "--out", "{O}/t"], 1,
     r"0.9_mask.pt: key '\S+lora_B.default.weight': shape \(3, 3\) does not match lora_B \(64, 4\)", "{O}/t"),
    ("train-from-mask-other-rank", ["train", *TB, "--from", "{G}/r8", "--mask", "{G}/d0/masks/0.9_mask.pt",
                                    "--out", "{O}/t"], 1,
     r"0.9_mask.pt: key '\S+': shape \(64, 4\) does not match lora_B \(64, 8\) of \S*r8", "{O}/t"),
    ("train-continue-a-lori-d", ["train", *TB, "--method", "lori-d", "--from", "{G}/d0", "--continue-a",
                                 "--out", "{O}/t"], 2,
     r"--continue-a: trains A, but --method lori-d keeps A frozen", "{O}/t"),
    ("train-from-truncated", ["train", *TB, "--from", "{B}/trunc", "--out", "{O}/t"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", "{O}/t"),
    ("train-from-other-model", ["train", *TB, "--from", "{B}/shape", "--out", "{O}/t"], 1,
     r"shape: does not fit this base model \(size mismatch for \S+lora_A.default.weight", "{O}/t"),
    # ---- train: OSRM statistics ----
    ("train-osrm-without-stats", ["train", *TB, "--init", "osrm", "--out", "{O}/t"], 2,
     r"--init osrm: needs --osrm-stats FOLDER and --task NAME", "{O}/t"),
    ("train-osrm-stats-missing", ["train", *TB, "--init", "osrm", "--osrm-stats", "{B}/nostats", "--task", "a",
                                  "--out", "{O}/t"], 2,
     r"--osrm-stats \S*nostats: no osrm_stats.json \(not a folder written by lorikit osrm-stats\)", "{O}/t"),
    ("train-osrm-stats-other-model", ["train", *TB, "--init", "osrm", "--osrm-stats", "{B}/stats-other", "--task", "a",
                                      "--out", "{O}/t"], 2,
     r"statistics are of model 'smollm2-135m', not of 'tiny-random-llama'", "{O}/t"),
    ("train-osrm-unknown-task", ["train", *TB, "--init", "osrm", *STATS[:2], "--task", "zz", "--out", "{O}/t"], 2,
     r"--task 'zz': not in --osrm-stats \S+ \(tasks: a, b\)", "{O}/t"),
    ("train-osrm-stats-truncated", ["train", *TB, "--init", "osrm", "--osrm-stats", "{B}/stats-trunc", "--task", "b",
                                    "--out", "{O}/t"], 1,
     r"a.safetensors: unreadable statistics \(Error while deserializing header", "{O}/t"),
    # ---- train: checkpoints ----
    ("train-resume-changed-settings", ["train", *CK, "--lr", "0.5", "--resume"], 2,
     r"--resume: --lr is 0.5 but the checkpoint \S*step-000001 was made with 5e-05 \(same settings are required\)",
     "{G}/ck"),
    ("train-fresh-over-checkpoints", ["train", *CK], 2,
     r"ck.ckpt: holds checkpoints of an earlier run \(pass --resume to continue it, or --overwrite", "{G}/ck"),
    ("train-resume-from-missing-state", ["train", *CK, "--resume_from_checkpoint", "{G}/ck/checkpoint-7"], 2,
     r"--resume-from \S*ck/checkpoint-7: its resume state \S*ck.ckpt/step-000007 is missing \(resume states in "
     r"\S*ck.ckpt: step-000001\)", "{G}/ck"),
    # ---- generate ----
    ("generate-no-prompt", ["generate", *T], 2, r"--prompt: give at least one prompt", None),
    ("generate-unknown-model", ["generate", "--model", "no-such-model", "--prompt", "hi"], 2,
     r"--model 'no-such-model': unknown model", None),
    ("generate-adapter-missing", ["generate", *T, "--adapter", "{B}/nope", "--prompt", "hi"], 2,
     r"nope: adapter folder not found", None),
    ("generate-adapter-truncated", ["generate", *T, "--adapter", "{B}/trunc", "--prompt", "hi"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", None),
    ("generate-adapter-other-model", ["generate", *T, "--adapter", "{B}/shape", "--prompt", "hi"], 1,
     r"shape: does not fit this base model \(size mismatch", None),
    ("generate-max-new-tokens-zero", ["generate", *T, "--prompt", "hi", "--max-new-tokens", "0"], 2,
     r"--max-new-tokens 0: must be positive", None),
    # ---- masks ----
    ("masks-adapter-missing", ["masks", "{B}/nope", "--out-dir", "{O}/m"], 2, r"nope: adapter folder not found", "{O}/m"),
    ("masks-adapter-is-file", ["masks", "{B}/bad.json", "--out-dir", "{O}/m"], 2,
     r"bad.json: an adapter is a folder with adapter_config.json, not a file", "{O}/m"),
    ("masks-sparsity-zero", ["masks", "{G}/d0", "--sparsity", "0", "--out-dir", "{O}/m"], 2,
     r"--sparsity 0.0: must be strictly between 0 and 1", "{O}/m"),
    ("masks-sparsity-one", ["masks", "{G}/d0", "--sparsity", "1", "--out-dir", "{O}/m"], 2,
     r"--sparsity 1.0: must be strictly between 0 and 1", "{O}/m"),
    ("masks-sparsity-negative", ["masks", "{G}/d0", "--sparsity", "-0.5", "--out-dir", "{O}/m"], 2,
     r"--sparsity -0.5: must be strictly between 0 and 1", "{O}/m"),
    ("masks-sparsity-nan", ["masks", "{G}/d0", "--sparsity", "nan", "--out-dir", "{O}/m"], 2,
     r"argument --sparsity: 'nan' is not a finite number", "{O}/m"),
    ("masks-unknown-scope", ["masks", "{G}/d0", "--scope", "layer", "--out-dir", "{O}/m"], 2,
     r"argument --scope: invalid choice: 'layer'", "{O}/m"),
    ("masks-weights-truncated", ["masks", "{B}/trunc", "--out-dir", "{O}/m"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights \(Error while deserializing header: "
     r"(incomplete metadata|MetadataIncompleteBuffer)", "{O}/m"),  # safetensors >= 0.6 | < 0.6 wording
    ("masks-weights-corrupt", ["masks", "{B}/corrupt", "--out-dir", "{O}/m"], 1,
     r"corrupt/adapter_model.safetensors: corrupt or truncated adapter weights \(Error while deserializing header: "
     r"(header too large|HeaderTooLarge)\)", "{O}/m"),
    ("masks-config-missing", ["masks", "{B}/nocfg", "--out-dir", "{O}/m"], 1,
     r"nocfg: missing adapter_config.json \(not a PEFT adapter folder\)", "{O}/m"),
    ("masks-config-malformed", ["masks", "{B}/badcfg", "--out-dir", "{O}/m"], 1,
     r"badcfg/adapter_config.json: unreadable adapter config \(Expecting property name", "{O}/m"),
    ("masks-not-lora", ["masks", "{B}/ia3", "--out-dir", "{O}/m"], 1,
     r"ia3/adapter_config.json: peft_type is IA3, lorikit works on LORA adapters", "{O}/m"),
    ("masks-weights-nan", ["masks", "{B}/nan", "--out-dir", "{O}/m"], 1,
     r"nan/adapter_model.safetensors: tensor base_model.model.model.layers.0.mlp.down_proj.lora_B.weight "
     r"holds NaN or inf values \(a diverged training\?\)",
     "{O}/m"),
    ("masks-file-exists", ["masks", "{G}/d0", "--sparsity", "0.9"], 2,
     r"0.9_mask.pt: exists \(pass --overwrite to replace it\)", None),
    ("masks-out-under-file", ["masks", "{G}/d0", "--out-dir", "{B}/data.txt/m"], 1,
     r"data.txt/m: Not a directory", "{B}/data.txt/m"),
    # ---- merge ----
    ("merge-adapter-missing", ["merge", "{G}/d0", "{B}/nope", "--out", "{O}/g"], 2,
     r"nope: adapter folder not found", "{O}/g"),
    ("merge-no-adapters", ["merge", "--out", "{O}/g"], 2, r"adapters: give at least one adapter folder", "{O}/g"),
    ("merge-weights-count", ["merge", *D01, "--weights", "1", "2", "3", "--out", "{O}/g"], 2,
     r"--weights: 3 weight\(s\) for 2 adapter\(s\)", "{O}/g"),
    ("merge-weight-nan", ["merge", *D01, "--weights", "nan", "1", "--out", "{O}/g"], 2,
     r"argument --weights: 'nan' is not a finite number", "{O}/g"),
    ("merge-unknown-method", ["merge", *D01, "--method", "slerp", "--out", "{O}/g"], 2,
     r"--method 'slerp': unknown merge method \(choose from cat, linear, ", "{O}/g"),
    ("merge-needs-two", ["merge", "{G}/d0", "--method", "core-space", "--out", "{O}/g"], 2,
     r"--method core-space: needs at least 2 adapters, got 1", "{O}/g"),
    ("merge-inner-unknown", ["merge", *D01, "--method", "knots", "--inner", "slerp", "--out", "{O}/g"], 2,
     r"--inner 'slerp': choose from ", "{O}/g"),
    ("merge-inner-option-unused", ["merge", *D01, "--method", "knots", "--drop-rate", "0.5", "--out", "{O}/g"], 2,
     r"--drop-rate: not used by --method knots \(it reads --inner, --lambda, --density, --divide-by\)", "{O}/g"),
    ("merge-density-and-drop-rate", ["merge", *D01, "--method", "dare_ties", "--density", "0.3", "--drop-rate", "0.5",
                                     "--out", "{O}/g"], 2, r"--density and --drop-rate: give one", "{O}/g"),
    ("merge-base-model-flag", ["merge", *D01, "--method", "iso-cts", "--base-model", "org/other", "--out", "{O}/g"], 1,
     r"d0: base model '\S*tiny-random-llama\S*' differs from base_model 'org/other'", "{O}/g"),
    ("merge-mergekit-method", ["merge", "--config", "{B}/slerp.yaml", "--out", "{O}/g"], 2,
     r"--config \S*slerp.yaml: merge_method 'slerp' is not available in lorikit", "{O}/g"),
    ("merge-density", ["merge", *D01, "--method", "ties", "--density", "1.5", "--out", "{O}/g"], 2,
     r"--density 1.5: must be in \(0, 1\]", "{O}/g"),
    ("merge-rank-zero", ["merge", *D01, "--method", "ties", "--rank", "0", "--out", "{O}/g"], 2,
     r"--rank 0: must be a positive integer", "{O}/g"),
    ("merge-option-unused", ["merge", *D01, "--density", "0.5", "--out", "{O}/g"], 2,
     r"--density: not used by --method cat", "{O}/g"),
    ("merge-base-models-differ", ["merge", "{G}/d0", "{B}/otherbase", "--out", "{O}/g"], 1,
     r"otherbase: base model 'org/other' differs from \S*d0: 'tiny-random-llama'", "{O}/g"),
    ("merge-targets-differ", ["merge", "{G}/d0", "{G}/qonly", "--out", "{O}/g"], 1,
     r"qonly: target modules differ: no model.layers.0.mlp.down_proj \(which \S*d0 adapts\)", "{O}/g"),
    ("merge-shapes-differ", ["merge", "{G}/d0", "{B}/shape", "--out", "{O}/g"], 1,
     r"shape: module model.layers.0.mlp.down_proj is 64×129 \(out × in\), 64×128 in \S*d0", "{O}/g"),
    ("merge-ranks-differ-linear", ["merge", "{G}/d0", "{G}/r8", "--method", "linear", "--out", "{O}/g"], 1,
     r"--method linear needs equal ranks, got \[4, 8\] \(use --method cat", "{O}/g"),
    ("merge-peft-type", ["merge", "{G}/d0", "{B}/ia3", "--out", "{O}/g"], 1,
     r"ia3/adapter_config.json: peft_type is IA3, lorikit works on LORA adapters", "{O}/g"),
    ("merge-dora", ["merge", "{G}/d0", "{B}/dora", "--out", "{O}/g"], 1,
     r"dora: a DoRA adapter \(use_dora\) is not a plain B A update and cannot be merged", "{O}/g"),
    ("merge-weights-truncated", ["merge", "{G}/d0", "{B}/trunc", "--out", "{O}/g"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", "{O}/g"),
    ("merge-weights-nan", ["merge", "{G}/d0", "{B}/nan", "--method", "ties", "--out", "{O}/g"], 1,
     r"nan/adapter_model.safetensors: tensor base_model.model.model.layers.0.mlp.down_proj.lora_B.weight "
     r"holds NaN or inf values \(a diverged training\?\)",
     "{O}/g"),
    ("merge-emr-unknown-task", ["merge", *D01, "--method", "emr", "--into-model", "--task", "zz", "--out", "{O}/g"], 1,
     r"--task 'zz': not one of the task names d0, d1", "{O}/g"),
    ("merge-into-unknown-model", ["merge", *D01, "--into-model", "--model", "no-such", "--out", "{O}/g"], 2,
     r"--model 'no-such': unknown model", "{O}/g"),
    ("merge-config-missing", ["merge", "--config", "{B}/nope.yaml", "--out", "{O}/g"], 2,
     r"--config \S*nope.yaml: no such file", "{O}/g"),
    ("merge-config-malformed", ["merge", "--config", "{B}/badmerge.yaml", "--out", "{O}/g"], 2,
     r"--config \S*badmerge.yaml:3: malformed YAML", "{O}/g"),
    ("merge-out-exists", ["merge", *D01, "--out", "{O}/exists"], 2,
     r"--out \S*exists: folder exists and is not empty \(pass --overwrite", None),
    ("merge-out-is-file", ["merge", *D01, "--out", "{B}/data.txt"], 2, r"--out \S*data.txt: exists and is not a folder",
     None),
    # ---- merge-search ----
    ("merge-search-one-adapter", ["merge-search", "{G}/d0", "--dev", "builtin:compare:dev", "--out", "{O}/g"], 2,
     r"adapters: merge-search needs at least two adapters, got 1", "{O}/g"),
    ("merge-search-dev-count", ["merge-search", *D01, "--dev", "builtin:compare:dev", "--out", "{O}/g"], 2,
     r"--dev: 1 dev set\(s\) for 2 adapter\(s\)", "{O}/g"),
    ("merge-search-budget", ["merge-search", *D01, *DEV2, "--budget", "0", "--out", "{O}/g"], 2,
     r"--budget 0: must be at least 1 evaluation", "{O}/g"),
    ("merge-search-knob-unused", ["merge-search", *D01, *DEV2, "--search", "density", "--out", "{O}/g"], 2,
     r"--density: not used by --method cat", "{O}/g"),
    ("merge-search-knob-range", ["merge-search", *D01, *DEV2, "--method", "ties", "--search", "density=0:2",
                                 "--out", "{O}/g"], 2, r"--search 'density=0:2': the range must be", "{O}/g"),
    ("merge-search-emr", ["merge-search", *D01, *DEV2, "--method", "emr", "--out", "{O}/g"], 2,
     r"--method emr: EMR keeps one update per task and is tuning-free", "{O}/g"),
    ("merge-search-empty-dev", ["merge-search", *D01, "--dev", "builtin:compare:dev", "{B}/empty.jsonl",
                                "--device", "cpu", "--out", "{O}/g"], 1, r"empty.jsonl: no rows", "{O}/g"),
    ("merge-search-out-exists", ["merge-search", *D01, *DEV2, "--out", "{O}/exists"], 2,
     r"--out \S*exists: folder exists, is not empty and holds no search_log.jsonl", None),
    # ---- eval ----
    ("eval-no-task", ["eval", *T, "--data", "builtin:compare"], 2, r"--task: required \(choose from gsm8k", None),
    ("eval-unknown-task", ["eval", *T, "--task", "poetry"], 2, r"argument --task: invalid choice: 'poetry'", None),
    ("eval-data-missing", ["eval", *T, "--task", "exact", "--data", "{B}/nope.jsonl", "--out", "{O}/e.json"], 2,
     r"--data \S*nope.jsonl: file not found", "{O}/e.json"),
    ("eval-jsonl-malformed", ["eval", *T, "--task", "exact", "--data", "{B}/bad.jsonl", "--out", "{O}/e.json"], 1,
     r"bad.jsonl:2: malformed JSON", "{O}/e.json"),
    ("eval-row-missing-fields", ["eval", *T, "--task", "gsm8k", "--data", "{B}/nofield.jsonl", "--out", "{O}/e.json"],
     1, r"nofield.jsonl:1: --task gsm8k needs fields question, answer; the row has \['instruction', 'output'\]",
     "{O}/e.json"),
    ("eval-data-empty", ["eval", *T, "--task", "exact", "--data", "{B}/empty.jsonl", "--out", "{O}/e.json"], 1,
     r"empty.jsonl: no rows", "{O}/e.json"),
    ("eval-limit-zero", ["eval", *T, "--task", "builtin", "--data", "builtin:compare", "--limit", "0",
                         "--out", "{O}/e.json"], 2, r"--limit 0: must be positive", "{O}/e.json"),
    ("eval-adapter-truncated", ["eval", *T, "--task", "builtin", "--data", "builtin:compare", "--adapter", "{B}/trunc",
                                "--limit", "2", "--out", "{O}/e.json"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", "{O}/e.json"),
    ("eval-humaneval-not-allowed", ["eval", *T, "--task", "humaneval", "--out", "{O}/e.json"], 2,
     r"--task humaneval runs model-written code on this machine; pass --allow-code-execution", "{O}/e.json"),
    ("eval-out-exists", ["eval", *T, "--task", "builtin", "--data", "builtin:compare", "--limit", "2",
                         "--out", "{O}/exists/keep"], 2, r"exists/keep: file exists \(pass --overwrite", None),
    ("eval-scoring-no-options", ["eval", *T, "--task", "safety", "--scoring", "loglik", "--out", "{O}/e.json"], 2,
     r"--scoring loglik: --task safety has no options to score by log-likelihood \(choice tasks: ", "{O}/e.json"),
    ("eval-scoring-builtin-no-options", ["eval", *T, "--task", "builtin", "--data", "builtin:arithmetic",
                                         "--scoring", "loglik", "--out", "{O}/e.json"], 2,
     r"--scoring loglik: builtin:arithmetic is scored as gsm8k, which has no options", "{O}/e.json"),
    ("eval-loglik-row-without-options", ["eval", *T, "--task", "exact", "--data", "{B}/nooptions.jsonl",
                                         "--scoring", "both", "--out", "{O}/e.json"], 1,
     r"nooptions.jsonl:1: --scoring loglik needs the row's options \(an 'options' list", "{O}/e.json"),
    ("eval-loglik-gold-not-an-option", ["eval", *T, "--task", "exact", "--data", "{B}/badoption.jsonl",
                                        "--scoring", "loglik", "--out", "{O}/e.json"], 1,
     r"badoption.jsonl:1: gold answer 'c' is not one of the options \['a', 'b'\]", "{O}/e.json"),
    # ---- pack / unpack ----
    ("pack-adapter-missing", ["pack", "{B}/nope", "--out", "{O}/p.lori"], 2, r"nope: adapter folder not found", "{O}/p.lori"),
    ("pack-weights-truncated", ["pack", "{B}/trunc", "--out", "{O}/p.lori"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", "{O}/p.lori"),
    ("pack-out-exists", ["pack", "{G}/d0", "--out", "{O}/exists/keep"], 2,
     r"--out \S*keep: exists \(pass --overwrite", None),
    ("unpack-file-missing", ["unpack", "{B}/nope.lori", "--out", "{O}/u"], 2, r"nope.lori: no such file", "{O}/u"),
    ("unpack-not-lori", ["unpack", "{B}/mask-trunc.pt", "--out", "{O}/u"], 1,
     r"mask-trunc.pt: not a readable .lori file \(Error while deserializing header", "{O}/u"),
    ("unpack-truncated", ["unpack", "{B}/trunc/adapter_model.safetensors", "--out", "{O}/u"], 1,
     r"adapter_model.safetensors: not a readable .lori file", "{O}/u"),
    ("unpack-out-exists", ["unpack", "{G}/d0.lori", "--out", "{O}/exists"], 2,
     r"--out \S*exists: folder exists and is not empty", None),
    # ---- params ----
    ("params-rank-zero", ["params", *T, "--rank", "0"], 2, r"--rank 0: must be a positive integer", None),
    ("params-sparsity", ["params", *T, "--sparsity", "1.5"], 2, r"--sparsity 1.5: must be strictly between 0 and 1", None),
    ("params-unknown-method", ["params", *T, "--method", "dora"], 2, r"argument --method: invalid choice: 'dora'", None),
    ("params-unknown-target", ["params", *T, "--target-modules", "foo"], 2, r"--target-modules: 'foo' is not a module", None),
    ("params-unknown-model", ["params", "--model", "no-such-model"], 1,
     r"--model no-such-model: cannot read a model config", None),
    # ---- osrm-stats ----
    ("stats-no-data", ["osrm-stats", *T, "--out", "{O}/s"], 2, r"--data: give at least one TASK=SPEC pair", "{O}/s"),
    ("stats-data-not-pair", ["osrm-stats", *T, "--data", "builtin:compare", "--out", "{O}/s"], 2,
     r"--data 'builtin:compare': expected TASK=SPEC", "{O}/s"),
    ("stats-task-twice", ["osrm-stats", *T, "--data", "a=builtin:compare", "a=builtin:reverse", "--out", "{O}/s"], 2,
     r"--data: task 'a' given twice", "{O}/s"),
    ("stats-data-missing", ["osrm-stats", *T, "--data", "a={B}/nope.jsonl", "--out", "{O}/s"], 2,
     r"--data \S*nope.jsonl: file not found", "{O}/s"),
    ("stats-jsonl-malformed", ["osrm-stats", *T, "--data", "a={B}/bad.jsonl", "--out", "{O}/s"], 1,
     r"bad.jsonl:2: malformed JSON", "{O}/s"),
    ("stats-unknown-model", ["osrm-stats", "--model", "no-such-model", "--data", "a=builtin:compare", "--out", "{O}/s"],
     2, r"--model 'no-such-model': unknown model", "{O}/s"),
    ("stats-unknown-target", ["osrm-stats", *T, "--data", "a=builtin:compare", "--target-modules", "foo",
                              "--out", "{O}/s"], 2, r"--target-modules foo: no Linear module of this model matches", "{O}/s"),
    ("stats-samples-zero", ["osrm-stats", *T, "--data", "a=builtin:compare", "--samples", "0", "--out", "{O}/s"], 2,
     r"--samples 0: must be positive", "{O}/s"),
    ("stats-out-exists", ["osrm-stats", *T, "--data", "a=builtin:compare", "--out", "{O}/exists"], 2,
     r"--out \S*exists: folder exists and is not empty", None),
    # ---- osrm-transform ----
    ("transform-source-missing", ["osrm-transform", "{B}/nope", *STATS, "--out", "{O}/x"], 2,
     r"nope: not a folder \(give a LoRA adapter or a fine-tuned model folder\)", "{O}/x"),
    ("transform-weights-truncated", ["osrm-transform", "{B}/trunc", *STATS, "--out", "{O}/x"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", "{O}/x"),
    ("transform-stats-missing", ["osrm-transform", "{G}/d0", "--osrm-stats", "{B}/nostats", "--task", "a",
                                 "--out", "{O}/x"], 2, r"--osrm-stats \S*nostats: no osrm_stats.json", "{O}/x"),
    ("transform-stats-other-model", ["osrm-transform", "{G}/d0", "--osrm-stats", "{B}/stats-other", "--task", "a",
                                     "--out", "{O}/x"], 2,
     r"--osrm-stats \S*stats-other: statistics are of model 'smollm2-135m', not of 'tiny-random-llama'", "{O}/x"),
    ("transform-stats-truncated", ["osrm-transform", "{G}/d0", "--osrm-stats", "{B}/stats-trunc", "--task", "b",
                                   "--out", "{O}/x"], 1, r"a.safetensors: unreadable statistics", "{O}/x"),
    ("transform-unknown-task", ["osrm-transform", "{G}/d0", *STATS[:2], "--task", "zz", "--out", "{O}/x"], 2,
     r"--task 'zz': not in --osrm-stats", "{O}/x"),
    ("transform-rank-zero", ["osrm-transform", "{G}/d0", *STATS, "--rank", "0", "--out", "{O}/x"], 2,
     r"--rank 0: must be a positive integer", "{O}/x"),
    ("transform-out-exists", ["osrm-transform", "{G}/d0", *STATS, "--out", "{O}/exists"], 2,
     r"--out \S*exists: folder exists and is not empty", None),
    # ---- analyze ----
    ("analyze-adapter-missing", ["analyze", "{G}/d0", "{B}/nope", "--out", "{O}/a"], 2, r"nope: adapter folder not found",
     "{O}/a"),
    ("analyze-weights-truncated", ["analyze", "{G}/d0", "{B}/trunc", "--out", "{O}/a"], 1,
     r"trunc/adapter_model.safetensors: corrupt or truncated adapter weights", "{O}/a"),
    ("analyze-targets-differ", ["analyze", "{G}/d0", "{G}/qonly", "--out", "{O}/a"], 1,
     r"adapters d0 and qonly target different modules \(first mismatch: model.layers.0.mlp.down_proj\)", "{O}/a"),
    ("analyze-base-models-differ", ["analyze", "{G}/d0", "{B}/otherbase", "--data", "d0=builtin:compare",
                                    "otherbase=builtin:reverse", "--out", "{O}/a"], 2,
     r"adapters record different base models \(org/other, tiny-random-llama\); pass --model", "{O}/a"),
    ("analyze-jsonl-malformed", ["analyze", "d0={G}/d0", "d1={G}/d1", "--data", "d0={B}/bad.jsonl", "d1=builtin:compare",
                                 "--out", "{O}/a"], 1, r"bad.jsonl:2: malformed JSON", "{O}/a"),
    ("analyze-mask-truncated", ["analyze", *D01, "--masks", "{B}/mask-trunc.pt", "--out", "{O}/a"], 1,
     r"mask-trunc.pt: not a readable mask file \(truncated or not a torch.save file\)", "{O}/a"),
    ("analyze-mask-missing", ["analyze", *D01, "--masks", "{B}/nope.pt", "--out", "{O}/a"], 2,
     r"--masks \S*nope.pt: no such file", "{O}/a"),
    ("analyze-scores-malformed", ["analyze", *D01, "--scores", "{B}/bad.json", "--out", "{O}/a"], 1,
     r"bad.json: unreadable score file \(Expecting property name", "{O}/a"),
    ("analyze-out-exists", ["analyze", *D01, "--out", "{O}/exists"], 2, r"--out \S*exists: folder exists and is not empty",
     None),
    # ---- run (recipes) ----
    ("run-recipe-missing", ["run", "{B}/nope.yaml"], 2, r"nope.yaml: recipe file not found", None),
    ("run-recipe-malformed", ["run", "{B}/badrecipe.yaml"], 2, r"badrecipe.yaml:3: malformed YAML", None),
    ("run-cycle", ["run", "{B}/cycle.yaml"], 2, r"cycle.yaml: stages form a cycle: a -> b -> a", "{O}/cycle"),
    ("run-unknown-stage", ["run", "{B}/unknownstage.yaml"], 2,
     r"unknownstage.yaml: stage 'r' refers to unknown stage \$missing \(stages: a, r\)", "{O}/unknownstage"),
    ("run-unknown-kind", ["run", "{B}/unknownkind.yaml"], 2,
     r"unknownkind.yaml: stage 'a': unknown kind 'bake' \(registered kinds: ", "{O}/unknownkind"),
    ("run-unknown-setting", ["run", "{B}/unknownsetting.yaml"], 2,
     r"stage 'a' \(train\): unknown setting 'rnak' \(allowed: ", "{O}/unknownsetting"),
    ("run-resume-and-overwrite", ["run", "{B}/unknownsetting.yaml", "--resume", "--overwrite"], 2,
     r"--resume and --overwrite: choose one", "{O}/unknownsetting"),
    ("run-only-unknown-stage", ["run", "{B}/unknownkind.yaml", "--only", "zz"], 2,
     r"--only zz: no such stage in \S*unknownkind.yaml \(stages: a\)", "{O}/unknownkind"),
    # ---- demo ----
    ("demo-unknown-model", ["demo", "--model", "no-such-model", "--workdir", "{O}/demo"], 2,
     r"stage 'eval-base-pair-max' \(eval\): --model 'no-such-model': unknown model", "{O}/demo"),
    ("demo-rank-zero", ["demo", *T, "--rank", "0", "--workdir", "{O}/demo"], 2,
     r"--rank 0: must be positive", "{O}/demo"),
    ("demo-sparsity", ["demo", *T, "--sparsity", "1.2", "--workdir", "{O}/demo"], 2,
     r"stage 'masks-lori-s-s1-pair-max' \(masks\): --sparsity 1.2: must be strictly between 0 and 1", "{O}/demo"),
    ("demo-sweep-weight", ["demo", *T, "--sweep", "3", "--workdir", "{O}/demo"], 2,
     r"--sweep 3: a merge weight must be in \(0, 2\]", "{O}/demo"),
    # ---- study ----
    ("study-unknown-setting", ["study", "{B}/study-unknown.yaml"], 2,
     r"study-unknown.yaml: unknown study setting 'steps' \(allowed: ", None),
    ("study-one-task", ["study", *T, "--tasks", "pair-add", "--workdir", "{O}/study"], 2,
     r"--tasks: a study needs at least two tasks to merge \(got \['pair-add'\]\)", "{O}/study"),
    ("study-continual-task", ["study", "{B}/study-continual.yaml"], 2,
     r"study-continual.yaml: continual: expected \{first: TASK, then: TASK\}", None),
    # ---- train: early stopping ----
    ("train-eval-every-no-dev", ["train", *TD, "--data", "builtin:compare", "--eval-every", "2", "--out", "{O}/t"], 2,
     r"--eval-every: needs --dev-data SPEC or --dev-fraction F", "{O}/t"),
    ("train-dev-fraction-range", ["train", *TD, "--data", "builtin:compare", "--eval-every", "2",
                                  "--dev-fraction", "1.5", "--out", "{O}/t"], 2,
     r"--dev-fraction 1.5: must be in \(0, 1\)", "{O}/t"),
]


def fill(text: str, inputs: dict[str, Path]) -> str:
    for key, path in inputs.items():
        text = text.replace("{" + key + "}", str(path))
    return text


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own refusals (unknown choice) exit directly, with code 2
        return exc.code


@pytest.mark.parametrize("argv,code,pattern,out", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(inputs, capsys, argv, code, pattern, out):
    before = sorted(p.name for p in inputs["O"].iterdir())
    got = run_cli([fill(a, inputs) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lorikit: error: ")]
    assert got == code, err
    assert len(lines) == 1 and re.search(pattern, lines[0]), err
    assert "Traceback" not in err
    if out is not None:
        target = Path(fill(out, inputs))
        assert not target.exists()
        if target.parent.is_dir():  # no temporary sibling (.NAME.tmp-*) left behind
            assert not list(target.parent.glob(f".{target.name}.*"))
    assert sorted(p.name for p in inputs["O"].iterdir()) == before  # nothing else appeared either


def test_catalogue_ids_are_unique_and_documented():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    doc = (Path(__file__).resolve().parents[1] / "docs/errors.md").read_text()
    missing = [i for i in ids if f"`{i}`" not in doc]
    assert not missing, f"docs/errors.md lacks {missing}"


def test_debug_shows_the_traceback(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    assert run_cli(["masks", missing]) == 2
    assert "Traceback" not in capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    debug = subprocess.run([sys.executable, "-m", "lorikit", "--debug", "masks", missing], capture_output=True,
                           text=True, env=env, timeout=120)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr
    assert "lorikit.errors.UsageError: " in debug.stderr and "adapter folder not found" in debug.stderr



def test_closed_stdout_pipe_exits_quietly():
    """`lorikit run R --dry-run | head -1`: no 'Broken pipe' error line, exit 141 like other Unix tools."""
    recipe = Path(__file__).resolve().parents[1] / "src/lorikit/recipes/merge-3tasks.yaml"
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lorikit", "run", str(recipe), "--dry-run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before lorikit writes its first line
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert b"error" not in err.lower() and b"Traceback" not in err


if __name__ == "__main__":  # regenerate the tables of docs/errors.md from real runs
    import contextlib
    import io
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            paths = build_inputs(Path(tmp))
        short = {k: "" for k in paths}  # show paths relative to the fixture folders: bad.jsonl, d0, ...
        command = None
        for case_id, argv, code, _, _ in CASES:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                got = run_cli([fill(a, paths) for a in argv])
            message = [ln for ln in err.getvalue().splitlines() if ln.startswith("lorikit: error: ")][-1]
            for path in paths.values():
                message = message.replace(str(path) + "/", "").replace(str(path), ".")
            if argv[0] != command:
                command = argv[0]
                print(f"\n### `lorikit {command}`\n\n| entry | command | exit | message |\n|---|---|---|---|")
            shown = " ".join(fill(a, short).replace("=/", "=").lstrip("/") or "." for a in argv)
            row = [f"`{case_id}`", f"`lorikit {shown}`", str(got), f"`` {message} ``" if "`" in message else f"`{message}`"]
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")


@pytest.mark.parametrize("flags,message", [
    (["--data", "{T}/nope.jsonl"], r"--data \S*nope.jsonl: file not found"),
    (["--data", "{T}/nope.jsonl?split=train&fraction=0.2"], r"--data \S*nope.jsonl: file not found"),
    (["--data", "{T}/no such folder"], r"--data \S*no such folder: file not found"),
    (["--data", "builtin:nosuchtask"], r"builtin:nosuchtask"),
    (["--data", "builtin:compare", "--eval-every", "2", "--dev-data", "{T}/dev.jsonl"],
     r"--dev-data \S*dev.jsonl: file not found"),
])
def test_a_missing_data_file_fails_before_the_model_loads(tmp_path, monkeypatch, capsys, flags, message):
    """Reading a model takes seconds to minutes; a mistyped --data path is told before it."""
    from lorikit.models import loading

    def no_load(*args):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(loading, "_load_model", no_load)
    argv = ["train", "--model", "tiny-random-llama", *[f.replace("{T}", str(tmp_path)) for f in flags],
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
