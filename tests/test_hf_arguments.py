"""Hugging Face / TRL argument spellings, every transformers LR schedule, 'did you mean' for
sub-commands, choices and config keys, and axolotl config files."""

from __future__ import annotations

import json
import math

import pytest

from lorikit.cli import build_parser, main
from lorikit.cli.train import apply_config_file
from lorikit.errors import UsageError


def parse(argv):
    return build_parser().parse_args(["train", *argv])


# ---- spellings -----------------------------------------------------------------------------------
def test_trl_and_transformers_spellings_set_the_lorikit_settings():
    args = parse(["--model_name_or_path", "tiny-random-llama", "--dataset_name", "org/data", "--warmup_ratio", "0.1",
                  "--lora_target_modules", "q_proj", "k_proj", "--eval_steps", "5", "--eval_strategy", "steps",
                  "--max_seq_length", "64", "--torch_dtype", "bfloat16", "--logging_steps", "3",
                  "--lr_scheduler_kwargs", '{"min_lr_rate": 0.1}', "--resume_from_checkpoint", "--output_dir", "o"])
    got = {k: getattr(args, k) for k in ("model", "data", "warmup_ratio", "target_modules", "eval_every",
                                         "eval_strategy", "max_length", "dtype", "log_every", "lr_scheduler_kwargs",
                                         "resume", "out")}
    assert got == {"model": "tiny-random-llama", "data": "org/data", "warmup_ratio": 0.1,
                   "target_modules": ["q_proj", "k_proj"], "eval_every": 5, "eval_strategy": "steps",
                   "max_length": 64, "dtype": "bfloat16", "log_every": 3, "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
                   "resume": True, "out": "o"}
    assert parse(["--resume_from_checkpoint", "false", "--out", "o"]).resume is False


def test_dash_forms_as_hf_argument_parser_accepts_them():
    dashed = parse(["--learning-rate", "1e-3", "--per-device-train-batch-size", "3", "--lora-r", "4",
                    "--model-name-or-path", "m", "--num-train-epochs", "2", "--output-dir", "o"])
    under = parse(["--learning_rate", "1e-3", "--per_device_train_batch_size", "3", "--lora_r", "4",
                   "--model_name_or_path", "m", "--num_train_epochs", "2", "--output_dir", "o"])
    keys = ("lr", "batch_size", "rank", "model", "epochs", "out")
    assert [getattr(dashed, k) for k in keys] == [getattr(under, k) for k in keys] == [1e-3, 3, 4, "m", 2.0, "o"]


def test_resume_from_checkpoint_takes_a_path_as_transformers_does(tmp_path):
    """A path is --resume-from (on the command line and in a config file); true/false stay --resume."""
    args = parse(["--resume_from_checkpoint", "o/checkpoint-5", "--out", "o"])
    assert args.resume_from == "o/checkpoint-5" and not hasattr(args, "resume")
    assert parse(["--resume-from-checkpoint", "o/checkpoint-5", "--out", "o"]).resume_from == "o/checkpoint-5"
    for value, expected in (("o/checkpoint-5", {"resume_from": "o/checkpoint-5"}), ("true", {"resume": True})):
        path = tmp_path / f"c{len(expected)}{value[0]}.yaml"
        path.write_text(f"output_dir: o\nresume_from_checkpoint: {value}\n")
        args = parse(["--config", str(path)])
        apply_config_file(args)
        assert {k: getattr(args, k) for k in expected} == expected


def test_eval_strategy_must_agree_with_eval_steps():
    from lorikit.train import TrainConfig

    with pytest.raises(UsageError, match="--eval-strategy steps: needs --eval-steps N"):
        TrainConfig(out="o", eval_strategy="steps")
    with pytest.raises(UsageError, match="--eval-strategy no with --eval-steps 5: give one"):
        TrainConfig(out="o", eval_strategy="no", eval_every=5, dev_fraction=0.2)
    assert TrainConfig(out="o", eval_strategy="no").eval_every == 0


def test_all_linear_adapts_every_linear_layer_but_the_head(tiny_bundle):
    from lorikit.adapters.build import AdapterConfig, attach_adapter, lora_layers

    peft_model = attach_adapter(tiny_bundle.model, AdapterConfig(rank=2, seed=1, target_modules=["all-linear"]))
    kinds = {name.rsplit(".", 1)[-1] for name, _ in lora_layers(peft_model)}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with pytest.raises(UsageError, match="all-linear already names every Linear layer"):
        AdapterConfig(target_modules=["all-linear", "q_proj"])


def test_fp16_trains_with_loss_scaling_and_float32_adapter_weights(tmp_path):
    from safetensors.torch import load_file

    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig
    from lorikit.train.trainer import Trainer

    assert parse(["--fp16", "--out", "o"]).fp16 is True
    with pytest.raises(UsageError, match="--bf16 and --fp16: give one"):
        TrainConfig(out="o", bf16=True, fp16=True)
    trainer = Trainer(TrainConfig(out=str(tmp_path / "f"), model="tiny-random-llama", data="builtin:compare",
                                  builtin_rows=8, max_steps=3, batch_size=2, lr=1e-2, fp16=True,
                                  adapter=AdapterConfig(method="lori-d", rank=2, seed=1)))
    out = trainer.run()
    assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() > 0
    assert all(math.isfinite(r["loss"]) for r in trainer.log)
    assert all(v.dtype.is_floating_point and v.dtype.itemsize == 4
               for v in load_file(str(out / "adapter_model.safetensors")).values())


# ---- schedules -----------------------------------------------------------------------------------
def test_every_step_wise_transformers_schedule_is_offered():
    from transformers.trainer_utils import SchedulerType

    from lorikit.train.schedule import LR_SCHEDULERS, METRIC_SCHEDULERS

    offered = {s.value for s in SchedulerType}
    assert set(LR_SCHEDULERS) | set(METRIC_SCHEDULERS) == offered
    assert parse(["--lr_scheduler_type", "warmup_stable_decay", "--out", "o"]).lr_scheduler == "warmup_stable_decay"
    with pytest.raises(UsageError, match="steps on a metric"):
        from lorikit.train import TrainConfig

        TrainConfig(out="o", lr_scheduler="reduce_lr_on_plateau")


def lrs(name, steps, warmup, kwargs=None):
    import torch

    from lorikit.train.schedule import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(name, opt, steps, warmup, kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_use_hugging_face_warm_up():
    assert lrs("linear", 6, 2) == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])  # first step at lr 0, as HF
    assert lrs("constant", 4, 2) == pytest.approx([0.0, 0.5, 1.0, 1.0])  # lorikit's constant keeps its warm-up
    assert lrs("constant", 3, 0) == [1.0, 1.0, 1.0]
    cosine = lrs("cosine", 5, 1)
    assert cosine[:2] == pytest.approx([0.0, 1.0]) and cosine[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert lrs("cosine_with_min_lr", 5, 0, {"min_lr_rate": 0.5})[-1] >= 0.5
    with pytest.raises(UsageError, match="--lr-scheduler cosine_with_min_lr with --lr-scheduler-kwargs"):
        lrs("cosine_with_min_lr", 5, 0)


def test_training_steps_follow_the_schedule_and_warmup_ratio(tmp_path):
    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig, train

    out = tmp_path / "s"
    train(TrainConfig(out=str(out), model="tiny-random-llama", data="builtin:compare", builtin_rows=8, max_steps=4,
                      batch_size=2, lr=1e-2, lr_scheduler="linear", warmup_ratio=0.3,
                      adapter=AdapterConfig(method="lori-d", rank=2, seed=1)))
    logged = [json.loads(line)["lr"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    # ⌈0.3 · 4⌉ = 2 warm-up steps; the log has the lr after each step's scheduler update (the last: 0)
    assert logged == pytest.approx([x * 1e-2 for x in lrs("linear", 4, 2)[1:]] + [0.0])
    assert logged == pytest.approx([0.005, 0.01, 0.005, 0.0])


# ---- did you mean --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,expected", [
    (["trian"], "invalid choice: 'trian' (did you mean 'train'?)"),
    (["train", "--lr_scheduler_type", "cosin", "--out", "o"], "invalid choice: 'cosin' (did you mean 'cosine'?)"),
    (["train", "--method", "lori_d", "--out", "o"], "invalid choice: 'lori_d' (did you mean 'lori-d'?)"),
])
def test_did_you_mean_for_commands_and_choices(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and expected in capsys.readouterr().err


def test_did_you_mean_for_config_values_and_merge_keys(tmp_path):
    from lorikit.merge.config import MergeConfig

    cfg = tmp_path / "t.yaml"
    cfg.write_text("lr_scheduler: cosin\n")
    with pytest.raises(UsageError, match=r"'lr_scheduler' = 'cosin': unknown \(did you mean 'cosine'\?\)"):
        apply_config_file(parse(["--config", str(cfg), "--out", "o"]))
    merge_yaml = tmp_path / "m.yaml"
    merge_yaml.write_text("method: ties\nweigths: [0.5, 0.5]\nadapters: [a, b]\n")
    with pytest.raises(UsageError, match=r"unknown key 'weigths' \(did you mean 'weights'\?\)"):
        MergeConfig.from_yaml(str(merge_yaml), {})


# ---- axolotl -------------------------------------------------------------------------------------
# The shape of axolotl's examples/llama-3/lora-1b.yml, on the tiny model and a local alpaca file.
AXOLOTL = """\
base_model: tiny-random-llama
model_type: AutoModelForCausalLM
tokenizer_type: AutoTokenizer
load_in_8bit: false
load_in_4bit: false
strict: false

datasets:
  - path: {data}
    type: alpaca
dataset_prepared_path:
val_set_size: 0
output_dir: {out}

adapter: lora
lora_model_dir:
sequence_len: 512
sample_packing: false
pad_to_sequence_len: true

lora_r: 4
lora_alpha: 8
lora_dropout: 0.05
lora_target_linear: true
lora_fan_in_fan_out:

wandb_project:
wandb_entity:
wandb_watch:
wandb_name:
wandb_log_model:

gradient_accumulation_steps: 2
micro_batch_size: 2
num_epochs: 1
max_steps: 2
optimizer: adamw_torch_fused
lr_scheduler: cosine
learning_rate: 0.0002

train_on_inputs: false
group_by_length: false
bf16: false
fp16:
tf32: false

gradient_checkpointing: false
early_stopping_patience:
resume_from_checkpoint:
local_rank:
logging_steps: 1
xformers_attention:
flash_attention: false

warmup_ratio: 0.1
evals_per_epoch:
saves_per_epoch:
debug:
deepspeed:
weight_decay: 0.0
fsdp:
fsdp_config:
special_tokens:
  pad_token: "<|end_of_text|>"
seed: 7
"""


@pytest.fixture
def alpaca_file(tmp_path):
    rows = [{"instruction": f"Add {a} and {b}.", "input": "", "output": str(a + b)} for a in range(3) for b in range(3)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def axolotl_args(tmp_path, text):
    cfg = tmp_path / "axolotl.yml"
    cfg.write_text(text)
    args = parse(["--config", str(cfg)])
    apply_config_file(args)
    return args


def test_axolotl_example_config_is_read_as_the_run_it_describes(tmp_path, alpaca_file):
    args = axolotl_args(tmp_path, AXOLOTL.format(data=alpaca_file, out=tmp_path / "out"))
    got = {k: getattr(args, k) for k in ("model", "data", "format", "out", "method", "max_length", "rank", "alpha",
                                         "dropout", "target_modules", "grad_accum", "batch_size", "epochs",
                                         "max_steps", "lr_scheduler", "lr", "bf16", "grad_checkpointing",
                                         "log_every", "warmup_ratio", "weight_decay", "seed", "group_by_length")}
    assert got == {"model": "tiny-random-llama", "data": str(alpaca_file), "format": "alpaca",
                   "out": str(tmp_path / "out"), "method": "lora", "max_length": 512, "rank": 4, "alpha": 8.0,
                   "dropout": 0.05, "target_modules": ["all-linear"], "grad_accum": 2, "batch_size": 2, "epochs": 1.0,
                   "max_steps": 2, "lr_scheduler": "cosine", "lr": 2e-4, "bf16": False, "grad_checkpointing": False,
                   "log_every": 1, "warmup_ratio": 0.1, "weight_decay": 0.0, "seed": 7, "group_by_length": False}
    assert not hasattr(args, "resume") and not hasattr(args, "patience")  # empty axolotl keys stay unset


def test_axolotl_config_with_a_lori_block_trains(tmp_path, alpaca_file):
    text = AXOLOTL.format(data=alpaca_file, out=tmp_path / "out") + "lori:\n  method: lori-d\n  a_init: gaussian\n"
    cfg = tmp_path / "axolotl.yml"
    cfg.write_text(text)
    assert main(["train", "--config", str(cfg)]) == 0
    meta = json.loads((tmp_path / "out" / "lorikit.json").read_text())
    assert (meta["method"], meta["rank"], meta["seed"], meta["a_init"]) == ("lori-d", 4, 7, "gaussian")
    assert meta["data"]["format"] == "alpaca" and meta["train"]["steps"] == 2
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert {m.rsplit(".", 1)[-1] for m in config["target_modules"]} >= {"q_proj", "down_proj"}


def test_axolotl_evals_per_epoch_is_the_epoch_eval_strategy(tmp_path, alpaca_file):
    text = AXOLOTL.format(data=alpaca_file, out=tmp_path / "out").replace("val_set_size: 0", "val_set_size: 0.25")
    args = axolotl_args(tmp_path, text.replace("evals_per_epoch:", "evals_per_epoch: 1"))
    assert (args.eval_strategy, args.dev_fraction) == ("epoch", 0.25)
    with pytest.raises(UsageError, match=r"evals_per_epoch 4: lorikit evaluates once per epoch"):
        axolotl_args(tmp_path, text.replace("evals_per_epoch:", "evals_per_epoch: 4"))


@pytest.mark.parametrize("change,pattern", [
    ("sample_packing: false", "sample_packing: True is not supported by lorikit"),
    ("lora_alpha: 8", r"unknown key 'lora_alpah' \(did you mean 'lora_alpha'\?\)"),
    ("    type: alpaca", r"datasets\[0\].type 'sharegpt': not supported by lorikit"),
    ("optimizer: adamw_torch_fused", "optimizer 'adamw_bnb_8bit': not supported; lorikit trains with torch AdamW"),
    ("train_on_inputs: false", "train_on_inputs: true is not supported"),
    ("adapter: lora", "adapter 'ia3': not supported by lorikit"),
    ("val_set_size: 0", r"val_set_size 200: lorikit takes a share of the data in \[0, 1\)"),
    ("seed: 7", r"lori.sparsty: not a LoRI / OSRM setting"),
])
def test_axolotl_keys_lorikit_cannot_honour_are_refused_by_name(tmp_path, alpaca_file, change, pattern):
    replacement = {"sample_packing: false": "sample_packing: true", "lora_alpha: 8": "lora_alpah: 8",
                   "    type: alpaca": "    type: sharegpt", "optimizer: adamw_torch_fused": "optimizer: adamw_bnb_8bit",
                   "train_on_inputs: false": "train_on_inputs: true", "adapter: lora": "adapter: ia3",
                   "val_set_size: 0": "val_set_size: 200", "seed: 7": "seed: 7\nlori:\n  sparsty: 0.9"}[change]
    text = AXOLOTL.format(data=alpaca_file, out=tmp_path / "out")
    assert change in text
    with pytest.raises(UsageError, match=pattern) as info:
        axolotl_args(tmp_path, text.replace(change, replacement, 1))
    assert "axolotl.yml" in str(info.value)


def test_axolotl_datasets_must_be_one_local_or_hub_set(tmp_path, alpaca_file):
    two = AXOLOTL.format(data=alpaca_file, out="o").replace(
        "    type: alpaca\n", f"    type: alpaca\n  - path: {alpaca_file}\n    type: alpaca\n")
    with pytest.raises(UsageError, match="lorikit trains on one data set per run"):
        axolotl_args(tmp_path, two)


@pytest.mark.parametrize("kind,fmt", [("alpaca", "alpaca"), ("chat_template", "messages"), ("completion", "text")])
def test_axolotl_dataset_types_map_to_the_format_with_the_same_loss(tmp_path, alpaca_file, kind, fmt):
    text = AXOLOTL.format(data=alpaca_file, out="o").replace("    type: alpaca", f"    type: {kind}")
    assert axolotl_args(tmp_path, text).format == fmt
