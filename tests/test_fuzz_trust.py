"""Property tests (hypothesis) for issue 14: adapter configs, masks, ``.lori`` headers, recipes, data rows.

The property: a call either succeeds with its result sound (finite scalings, at least one kept
mask entry, an unpacked adapter equal to the packed one, valid UTF-8 text), or raises a documented
``LorikitError`` / ``UsageError`` — never another exception, never a wrong result.
"""

from __future__ import annotations

import json
import lzma
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save as st_save

from lorikit.adapters import pack_checks
from lorikit.adapters.masks import load_mask
from lorikit.adapters.pack import pack_adapter, read_packed
from lorikit.adapters.state import AdapterState, LoraModule, load_adapter, lora_key
from lorikit.data.loading import load_examples
from lorikit.errors import LorikitError
from lorikit.pipeline import load_recipe

FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NUMBER = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                   st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
MODULES = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


def _adapter(folder: Path, rank: int = 2, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    mods = [LoraModule(n, torch.randn(rank, 4, generator=gen), torch.randn(3, rank, generator=gen), 2.0) for n in MODULES]
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-random-llama",
              "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0, "bias": "none"}
    AdapterState.from_modules(mods, config, meta={"method": "lora", "seed": seed}).save(folder)
    return folder


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(["r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern",
                                              "peft_type", "use_rslora"]),
                             st.one_of(NUMBER, st.dictionaries(st.sampled_from(["q_proj", "v_proj", "x"]), NUMBER,
                                                               max_size=2),
                                       st.lists(st.sampled_from(["q_proj", "v_proj", "k_proj", ".*"]), max_size=3)),
                             max_size=3))
def test_adapter_config_fields(edits):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _adapter(Path(tmp) / "a")
        config = json.loads((folder / "adapter_config.json").read_text())
        config.update(edits)
        (folder / "adapter_config.json").write_text(json.dumps(config))
        try:
            state = load_adapter(folder)
        except LorikitError:
            return
        for m in state.modules().values():  # accepted: what PEFT and merge will both use
            assert math.isfinite(m.scaling)
            assert m.rank == 2


@FUZZ
@given(bits=st.lists(st.booleans(), min_size=6, max_size=6), value=st.sampled_from([0, 1, 2, 0.5, -1]),
       dtype=st.sampled_from([torch.bool, torch.uint8, torch.float32, torch.int64]))
def test_masks(bits, value, dtype):
    with tempfile.TemporaryDirectory() as tmp:
        t = torch.tensor(bits).reshape(3, 2)
        tensor = (t.to(torch.float32) * value).to(dtype) if dtype != torch.bool else t
        path = Path(tmp) / "m.pt"
        torch.save({lora_key(MODULES[0], "B", "default"): tensor, lora_key(MODULES[1], "B", "default"): tensor}, path)
        try:
            masks = load_mask(path)
        except LorikitError:
            return
        assert any(bool(m.any()) for m in masks.values())  # an accepted mask trains something


@FUZZ
@given(field=st.sampled_from(["seed", "a_init", "adapter_config", "version", "format", "lorikit_json", "extra"]),
       value=st.text(max_size=12), fix_checksum=st.booleans())
def test_lori_headers(field, value, fix_checksum):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _adapter(Path(tmp) / "a")
        lori = Path(tmp) / "a.lori"
        pack_adapter(folder, lori)
        with safe_open(str(lori), "pt") as fh:
            meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
        meta[field] = value
        if fix_checksum:
            meta[pack_checks.CHECKSUM_KEY] = pack_checks.digest(tensors, meta)
        lori.write_bytes(st_save(tensors, metadata=meta))
        try:
            state, _ = read_packed(lori)
        except LorikitError:
            return
        original = load_adapter(folder)
        assert state.tensors.keys() == original.tensors.keys()
        assert all(torch.equal(state.tensors[k], original.tensors[k]) for k in state.tensors)


@FUZZ
@given(index=st.recursive(st.one_of(st.integers(-2, 10**7), st.text(max_size=6), st.none()),
                          lambda inner: st.lists(inner, max_size=4), max_leaves=12))
def test_lori_index(index):
    with tempfile.TemporaryDirectory() as tmp:
        lori = Path(tmp) / "a.lori"
        pack_adapter(_adapter(Path(tmp) / "a"), lori)
        with safe_open(str(lori), "pt") as fh:
            meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
        data = lzma.compress(json.dumps(index).encode())
        tensors["index"] = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
        meta[pack_checks.CHECKSUM_KEY] = pack_checks.digest(tensors, meta)
        lori.write_bytes(st_save(tensors, metadata=meta))
        try:
            state, _ = read_packed(lori)
        except LorikitError:
            return
        assert all(torch.isfinite(t).all() for t in state.tensors.values() if t.is_floating_point())


YAML_KEY = st.sampled_from(["name", "workdir", "stages", "defaults", "a", "b", "kind", "train", "trian", "model"])
YAML_VALUE = st.sampled_from(["train", "tiny-random-llama", "{kind: train}", "[1, 2]", "$a", "", "{}", "null"])


@FUZZ
@given(lines=st.lists(st.tuples(st.integers(0, 2), YAML_KEY, YAML_VALUE), min_size=1, max_size=8))
def test_recipes(lines):
    text = "\n".join(f"{'  ' * depth}{key}: {value}" for depth, key, value in lines) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(text)
        try:
            recipe = load_recipe(path)
        except LorikitError:
            return
        assert recipe.stages and recipe.order()


SURROGATES = st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u0000", "\\u2028", "#### ", "#### \\n"])


@FUZZ
@given(parts=st.lists(st.one_of(st.text(max_size=5), SURROGATES), max_size=4),
       field=st.sampled_from(["instruction", "output", "question", "answer"]))
def test_data_rows(parts, field):
    raw = "".join(p if p.startswith("\\") or p.startswith("#") else json.dumps(p)[1:-1] for p in parts)
    row = {"instruction": "i", "output": "o"} if field in ("instruction", "output") else {"question": "q",
                                                                                         "answer": "w #### 4"}
    text = json.dumps(row)[:-1] + f', "{field}": "{raw}"}}\n'
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_text(text)
        try:
            examples = load_examples(str(path))
        except LorikitError:
            return
        for ex in examples:
            for value in vars(ex).values():
                if isinstance(value, str):
                    value.encode("utf-8")  # every accepted text is valid UTF-8
