"""Property tests (hypothesis): data loaders, mask extraction/loading and merges on random input.

The property everywhere: a call either succeeds with its invariants holding, or raises one of
the documented errors (``LorikitError`` / ``UsageError``, one line) — never anything else.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lorikit.adapters.masks import extract_masks, kept_count, load_mask, mask_to_reference
from lorikit.adapters.state import AdapterState, LoraModule, lora_key
from lorikit.data.formats import FORMATS
from lorikit.data.loading import load_examples, read_rows
from lorikit.errors import LorikitError
from lorikit.merge import DeltaParams, Merger, methods

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- data loaders ------------------------------------------------------------------------------
# Text that trips line splitting and decoding: separators JSON allows inside strings, NUL, surrogates' neighbours.
TRICKY = st.sampled_from(["\u2028", "\u2029", "\x85", "\r", "\x00", "\ufeff", "#### 42", "\n", "é", "😀"])
TEXT = st.lists(st.one_of(st.text(max_size=8), TRICKY), max_size=4).map("".join)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False), TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(TEXT, inner, max_size=3)), max_leaves=6)
FIELDS = ["instruction", "input", "output", "question", "answer", "task", "id"]
ROW = st.one_of(st.dictionaries(st.sampled_from(FIELDS), st.one_of(TEXT, JSON), max_size=6), JSON)


def _write(text_or_bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="lorikit-fuzz-"))
    path = folder / f"data{suffix}"
    if isinstance(text_or_bytes, bytes):
        path.write_bytes(text_or_bytes)
    else:
        path.write_text(text_or_bytes, encoding="utf-8")
    return path


def _check_examples(path: Path, fmt: str, expected_rows: int | None) -> None:
    try:
        examples = load_examples(str(path), fmt=fmt)
    except LorikitError as exc:  # UsageError is a LorikitError
        assert "\n" not in str(exc) and str(exc)
        return
    assert examples and all(isinstance(e.prompt, str) and isinstance(e.response, str) for e in examples)
    if expected_rows is not None:
        assert len(examples) == expected_rows


@FUZZ
@given(rows=st.lists(ROW, max_size=5), blanks=st.lists(st.sampled_from(["", "  ", "\t", "\r"]), max_size=3),
       fmt=st.sampled_from(FORMATS), ascii_only=st.booleans())
def test_jsonl_rows(rows, blanks, fmt, ascii_only):
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in rows] + blanks
    path = _write("\n".join(lines) + "\n", ".jsonl")
    # Raw U+2028 inside a JSON string must not split a row: every row comes back.
    assert read_rows(path) == [json.loads(line) for line in lines if line.strip()]
    _check_examples(path, fmt, len(rows))


@FUZZ
@given(data=st.one_of(st.lists(ROW, max_size=5), st.dictionaries(TEXT, st.lists(ROW, max_size=3), max_size=2), JSON),
       fmt=st.sampled_from(FORMATS))
def test_json_document(data, fmt):
    path = _write(json.dumps(data, ensure_ascii=False), ".json")
    expected = len(data) if isinstance(data, list) else None
    _check_examples(path, fmt, expected)


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200)), suffix=st.sampled_from([".json", ".jsonl"]),
       fmt=st.sampled_from(FORMATS))
def test_arbitrary_file_contents(content, suffix, fmt):
    _check_examples(_write(content, suffix), fmt, None)


def test_jsonl_keeps_rows_with_line_separators():
    row = {"instruction": "a\u2028b", "output": "c\u2029d\x85"}
    path = _write(json.dumps(row, ensure_ascii=False) + "\n\n", ".jsonl")
    [example] = load_examples(str(path))
    assert "a\u2028b" in example.prompt and example.response == "c\u2029d\x85"


# ---- random adapters ---------------------------------------------------------------------------
VALUE = st.one_of(st.sampled_from([0.0, 0.0, 1.0, -1.0, 0.5, -0.5]),  # zeros and ties, often
                  st.floats(-4, 4, allow_nan=False, width=32))
SPECIAL = st.sampled_from([math.inf, -math.inf, math.nan])


@st.composite
def adapters(draw, n=1, special=False, same_rank=False):
    """``n`` compatible adapters: the same modules and shapes, random ranks, scalings and values."""
    shapes = draw(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=3))
    names = [f"model.layers.{i}.self_attn.q_proj" for i in range(len(shapes))]
    shared_rank = draw(st.integers(1, 3))
    states = []
    for _ in range(n):
        mods = []
        for name, (out, inp) in zip(names, shapes):
            r = shared_rank if same_rank else draw(st.integers(1, 3))
            values = st.one_of(VALUE, SPECIAL) if special else VALUE
            A = torch.tensor(draw(st.lists(values, min_size=r * inp, max_size=r * inp))).reshape(r, inp)
            B = torch.tensor(draw(st.lists(values, min_size=out * r, max_size=out * r))).reshape(out, r)
            mods.append(LoraModule(name, A, B, draw(st.sampled_from([0.5, 1.0, 2.0]))))
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-random-llama",
                  "r": mods[0].rank, "lora_alpha": 2.0 * mods[0].rank, "target_modules": ["q_proj"],
                  "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False}
        state = AdapterState.from_modules(mods, config)
        state.source = f"random-{len(states)}"
        states.append(state)
    return states


@FUZZ
@given(states=adapters(special=True), sparsity=st.one_of(st.floats(-0.5, 1.5), st.just(math.nan)),
       scope=st.sampled_from(["global", "module"]))
def test_mask_extraction(states, sparsity, scope):
    [state] = states
    try:
        [result] = extract_masks(state, sparsity, scope)
    except LorikitError as exc:
        assert "\n" not in str(exc)
        return
    assert 0 < sparsity < 1
    mags = {n: m.B.float().abs() for n, m in state.modules().items()}
    masks = result.masks
    assert {n: tuple(t.shape) for n, t in masks.items()} == {n: tuple(t.shape) for n, t in mags.items()}
    assert all(t.dtype == torch.bool for t in masks.values())
    groups = [(torch.cat([t.flatten() for t in mags.values()]), torch.cat([m.flatten() for m in masks.values()]))] \
        if scope == "global" else [(mags[n].flatten(), masks[n].flatten()) for n in mags]
    for magnitude, keep in groups:
        k = kept_count(sparsity, magnitude.numel())
        assert not torch.isnan(magnitude).any()  # NaN B is refused above
        assert int(keep.sum()) >= k  # ties at the threshold are all kept
        if keep.any() and (~keep).any():
            assert magnitude[keep].min() >= magnitude[~keep].max()  # kept = the largest


@FUZZ
@given(states=adapters(), sparsity=st.floats(0.05, 0.95), junk=st.one_of(
    st.none(), st.binary(max_size=64), st.sampled_from(["drop-key", "extra-key", "shape", "dtype", "list", "empty"])))
def test_mask_file_round_trip_and_corruption(states, sparsity, junk, tmp_path_factory):
    [state] = states
    try:
        [result] = extract_masks(state, sparsity)
    except LorikitError:
        return
    ref = mask_to_reference(result.masks)
    path = tmp_path_factory.mktemp("mask") / "m.pt"
    if isinstance(junk, bytes):
        path.write_bytes(junk)
    else:
        key = next(iter(ref))
        changed = {"drop-key": lambda: {k: v for k, v in ref.items() if k != key},
                   "extra-key": lambda: {**ref, lora_key("model.layers.9.mlp.up_proj", "B", "default"): ref[key]},
                   "shape": lambda: {**ref, key: torch.ones(ref[key].shape[0] + 1, 1, dtype=torch.bool)},
                   "dtype": lambda: {**ref, key: torch.full(ref[key].shape, 0.5)},
                   "list": lambda: list(ref.values()), "empty": lambda: {}}
        buf = io.BytesIO()
        torch.save(changed[junk]() if junk else ref, buf)
        path.write_bytes(buf.getvalue())
    try:
        loaded = load_mask(path, state)
    except LorikitError as exc:
        assert junk is not None and "\n" not in str(exc)
        return
    assert junk is None, f"corrupt mask ({junk!r}) was accepted"
    assert all(torch.equal(loaded[n], result.masks[n]) for n in result.masks)


# ---- merges ------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), n=st.integers(1, 3), method=st.sampled_from(sorted(methods())),
       special=st.booleans(), same_rank=st.booleans())
def test_merge_methods(data, n, method, special, same_rank):
    states = data.draw(adapters(n=n, special=special, same_rank=same_rank))
    weights = data.draw(st.lists(st.floats(-2, 2, allow_nan=False), min_size=n, max_size=n))
    params = DeltaParams(lam=data.draw(st.floats(0.1, 2)), density=data.draw(st.floats(0.05, 1)),
                         drop_rate=data.draw(st.floats(0, 0.95)), seed=data.draw(st.integers(0, 3)))
    try:
        merger = Merger(states, method, weights, params)
        if merger.method.kind.per_task:
            deltas = {m: merger.delta(m, task_index=data.draw(st.integers(0, n - 1))) for m in merger.modules}
        else:
            deltas = {m: merger.delta(m) for m in merger.modules}
            merged, _ = merger.to_adapter()
    except LorikitError as exc:
        assert "\n" not in str(exc)
        return
    finite = all(torch.isfinite(m.A).all() and torch.isfinite(m.B).all()
                 for s in states for m in s.modules().values())
    for module, delta in deltas.items():
        parts = [s.modules()[module] for s in states]
        assert delta.shape == (parts[0].B.shape[0], parts[0].A.shape[1])
        if finite:
            assert torch.isfinite(delta).all(), f"{method}: non-finite ΔW from finite adapters"
    if method == "cat":
        for module, delta in deltas.items():
            expected = sum(w * m.scaling * (m.B.double() @ m.A.double())
                           for w, m in zip(weights, [s.modules()[module] for s in states]))
            assert torch.allclose(delta.double(), expected, rtol=1e-4, atol=1e-4, equal_nan=True)
            got = merged.modules()[module]
            assert got.rank == sum(s.modules()[module].rank for s in states)


@pytest.mark.parametrize("method", ["linear", "ties"])
def test_merge_rejects_mismatched_shapes(method):
    a = adapters(n=1).example()[0]
    mods = {n: LoraModule(n, torch.ones(m.rank, m.A.shape[1] + 1), m.B, m.scaling) for n, m in a.modules().items()}
    b = AdapterState.from_modules(list(mods.values()), a.config)
    with pytest.raises(LorikitError, match=r"\(out × in\)"):
        Merger([a, b], method)
