"""Read a mergekit YAML (``merge_method``, ``models``, ``parameters``, ``base_model``) as lorikit settings.

    merge_method: dare_ties
    base_model: meta-llama/Meta-Llama-3-8B
    models:
      - model: runs/code            # an adapter folder, or mergekit's BASE+ADAPTER form
        parameters: {weight: 0.5, density: 0.3}
      - model: runs/math
        parameters: {weight: 0.5, density: 0.3}
    parameters: {lambda: 1.0}
    out: merged/dare                # lorikit keys (out, rank, into_model, ...) may sit beside them

How mergekit's semantics map (mergekit merges full models θ_i = base + ΔW_i; here ΔW_i = s_i B_i A_i):
- ``linear`` (normalize: true by default) = base + Σ w_i ΔW_i / Σ w_i → ``task-arithmetic`` with
  weights w_i / Σ w_i; ``task_arithmetic`` and ``dare_linear`` (normalize: false by default) keep
  the weights; with ``normalize: true`` they are divided by Σ w_i too.
- ``ties`` / ``dare_ties`` (normalize: true by default) elect the sign of Σ w_i τ_i and divide the
  agreeing sum by Σ of the agreeing weights: lorikit's ``divide_by: weights``; ``normalize: false``
  is ``divide_by: none`` (lorikit's own default, PEFT's, divides by the agreeing count).
- ``density`` is TIES' kept fraction and DARE's 1 − drop rate, one value for all models.
- ``lambda`` is λ; ``int8_mask`` and ``dtype`` are mergekit storage/compute precisions (lorikit
  computes in float32) and are accepted. Anything else mergekit has and lorikit does not — other
  methods, per-layer gradients or filters, ``slices``, tokenizer options, ``rescale: false`` — is
  a one-line error naming it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import UsageError
from ..utils.settings import did_you_mean
from .registry import canonical, methods

log = logging.getLogger(__name__)

MERGEKIT_KEYS = ("merge_method", "models", "parameters", "base_model", "dtype")
NORMALIZE_DEFAULT = {"linear": True, "ties": True, "dare_ties": True}
CONSENSUS = ("ties", "dare_ties")
MODEL_PARAMS = ("weight", "density")
GLOBAL_PARAMS = ("weight", "density", "lambda", "normalize", "int8_mask", "rescale")
UNSUPPORTED_KEYS = ("slices", "tokenizer_source", "tokenizer", "chat_template", "out_dtype", "modules")


def method_spellings() -> list[str]:
    """Every name a ``merge_method`` may take: mergekit's ``linear``, lorikit's names and their aliases,
    with ``_`` as mergekit writes them and ``-`` as lorikit does."""
    names = ["linear"]
    for name, method in methods().items():
        names += [name, *method.aliases]
    return sorted({spelling for n in names for spelling in (n, n.replace("-", "_"))})


def is_mergekit(raw: dict) -> bool:
    return "merge_method" in raw or "models" in raw


def _scalar(path, where: str, key: str, value: Any) -> Any:
    if isinstance(value, (list, dict)):
        raise UsageError(f"--config {path}: {where}{key}: per-layer values and filters (mergekit gradients) "
                         f"are not supported by lorikit; give one number")
    return value


def _models(path, items, base: str | None, defaults: dict) -> list[dict]:
    if not isinstance(items, list) or not items:
        raise UsageError(f"--config {path}: 'models' must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "model" not in item:
            raise UsageError(f"--config {path}: models[{i}] must be a mapping with 'model'")
        unknown = sorted(set(item) - {"model", "parameters"})
        if unknown:
            raise UsageError(f"--config {path}: models[{i}]: {unknown[0]!r} is not supported by lorikit"
                             f"{did_you_mean(str(unknown[0]), ['model', 'parameters'])}")
        model = str(item["model"])
        if "+" in model:  # mergekit's BASE+LORA
            model_base, model = model.split("+", 1)
            if base is not None and model_base != base:
                raise UsageError(f"--config {path}: models[{i}]: base {model_base!r} differs from "
                                 f"base_model {base!r}")
        elif base is not None and model == base:
            continue  # the base model listed among the models contributes no update
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise UsageError(f"--config {path}: models[{i}].parameters must be a mapping")
        for key, value in params.items():
            if key not in MODEL_PARAMS:
                raise UsageError(f"--config {path}: models[{i}].parameters.{key}: not supported by lorikit"
                                 f"{did_you_mean(str(key), MODEL_PARAMS)} (per-model parameters: "
                                 f"{', '.join(MODEL_PARAMS)})")
            _scalar(path, f"models[{i}].parameters.", key, value)
        out.append({"path": model, **{k: params.get(k, defaults.get(k)) for k in MODEL_PARAMS}})
    if not out:
        raise UsageError(f"--config {path}: 'models' lists no adapter besides the base model")
    return out


def _weights(path, method: str, weights: list[float], normalize: bool) -> list[float]:
    if method in CONSENSUS:  # the normalisation is the merge's own (divide_by), per entry
        return weights
    if normalize:
        total = sum(weights)
        if total == 0:
            raise UsageError(f"--config {path}: normalize: true with weights summing to 0")
        return [w / total for w in weights]
    return weights


def from_mergekit(path: str | os.PathLike, raw: dict) -> dict[str, Any]:
    """lorikit YAML settings (method, adapters, weights, parameters, base_model) for a mergekit YAML."""
    raw = dict(raw)
    for key in UNSUPPORTED_KEYS:
        if key in raw:
            raise UsageError(f"--config {path}: mergekit's {key!r} is not supported by lorikit")
    method = str(raw.pop("merge_method", "") or "")
    if not method:
        raise UsageError(f"--config {path}: 'merge_method' is required in a mergekit YAML")
    name = "task-arithmetic" if method == "linear" else canonical(method)
    if name is None:
        raise UsageError(f"--config {path}: merge_method {method!r} is not available in lorikit"
                         f"{did_you_mean(method, method_spellings())} (lorikit methods: {', '.join(methods())})")
    base = raw.pop("base_model", None)
    base = str(base) if base is not None else None
    dtype = raw.pop("dtype", None)
    if dtype is not None:
        log.info("--config %s: dtype %s ignored: lorikit merges in float32", path, dtype)
    params = raw.pop("parameters", None) or {}
    if not isinstance(params, dict):
        raise UsageError(f"--config {path}: 'parameters' must be a mapping")
    for key, value in params.items():
        if key not in GLOBAL_PARAMS:
            raise UsageError(f"--config {path}: parameters.{key}: not supported by lorikit"
                             f"{did_you_mean(str(key), GLOBAL_PARAMS)} (supported: {', '.join(GLOBAL_PARAMS)})")
        _scalar(path, "parameters.", key, value)
    if params.get("rescale") is False:
        raise UsageError(f"--config {path}: parameters.rescale: false is not supported (DARE always rescales "
                         f"the kept entries by 1 / (1 − p))")
    models = _models(path, raw.pop("models", None), base, params)
    densities = {m["density"] for m in models}
    if len(densities) > 1:
        raise UsageError(f"--config {path}: models have different densities {sorted(densities, key=str)}; "
                         f"lorikit uses one density per merge")
    normalize = bool(params.get("normalize", NORMALIZE_DEFAULT.get(method, False)))
    weights = [float(1.0 if m["weight"] is None else m["weight"]) for m in models]
    out: dict[str, Any] = {"method": name, "adapters": [m["path"] for m in models],
                           "weights": _weights(path, method, weights, normalize)}
    density = densities.pop()
    if density is not None:
        out["density"] = density
    if method in CONSENSUS:
        out["divide_by"] = "weights" if normalize else "none"
    if "lambda" in params:
        out["lambda"] = params["lambda"]
    if base is not None:
        out["base_model"] = base
    if raw.get("weights") is not None or raw.get("adapters") is not None:
        raise UsageError(f"--config {path}: give adapters under 'models' only (not also 'adapters'/'weights')")
    out.update(raw)  # lorikit keys beside the mergekit ones (out, rank, into_model, ...)
    return out
