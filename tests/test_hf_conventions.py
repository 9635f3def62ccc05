"""Hugging Face conventions on the command line: flag spellings, --config files, 'did you mean'."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from lorikit.cli import build_parser, main
from lorikit.cli.train import apply_config_file
from lorikit.errors import UsageError

HF_FLAGS = ["--learning_rate", "1e-3", "--output_dir", "o", "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "3", "--num_train_epochs", "2", "--lr_scheduler_type", "cosine",
            "--warmup_steps", "1", "--save_steps", "5", "--save_total_limit", "4", "--logging_steps", "2",
            "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.1", "--target_modules", "q_proj", "v_proj",
            "--bf16", "--gradient_checkpointing", "--max_steps", "7"]
EXPECTED = {"lr": 1e-3, "out": "o", "batch_size": 2, "grad_accum": 3, "epochs": 2.0, "lr_scheduler": "cosine",
            "warmup_steps": 1, "save_every": 5, "keep_checkpoints": 4, "log_every": 2, "rank": 8, "alpha": 16.0,
            "dropout": 0.1, "target_modules": ["q_proj", "v_proj"], "bf16": True, "grad_checkpointing": True,
            "max_steps": 7}


def parse(argv):
    return build_parser().parse_args(["train", *argv])


def test_hugging_face_flag_spellings_set_the_lorikit_settings():
    args = parse(HF_FLAGS)
    assert {k: getattr(args, k) for k in EXPECTED} == EXPECTED
    assert parse(["--r", "4", "--out", "o"]).rank == 4
    assert parse(["--max-steps", "3", "--out", "o"]).max_steps == parse(["--max_steps", "3", "--out", "o"]).max_steps


def test_unknown_flag_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--lerning_rate", "1e-3", "--out", "o"])
    assert info.value.code == 2
    assert "unrecognized argument --lerning_rate (did you mean '--learning_rate'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["merge", "--wieghts", "1"])
    assert "did you mean '--weights'?" in capsys.readouterr().err


def test_config_file_sets_every_flag_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("learning_rate: 1e-3\nmax-steps: '4'\nrank: 8\nlora_alpha: 32\nmethod: lori-d\n"
                   "target_modules: [q_proj]\ndata: builtin:compare\nout: from-file\n")
    args = parse(["--config", str(cfg), "--out", "from-cli", "--rank", "2"])
    apply_config_file(args)
    assert (args.lr, args.max_steps, args.rank, args.alpha, args.out) == (1e-3, 4, 2, 32.0, "from-cli")
    assert args.target_modules == ["q_proj"] and args.method == "lori-d"
    as_json = tmp_path / "train.json"
    as_json.write_text(json.dumps({"lr": 0.01, "batch_size": 3}))
    args = parse(["--config", str(as_json), "--out", "o"])
    apply_config_file(args)
    assert (args.lr, args.batch_size) == (0.01, 3)


@pytest.mark.parametrize("text,pattern", [
    ("learnig_rate: 1e-3\n", r"unknown key 'learnig_rate' \(did you mean 'learning_rate'\?\)"),
    ("max_steps: many\n", r"setting 'max_steps' = 'many' is not"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("rank: 4\nlora_r: 8\n", "key 'lora_r' sets 'rank' a second time"),
])
def test_config_file_errors_name_the_file_and_key(tmp_path, text, pattern):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(UsageError, match=pattern) as info:
        apply_config_file(parse(["--config", str(cfg), "--out", "o"]))
    assert str(cfg) in str(info.value)


def test_train_config_file_end_to_end(tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"model: tiny-random-llama\ndata: builtin:compare\nbuiltin_rows: 8\nmax_steps: 1\n"
                   f"per_device_train_batch_size: 2\nlearning_rate: 1e-3\nmethod: lori-d\nlora_r: 2\n"
                   f"output_dir: {tmp_path / 'out'}\n")
    assert main(["train", "--config", str(cfg)]) == 0
    meta = json.loads((tmp_path / "out" / "lorikit.json").read_text())
    assert meta["rank"] == 2 and meta["hyperparameters"]["lr"] == 1e-3 and meta["hyperparameters"]["batch_size"] == 2


def test_shipped_recipes_are_found_by_name_and_listed(capsys, tmp_path):
    assert main(["run", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("merge-3tasks", "continual", "osrm-merge", "lori-single-task"))
    assert main(["run", "merge-3tasks", "--dry-run", "--model", "tiny-random-llama",
                 "--workdir", str(tmp_path / "w")]) == 0
    assert "merge-3tasks.yaml" in capsys.readouterr().out and not (tmp_path / "w").exists()
    assert main(["run", "merge-3taks"]) == 2
    assert "not a shipped recipe (did you mean 'merge-3tasks'?)" in capsys.readouterr().err


def test_tiny_adapters_record_a_folder_stock_auto_peft_can_load(make_adapter, tmp_path):
    import torch
    from peft import AutoPeftModelForCausalLM

    from lorikit.adapters.build import load_peft
    from lorikit.adapters.state import load_adapter
    from lorikit.merge.config import MergeConfig
    from lorikit.merge.core import merge
    from lorikit.models import load_model

    new = make_adapter(method="lori-d", rank=2, steps=1)
    base_id = json.loads((new / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base_id != "tiny-random-llama" and (Path(base_id) / "config.json").is_file()
    stock = AutoPeftModelForCausalLM.from_pretrained(str(new)).eval()
    ours = load_peft(load_model("tiny-random-llama").model, new).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-6)
    # an adapter written before (alias as base model) still loads and merges with a new one
    old = make_adapter(method="lori-d", rank=2, steps=1, seed=3)
    config = json.loads((old / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "tiny-random-llama"
    (old / "adapter_config.json").write_text(json.dumps(config))
    assert load_adapter(old).base_model == "tiny-random-llama"
    merge(MergeConfig(adapters=[str(new), str(old)], method="cat", weights=[0.5, 0.5], out=str(tmp_path / "m")))
    assert (tmp_path / "m" / "adapter_model.safetensors").is_file()


def test_every_trained_adapter_gets_a_model_card(make_adapter):
    out = make_adapter(method="lori-d", rank=2, steps=1)
    card = (out / "README.md").read_text()
    meta = json.loads((out / "lorikit.json").read_text())
    assert card.startswith("---\n") and "library_name: peft\n" in card and "pipeline_tag: text-generation" in card
    assert "- lorikit\n" in card and "- lori-d\n" in card
    assert "# lori-d adapter" in card and f"| seed of A | {meta['seed']} |" in card
    assert f"| final loss | {meta['train']['final_loss']} |" in card and "builtin:compare" in card
    assert "More Information Needed" not in card


class FakeApi:
    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, **kw):
        root = Path(kw["folder_path"])  # what would be sent, read while the upload runs
        kw["files"] = {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}
        FakeApi.calls.append(("upload_folder", kw))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{kw['repo_id']}/commit/abc"})()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*") if f.is_file()}


def test_push_uploads_the_adapter_without_training_leftovers(make_adapter, monkeypatch, capsys):
    import huggingface_hub

    out = make_adapter(method="lori-d", rank=2, steps=1)
    (out / "README.md").unlink()
    (out / "optimizer.pt").write_bytes(b"leftover")
    before = snapshot(out)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    assert main(["push", str(out), "me/my-adapter", "--private"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert snapshot(out) == before  # push never changes the folder it uploads: the card is made aside
    (_, repo, kw), (_, upload) = FakeApi.calls
    assert repo == "me/my-adapter" and kw["private"] is True and kw["exist_ok"] is True
    assert "checkpoint-*" in upload["ignore_patterns"]
    sent = upload["files"]
    assert b"lori-d" in sent["README.md"] and "optimizer.pt" not in sent and ".lorikit-output" not in sent
    assert sent["adapter_model.safetensors"] == before["adapter_model.safetensors"]
    assert main(["push", str(out), "not a repo"]) == 2
    assert "REPO_ID 'not a repo': expected OWNER/NAME" in capsys.readouterr().err


def test_push_failure_is_one_line(make_adapter, monkeypatch, capsys):
    import huggingface_hub

    class Offline(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise ConnectionError("Name or service not known\nmore lines")

    out = make_adapter(method="lori-d", rank=2, steps=1)
    (out / "README.md").write_text("# my own card\n")
    before = snapshot(out)
    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    capsys.readouterr()
    assert main(["push", str(out), "me/x"]) == 1
    assert capsys.readouterr().err.strip() == \
        "lorikit: error: push to me/x: ConnectionError: Name or service not known"
    assert snapshot(out) == before  # the hand-written card is kept, failed upload or not
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    assert main(["push", str(out), "me/x"]) == 0
    assert FakeApi.calls[1][1]["files"]["README.md"] == b"# my own card\n" and snapshot(out) == before


def test_report_to_tensorboard_writes_event_files(tmp_path):
    out = tmp_path / "tb"
    assert main(["train", "--model", "tiny-random-llama", "--data", "builtin:compare", "--builtin-rows", "8",
                 "--max_steps", "2", "--per_device_train_batch_size", "2", "--method", "lori-d", "--lora_r", "2",
                 "--report_to", "tensorboard", "--output_dir", str(out)]) == 0
    [run] = list((out / "runs").iterdir())  # transformers' layout: <output_dir>/runs/<date>_<host>
    assert re.fullmatch(r"[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_.+", run.name)
    events = list(run.glob("events.out.tfevents.*"))
    assert events and (out / "adapter_model.safetensors").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    assert {"train/loss", "train/learning_rate", "train/grad_norm"} <= set(acc.Tags()["scalars"])
    losses = [e.value for e in acc.Scalars("train/loss")]
    log = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(abs(a - b) < 1e-4 for a, b in zip(losses, log))


def test_report_to_refuses_unknown_or_missing_trackers():
    from lorikit.train import TrainConfig

    with pytest.raises(UsageError, match="--report-to 'tensorbord': unknown"):
        TrainConfig(out="o", report_to=["tensorbord"])
    with pytest.raises(UsageError, match="cannot be combined"):
        TrainConfig(out="o", report_to=["none", "tensorboard"])


def test_bfloat16_base_weights_train_a_float32_adapter(tmp_path):
    import torch
    from safetensors.torch import load_file

    from lorikit.adapters.build import AdapterConfig
    from lorikit.train import TrainConfig
    from lorikit.train.trainer import Trainer

    cfg = TrainConfig(out=str(tmp_path / "bf"), model="tiny-random-llama", data="builtin:compare", builtin_rows=8,
                      max_steps=2, batch_size=2, lr=1e-2, dtype="bfloat16",
                      adapter=AdapterConfig(method="lori-d", rank=2, seed=1))
    trainer = Trainer(cfg)
    out = trainer.run()
    params = dict(trainer.peft_model.named_parameters())
    assert params["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"].dtype == torch.bfloat16
    assert params["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in load_file(str(out / "adapter_model.safetensors")).values())
    assert all(math.isfinite(r["loss"]) for r in trainer.log) and trainer.log[-1]["loss"] != trainer.log[0]["loss"]


def test_load_in_4bit_says_what_is_missing(monkeypatch):
    import torch

    from lorikit.train import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="--load-in-4bit: needs"):
        TrainConfig(out="o", load_in_4bit=True)


def test_push_drops_a_local_base_model_from_peft_written_cards(tmp_path, monkeypatch):
    """PEFT's save_pretrained (what Trainer / SFTTrainer call) writes the base's local folder as the card's
    base_model, which the Hub refuses: the uploaded card leaves it out, keeps the rest, and the folder is
    not changed (its card is hard-linked into the upload copy)."""
    import huggingface_hub
    from huggingface_hub import ModelCard
    from peft import LoraConfig

    from lorikit.integrations import get_lori_model
    from lorikit.models import load_model

    model = get_lori_model(load_model("tiny-random-llama").model, LoraConfig(r=2, target_modules=["q_proj"]),
                           method="lori-d", seed=1)
    out = tmp_path / "trainer-out"
    model.save_pretrained(str(out))
    local = ModelCard.load(out / "README.md").data.base_model
    assert local and Path(local).is_dir()  # PEFT's own card names the local folder
    before = snapshot(out)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    assert main(["push", str(out), "me/trained"]) == 0
    sent = FakeApi.calls[1][1]["files"]["README.md"].decode()
    data = ModelCard(sent).data
    assert data.base_model is None and not [t for t in data.tags if local in t], data.tags
    assert {"lorikit", "lori-d"} <= set(data.tags) and data.library_name == "peft"
    assert snapshot(out) == before


def test_push_eval_results_become_the_card_model_index(make_adapter, tmp_path, monkeypatch, capsys):
    """`lorikit push ADAPTER REPO --eval RESULT.json`: the scores of `lorikit eval --adapter ADAPTER --out
    RESULT.json` are the uploaded card's model-index (a generated card, or a hand-written one whose text
    stays); results of another adapter or of the base model alone are refused before anything is sent."""
    import huggingface_hub
    from huggingface_hub import ModelCard

    out = make_adapter(method="lori-d", rank=2, steps=1)
    result = tmp_path / "compare.json"
    ev = ["eval", "--model", "tiny-random-llama", "--task", "builtin", "--data", "builtin:compare:test", "--limit",
          "2", "--builtin-rows", "4", "--max-new-tokens", "2"]
    assert main([*ev, "--adapter", str(out), "--out", str(result)]) == 0
    score = json.loads(result.read_text())["score"]
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    for card in (None, "# my own card\n\nHow I trained it.\n"):
        if card is None:
            (out / "README.md").unlink()
        else:
            (out / "README.md").write_text(card)
        before = snapshot(out)
        FakeApi.calls = []
        assert main(["push", str(out), "me/scored", "--eval", str(result)]) == 0
        sent = ModelCard(FakeApi.calls[1][1]["files"]["README.md"].decode())
        [entry] = sent.data.eval_results
        assert (entry.dataset_name, entry.metric_type, entry.metric_value) == ("builtin:compare:test", "accuracy", score)
        assert card is None or "How I trained it." in sent.text
        assert snapshot(out) == before
    other = tmp_path / "base.json"
    assert main([*ev, "--out", str(other)]) == 0
    capsys.readouterr()
    FakeApi.calls = []
    assert main(["push", str(out), "me/scored", "--eval", str(other)]) == 2
    assert "scores the base model alone (no --adapter)" in capsys.readouterr().err and not FakeApi.calls
