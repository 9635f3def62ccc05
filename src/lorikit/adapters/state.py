"""An adapter on disk, as plain tensors: the common currency of masks, merges, packing and analysis.

A PEFT LoRA adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` whose
keys look like ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` (PEFT strips
the adapter name, e.g. ``.default``, when saving). ``AdapterState`` keeps those tensors exactly as
stored, the parsed ``LoraConfig`` and the optional ``lorikit.json``; ``modules()`` views them per
target module as ΔW = s · B A with A (r × in), B (out × r) and s = α / r (α / √r with rsLoRA).
Any PEFT LoRA adapter works — lorikit's own, the published LoRI adapters, OSRM checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where used: merge methods import this module when listed (--help)
    import torch

from ..errors import LorikitError, UsageError
from ..utils.atomic import atomic_output_dir, atomic_write_json
from .card import write_model_card
from .layers import PEFT_PREFIX
from . import checks
from .patterns import pattern_value

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN = "adapter_model.bin"
LORIKIT_META = "lorikit.json"
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")


@dataclass
class LoraModule:
    """One target module of an adapter: ΔW = scaling · B @ A."""

    name: str  # module path inside the base model, e.g. "model.layers.0.self_attn.q_proj"
    A: torch.Tensor  # [r, in]
    B: torch.Tensor  # [out, r]
    scaling: float

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def delta(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The full update ΔW = s · B A (out × in) in ``dtype`` (default float32); s is folded into the
        small factor B."""
        import torch

        dtype = torch.float32 if dtype is None else dtype
        return (self.B.to(dtype) * self.scaling) @ self.A.to(dtype)


def module_name_from_key(key: str) -> tuple[str, str] | None:
    """``(module, "A"|"B")`` for a LoRA weight key (with or without prefix/adapter name), else None."""
    m = _LORA_KEY.match(key)
    if not m:
        return None
    module = m.group("module")
    if module.startswith(PEFT_PREFIX):
        module = module[len(PEFT_PREFIX):]
    return module, m.group("which")


def lora_key(module: str, which: str, adapter_name: str | None = None) -> str:
    """The PEFT parameter name of a module's A or B (``adapter_name`` inserts e.g. ``.default``)."""
    mid = f".{adapter_name}" if adapter_name else ""
    return f"{PEFT_PREFIX}{module}.lora_{which}{mid}.weight"


def uniform_modules(mods: list[LoraModule]) -> list[LoraModule]:
    """The same updates with one rank (the largest) and one scale (the most common), ΔW unchanged.

    B A = [B 0] [A; 0]: a lower-rank module is padded with zero rank-columns; s_m B = s (s_m / s B),
    so a module's own scale s_m is folded into its B as the ratio to the shared scale s."""
    import torch

    rank = max(m.rank for m in mods)
    scales = [m.scaling for m in mods]
    scale = max(set(scales), key=scales.count)
    out = []
    for m in mods:
        A, B = m.A, m.B
        if m.rank < rank:
            A = torch.cat([A, A.new_zeros(rank - m.rank, A.shape[1])], dim=0)
            B = torch.cat([B, B.new_zeros(B.shape[0], rank - m.rank)], dim=1)
        if m.scaling != scale:
            B = (B.double() * (m.scaling / scale)).to(B.dtype)
        out.append(LoraModule(m.name, A, B, scale))
    return out


@dataclass
class AdapterState:
    """The tensors, config and lorikit metadata of one PEFT LoRA adapter."""

    config: dict[str, Any]  # adapter_config.json as a dict (PEFT's LoraConfig fields)
    tensors: dict[str, torch.Tensor]  # as stored in adapter_model.safetensors
    meta: dict[str, Any] | None = None  # lorikit.json, None for foreign adapters
    source: str = "<memory>"
    _modules: dict[str, LoraModule] | None = field(default=None, repr=False, compare=False)

    # ---- views -------------------------------------------------------------------------
    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    @property
    def method(self) -> str:
        return (self.meta or {}).get("method", "unknown")

    @property
    def seed(self) -> int | None:
        """The seed A was drawn from, or None when A is only known from the file."""
        return (self.meta or {}).get("seed")

    def scaling_for(self, module: str, rank: int) -> float:
        alpha = pattern_value(self.config.get("alpha_pattern"), module, self.config.get("lora_alpha", 8),
                              self.source, "alpha_pattern")
        if self.config.get("use_rslora"):
            return alpha / math.sqrt(rank)
        return alpha / rank

    def modules(self) -> dict[str, LoraModule]:
        """Target modules in file order, keyed by module path."""
        import torch

        if self._modules is None:
            found: dict[str, dict[str, torch.Tensor]] = {}
            for key, tensor in self.tensors.items():
                parsed = module_name_from_key(key)
                if parsed:
                    found.setdefault(parsed[0], {})[parsed[1]] = tensor
            modules = {}
            for name, pair in found.items():
                if set(pair) != {"A", "B"}:
                    missing = ({"A", "B"} - set(pair)).pop()
                    raise LorikitError(f"{self.source}: module {name} has no lora_{missing} weight")
                A, B = pair["A"], pair["B"]
                if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
                    raise LorikitError(
                        f"{self.source}: module {name}: lora_A {tuple(A.shape)} and lora_B "
                        f"{tuple(B.shape)} are not a rank-r pair")
                modules[name] = LoraModule(name, A, B, self.scaling_for(name, A.shape[0]))
            if not modules:
                raise LorikitError(f"{self.source}: no LoRA weights (lora_A/lora_B) found")
            self._modules = modules
        return self._modules

    def other_tensors(self) -> dict[str, torch.Tensor]:
        """Stored tensors that are not LoRA A/B (trained heads in ``modules_to_save``, ...)."""
        return {k: v for k, v in self.tensors.items() if module_name_from_key(k) is None}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_modules(cls, modules: dict[str, LoraModule] | list[LoraModule], config: dict[str, Any],
                     meta: dict[str, Any] | None = None,
                     extra_tensors: dict[str, torch.Tensor] | None = None, portable: bool = True) -> "AdapterState":
        """Build an adapter from modules whose ranks and scales may differ; the saved adapter reproduces ΔW.

        ``portable`` (default): one ``r`` and one ``lora_alpha`` for every module, no ``rank_pattern`` /
        ``alpha_pattern`` — what vLLM and other servers read (they apply one ``lora_alpha / r`` and
        ignore the patterns). A module of lower rank gets zero rank-columns in B (zero rows in A), and
        a module whose scale differs from the most common one carries the ratio in B. Otherwise each
        module keeps its rank and scale through the patterns (PEFT reads them).
        """
        import torch

        mods = list(modules.values()) if isinstance(modules, dict) else list(modules)
        if portable:
            mods = uniform_modules(mods)
        config = dict(config)
        config["use_rslora"] = False
        ranks = {m.name: m.rank for m in mods}
        alphas = {m.name: m.scaling * m.rank for m in mods}
        base_r = max(set(ranks.values()), key=list(ranks.values()).count)
        base_alpha = max(set(alphas.values()), key=list(alphas.values()).count)
        config["r"] = base_r
        config["lora_alpha"] = base_alpha
        config["rank_pattern"] = {re.escape(n): r for n, r in ranks.items() if r != base_r}
        config["alpha_pattern"] = {re.escape(n): a for n, a in alphas.items() if a != base_alpha}
        tensors: dict[str, torch.Tensor] = {}
        for m in mods:
            tensors[lora_key(m.name, "A")] = m.A.contiguous()
            tensors[lora_key(m.name, "B")] = m.B.contiguous()
        tensors.update(extra_tensors or {})
        return cls(config=config, tensors=tensors, meta=meta)

    # ---- I/O ----------------------------------------------------------------------------
    def save(self, out: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a stock PEFT adapter folder (+ ``lorikit.json``) atomically."""
        with atomic_output_dir(out, overwrite) as tmp:
            self.save_into(tmp)
        return Path(out)

    def save_into(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / ADAPTER_CONFIG, self.config)
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(folder / ADAPTER_WEIGHTS),
                  metadata={"format": "pt"})
        if self.meta is not None:
            atomic_write_json(folder / LORIKIT_META, self.meta)
            write_model_card(folder, self.meta)


def resolve_adapter_path(path_or_hub_id: str | os.PathLike) -> Path:
    """A local adapter folder, or a Hub id downloaded into the Hugging Face cache."""
    p = Path(path_or_hub_id)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{p}: an adapter is a folder with {ADAPTER_CONFIG}, not a file")
        return p
    text = str(path_or_hub_id)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.bin", "masks/*"]))
        except Exception as exc:  # offline, unknown repo, auth: all mean "cannot get it"
            raise LorikitError(f"{text}: not a local folder and could not be fetched from the Hub "
                               f"({type(exc).__name__})") from exc
    raise UsageError(f"{text}: adapter folder not found")


def load_adapter(path_or_hub_id: str | os.PathLike, device: str = "cpu") -> AdapterState:
    """Read any PEFT LoRA adapter folder or Hub id; ``lorikit.json`` is optional."""
    import torch
    from safetensors.torch import load_file

    folder = resolve_adapter_path(path_or_hub_id)
    cfg_path = folder / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise LorikitError(f"{folder}: missing {ADAPTER_CONFIG} (not a PEFT adapter folder)")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LorikitError(f"{cfg_path}: unreadable adapter config ({exc})") from exc
    if not isinstance(config, dict):
        raise LorikitError(f"{cfg_path}: adapter config is not a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise LorikitError(f"{cfg_path}: peft_type is {peft_type}, lorikit works on LORA adapters")
    checks.check_config_fields(config, str(cfg_path))
    weights = folder / ADAPTER_WEIGHTS
    try:
        if weights.is_file():
            tensors = load_file(str(weights), device=device)
        elif (folder / ADAPTER_WEIGHTS_BIN).is_file():
            tensors = torch.load(folder / ADAPTER_WEIGHTS_BIN, map_location=device, weights_only=True)
        else:
            raise LorikitError(f"{folder}: missing {ADAPTER_WEIGHTS}")
    except LorikitError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt files
        raise LorikitError(f"{weights}: corrupt or truncated adapter weights ({str(exc).splitlines()[0]})") from exc
    meta = None
    meta_path = folder / LORIKIT_META
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LorikitError(f"{meta_path}: unreadable ({exc})") from exc
        checks.check_meta(meta, str(meta_path))
    state = AdapterState(config=config, tensors=tensors, meta=meta, source=str(folder))
    validate(state, str(cfg_path), str(weights))
    return state


def validate(state: AdapterState, cfg_where: str, weights_where: str) -> None:
    """Pairs, ranks and targets agree with the config; every weight is finite."""
    modules = state.modules()  # validate pairs now so every caller gets the same early error
    checks.check_targets_cover(state.config, list(modules), cfg_where)
    default_r = state.config.get("r", 8)
    checks.check_ranks(state.config, {n: m.rank for n, m in modules.items()}, cfg_where,
                       lambda name: pattern_value(state.config.get("rank_pattern"), name, default_r, cfg_where,
                                                  "rank_pattern"))
    checks.check_weights_finite(state.tensors, weights_where)
