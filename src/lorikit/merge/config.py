"""``MergeConfig``: what to merge and how — from the command line, YAML, or Python.

YAML, lorikit style (the keys are the field names and the method parameters, ``-`` or ``_``,
``lambda`` for ``lam``), or a mergekit YAML (``merge_method``, ``models``, ``parameters``,
``base_model``; see mergekit.py)::

    method: ties
    adapters:                  # a list of paths / Hub ids, or of mappings:
      - path: runs/code-s      #   path (or adapter/model), weight, name
        weight: 0.4
        name: code
      - {path: runs/math-s, weight: 0.4, name: math}
    density: 0.2
    lambda: 1.0
    rank: 32
    out: merged/ties

On the command line, every option given explicitly overrides the YAML value of the same key;
adapters given as positional arguments replace the YAML ``adapters`` list (with its per-adapter
weights and names). Unknown YAML keys are refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..utils.settings import did_you_mean
from .mergekit import from_mergekit, is_mergekit
from .registry import DeltaParams, MergePlan, all_params, get_method, methods, plan, resolve


@dataclass(init=False)
class MergeConfig:
    """A merge of N PEFT LoRA adapters into one adapter, an EMR folder or a full model.

    The method's own hyper-parameters (``density``, ``drop_rate``, ``inner``, ...: whatever the
    method registers) are keyword arguments too, collected in ``method_params``::

        MergeConfig(adapters=[...], method="ties", density=0.2, out="merged/ties")
    """

    adapters: list[str] = field(default_factory=list, metadata={
        "help": "PEFT LoRA adapter folders or Hub ids", "cli": False})
    method: str = field(default="cat", metadata={"help": "merge method (PEFT / mergekit spellings such as "
                                                         "dare_ties and task_arithmetic are accepted)"})
    out: str = field(default="", metadata={"help": "output folder (adapter, EMR folder or model)"})
    weights: list[float] | None = field(default=None, metadata={
        "help": "one weight w_i per adapter (default 1 each; reference cat: 3 adapters 0.5 LoRI-D / "
                "0.4 LoRI-S, 4 adapters 0.4 / 0.3)"})
    names: list[str] | None = field(default=None, metadata={
        "help": "task name per adapter (EMR; default: the adapter folder names)"})
    rank: int | None = field(default=None, metadata={
        "help": "rank of the output adapter: truncated SVD of delta-space methods (default: largest parent "
                "rank) and of knots/core-space/tsv-m/iso-* (computed in factor space; default: exact)"})
    into_model: bool = field(default=False, metadata={
        "help": "write the base model with the merged update added (safetensors shards) instead of an adapter"})
    model: str | None = field(default=None, metadata={
        "help": "base model for --into-model (default: the adapters' base_model_name_or_path)"})
    base_model: str | None = field(default=None, metadata={
        "help": "refuse adapters whose base_model_name_or_path differs from this (mergekit's base_model)"})
    task: str | None = field(default=None, metadata={
        "help": "EMR: write this task's adapter/model (λ_i m_i ⊙ τ_uni) instead of the EMR folder"})
    max_shard_size: str = field(default="2GB", metadata={
        "help": "--into-model: largest safetensors shard (e.g. 500MB, 5GB)"})
    rank_pattern: str = field(default="pad", metadata={
        "help": "pad: one rank and one scale for every module of the output adapter (lower-rank modules padded "
                "with zero rank-columns, scales folded into B), which vLLM and other servers read correctly; "
                "keep: each module its own rank / scale through rank_pattern / alpha_pattern (PEFT only)",
        "choices": ("pad", "keep")})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})
    method_params: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "the method's own hyper-parameters, by name (see docs/merge.md)", "cli": False})

    def __init__(self, adapters: list[str] | None = None, method: str = "cat", out: str = "",
                 weights: list[float] | None = None, names: list[str] | None = None, rank: int | None = None,
                 into_model: bool = False, model: str | None = None, base_model: str | None = None,
                 task: str | None = None, max_shard_size: str = "2GB", overwrite: bool = False,
                 method_params: dict[str, Any] | None = None, rank_pattern: str = "pad", **kwargs: Any):
        self.adapters = list(adapters or [])
        self.method, self.out, self.weights, self.names, self.rank = method, out, weights, names, rank
        self.into_model, self.model, self.base_model, self.task = into_model, model, base_model, task
        self.max_shard_size, self.overwrite, self.rank_pattern = max_shard_size, overwrite, rank_pattern
        known = param_names()
        self.method_params = {}
        for key, value in {**(method_params or {}), **kwargs}.items():
            name = known.get(str(key).replace("-", "_"))
            if name is None:
                raise UsageError(f"{key}: unknown merge setting{did_you_mean(str(key), known)} "
                                 f"(known: {', '.join(sorted(set(known.values())))})")
            if value is not None:
                self.method_params[name] = value

    def __getattr__(self, name: str) -> Any:
        if name != "method_params" and name in param_names():
            return self.__dict__.get("method_params", {}).get(param_names()[name])
        raise AttributeError(name)

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> MergePlan:
        """Refuse malformed requests before anything is loaded (UsageError naming the option); the
        request resolved once (method, typed parameters, kind), which ``merge`` takes as is."""
        method = get_method(self.method)
        self.method = method.name
        if not self.adapters:
            raise UsageError("adapters: give at least one adapter folder or Hub id")
        if not self.out:
            raise UsageError("--out: required")
        n = len(self.adapters)
        if n < method.min_adapters:
            raise UsageError(f"--method {method.name}: needs at least {method.min_adapters} adapters, got {n}")
        if self.weights is not None:
            if len(self.weights) != n:
                raise UsageError(f"--weights: {len(self.weights)} weight(s) for {n} adapter(s)")
            bad = [w for w in self.weights if not math.isfinite(w)]
            if bad:
                raise UsageError(f"--weights: {bad[0]} is not a finite number")
        if self.names is not None:
            if len(self.names) != n:
                raise UsageError(f"--names: {len(self.names)} name(s) for {n} adapter(s)")
            dup = [x for x in self.names if self.names.count(x) > 1]
            if dup:
                raise UsageError(f"--names: {dup[0]!r} given twice")
        resolved = MergePlan(method, resolve(method, self.method_params))
        if self.rank is not None:
            if self.rank <= 0:
                raise UsageError(f"--rank {self.rank}: must be a positive integer")
            if not method.kind.takes_rank:
                raise UsageError(f"--rank: not used by --method {self.method} (its rank is set by the parents)")
            if self.into_model:
                raise UsageError("--rank: not used with --into-model (the full update is added)")
        per_task = [m.name for m in methods().values() if m.kind.per_task]
        if self.task is not None and not method.kind.per_task:
            raise UsageError(f"--task: only for --method {' / '.join(per_task)}, not {self.method}")
        if self.into_model and method.kind.per_task and self.task is None:
            raise UsageError(f"--into-model with --method {self.method} needs --task NAME "
                             "(each task gets its own model)")
        if self.model is not None and not self.into_model:
            raise UsageError("--model: names the base model for --into-model; pass --into-model too")
        parse_size(self.max_shard_size)
        if self.rank_pattern not in ("pad", "keep"):
            raise UsageError(f"--rank-pattern {self.rank_pattern!r}: choose from pad, keep")
        return resolved

    # ---- resolved values ----------------------------------------------------------------------
    def params(self) -> DeltaParams:
        """The method's parameters, validated, defaults filled in (strict: unused settings refused)."""
        return plan(self.method, self.method_params).params

    def used_params(self) -> dict[str, Any]:
        """The hyper-parameters the method read (defaults filled in), as recorded in lorikit.json."""
        return dict(self.params().values)

    def task_names(self) -> list[str]:
        if self.names:
            return list(self.names)
        names = [Path(str(a).rstrip("/")).name or str(a) for a in self.adapters]
        if len(set(names)) != len(names):  # same folder name in different places: number them
            names = [f"{i}-{n}" for i, n in enumerate(names)]
        return names

    # ---- YAML -------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> "MergeConfig":
        """Read a YAML merge config; ``overrides`` (explicit CLI options) win over its values."""
        from ..utils.yamlfile import load_yaml

        raw = load_yaml(path, f"--config {path}")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise UsageError(f"--config {path}: expected a mapping of settings at the top level")
        if is_mergekit(raw):
            raw = from_mergekit(path, raw)
        fields = {f.name for f in dataclasses.fields(cls)} - {"method_params"}
        known = param_names()
        values: dict[str, Any] = {"method_params": {}}
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            if name in fields:
                values[name] = value
            elif name in known:
                values["method_params"][known[name]] = value
            else:
                raise UsageError(f"--config {path}: unknown key {key!r}{did_you_mean(str(key), [*fields, *known])}")
        if "adapters" in values:
            values.update(_yaml_adapters(path, values.pop("adapters"), values))
        overrides = dict(overrides or {})
        if "adapters" in overrides:  # positional adapters replace the YAML list and its per-adapter fields
            for key in ("weights", "names"):
                if values.get(f"_yaml_{key}"):
                    values.pop(key, None)
        values = {k: v for k, v in values.items() if not k.startswith("_yaml_")}
        values["method_params"].update(overrides.pop("method_params", {}) or {})
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:
            raise UsageError(f"--config {path}: {exc}") from exc


def param_names() -> dict[str, str]:
    """Every method parameter name and alias (``lambda`` for ``lam``) → the parameter's name."""
    table: dict[str, str] = {}
    for p in all_params().values():
        table[p.name] = p.name
        for alias in p.aliases:
            table.setdefault(alias, p.name)
    for method in methods().values():
        for alias in method.param_aliases:
            table.setdefault(alias, alias)
    return table


def _yaml_adapters(path, items, values: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(items, list) or not items:
        raise UsageError(f"--config {path}: 'adapters' must be a non-empty list")
    paths, weights, names = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            paths.append(item)
            continue
        if not isinstance(item, dict):
            raise UsageError(f"--config {path}: adapters[{i}] must be a path or a mapping")
        unknown = set(item) - {"path", "adapter", "model", "weight", "name"}
        if unknown:
            key = sorted(unknown)[0]
            raise UsageError(f"--config {path}: adapters[{i}]: unknown key {key!r}"
                             f"{did_you_mean(str(key), ['path', 'adapter', 'model', 'weight', 'name'])}")
        src = item.get("path") or item.get("adapter") or item.get("model")
        if not src:
            raise UsageError(f"--config {path}: adapters[{i}] has no 'path'")
        paths.append(str(src))
        if "weight" in item:
            weights.append(float(item["weight"]))
        if "name" in item:
            names.append(str(item["name"]))
    out: dict[str, Any] = {"adapters": paths}
    for key, got in (("weights", weights), ("names", names)):
        if got:
            if len(got) != len(paths):
                raise UsageError(f"--config {path}: give '{key[:-1]}' for every adapter or for none")
            if values.get(key) is not None:
                raise UsageError(f"--config {path}: '{key}' given both at top level and per adapter")
            out[key] = got
            out[f"_yaml_{key}"] = True
    return out


def parse_size(text: str | int) -> int:
    """'2GB', '500MB', '1.5GiB' or a byte count → bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?i?B?)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise UsageError(f"--max-shard-size {text!r}: expected e.g. 500MB or 5GB")
    unit = (m.group(2) or "B").upper().rstrip("B") or ""
    base = 1024 if unit.endswith("I") else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit.rstrip("I")]
    size = int(float(m.group(1)) * base ** power)
    if size <= 0:
        raise UsageError(f"--max-shard-size {text!r}: must be positive")
    return size
