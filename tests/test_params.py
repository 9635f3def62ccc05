"""Trainable-parameter counts from a model config on the meta device."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from lorikit.adapters.params import count_parameters
from lorikit.errors import UsageError


def llama3_8b_config():
    return LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256)


def test_llama3_8b_counts_match_the_paper():
    cfg = llama3_8b_config()
    lora = count_parameters(cfg, 32, "lora")
    assert lora.trainable == 83_886_080 and lora.modules == 224
    assert count_parameters(cfg, 32, "lori-d").trainable == 44_040_192
    lori_s = count_parameters(cfg, 32, "lori-s", sparsity=0.9)
    assert lori_s.trainable == int((1 - 0.9) * 44_040_192) == 4_404_019
    assert lori_s.fraction_of_lora == pytest.approx(0.0525, abs=5e-4)
    assert lora.base == 8_030_261_248  # meta model has the real shapes
    assert count_parameters(cfg, 64, "lori-d").trainable == 88_080_384
    per_module = count_parameters(cfg, 32, "lori-s", sparsity=0.9, scope="module").trainable
    assert per_module < 4_404_019 and per_module == 32 * (2 * int(0.1 * 4096 * 32) + 2 * int(0.1 * 1024 * 32)
                                                          + 2 * int(0.1 * 14336 * 32) + int(0.1 * 4096 * 32))


def test_hub_style_config_json_file_and_folder(tmp_path):
    llama3_8b_config().save_pretrained(tmp_path)
    assert count_parameters(str(tmp_path / "config.json"), 32, "lori-d").trainable == 44_040_192
    assert count_parameters(str(tmp_path), 32, "lora").trainable == 83_886_080


def test_tiny_alias_and_errors():
    # tiny-random-llama: 2 layers, hidden 64, intermediate 128, kv 32
    b_per_layer = 64 + 32 + 32 + 64 + 128 + 128 + 64
    assert count_parameters("tiny-random-llama", 4, "lori-d").trainable == 2 * 4 * b_per_layer
    with pytest.raises(UsageError, match="--sparsity"):
        count_parameters("tiny-random-llama", 4, "lori-s", sparsity=1.0)
    with pytest.raises(UsageError, match="--rank"):
        count_parameters("tiny-random-llama", 0, "lora")


def test_cli_params(tmp_path, capsys):
    from lorikit.cli import main

    llama3_8b_config().save_pretrained(tmp_path)
    assert main(["params", "--model", str(tmp_path / "config.json"), "--rank", "32"]) == 0
    out = capsys.readouterr().out
    assert "83,886,080" in out and "44,040,192" in out and "4,404,019" in out


def test_embedded_model_is_counted_from_its_config_without_building_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORIKIT_CACHE", str(tmp_path / "cache"))
    lora = count_parameters("smollm2-135m", 8, "lora")
    assert lora.base == 134_515_008 and lora.modules == 7 * 30  # SmolLM2-135M, embeddings tied to the LM head
    assert lora.trainable == 30 * 8 * ((576 + 576) * 2 + (576 + 192) * 2 + (576 + 1536) * 3)
    assert not (tmp_path / "cache").exists()  # nothing de-quantised or written


@pytest.mark.slow
def test_embedded_config_agrees_with_the_gguf_header():
    from transformers import AutoConfig

    from lorikit.models.loading import SMOLLM2_CONFIG, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    header = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).to_dict()
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings"):
        assert header[key] == SMOLLM2_CONFIG[key], key
    assert header["rms_norm_eps"] == pytest.approx(SMOLLM2_CONFIG["rms_norm_eps"])
