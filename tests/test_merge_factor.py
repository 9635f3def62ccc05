"""Factor-space methods (knots, core-space, tsv-m, iso-c, iso-cts) against dense implementations.

Each reference below is the paper's formula written directly on dense float64 ΔW_t = s_t B_t A_t
with ``torch.linalg.svd`` (as the authors' code does), independent of lorikit's QR-based factor
route; adapters of different ranks included. Results must agree within 1e-5 (relative).
"""

from __future__ import annotations

import math

import pytest
import torch

from lorikit.adapters.state import AdapterState, LoraModule
from lorikit.merge import DeltaParams, Merger

SHAPES = {"model.layers.0.self_attn.q_proj": (24, 20), "model.layers.0.mlp.down_proj": (16, 30)}
WEIGHTS = [0.7, 0.5, -0.4]
RANKS = (3, 5, 2)
TOL = 1e-5


def adapter(seed: int, rank: int, alpha: float = 6.0) -> AdapterState:
    gen = torch.Generator().manual_seed(seed)
    mods = [LoraModule(n, torch.randn(rank, i, generator=gen) / math.sqrt(i), torch.randn(o, rank, generator=gen),
                       alpha / rank) for n, (o, i) in SHAPES.items()]
    config = {"peft_type": "LORA", "base_model_name_or_path": "tiny-random-llama", "r": rank, "lora_alpha": alpha,
              "target_modules": ["q_proj", "down_proj"]}
    return AdapterState.from_modules(mods, config)


@pytest.fixture(params=["equal", "different"])
def states(request):
    ranks = (4, 4, 4) if request.param == "equal" else RANKS
    return [adapter(seed, r) for seed, r in zip((11, 12, 13), ranks)]


def dense(state: AdapterState, module: str) -> torch.Tensor:
    m = state.modules()[module]
    return m.scaling * m.B.double() @ m.A.double()


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    rel = (got.double() - expected).norm() / expected.norm()
    assert rel < TOL, f"relative error {rel:.2e}"


# ---- dense inner methods (written from the formulas, not lorikit's code) ------------------------
def top_k(t: torch.Tensor, density: float) -> torch.Tensor:
    k = int(density * t.numel())
    threshold = t.abs().flatten().sort(descending=True).values[k - 1]
    return torch.where(t.abs() >= threshold, t, torch.zeros_like(t))


def ties_dense(ts: list[torch.Tensor], weights: list[float], lam: float, density: float) -> torch.Tensor:
    trimmed = [top_k(t, density) for t in ts]
    sign = torch.where(sum(trimmed) >= 0, 1.0, -1.0).double()
    agree = [(torch.sign(t) == sign).double() for t in trimmed]
    return lam * sum(w * t * a for w, t, a in zip(weights, trimmed, agree)) / torch.clamp(sum(agree), min=1.0)


def ta_dense(ts, weights, lam=1.0):
    return lam * sum(w * t for w, t in zip(weights, ts))


def polar(M):
    P, _, Qh = torch.linalg.svd(M, full_matrices=False)
    return P @ Qh


def span_svd(M):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    keep = S > 1e-6 * S[0]
    return U[:, keep], S[keep], Vh[keep]


# ---- dense references of the papers' formulas ---------------------------------------------------
def knots_dense(deltas, weights, inner):
    U, S, Vh = span_svd(torch.cat(deltas, dim=1))
    width = deltas[0].shape[1]
    blocks = [S[:, None] * Vh[:, t * width:(t + 1) * width] for t in range(len(deltas))]
    return U @ inner(blocks, weights)


def core_dense(states, module, weights, inner):
    parts = [s.modules()[module] for s in states]
    U_B = torch.linalg.svd(torch.cat([m.B.double() for m in parts], dim=1), full_matrices=False)[0]
    V_A = torch.linalg.svd(torch.cat([m.A.double() for m in parts], dim=0), full_matrices=False)[2].T
    cores = [U_B.T @ dense(s, module) @ V_A for s in states]
    return U_B @ inner(cores, weights) @ V_A.T


def tsv_dense(deltas, weights, ranks, lam=1.0):
    share = int(min(deltas[0].shape) / len(deltas))
    us, ss, vs = [], [], []
    for d, w, r in zip(deltas, weights, ranks):
        U, S, Vh = torch.linalg.svd(w * d, full_matrices=False)
        k = min(share, r)
        us.append(U[:, :k]), ss.append(S[:k]), vs.append(Vh[:k].T)
    return lam * polar(torch.cat(us, 1)) @ torch.diag(torch.cat(ss)) @ polar(torch.cat(vs, 1)).T


def iso_c_dense(deltas, weights, lam=1.0):
    U, S, Vh = span_svd(ta_dense(deltas, weights))
    return lam * S.mean() * U @ Vh


def iso_cts_dense(deltas, weights, c=0.8, lam=1.0):
    U, S, Vh = span_svd(ta_dense(deltas, weights))
    D, T = S.numel(), len(deltas)
    common = int(D * c)
    common = D - round((D - common) / T) * T
    n = (D - common) // T
    Uc = U[:, :common]
    us, ss, vs = [], [], []
    for d, w in zip(deltas, weights):
        Ut, St, Vht = torch.linalg.svd(w * d - Uc @ Uc.T @ (w * d), full_matrices=False)
        us.append(Ut[:, :n]), ss.append(St[:n]), vs.append(Vht[:n].T)
    Uall = polar(torch.cat(us + [Uc], 1))
    Vall = polar(torch.cat(vs + [Vh[:common].T], 1))
    return lam * torch.cat(ss + [S[:common]]).mean() * Uall @ Vall.T


# ---- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("inner", ["task-arithmetic", "ties"])
def test_knots_matches_dense_formula(states, inner):
    params = DeltaParams(inner=inner, density=0.3, lam=0.9)
    merger = Merger(states, "knots", WEIGHTS, params)
    dense_inner = (lambda ts, w: ta_dense(ts, w, 0.9)) if inner == "task-arithmetic" else \
        (lambda ts, w: ties_dense(ts, w, 0.9, 0.3))
    for module in SHAPES:
        close(merger.delta(module), knots_dense([dense(s, module) for s in states], WEIGHTS, dense_inner))


@pytest.mark.parametrize("inner", ["ties", "dare-ties"])
def test_core_space_matches_dense_formula(states, inner):
    params = DeltaParams(inner=inner, density=0.4, drop_rate=0.5, seed=3)
    merger = Merger(states, "core-space", WEIGHTS, params)
    for module in SHAPES:
        if inner == "ties":
            def dense_inner(ts, w):
                return ties_dense(ts, w, 1.0, 0.4)
        else:  # same drop masks (seeded per task and module), then TIES' election without a trim
            def dense_inner(ts, w, module=module):
                gens = [params.at(module).generator(i) for i in range(len(ts))]
                kept = [t * (torch.rand(t.shape, generator=g) >= 0.5) / 0.5 for t, g in zip(ts, gens)]
                return ties_dense(kept, w, 1.0, 1.0)
        close(merger.delta(module), core_dense(states, module, WEIGHTS, dense_inner))


def test_core_space_with_task_arithmetic_is_lossless(states):
    merger = Merger(states, "core-space", WEIGHTS, DeltaParams(inner="task-arithmetic", lam=1.3))
    for module in SHAPES:
        close(merger.delta(module), 1.3 * sum(w * dense(s, module) for w, s in zip(WEIGHTS, states)))


def test_tsv_m_matches_dense_formula(states):
    merger = Merger(states, "tsv-m", WEIGHTS, DeltaParams(lam=0.8))
    ranks = [s.modules()[next(iter(SHAPES))].rank for s in states]
    for module in SHAPES:
        close(merger.delta(module), tsv_dense([dense(s, module) for s in states], WEIGHTS, ranks, lam=0.8))


def test_tsv_m_sv_fraction_limits_each_task(states):
    merger = Merger(states, "tsv-m", WEIGHTS, DeltaParams(sv_fraction=0.05))  # ⌊0.05 · 16⌋ = 0 → 1 each
    assert merger.factors("model.layers.0.mlp.down_proj").rank == 3


def test_iso_c_matches_dense_formula(states):
    merger = Merger(states, "iso-c", WEIGHTS, DeltaParams(lam=1.5))
    for module in SHAPES:
        close(merger.delta(module), iso_c_dense([dense(s, module) for s in states], WEIGHTS, lam=1.5))
        S = torch.linalg.svdvals(merger.delta(module).double())
        rank = sum(s.modules()[module].rank for s in states)
        assert torch.allclose(S[:rank], S[0].expand(rank), rtol=1e-4)  # flat spectrum on the span


@pytest.mark.parametrize("fraction", [0.8, 0.5])
def test_iso_cts_matches_dense_formula(states, fraction):
    merger = Merger(states, "iso-cts", WEIGHTS, DeltaParams(common_space_fraction=fraction))
    for module in SHAPES:
        close(merger.delta(module), iso_cts_dense([dense(s, module) for s in states], WEIGHTS, c=fraction))


@pytest.mark.parametrize("method", ["knots", "core-space", "tsv-m", "iso-c", "iso-cts"])
def test_rank_truncation_in_factor_space_reports_the_svd_error(states, method):
    merger = Merger(states, method, WEIGHTS)
    exact, report = merger.to_adapter()
    assert report.overall < 1e-6
    small, report = merger.to_adapter(rank=2)
    for module in SHAPES:
        full = exact.modules()[module].delta().double()
        S = torch.linalg.svdvals(full)
        expected = math.sqrt(float((S[2:] ** 2).sum() / (S ** 2).sum()))
        assert report.modules[module] == pytest.approx(expected, rel=1e-3, abs=1e-6)
        assert small.modules()[module].rank == 2


@pytest.mark.parametrize("method", ["knots", "core-space", "tsv-m", "iso-cts"])
def test_methods_needing_two_adapters_refuse_one(states, method):
    from lorikit.errors import UsageError

    with pytest.raises(UsageError, match=f"--method {method}: needs at least 2 adapters, got 1"):
        Merger(states[:1], method)


def test_core_space_into_model_adds_the_exact_sum(tmp_path):
    """--into-model with a factor-space method: base weights + U_B M V_Aᵀ (here: the exact TA sum)."""
    from safetensors.torch import load_file

    from lorikit.merge import MergeConfig, merge
    from lorikit.models import load_model
    from test_merge import random_adapter

    states = [random_adapter(1, rank=4), random_adapter(2, rank=6, alpha=3.0)]
    paths = []
    for i, s in enumerate(states):
        s.save(tmp_path / f"a{i}")
        paths.append(str(tmp_path / f"a{i}"))
    out = merge(MergeConfig(adapters=paths, method="core-space", weights=[0.5, 2.0], into_model=True,
                            out=str(tmp_path / "model")))
    merged = load_file(str(out / "model.safetensors"))
    base = load_model("tiny-random-llama").model.state_dict()
    for module in states[0].modules():
        expected = 0.5 * dense(states[0], module) + 2.0 * dense(states[1], module)
        got = merged[f"{module}.weight"].double() - base[f"{module}.weight"].double()
        assert (got - expected).norm() / expected.norm() < 1e-5, module


def test_core_space_with_factor_inner_methods_equals_them_in_full_space(states):
    """Orthonormal bases keep singular values: Iso-C in core space is Iso-C; so is TSV-M at equal ranks."""
    inners = ["iso-c"] + (["tsv-m"] if len({s.modules()[next(iter(SHAPES))].rank for s in states}) == 1 else [])
    for inner in inners:
        core = Merger(states, "core-space", WEIGHTS, DeltaParams(inner=inner, lam=1.2))
        full = Merger(states, inner, WEIGHTS, DeltaParams(lam=1.2))
        for module in SHAPES:
            close(core.delta(module), full.delta(module).double())


def test_knots_with_a_factor_inner_method_runs_in_factor_space(states):
    merger = Merger(states, "knots", WEIGHTS, DeltaParams(inner="iso-c"))
    for module in SHAPES:
        U, S, Vh = span_svd(torch.cat([dense(s, module) for s in states], dim=1))
        width = SHAPES[module][1]
        blocks = [S[:, None] * Vh[:, t * width:(t + 1) * width] for t in range(len(states))]
        close(merger.delta(module), U @ iso_c_dense(blocks, WEIGHTS))


# ---- edge cases: zero adapters, shared subspaces, a small common space -------------------------
def range_polar(M: torch.Tensor) -> torch.Tensor:
    """The polar factor on M's range (dense SVD): zero on its null space, not a solver's choice."""
    P, S, Qh = torch.linalg.svd(M, full_matrices=False)
    keep = S > 1e-6 * S[0]
    return P[:, keep] @ Qh[keep]


def outside(delta: torch.Tensor, A: torch.Tensor) -> float:
    """Share of ΔW's norm in input directions outside the row space of ``A`` (none of the adapters reads them)."""
    Q = torch.linalg.qr(A.double().T).Q
    rest = delta.double() - delta.double() @ Q @ Q.T
    return float(rest.norm() / delta.double().norm())


def test_tsv_m_with_an_all_zero_adapter_equals_the_merge_without_its_directions():
    states = [adapter(11, 3), adapter(12, 5), adapter(13, 2)]
    zero = states[1].modules()
    states[1] = AdapterState.from_modules([LoraModule(n, m.A, torch.zeros_like(m.B), m.scaling)
                                           for n, m in zero.items()], states[1].config)
    merger = Merger(states, "tsv-m", WEIGHTS, DeltaParams(lam=0.8))
    for module in SHAPES:
        live = [(dense(s, module), w) for s, w in zip(states, WEIGHTS) if s is not states[1]]
        share = int(min(live[0][0].shape) / 3)  # k_t still uses T = 3 tasks
        us, ss, vs = [], [], []
        for (d, w), r in zip(live, (3, 2)):
            U, S, Vh = torch.linalg.svd(w * d, full_matrices=False)
            k = min(share, r)
            us.append(U[:, :k]), ss.append(S[:k]), vs.append(Vh[:k].T)
        expected = 0.8 * polar(torch.cat(us, 1)) @ torch.diag(torch.cat(ss)) @ polar(torch.cat(vs, 1)).T
        close(merger.delta(module), expected)


def test_tsv_m_of_only_zero_adapters_is_zero():
    states = [AdapterState.from_modules([LoraModule(n, m.A, torch.zeros_like(m.B), m.scaling)
                                         for n, m in adapter(s, 3).modules().items()], adapter(s, 3).config)
              for s in (1, 2)]
    merger = Merger(states, "tsv-m", [1.0, 1.0], DeltaParams())
    for module in SHAPES:
        assert torch.count_nonzero(merger.delta(module)) == 0


def test_tsv_m_on_adapters_sharing_a_are_inside_their_subspace():
    """Two LoRI-D adapters of one seed share A: the concatenated V is rank-deficient."""
    first, second = adapter(21, 4), adapter(22, 4)
    shared = AdapterState.from_modules([LoraModule(n, first.modules()[n].A, m.B, m.scaling)
                                        for n, m in second.modules().items()], second.config)
    states = [first, shared]
    merger = Merger(states, "tsv-m", [1.0, 1.0], DeltaParams())
    for module in SHAPES:
        got = merger.delta(module)
        assert outside(got, first.modules()[module].A) < 1e-6
        deltas = [dense(s, module) for s in states]
        share = int(min(deltas[0].shape) / 2)
        us, ss, vs = [], [], []
        for d in deltas:
            U, S, Vh = torch.linalg.svd(d, full_matrices=False)
            us.append(U[:, :min(share, 4)]), ss.append(S[:min(share, 4)]), vs.append(Vh[:min(share, 4)].T)
        close(got, range_polar(torch.cat(us, 1)) @ torch.diag(torch.cat(ss)) @ range_polar(torch.cat(vs, 1)).T)


def test_iso_cts_with_a_small_common_fraction_keeps_a_non_negative_common_space():
    """Rank 5 + 6 = 11, T = 2, c = 0.05: the authors' rounding asks for 12 task directions (k_c = −1)."""
    from lorikit.merge.methods.iso import split_space

    assert split_space(11, 2, 0.05) == (1, 5) and split_space(11, 2, 0.0) == (1, 5)
    assert split_space(12, 2, 0.8) == (8, 2)  # the authors' rounding where it stays in range
    states = [adapter(31, 5), adapter(32, 6)]
    merger = Merger(states, "iso-cts", [1.0, 0.6], DeltaParams(common_space_fraction=0.05))
    for module in SHAPES:
        got = merger.delta(module).double()
        assert int(torch.linalg.matrix_rank(got, rtol=1e-5)) <= 11  # float32 factors: noise at 1e-7
        A = torch.cat([s.modules()[module].A for s in states])
        assert outside(got, A) < 1e-6
        deltas = [dense(s, module) for s in states]
        U, S, Vh = span_svd(ta_dense(deltas, [1.0, 0.6]))
        common, n = 1, 5
        Uc = U[:, :common]
        us, ss, vs = [], [], []
        for d, w in zip(deltas, [1.0, 0.6]):
            Ut, St, Vht = torch.linalg.svd(w * d - Uc @ Uc.T @ (w * d), full_matrices=False)
            us.append(Ut[:, :n]), ss.append(St[:n]), vs.append(Vht[:n].T)
        expected = torch.cat(ss + [S[:common]]).mean() * polar(torch.cat(us + [Uc], 1)) @ \
            polar(torch.cat(vs + [Vh[:common].T], 1)).T
        close(got, expected)
