"""Ecosystem checks: what a Hugging Face / TRL / PEFT / mergekit / vLLM user tries first, on tiny-random-llama.

One check per point of the ecosystem issue's problem list (loadable base names, TRL's data
formats, ``checkpoint-N`` adapters, a CLI that starts without torch, Hugging Face spellings and
axolotl configs, PEFT / mergekit merge names, merged adapters every server reads, Hub cards and
packaging). Each check does what a user would (a CLI run, a stock-library load) and asserts the
outcome; a failure is recorded with its first line, never hidden.

    OMP_NUM_THREADS=1 python bench/bench_ecosystem.py              # all checks (a few minutes)
    OMP_NUM_THREADS=1 python bench/bench_ecosystem.py --only merge  # checks whose id contains 'merge'

Prints a ✔/✗ table and writes ``bench/results/ecosystem.json`` (per check: area, id, ok, detail,
seconds), with the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = "tiny-random-llama"
HEAVY = ("torch", "transformers", "peft")
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed --max-lora-rank values
CHECKS: list[tuple[str, str, Callable]] = []


def check(area: str, cid: str):
    def register(fn):
        CHECKS.append((area, cid, fn))
        return fn
    return register


# ---- helpers -------------------------------------------------------------------------------------------
def cli(argv: list[str]) -> tuple[int, str]:
    """``lorikit ARGV`` in this process: (exit code, stderr). argparse errors exit; that is a code too."""
    from lorikit.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def cli_ok(argv: list[str]) -> str:
    code, err = cli(argv)
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()] or err.strip().splitlines()[-1:]
    assert code == 0, f"lorikit {argv[0]} exited {code}: {lines[-1] if lines else ''}"
    return err


def error_line(argv: list[str]) -> str:
    code, err = cli(argv)
    assert code != 0, f"lorikit {' '.join(argv[:2])} accepted it (exit 0)"
    return [ln for ln in err.splitlines() if "error" in ln][-1]


def meta(folder: Path) -> dict:
    return json.loads((Path(folder) / "lorikit.json").read_text())


def config(folder: Path) -> dict:
    return json.loads((Path(folder) / "adapter_config.json").read_text())


def fresh_base():
    from lorikit.models import load_model

    return load_model(TINY).model


def peft_deltas(folder: Path) -> dict:
    """ΔW per module as stock PEFT computes it after ``PeftModel.from_pretrained``."""
    import torch
    from peft import PeftModel

    from lorikit.adapters.build import lora_layers

    model = PeftModel.from_pretrained(fresh_base(), str(folder))
    with torch.no_grad():
        return {name: layer.get_delta_weight("default").double() for name, layer in lora_layers(model)}


def served_deltas(folder: Path) -> dict:
    """ΔW as vLLM's loader reads an adapter: one scale lora_alpha / r (/ √r with rsLoRA) for every module,
    rank_pattern / alpha_pattern ignored; each module's rank must be r."""
    from safetensors.torch import load_file

    from lorikit.adapters.state import module_name_from_key

    cfg = config(folder)
    scale = cfg["lora_alpha"] / (cfg["r"] ** 0.5 if cfg.get("use_rslora") else cfg["r"])
    pairs: dict = {}
    for key, t in load_file(str(Path(folder) / "adapter_model.safetensors")).items():
        module, which = module_name_from_key(key)
        pairs.setdefault(module, {})[which] = t.double()
    ranks = {p["A"].shape[0] for p in pairs.values()}
    assert ranks == {cfg["r"]}, f"module ranks {sorted(ranks)}, the config says r={cfg['r']}"
    return {m: scale * p["B"] @ p["A"] for m, p in pairs.items()}


def max_rel(a: dict, b: dict) -> float:
    assert set(a) == set(b), "different modules"
    return max(float((a[k] - b[k]).norm()) / max(float(b[k].norm()), 1e-12) for k in a)


def run_example(name: str, out: Path) -> Path:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        module.main(["--out", str(out), "--steps", "2", "--rows", "16"])
    return out


class Fixtures:
    """Adapters and files several checks share, made on first use."""

    def __init__(self, root: Path):
        self.root = root
        self._made: dict = {}

    def once(self, key: str, make: Callable):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    TRAIN = ["--model", TINY, "--data", "builtin:compare", "--builtin-rows", "32", "--batch-size", "4",
             "--lora_r", "4", "--seed", "0", "--learning_rate", "1e-2", "--max_steps", "5"]

    @property
    def cli_adapter(self) -> Path:
        """A CLI run with Hugging Face flags, --save_steps 2 and --save_total_limit 2."""
        def make():
            out = self.root / "cli"
            cli_ok(["train", *self.TRAIN, "--save_steps", "2", "--save_total_limit", "2", "--output_dir", str(out)])
            return out
        return self.once("cli", make)

    @property
    def second_adapter(self) -> Path:
        def make():
            out = self.root / "second"
            cli_ok(["train", "--model", TINY, "--data", "builtin:reverse", "--builtin-rows", "32", "--batch-size",
                    "4", "--rank", "4", "--seed", "1", "--lr", "1e-2", "--max-steps", "3", "--out", str(out)])
            return out
        return self.once("second", make)

    @property
    def peft_parents(self) -> list[Path]:
        """Written by stock PEFT: rsLoRA, and per-module ranks / scales (rank_pattern, alpha_pattern)."""
        def make():
            import torch
            from peft import LoraConfig, get_peft_model

            folders = []
            for i, cfg in enumerate([{"r": 4, "lora_alpha": 8, "use_rslora": True},
                                     {"r": 4, "lora_alpha": 8, "rank_pattern": {"q_proj": 8},
                                      "alpha_pattern": {"q_proj": 4}}]):
                torch.manual_seed(i)
                model = get_peft_model(fresh_base(), LoraConfig(target_modules=["q_proj", "v_proj", "down_proj"],
                                                                init_lora_weights=False, **cfg))
                model.save_pretrained(str(self.root / f"peft{i}"))
                folders.append(self.root / f"peft{i}")
            return folders
        return self.once("peft", make)

    @property
    def examples(self) -> dict[str, Path]:
        def make():
            return {"hf_trainer": run_example("hf_trainer_lori", self.root / "ex-hf"),
                    "trl": run_example("trl_sft_lori", self.root / "ex-trl")}
        return self.once("examples", make)


F: Fixtures  # set in main()


# ---- 1. the base a user can load -------------------------------------------------------------------------
def auto_peft_loads(folder: Path) -> str:
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel

    stock = AutoPeftModelForCausalLM.from_pretrained(str(folder)).eval()
    ours = PeftModel.from_pretrained(fresh_base(), str(folder)).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        diff = float((stock(input_ids=ids).logits - ours(input_ids=ids).logits).abs().max())
    assert diff < 1e-5, f"AutoPeftModelForCausalLM logits differ by {diff:.2e}"
    return f"AutoPeftModelForCausalLM loads it (logits = lorikit's, max |Δ| {diff:.1e})"


def both_load(folder: Path, example: str) -> str:
    for name in ("lori-d", "lori-s"):
        auto_peft_loads(folder / name)
    return f"{example}: its lori-d and lori-s adapters load in AutoPeftModelForCausalLM (logits = lorikit's)"


@check("1 base", "base-cli-train")
def _():
    return auto_peft_loads(F.cli_adapter)


@check("1 base", "base-get-lori-model")
def _():
    from peft import LoraConfig

    from lorikit.integrations import get_lori_model, save_lori_adapter

    model = get_lori_model(fresh_base(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    task_type="CAUSAL_LM"), method="lori-d", seed=1)
    return auto_peft_loads(save_lori_adapter(model, F.root / "glm"))


@check("1 base", "base-example-hf-trainer")
def _():
    return both_load(F.examples["hf_trainer"], "examples/hf_trainer_lori.py")


@check("1 base", "base-example-trl")
def _():
    return both_load(F.examples["trl"], "examples/trl_sft_lori.py")


@check("1 base", "base-smollm2-gguf-note")
def _():
    from peft import LoraConfig

    from lorikit.adapters.card import write_model_card
    from lorikit.integrations import get_lori_model, save_lori_adapter
    from lorikit.models import load_model

    model = get_lori_model(load_model("smollm2-135m").model, LoraConfig(r=2, target_modules=["q_proj"]),
                           method="lori-d", seed=1)
    out = save_lori_adapter(model, F.root / "smol")
    write_model_card(out)
    base, note = config(out)["base_model_name_or_path"], meta(out).get("base_weights", "")
    assert base == "HuggingFaceTB/SmolLM2-135M-Instruct", base
    assert "GGUF" in note and "de-quantised" in (out / "README.md").read_text(), "no de-quantisation note"
    return f"base {base}; lorikit.json and card: '{note[:48]}...'"


# ---- 2. TRL's data formats -------------------------------------------------------------------------------
def write_jsonl(name: str, rows: list[dict]) -> Path:
    path = F.root / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def trl_format(name: str, rows: list[dict], expected_format: str, labelled: Callable) -> str:
    """Detect, label (checked by ``labelled(tokenizer, row, token ids with loss)``) and train one step."""
    from lorikit.data import load_examples, tokenize
    from lorikit.data.formats import detect_format
    from lorikit.data.tokenize import IGNORE
    from lorikit.models import load_model

    path = write_jsonl(f"{name}.jsonl", rows)
    tok = load_model(TINY).tokenizer
    examples = load_examples(str(path))
    for row, example in zip(rows, examples):
        t = tokenize(tok, example, 256)
        labelled(tok, row, [i for i, y in zip(t.input_ids, t.labels) if y != IGNORE], t)
    out = F.root / f"train-{name}"
    cli_ok(["train", "--model", TINY, "--data", str(path), "--max-steps", "1", "--batch-size", "4", "--rank", "2",
            "--out", str(out)])
    detected = detect_format(rows[0], str(path))
    assert detected == expected_format, f"detected as {detected}"
    return f"{len(rows)} rows detected as {expected_format}; loss mask checked per row; 1 train step ran"


@check("2 TRL formats", "trl-messages")
def _():
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{a}+{a}?"},
                          {"role": "assistant", "content": f"It is {2 * a}"}, {"role": "user", "content": "Sure?"},
                          {"role": "assistant", "content": "Yes"}]} for a in range(8)]

    def labelled(tok, row, ids, t):
        text = tok.decode(ids)
        assert f"It is {2 * int(row['messages'][1]['content'].split('+')[0])}" in text and "Yes" in text, text
        assert "Be brief" not in text and "Sure?" not in text and "+" not in text, f"user/system tokens carry loss: {text!r}"
    return trl_format("messages", rows, "messages", labelled)


@check("2 TRL formats", "trl-prompt-completion")
def _():
    rows = [{"prompt": f"{a} plus {a} is", "completion": f" {2 * a}"} for a in range(8)]

    def labelled(tok, row, ids, t):
        want = tok(row["completion"], add_special_tokens=False).input_ids + [tok.eos_token_id]
        assert ids == want, f"loss on {tok.decode(ids)!r}, want the completion {row['completion']!r} + EOS"
    return trl_format("prompt-completion", rows, "prompt-completion", labelled)


@check("2 TRL formats", "trl-text")
def _():
    rows = [{"text": f"The number {a} doubled is {2 * a}."} for a in range(8)]

    def labelled(tok, row, ids, t):
        assert tok.decode(ids).strip().startswith("The number") and len(ids) >= len(t.input_ids) - 1, \
            f"loss on {len(ids)} of {len(t.input_ids)} tokens"
    return trl_format("text", rows, "text", labelled)


@check("2 TRL formats", "trl-eval-prompt-completion")
def _():
    path = write_jsonl("pc-eval.jsonl", [{"prompt": f"{a} plus {a} is", "completion": f" {2 * a}"} for a in range(4)])
    out = F.root / "pc-eval.json"
    cli_ok(["eval", "--model", TINY, "--task", "exact", "--data", str(path), "--max-new-tokens", "2",
            "--out", str(out)])
    result = json.loads(out.read_text())
    return f"lorikit eval --task exact scored {result.get('n', result.get('items', '?'))} prompt/completion rows"


# ---- 3. checkpoint-N adapters ----------------------------------------------------------------------------
@check("3 checkpoints", "ckpt-layout-and-limit")
def _():
    out = F.cli_adapter
    found = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
    assert found == ["checkpoint-2", "checkpoint-4"], found  # 5 steps, every 2, newest 2 kept
    for name in found:
        files = {p.name for p in (out / name).iterdir()}
        assert {"adapter_config.json", "adapter_model.safetensors", "lorikit.json"} <= files, (name, files)
    return f"{', '.join(found)}: adapter_config.json + adapter_model.safetensors + lorikit.json (--save_total_limit 2)"


@check("3 checkpoints", "ckpt-stock-peft")
def _():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deltas = peft_deltas(F.cli_adapter / "checkpoint-4")
    keys = [str(w.message) for w in caught if "key" in str(w.message).lower()]
    assert not keys, keys[0][:200]
    assert any(float(d.norm()) > 0 for d in deltas.values()), "all-zero update"
    return f"PeftModel.from_pretrained: {len(deltas)} LoRA layers, no missing/unexpected-key warning"


@check("3 checkpoints", "ckpt-lorikit-eval")
def _():
    cli_ok(["eval", "--model", TINY, "--adapter", str(F.cli_adapter / "checkpoint-4"), "--task", "builtin",
            "--data", "builtin:compare:test", "--limit", "2", "--builtin-rows", "4", "--max-new-tokens", "2",
            "--out", str(F.root / "ckpt-eval.json")])
    return "lorikit eval --adapter OUT/checkpoint-4 ran"


@check("3 checkpoints", "ckpt-lorikit-merge")
def _():
    cli_ok(["merge", str(F.cli_adapter / "checkpoint-2"), str(F.cli_adapter / "checkpoint-4"), "--method", "linear",
            "--weights", "0.5", "0.5", "--out", str(F.root / "ckpt-merge")])
    return "lorikit merge OUT/checkpoint-2 OUT/checkpoint-4 ran"


@check("3 checkpoints", "ckpt-resume-from-checkpoint")
def _():
    """A finished run copied, then resumed from its checkpoint-2: the final adapter's bytes are the same."""
    src, out = F.cli_adapter, F.root / "resumed"
    shutil.copytree(src, out)
    shutil.copytree(Path(f"{src}.ckpt"), Path(f"{out}.ckpt"))
    cli_ok(["train", *F.TRAIN, "--save_steps", "2", "--save_total_limit", "2", "--output_dir", str(out),
            "--overwrite", "--resume_from_checkpoint", str(out / "checkpoint-2")])
    name = "adapter_model.safetensors"
    assert (out / name).read_bytes() == (src / name).read_bytes(), "resumed adapter differs from the uninterrupted run"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5], steps
    return "--resume_from_checkpoint OUT/checkpoint-2: steps 3-5 rerun, adapter bytes = uninterrupted run's"


# ---- 4. a CLI that starts at once ------------------------------------------------------------------------
def imported_heavy(argv: list[str]) -> tuple[list[str], float, int]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    wall = time.perf_counter() - t0
    names = {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in proc.stderr.splitlines()
             if ln.startswith("import time:") and "|" in ln}
    return sorted(names & set(HEAVY)), wall, proc.returncode


@check("4 start-up", "help-no-torch")
def _():
    heavy, wall, code = imported_heavy(["-m", "lorikit", "--help"])
    assert code == 0 and not heavy, f"exit {code}, imported {heavy}"
    return f"lorikit --help: none of torch/transformers/peft imported; {wall:.2f} s wall (loaded machine)"


@check("4 start-up", "command-help-no-torch")
def _():
    walls = []
    for argv in (["--version"], ["train", "--help"], ["merge", "--help"], ["eval", "--help"]):
        heavy, wall, code = imported_heavy(["-m", "lorikit", *argv])
        assert code == 0 and not heavy, f"lorikit {' '.join(argv)}: exit {code}, imported {heavy}"
        walls.append(wall)
    return f"--version, train/merge/eval --help: no heavy import; {min(walls):.2f}-{max(walls):.2f} s wall"


@check("4 start-up", "import-lorikit-lazy")
def _():
    heavy, wall, code = imported_heavy(["-c", "import lorikit; lorikit.TrainConfig; lorikit.__version__"])
    assert code == 0 and not heavy, f"exit {code}, imported {heavy}"
    return f"import lorikit (+ TrainConfig): no heavy import; {wall:.2f} s wall"


# ---- 5. arguments --------------------------------------------------------------------------------------
SPELLINGS = [  # (flags, lorikit setting, value expected) — the list
    (["--warmup_ratio", "0.1"], "warmup_ratio", 0.1), (["--model_name_or_path", "m"], "model", "m"),
    (["--dataset_name", "org/d"], "data", "org/d"), (["--lora_target_modules", "q_proj", "v_proj"], "target_modules",
                                                     ["q_proj", "v_proj"]),
    (["--eval_steps", "5"], "eval_every", 5), (["--eval_strategy", "steps"], "eval_strategy", "steps"),
    (["--evaluation_strategy", "epoch"], "eval_strategy", "epoch"), (["--max_seq_length", "64"], "max_length", 64),
    (["--fp16"], "fp16", True), (["--torch_dtype", "bfloat16"], "dtype", "bfloat16"),
    (["--resume_from_checkpoint"], "resume", True), (["--resume_from_checkpoint", "o/checkpoint-4"], "resume_from",
                                                     "o/checkpoint-4"),
    (["--learning-rate", "1e-3"], "lr", 1e-3), (["--per-device-train-batch-size", "3"], "batch_size", 3),
    (["--target_modules", "all-linear"], "target_modules", ["all-linear"]), (["--lora_r", "4"], "rank", 4),
    (["--num_train_epochs", "2"], "epochs", 2.0), (["--lr_scheduler_type", "cosine"], "lr_scheduler", "cosine"),
    (["--save_steps", "3"], "save_every", 3), (["--save_total_limit", "2"], "keep_checkpoints", 2),
    (["--early_stopping_patience", "2"], "patience", 2), (["--gradient_checkpointing"], "grad_checkpointing", True),
]


@check("5 arguments", "hf-spellings-parse")
def _():
    from lorikit.cli import build_parser

    parser = build_parser()
    for flags, dest, value in SPELLINGS:
        args = parser.parse_args(["train", *flags, "--output_dir", "o"])
        assert getattr(args, dest, None) == value, f"{' '.join(flags)} -> {dest}={getattr(args, dest, None)!r}"
    return f"{len(SPELLINGS)} HF / TRL / PEFT spellings (incl. dash forms) set the lorikit setting they mean"


@check("5 arguments", "hf-spellings-train")
def _():
    out = F.root / "hf-run"
    cli_ok(["train", "--model_name_or_path", TINY, "--dataset_name", "builtin:compare", "--builtin_rows", "16",
            "--per-device-train-batch-size", "4", "--learning-rate", "1e-3", "--max_steps", "2", "--warmup_ratio",
            "0.5", "--lora_target_modules", "q_proj", "v_proj", "--max_seq_length", "256", "--torch_dtype", "float32",
            "--lr_scheduler_type", "linear", "--logging_steps", "1", "--output_dir", str(out)])
    hyper = meta(out)["hyperparameters"]
    assert (hyper["max_length"], hyper["warmup_ratio"], hyper["lr"]) == (256, 0.5, 1e-3), hyper
    targets = {name.rsplit(".", 1)[-1] for name in config(out)["target_modules"]}
    assert targets == {"q_proj", "v_proj"}, config(out)["target_modules"]
    return "a run given only HF spellings trains; lorikit.json records them"


@check("5 arguments", "all-linear")
def _():
    import torch

    out = F.root / "all-linear"
    cli_ok(["train", "--model", TINY, "--data", "builtin:compare", "--builtin-rows", "8", "--max-steps", "1",
            "--rank", "2", "--target_modules", "all-linear", "--out", str(out)])
    linear = {n.rsplit(".", 1)[-1] for n, m in fresh_base().named_modules() if isinstance(m, torch.nn.Linear)}
    got = {name.rsplit(".", 1)[-1] for name in config(out)["target_modules"]}
    assert got == linear - {"lm_head"}, f"{sorted(got)} vs {sorted(linear)}"
    return f"all-linear adapts {len(config(out)['target_modules'])} modules: {', '.join(sorted(got))} (not lm_head)"


@check("5 arguments", "lr-schedules-hf")
def _():
    import torch
    from transformers import get_scheduler

    from lorikit.train.schedule import LR_SCHEDULERS, build_scheduler

    extra = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
             "warmup_stable_decay": {"num_decay_steps": 3}}
    for name in LR_SCHEDULERS:
        seqs = []
        for build in (lambda o: build_scheduler(name, o, 10, 3, extra.get(name)),
                      lambda o: get_scheduler("constant_with_warmup" if name == "constant" else name, o,
                                              num_warmup_steps=3, num_training_steps=10,
                                              scheduler_specific_kwargs=extra.get(name, {}))):
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            sched, lrs = build(opt), []
            for _ in range(10):
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
            seqs.append(lrs)
        assert seqs[0] == seqs[1], f"{name}: {seqs[0]} vs transformers {seqs[1]}"
        if name in ("linear", "cosine", "constant"):  # Trainer's warm-up: the first step runs at lr 0
            assert seqs[0][0] == 0.0, f"{name}: warm-up starts at {seqs[0][0]}, transformers at 0"
    return f"{len(LR_SCHEDULERS)} schedules, 10 steps with 3 warm-up: the lr of every step = transformers.get_scheduler's"


@check("5 arguments", "eval-strategy-epoch")
def _():
    out = F.root / "epoch"
    cli_ok(["train", "--model", TINY, "--data", "builtin:compare", "--builtin-rows", "32", "--dev_fraction", "0.25",
            "--per_device_train_batch_size", "8", "--num_train_epochs", "2", "--eval_strategy", "epoch",
            "--lora_r", "2", "--output_dir", str(out)])
    es = meta(out)["early_stopping"]
    per_epoch = -(-meta(out)["data"]["rows"] // 8)
    steps = [h["step"] for h in es["history"]]
    assert steps == [per_epoch, 2 * per_epoch], steps
    return f"dev loss at steps {steps} (epoch = {per_epoch} steps)"


@check("5 arguments", "did-you-mean")
def _():
    merge_yaml = F.root / "typo-merge.yaml"
    merge_yaml.write_text("method: ties\nweigths: [0.5, 0.5]\nadapters: [a, b]\n")
    mergekit_yaml = F.root / "typo-mergekit.yaml"
    mergekit_yaml.write_text("merge_method: dare_tie\nmodels: [{model: a}, {model: b}]\n")
    train_yaml = F.root / "typo-train.yaml"
    train_yaml.write_text("learnig_rate: 1e-3\n")
    o = str(F.root / "typo-out")  # nothing may be written there
    cases = [(["trian"], "'train'"), (["train", "--lr_scheduler_type", "cosin", "--out", o], "'cosine'"),
             (["train", "--lerning_rate", "1", "--out", o], "'--learning_rate'"),
             (["train", "--config", str(train_yaml), "--out", o], "'learning_rate'"),
             (["merge", "--config", str(merge_yaml), "--out", o], "'weights'"),
             (["merge", "--config", str(mergekit_yaml), "--out", o], "'dare_ties'"),
             (["merge", "a", "b", "--method", "tie", "--out", o], "'ties'")]
    for argv, want in cases:
        line = error_line(argv)
        assert f"did you mean {want}" in line, f"lorikit {' '.join(argv[:3])}: {line}"
    assert not Path(o).exists()
    return f"{len(cases)} typos (command, choice, flag, config key, merge key, merge_method, method) name the fix"


AXOLOTL = """\
base_model: tiny-random-llama
datasets:
  - path: {data}
    type: alpaca
val_set_size: 0
output_dir: {out}
adapter: lora
sequence_len: 512
lora_r: 4
lora_alpha: 8
lora_dropout: 0.0
lora_target_linear: true
gradient_accumulation_steps: 2
micro_batch_size: 2
num_epochs: 1
max_steps: 2
optimizer: adamw_torch_fused
lr_scheduler: cosine
learning_rate: 0.0002
warmup_ratio: 0.1
train_on_inputs: false
bf16: false
sample_packing: false
flash_attention: false
seed: 7
lori:
  method: lori-d
"""


@check("5 arguments", "axolotl-config")
def _():
    data = write_jsonl("alpaca.jsonl", [{"instruction": f"Double {a}", "input": "", "output": str(2 * a)}
                                        for a in range(8)])
    out = F.root / "axolotl"
    path = F.root / "axolotl.yml"
    path.write_text(AXOLOTL.format(data=data, out=out))
    cli_ok(["train", "--config", str(path)])
    hyper, m = meta(out)["hyperparameters"], meta(out)
    assert (m["method"], m["rank"], hyper["lr"], hyper["lr_scheduler"], hyper["max_length"], hyper["grad_accum"],
            hyper["batch_size"]) == ("lori-d", 4, 2e-4, "cosine", 512, 2, 2), hyper
    bad = F.root / "axolotl-bad.yml"
    bad.write_text(AXOLOTL.format(data=data, out=F.root / "axolotl-bad").replace("sample_packing: false",
                                                                                  "sample_packing: true"))
    line = error_line(["train", "--config", str(bad)])
    assert "sample_packing" in line, line
    return "axolotl lora-1b shape + lori: block trains as described; sample_packing: true refused by name"


# ---- 6. merge names ------------------------------------------------------------------------------------
@check("6 merge names", "peft-svd-names")
def _():
    from lorikit.merge.registry import get_method

    names = {"svd": "task-arithmetic", "ties_svd": "ties", "dare_ties_svd": "dare-ties",
             "dare_linear_svd": "dare-linear", "magnitude_prune_svd": "magnitude-prune"}
    got = {alias: get_method(alias).name for alias in names}
    assert got == names, got
    return "PEFT's svd, ties_svd, dare_ties_svd, dare_linear_svd, magnitude_prune_svd = the ΔW-space methods"


@check("6 merge names", "ties-equals-peft-ties-svd")
def _():
    import torch
    from peft import PeftModel

    from lorikit.adapters.build import lora_layers
    from lorikit.adapters.state import load_adapter

    a, b = F.cli_adapter, F.second_adapter
    model = PeftModel.from_pretrained(fresh_base(), str(a), adapter_name="a")
    model.load_adapter(str(b), adapter_name="b")
    model.add_weighted_adapter(["a", "b"], [0.6, 0.4], "m", combination_type="ties_svd", density=0.5)
    with torch.no_grad():
        peft = {n: layer.get_delta_weight("m").double() for n, layer in lora_layers(model, "m")}
    out = F.root / "ties"
    cli_ok(["merge", str(a), str(b), "--method", "ties_svd", "--weights", "0.6", "0.4", "--density", "0.5",
            "--out", str(out)])
    ours = {n: m.delta().double() for n, m in load_adapter(out).modules().items()}
    err = max_rel(ours, peft)
    assert err < 1e-4, f"relative ΔW difference {err:.2e}"
    return f"lorikit ties (--method ties_svd) vs PEFT add_weighted_adapter ties_svd: max relative ΔW diff {err:.1e}"


@check("6 merge names", "docs-peft-relation")
def _():
    text = (ROOT / "docs" / "merge.md").read_text()
    for word in ("ties_svd", "dare_ties_svd", "#3004"):
        assert word in text, f"docs/merge.md does not mention {word}"
    return "docs/merge.md maps each method to PEFT's names and says why no cross terms (PEFT #3004)"


def mergekit(name: str, body: str) -> Path:
    path, out = F.root / f"{name}.yaml", F.root / name
    path.write_text(body)
    cli_ok(["merge", "--config", str(path), "--out", str(out)])
    return out


@check("6 merge names", "mergekit-base-model")
def _():
    out = mergekit("mk-ta", f"merge_method: task_arithmetic\nbase_model: {TINY}\nmodels:\n"
                            f"  - model: {F.cli_adapter}\n    parameters: {{weight: 0.5}}\n"
                            f"  - model: {F.second_adapter}\n    parameters: {{weight: 0.5}}\n")
    return f"base_model: {TINY} accepted (merged: {meta(out)['method']})"


@check("6 merge names", "mergekit-ties-weights")
def _():
    from lorikit.adapters.state import load_adapter

    out = mergekit("mk-ties", f"merge_method: ties\nbase_model: {TINY}\nmodels:\n"
                              f"  - model: {F.cli_adapter}\n    parameters: {{weight: 0.7, density: 0.5}}\n"
                              f"  - model: {F.second_adapter}\n    parameters: {{weight: 0.3, density: 0.5}}\n")
    ref = F.root / "mk-ties-ref"
    cli_ok(["merge", str(F.cli_adapter), str(F.second_adapter), "--method", "ties", "--weights", "0.7", "0.3",
            "--density", "0.5", "--divide-by", "weights", "--out", str(ref)])
    got = {n: m.delta().double() for n, m in load_adapter(out).modules().items()}
    want = {n: m.delta().double() for n, m in load_adapter(ref).modules().items()}
    err = max_rel(got, want)
    assert err < 1e-6, f"{err:.2e}"
    return f"TIES with weights 0.7 / 0.3 = lorikit ties --divide-by weights (mergekit's normalisation), diff {err:.0e}"


@check("6 merge names", "knots-default-ties")
def _():
    from lorikit.adapters.state import load_adapter

    default, ta = F.root / "knots", F.root / "knots-ta"
    for out, extra in ((default, []), (ta, ["--inner", "task-arithmetic"])):
        cli_ok(["merge", str(F.cli_adapter), str(F.second_adapter), "--method", "knots", *extra, "--out", str(out)])
    inner = json.dumps(meta(default)).count('"ties"')
    d = {n: m.delta().double() for n, m in load_adapter(default).modules().items()}
    t = {n: m.delta().double() for n, m in load_adapter(ta).modules().items()}
    diff = max_rel(d, t)
    assert inner and diff > 1e-3, f"knots default records ties: {bool(inner)}; differs from task arithmetic by {diff:.1e}"
    return f"knots defaults to KnOTS-TIES (differs from --inner task-arithmetic by {diff:.2f} relative)"


# ---- 7. merged adapters every server reads -----------------------------------------------------------------
def portable_merge(method: list[str]) -> str:
    parents = F.peft_parents
    out = F.root / f"portable-{method[0]}"
    cli_ok(["merge", *map(str, parents), "--method", *method, "--weights", "0.6", "0.5", "--out", str(out)])
    cfg = config(out)
    assert not cfg.get("rank_pattern") and not cfg.get("alpha_pattern"), "rank_pattern / alpha_pattern written"
    err = max_rel(served_deltas(out), peft_deltas(out))
    assert err < 1e-6, f"vLLM's reading differs from PEFT's by {err:.2e}"
    return f"r={cfg['r']}, no patterns; vLLM-rule ΔW = PEFT ΔW (max rel. diff {err:.0e})"


@check("7 portable merges", "portable-knots")
def _():
    return portable_merge(["knots"])


@check("7 portable merges", "portable-tsv-m")
def _():
    return portable_merge(["tsv-m"])


@check("7 portable merges", "portable-core-space")
def _():
    return portable_merge(["core-space"])


@check("7 portable merges", "portable-cat")
def _():
    return portable_merge(["cat"])


@check("7 portable merges", "serving-rank")
def _():
    out = F.root / "portable-cat"
    if not out.exists():
        portable_merge(["cat"])
    serving, r = meta(out)["serving"], config(out)["r"]
    assert serving["r"] == r and serving["vllm_max_lora_rank"] in VLLM_MAX_LORA_RANKS
    assert serving["vllm_max_lora_rank"] >= r
    return f"lorikit.json serving: r={r} -> vLLM --max-lora-rank {serving['vllm_max_lora_rank']}"


@check("7 portable merges", "rslora-to-plain")
def _():
    parent = F.peft_parents[0]  # use_rslora: scale α / √r
    out = F.root / "rslora-plain"
    cli_ok(["merge", str(parent), "--method", "cat", "--weights", "1", "--out", str(out)])
    assert config(out)["use_rslora"] is False
    err = max_rel(served_deltas(out), peft_deltas(parent))
    assert err < 1e-6, f"{err:.2e}"
    return f"rsLoRA parent -> use_rslora false, ΔW kept (diff {err:.0e})"


@check("7 portable merges", "unpack-rank-pattern")
def _():
    parent = F.peft_parents[1]  # rank_pattern / alpha_pattern
    packed, out = F.root / "p1.lori", F.root / "p1-unpacked"
    cli_ok(["pack", str(parent), "--out", str(packed)])
    cli_ok(["unpack", str(packed), "--out", str(out)])
    cfg = config(out)
    assert not cfg.get("rank_pattern") and not cfg.get("alpha_pattern"), "patterns written"
    err = max_rel(served_deltas(out), peft_deltas(parent))
    assert err < 1e-6, f"{err:.2e}"
    return f"stock-PEFT rank_pattern adapter, pack + unpack: r={cfg['r']}, vLLM-rule ΔW = source's (diff {err:.0e})"


# ---- 8. Hub and packaging ------------------------------------------------------------------------------------
@check("8 Hub, packaging", "card-cli")
def _():
    from huggingface_hub import ModelCard

    card = ModelCard.load(F.cli_adapter / "README.md").data
    assert card.library_name == "peft" and {"lorikit", "lora"} <= set(card.tags or []), (card.library_name, card.tags)
    base = config(F.cli_adapter)["base_model_name_or_path"]
    assert card.base_model in (None, base) and not str(card.base_model or "").startswith("/"), card.base_model
    return f"ModelCard: library_name peft, tags {card.tags}, base_model {card.base_model} (local base: omitted)"


@check("8 Hub, packaging", "card-trainer-path")
def _():
    """What ``lorikit push`` uploads from a Trainer / SFTTrainer output (PEFT wrote the card there)."""
    from huggingface_hub import ModelCard

    from lorikit.hub import stage_upload

    tags = set()
    for name in ("hf_trainer", "trl"):
        folder = F.examples[name] / "lori-d"
        staged = stage_upload(folder, F.root / f"upload-{name}", meta(folder))
        card = ModelCard.load(staged / "README.md").data
        assert {"lorikit", "lori-d"} <= set(card.tags or []), (name, card.tags)
        local = [v for v in [card.base_model, *(card.tags or [])] if v and Path(str(v).rsplit(":", 1)[-1]).is_absolute()]
        assert not local, f"{name}: local path in the uploaded card: {local[0]}"
        tags |= set(card.tags)
    return f"Trainer and SFTTrainer cards as pushed: tags {sorted(tags & {'lorikit', 'lori-d'})}, no local base path"


@check("8 Hub, packaging", "card-model-index")
def _():
    """`lorikit push ADAPTER REPO --eval RESULT.json`: what would be uploaded carries the score as model-index."""
    from huggingface_hub import ModelCard

    from lorikit.hub import eval_scores, stage_upload

    result = F.root / "cli-eval.json"
    cli_ok(["eval", "--model", TINY, "--adapter", str(F.cli_adapter), "--task", "builtin", "--data",
            "builtin:compare:test", "--limit", "4", "--builtin-rows", "8", "--max-new-tokens", "2", "--out", str(result)])
    staged = stage_upload(F.cli_adapter, F.root / "upload-scored", meta(F.cli_adapter),
                          eval_scores([str(result)], F.cli_adapter))
    [entry] = ModelCard.load(staged / "README.md").data.eval_results
    assert (entry.dataset_name, entry.metric_value) == ("builtin:compare:test", json.loads(result.read_text())["score"])
    return f"push --eval RESULT.json: model-index {entry.dataset_name} {entry.metric_type} = {entry.metric_value}"


@check("8 Hub, packaging", "license-py-typed-wheel")
def _():
    import zipfile

    tree, dist = F.root / "tree", F.root / "dist"  # a copy: building writes build/ and *.egg-info beside the sources
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        tree.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # setuptools >= 70.1 builds wheels itself: the 'wheel' package build-system.requires names is not needed
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
                           "-o", str(dist), str(tree)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stderr.strip().splitlines() or ["build failed"])[-1]
    [wheel] = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("LICENSE") for n in names), "no LICENSE in the wheel"
    assert "lorikit/py.typed" in names, "no py.typed in the wheel"
    return f"{wheel.name}: LICENSE and lorikit/py.typed inside"


@check("8 Hub, packaging", "extras-and-build")
def _():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in extras if f"lorikit[{name}]" not in readme]
    assert not missing, f"README extras table lacks {missing}"
    assert any(d.startswith("build") for d in extras.get("test", []) + extras.get("dev", [])), "build not in an extra"
    return f"README lists every extra ({', '.join(extras)}); build is in the test extra (make dist-check)"


@check("8 Hub, packaging", "tensorboard-tags")
def _():
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = F.root / "tb"
    cli_ok(["train", "--model", TINY, "--data", "builtin:compare", "--builtin-rows", "8", "--max-steps", "2",
            "--rank", "2", "--report_to", "tensorboard", "--out", str(out)])
    runs = list((out / "runs").iterdir())
    assert len(runs) == 1 and platform.node() in runs[0].name, [r.name for r in runs]
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/grad_norm"} <= tags, sorted(tags)
    return f"OUT/runs/{runs[0].name}: {', '.join(sorted(t for t in tags if t.startswith('train/'))[:4])}, ..."


# ---- run -----------------------------------------------------------------------------------------------------
def main() -> None:
    global F
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run the checks whose id contains this text")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ecosystem.json"))
    args = ap.parse_args()
    logging_off()
    load_before = os.getloadavg()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lorikit-eco-"))
    root.mkdir(parents=True, exist_ok=True)
    F = Fixtures(root)
    rows = []
    t_all = time.perf_counter()
    for area, cid, fn in CHECKS:
        if args.only and args.only not in cid:
            continue
        t0 = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as exc:  # a check's failure is its result
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
            detail, ok = f"{type(exc).__name__}: {first}", False
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
        rows.append({"area": area, "id": cid, "ok": ok, "detail": detail,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{'✔' if ok else '✗'} {area:<18} {cid:<30} {rows[-1]['seconds']:>6.1f} s  {detail}", flush=True)
    passed = sum(r["ok"] for r in rows)
    total_s = time.perf_counter() - t_all
    print(f"\n{passed}/{len(rows)} ✔, {len(rows) - passed} ✗ in {total_s:.0f} s; load average before "
          f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    result = {"checks": rows, "passed": passed, "total": len(rows), "seconds": round(total_s, 1),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if not args.only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def logging_off() -> None:
    """The checks' own progress bars and library logs would bury the table."""
    import logging

    logging.disable(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


if __name__ == "__main__":
    main()
