"""Log-likelihood scoring of choice items: lm-eval's ``multiple_choice`` rule, without generating.

For an item with context c (the prompt) and options o_1..o_K, each option's continuation text
x_k (e.g. ``"the correct answer is " + o_k``) is tokenised exactly as training tokenises a
response (prompt and response encoded separately), and

    loglik(o_k)  = Σ_t log p(x_k,t | c, x_k,<t)        (sum over the continuation's tokens)
    prediction   = argmax_k loglik(o_k)                 (lm-eval's ``acc``)

Work saved against generation and against the naive one-sequence-per-option forward:

- (the full-forward route, for models without a usable cache) the continuations of one item
  usually share a token prefix (``the correct answer is``) and differ in their last token (``true``/``false``, ``answer1``..``answer4``): all options whose
  distinct part is at most one token are read from ONE sequence, c + prefix + any such token,
  because the logits at the last prefix position give every option's last token at once; only an
  option with a longer distinct part gets its own sequence;
- the LM head (hidden × vocab, 49,152 columns on SmolLM2) runs only at the positions that predict
  continuation tokens, not at the prompt positions (as ``lorikit.train.loss`` does in training);
- sequences are sorted by length into right-padded batches, results returned in item order;
- on decoders with a KV cache (``decoder_and_head`` finds one), the prompt and the options'
  common token prefix are run ONCE per item, whatever the number of options: the last position
  gives every option's next token, and the options' remaining tokens run against a copy of the
  prompt's cache rows
  (``DynamicCache.batch_select_indices``) with their true positions. SmolLM2 splits numbers into
  digits, so "47" vs "23" are two-token options: this halves the tokens forwarded for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..errors import LorikitError
from ..models.cache import cache_kwargs, common_prefix_length, decode_with_shared_prefix, new_cache
from ..train.loss import decoder_and_head


@dataclass
class ChoiceItem:
    """One item to score: the prompt and, per option, the continuation text after it."""

    context: str
    continuations: list[str]


@dataclass
class _Sequence:
    ids: list[int]
    # (item, option, [(position, token), ...]): the option's tokens and the positions predicting them
    requests: list[tuple[int, int, list[tuple[int, int]]]] = field(default_factory=list)


def _common_prefix(lists: list[list[int]]) -> int:
    n = min(len(x) for x in lists)
    for i in range(n):
        if len({x[i] for x in lists}) > 1:
            return i
    return n


def _plan(item_index: int, ctx: list[int], conts: list[list[int]]) -> list[_Sequence]:
    """The sequences needed for one item (one shared one for every option with <= 1 distinct token)."""
    common = _common_prefix(conts)
    shared = [k for k, c in enumerate(conts) if len(c) - common <= 1]
    plans: list[_Sequence] = []
    if shared:
        longest = max(shared, key=lambda k: len(conts[k]))
        seq = _Sequence(ctx + conts[longest])
        for k in shared:
            seq.requests.append((item_index, k, [(len(ctx) + t - 1, tok) for t, tok in enumerate(conts[k])]))
        plans.append(seq)
    for k, cont in enumerate(conts):
        if k not in shared:
            seq = _Sequence(ctx + cont)
            seq.requests.append((item_index, k, [(len(ctx) + t - 1, tok) for t, tok in enumerate(cont)]))
            plans.append(seq)
    return plans


def encode(tokenizer, item: ChoiceItem, where: str = "") -> tuple[list[int], list[list[int]]]:
    """(context ids, continuation ids per option), tokenised as training tokenises prompt and response."""
    ctx = tokenizer(item.context, add_special_tokens=True).input_ids
    conts = [tokenizer(c, add_special_tokens=False).input_ids for c in item.continuations]
    if not ctx or any(not c for c in conts):
        raise LorikitError(f"{where or 'loglik'}: an empty prompt or option cannot be scored by log-likelihood")
    return ctx, conts


def _head_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    """log-softmax of the LM head at (rows, cols) only: [P, vocab]."""
    decoder, head = decoder_and_head(model)
    if decoder is not None:
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = head(hidden[rows, cols])
    else:  # models that post-process logits: the full forward
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[rows, cols]
    return torch.log_softmax(logits.float(), dim=-1)


def _padded(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
    return ids.to(device), mask.to(device)


def _shared_lengths(encoded) -> list[int]:
    """Per item, the options' common token prefix length, leaving every option at least one token of its own."""
    return [min(_common_prefix(conts), min(len(c) for c in conts) - 1) for _, conts in encoded]


def _cached_batch(decoder, head, encoded: list[tuple[list[int], list[list[int]]]], pad: int, device,
                  shared_prefix: bool = False) -> list[list[float]]:
    """Option log-likelihoods of a batch of items: each prompt (with the options' common prefix)
    forwarded once, the options' later tokens against the prompt's cache rows (positions continue
    each prompt, padding masked)."""
    shared = _shared_lengths(encoded)
    heads = [ctx + conts[0][:c] for (ctx, conts), c in zip(encoded, shared)]
    ctx_ids, ctx_mask = _padded(heads, pad, device)
    cache = new_cache()
    # with shared_prefix, the tokens every prompt of the batch starts with (a template's preamble) run
    # once; every row keeps its last prompt token, whose position reads the first option token
    common = common_prefix_length(ctx_ids, ctx_mask, min(len(ctx) for ctx, _ in encoded) - 1) if shared_prefix else 0
    hidden = decode_with_shared_prefix(decoder, ctx_ids, ctx_mask, common, cache)
    where = [(b, len(ctx) - 1 + j - common) for b, ((ctx, _), c) in enumerate(zip(encoded, shared)) for j in range(c + 1)]
    logp = torch.log_softmax(head(hidden[[b for b, _ in where], [j for _, j in where]]).float(), -1)
    out, n = [], 0
    for (ctx, conts), c in zip(encoded, shared):
        prefix = float(sum(logp[n + j, conts[0][j]] for j in range(c)))
        out.append([prefix + float(logp[n + c, cont[c]]) for cont in conts])
        n += c + 1
    rows = [(b, k) for b, (_, conts) in enumerate(encoded) for k, cont in enumerate(conts) if len(cont) > shared[b] + 1]
    if not rows:
        return out
    cache.batch_select_indices(torch.tensor([b for b, _ in rows], device=device))
    tails = [encoded[b][1][k][shared[b]:-1] for b, k in rows]  # tail token t predicts the option's next one
    tail_ids, tail_mask = _padded(tails, pad, device)
    starts = torch.tensor([len(heads[b]) for b, _ in rows], device=device)
    positions = starts[:, None] + torch.arange(tail_ids.shape[1], device=device)[None, :]
    hidden = decoder(input_ids=tail_ids, attention_mask=torch.cat([ctx_mask[[b for b, _ in rows]], tail_mask], 1),
                     position_ids=positions, **cache_kwargs(decoder, cache)).last_hidden_state
    where = [(r, t) for r, tail in enumerate(tails) for t in range(len(tail))]
    logp = torch.log_softmax(head(hidden[[r for r, _ in where], [t for _, t in where]]).float(), -1)
    n = 0
    for (b, k), tail in zip(rows, tails):
        cont = encoded[b][1][k][shared[b] + 1:]
        out[b][k] += float(sum(logp[n + t, cont[t]] for t in range(len(tail))))
        n += len(tail)
    return out


def _cached_option_logliks(decoder, head, encoded, batch_size: int, pad: int, device, progress: bool,
                           stats: dict | None, shared_prefix: bool = False) -> list[list[float]]:
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    out: list[list[float]] = [[] for _ in encoded]
    for batch in tqdm(batches, desc="loglik", unit="batch", disable=not progress or len(batches) < 2):
        for i, scores in zip(batch, _cached_batch(decoder, head, [encoded[i] for i in batch], pad, device, shared_prefix)):
            out[i] = scores
    if stats is not None:
        shared = _shared_lengths(encoded)
        tails = [len(c) - s - 1 for (_, conts), s in zip(encoded, shared) for c in conts if len(c) > s + 1]
        stats.update(sequences=len(encoded) + len(tails),
                     tokens=sum(len(ctx) + s for (ctx, _), s in zip(encoded, shared)) + sum(tails))
    return out


@torch.no_grad()
def option_logliks(model, tokenizer, items: list[ChoiceItem], batch_size: int = 16,
                   progress: bool = True, stats: dict | None = None, shared_prefix: bool = False) -> list[list[float]]:
    """Summed continuation log-probabilities, one list (one value per option) per item, in item order.

    ``shared_prefix`` (models with a KV cache): the tokens every prompt of a batch starts with run
    once per batch (``models.cache.decode_with_shared_prefix``): the same scores up to rounding.

    ``stats`` (a dict) receives ``sequences`` (forwards needed) and ``tokens`` (tokens forwarded)."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode(tokenizer, item, f"item {i + 1}") for i, item in enumerate(items)]
    decoder, head = decoder_and_head(model)
    if decoder is not None and getattr(model.config, "use_cache", True):
        return _cached_option_logliks(decoder, head, encoded, batch_size, pad, device, progress, stats, shared_prefix)
    seqs: list[_Sequence] = []
    for i, (ctx, conts) in enumerate(encoded):
        seqs.extend(_plan(i, ctx, conts))
    out = [[0.0] * len(item.continuations) for item in items]
    order = sorted(range(len(seqs)), key=lambda j: -len(seqs[j].ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="loglik", unit="batch", disable=not progress or len(batches) < 2):
        ids, mask = _padded([seqs[j].ids for j in batch], pad, device)
        where = sorted({(r, pos) for r, j in enumerate(batch) for _, _, toks in seqs[j].requests for pos, _ in toks})
        index = {rc: n for n, rc in enumerate(where)}
        rows = torch.tensor([rc[0] for rc in where], device=device)
        cols = torch.tensor([rc[1] for rc in where], device=device)
        logp = _head_logprobs(model, ids, mask, rows, cols).cpu()
        for r, j in enumerate(batch):
            for item_i, k, toks in seqs[j].requests:
                out[item_i][k] = float(sum(logp[index[(r, pos)], tok] for pos, tok in toks))
    if stats is not None:
        stats.update(sequences=len(seqs), tokens=sum(len(s.ids) for s in seqs))
    return out


def choose(logliks: list[float]) -> int:
    """Index of the most likely option (the first on ties)."""
    return max(range(len(logliks)), key=lambda k: (logliks[k], -k))
