"""lorikit's decoding loop: same greedy tokens as ``model.generate``, per-sequence stopping."""

from __future__ import annotations

from lorikit.eval.generate import GenerationConfig, cut_at_stop, eos_ids, generate

PROMPTS = ["What is 1 + 2?", "Hi", "A much longer prompt about rivers and stones", "x y z", "Once upon a time"]


def _hf_greedy(model, tok, prompt: str, new: int, stops: list[str]) -> str:
    enc = tok([prompt], return_tensors="pt")
    seq = model.generate(**enc, max_new_tokens=new, do_sample=False, eos_token_id=eos_ids(model, tok),
                         pad_token_id=tok.eos_token_id, temperature=None, top_p=None, top_k=None)
    return cut_at_stop(tok.decode(seq[0, enc.input_ids.shape[1]:], skip_special_tokens=True), stops)


def test_greedy_completions_equal_transformers_generate(tiny_bundle):
    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    full = generate(model, tok, PROMPTS, GenerationConfig(max_new_tokens=10, batch_size=3), progress=False)
    assert [o[0] for o in full] == [_hf_greedy(model, tok, p, 10, []) for p in PROMPTS]
    stop = full[0][0][3]  # a character the first completion produces early
    cfg = GenerationConfig(max_new_tokens=10, batch_size=3, stop=[stop])
    cut = generate(model, tok, PROMPTS, cfg, progress=False)
    assert [o[0] for o in cut] == [cut_at_stop(o[0], [stop]) for o in full]
    assert len(cut[0][0]) <= 3


def test_finished_sequences_leave_the_batch(tiny_bundle):
    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    full = generate(model, tok, PROMPTS[:2], GenerationConfig(max_new_tokens=12, batch_size=2), progress=False)
    stop = next(c for c in full[0][0][:4] if c not in full[1][0])  # stops the first prompt only, early
    widths = []
    hook = model.register_forward_pre_hook(lambda mod, args, kw: widths.append(kw["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        stats = {}
        out = generate(model, tok, PROMPTS[:2], GenerationConfig(max_new_tokens=12, batch_size=2, stop=[stop]),
                       progress=False, stats=stats)
    finally:
        hook.remove()
    assert out[1] == full[1] and stop not in out[0][0]
    assert widths[0] == 2 and widths[-1] == 1 and len(widths) == 12  # one row decoded alone once the other stopped
    assert stats["new_tokens"] < 24
