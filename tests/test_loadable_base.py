"""Every adapter names a base model that stock PEFT can load by itself (``AutoPeftModelForCausalLM``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import AutoPeftModelForCausalLM, LoraConfig

from lorikit.adapters.card import write_model_card
from lorikit.cli import main as cli_main
from lorikit.integrations import get_lori_model, save_lori_adapter
from lorikit.models import load_model
from lorikit.models import loading

TINY = "tiny-random-llama"


def _config() -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def _same_logits(folder: Path) -> None:
    from peft import PeftModel

    stock = AutoPeftModelForCausalLM.from_pretrained(str(folder)).eval()
    ours = PeftModel.from_pretrained(load_model(TINY).model, str(folder)).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-6)


def test_load_model_sets_the_name_peft_reads():
    bundle = load_model(TINY)
    assert bundle.model.name_or_path == bundle.model.config.name_or_path == bundle.base_model_id
    assert (Path(bundle.base_model_id) / "model.safetensors").is_file()
    assert bundle.weights_note is None


def test_get_lori_model_adapter_loads_with_auto_peft(tmp_path):
    model = get_lori_model(load_model(TINY).model, _config(), method="lori-d", seed=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    out = save_lori_adapter(model, tmp_path / "a")
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == load_model(TINY).base_model_id
    _same_logits(out)


def test_cli_adapter_loads_with_auto_peft(tmp_path):
    out = tmp_path / "cli"
    assert cli_main(["train", "--model", TINY, "--data", "builtin:compare", "--builtin-rows", "16",
                     "--max-steps", "2", "--rank", "2", "--out", str(out)]) == 0
    _same_logits(out)


def test_a_model_folder_is_recorded_as_that_folder(tmp_path):
    folder = tmp_path / "my-model"
    model, tok = loading.build_tiny_llama()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    peft_model = get_lori_model(load_model(str(folder)).model, _config(), method="lori-d", seed=1)
    out = save_lori_adapter(peft_model, tmp_path / "a")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(folder)
    _same_logits(out)


def test_embedded_smollm2_records_the_hub_id_and_says_the_weights_are_dequantised(tmp_path, monkeypatch):
    # the embedded model's de-quantised folder stands in for a folder: what is recorded is the Hub id
    monkeypatch.setattr(loading, "resolve_folder", lambda name: (str(loading.tiny_folder()), loading.SMOLLM2_HUB_ID))
    monkeypatch.setattr(loading, "load_tokenizer", lambda name: loading.build_tiny_tokenizer())
    bundle = load_model("smollm2-135m")
    assert bundle.model.name_or_path == bundle.base_model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "GGUF" in bundle.weights_note
    out = save_lori_adapter(get_lori_model(bundle.model, _config(), method="lori-d", seed=1), tmp_path / "a")
    config = json.loads((out / "adapter_config.json").read_text())
    meta = json.loads((out / "lorikit.json").read_text())
    assert config["base_model_name_or_path"] == meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "GGUF Q4_1" in meta["base_weights"]
    write_model_card(out)
    card = (out / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "de-quantised" in card


def test_card_metadata_is_huggingface_hubs_with_model_index(tmp_path):
    from huggingface_hub import ModelCard

    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base", "r": 4}))
    meta = {"method": "lori-s", "data": {"source": "openai/gsm8k?split=train"},
            "eval": {"gsm8k": {"score": 0.25, "metric": "accuracy", "data": "openai/gsm8k"}, "nan": float("nan")}}
    write_model_card(folder, meta)
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "org/base" and card.data.datasets == ["openai/gsm8k"]
    assert {"lorikit", "lori-s"} <= set(card.data.tags) and card.data.library_name == "peft"
    [result] = card.data.eval_results  # the non-finite score is left out of the model-index
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("openai/gsm8k", "accuracy", 0.25)
    local = tmp_path / "b"
    local.mkdir()
    (local / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path)}))
    write_model_card(local, {"method": "lora", "data": {"source": str(local)}})
    data = ModelCard.load(local / "README.md").data
    assert data.base_model is None and not data.datasets  # local folders are not Hub ids


def test_trainer_path_cards_keep_the_lorikit_tags(tmp_path):
    model = get_lori_model(load_model(TINY).model, _config(), method="lori-d", seed=1)
    model.save_pretrained(str(tmp_path / "a"))  # PEFT's own card, as Trainer.save_model writes it
    card = (tmp_path / "a" / "README.md").read_text()
    assert "- lorikit\n" in card and "- lori-d\n" in card


def test_license_and_py_typed_are_packaged():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    text = (root / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0" and project["project"]["license-files"] == ["LICENSE"]
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["lorikit"]
    assert (root / "src" / "lorikit" / "py.typed").is_file()
    assert any(dep.startswith("build") for dep in project["project"]["optional-dependencies"]["test"])
