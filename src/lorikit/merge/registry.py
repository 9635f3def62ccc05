"""Merge methods by name (mergekit's ``ConfigParameterDef`` idea): each method declares itself.

Every file in ``lorikit/merge/methods/`` registers one or more methods with ``@register``:
its name, kind, the parameters it reads (``Param``: name, type, default, range, help) and the
PEFT / mergekit spellings it also answers to. The CLI flags, their choices, recipe and YAML
validation, ``used_params`` and the method table of docs/merge.md are all derived from here, so
adding a method is adding one file (found by ``pkgutil``; nothing to list by hand).

The kind (``adapter``, ``factor``, ``delta``, ``emr``: the signature of the registered function and
what its result becomes) is a ``kinds.MergeKind`` strategy. ``MergeConfig.validate`` resolves a
request once into a ``MergePlan`` (method, typed parameters, kind) that the merge takes as is.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported where used: listing the merge methods (--help) must not load it
    import torch

from ..adapters.seeded import module_seed
from ..errors import UsageError
from ..utils.registry import Registry
from ..utils.settings import did_you_mean
from .kinds import KINDS, MergeKind


@dataclass(frozen=True)
class Param:
    """One hyper-parameter a merge method reads."""

    name: str  # Python / YAML name; the CLI flag is --name-with-dashes
    type: type
    default: Any
    help: str
    low: float | None = None  # range; (low, high) open or closed per the flags below
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Callable[[], tuple[str, ...]] | None = None  # lazily computed (e.g. the inner methods)
    aliases: tuple[str, ...] = ()  # other YAML keys / flags, e.g. "lambda"
    cli: str = ""  # the command-line name when it differs from ``name`` (``lambda`` for ``lam``)

    @property
    def default_text(self) -> str:
        return "see meaning" if self.default is None else str(self.default)

    @property
    def flag(self) -> str:
        return "--" + (self.cli or self.name).replace("_", "-")

    def range_text(self) -> str:
        if self.choices is not None:
            return " \\| ".join(self.choices())
        if self.low is None and self.high is None:
            return "any" if self.type is not bool else "true \\| false"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "−∞" if self.low is None else f"{self.low:g}"
        high = "∞" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` coerced to the type and range-checked; a one-line UsageError naming the flag."""
        flag = where or self.flag
        try:
            if self.type is bool and not isinstance(value, bool):
                raise TypeError
            if self.type is int and (isinstance(value, bool) or float(value) != int(float(value))):
                raise TypeError
            value = self.type(value)
        except (TypeError, ValueError):
            raise UsageError(f"{flag} {value!r}: expected {self.type.__name__}") from None
        if self.type is float and not math.isfinite(value):
            raise UsageError(f"{flag} {value}: must be a finite number")
        if self.choices is not None and value not in self.choices():
            raise UsageError(f"{flag} {value!r}: choose from {', '.join(self.choices())}"
                             f"{did_you_mean(str(value), self.choices())}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise UsageError(f"{flag} {value}: must be in {self.range_text()}")
        return value


# Parameters shared by several methods: one definition, one default.
LAM = Param("lam", float, 1.0, "λ, scale of the merged update", aliases=("lambda",), cli="lambda")
DENSITY = Param("density", float, 0.2, "fraction of each task's entries kept (top-|x| per task and module)",
                low=0.0, high=1.0, low_open=True)
DROP_RATE = Param("drop_rate", float, 0.9, "DARE's drop probability p (kept fraction 1 − p; PEFT/mergekit "
                  "'density' = 1 − p is accepted)", low=0.0, high=1.0, high_open=True)
SEED = Param("seed", int, 0, "seed of DARE's random drop (per task and module)", low=0)
DIVIDE_BY = Param("divide_by", str, "count", "TIES' disjoint mean: count (PEFT, the paper: sign of Σ τ_i, divided by "
                  "the number of agreeing tasks), weights (mergekit's normalize: sign of Σ w_i τ_i, divided by the "
                  "agreeing weights' sum) or none (mergekit's normalize: false)",
                  choices=lambda: ("count", "weights", "none"))


@dataclass(frozen=True)
class MergeMethod:
    name: str
    kind: MergeKind
    fn: Callable
    params: tuple[Param, ...]
    summary: str
    aliases: tuple[str, ...] = ()
    min_adapters: int = 1
    # {alias param: (param, convert)}: e.g. DARE's density → drop_rate = 1 − density
    param_aliases: dict[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)
    inner: bool = False  # the method runs another method (``params.inner``) in its own space
    title: str = ""  # the name papers use (TIES-Merging); docs table and model card
    paper: str = ""  # the reference: "Authors year, Title, venue" ("" for a library's own rule)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


class DeltaParams:
    """Resolved hyper-parameter values of one merge (attribute access), plus the current module.

    ``DeltaParams(lam=0.5, density=0.3)`` is the Python API's way to pass settings; ``Merger``
    fills in each method's defaults. ``module`` is set per module by the merger (DARE's generator).
    """

    def __init__(self, module: str = "", **values: Any):
        self.__dict__["values"] = dict(values)
        self.__dict__["module"] = module
        self.__dict__["inner_method"] = None  # the resolved ``inner`` method (set by ``resolve``)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__["values"]
        if name in values:
            return values[name]
        known = all_params()
        if name in known:  # not given: the registered default
            return known[name].default
        raise AttributeError(f"{name!r} is not a merge parameter")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("DeltaParams is read-only; build a new one")

    def __repr__(self) -> str:
        return f"DeltaParams({', '.join(f'{k}={v!r}' for k, v in self.values.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeltaParams) and (self.values, self.module) == (other.values, other.module)

    def at(self, module: str) -> "DeltaParams":
        return self._with(module, self.inner_method)

    def _with(self, module: str, inner_method: "MergeMethod | None") -> "DeltaParams":
        params = DeltaParams(module, **self.values)
        params.__dict__["inner_method"] = inner_method
        return params

    def generator(self, task_index: int) -> torch.Generator:
        """The generator of task ``task_index`` in this module: a function of (seed, module, task)."""
        import torch

        seed = self.values.get("seed", SEED.default)
        return torch.Generator(device="cpu").manual_seed(module_seed(seed, f"dare:{task_index}:{self.module}"))


def _spelling(name: Any) -> str:
    return str(name).strip().lower().replace("_", "-")


# The merge methods, in kind order then by name (the order of --help, docs/merge.md and errors).
_METHODS: Registry[MergeMethod] = Registry("merge method", unknown="unknown merge method", normalize=_spelling)
_LOADED = False


def register(name: str, kind: str, params: tuple[Param, ...] = (), summary: str = "", aliases: tuple[str, ...] = (),
             min_adapters: int = 1, param_aliases: dict | None = None, inner: bool = False, title: str = "",
             paper: str = ""):
    """Decorator adding ``fn`` to the registry as method ``name`` (``title``: its name in the
    literature, ``paper``: its reference; both shown in docs/merge.md and merged adapters' cards)."""
    if kind not in KINDS:
        raise ValueError(f"merge method {name}: kind {kind!r} not in {tuple(KINDS)}")

    def wrap(fn: Callable) -> Callable:
        _METHODS.add(name, MergeMethod(name, KINDS[kind], fn, tuple(params),
                                       summary or (fn.__doc__ or "").split("\n")[0], tuple(aliases), min_adapters,
                                       dict(param_aliases or {}), inner, title or name, paper), aliases)
        order = list(KINDS)
        _METHODS.sort(lambda n: (order.index(_METHODS[n].kind.name), n))
        return fn

    return wrap


def _load_methods() -> None:
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module(f"{__package__}.methods")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def methods() -> Registry[MergeMethod]:
    """All registered methods, by name (each file of ``lorikit/merge/methods`` imported once)."""
    _load_methods()
    return _METHODS


def canonical(name: str) -> str | None:
    """The registered name for ``name`` or one of its aliases (``_`` and ``-`` interchangeable)."""
    return methods().canonical(name)


def get_method(name: str) -> MergeMethod:
    return methods().lookup(name, "--method")


def all_params() -> dict[str, Param]:
    """Every parameter any method reads, by name (first definition wins; shared ones are shared)."""
    table: dict[str, Param] = {}
    for method in methods().values():
        for p in method.params:
            table.setdefault(p.name, p)
    return table


def accepted(method: MergeMethod, inner: MergeMethod | None = None) -> tuple[Param, ...]:
    """The parameters ``method`` reads (with its ``inner`` method, that method's own too)."""
    params = list(method.params)
    if inner is not None:
        params += [p for p in inner.params if p.name not in {q.name for q in params}]
    return tuple(params)


def resolve(method: MergeMethod, given: dict[str, Any], strict: bool = True) -> DeltaParams:
    """Validated values for every parameter ``method`` reads, defaults filled in.

    ``strict``: a setting the method does not read is an error (CLI, YAML, recipes) instead of
    being dropped (the Python ``Merger``, which is handed one ``DeltaParams`` for any method).
    """
    given = {k: v for k, v in given.items() if v is not None}
    for alias, (target, convert) in method.param_aliases.items():
        if alias in given and target in given and not strict:
            given.pop(alias)  # one DeltaParams for any method: the method's own name wins
        if alias in given:
            if target in given:
                raise UsageError(f"--{alias.replace('_', '-')} and --{target.replace('_', '-')}: give one "
                                 f"(for {method.name}, {alias} means {target} = 1 − {alias})")
            Param(alias, float, None, "", low=0.0, high=1.0, low_open=True).check(given[alias])
            given[target] = convert(given.pop(alias))
    inner = None
    if method.inner:  # looked up once here; the method runs it from the resolved parameters
        inner = methods().find(given.get("inner", method.param("inner").default))
        if inner is None:
            choices = method.param("inner").choices()
            raise UsageError(f"--inner {given['inner']!r}: choose from {', '.join(choices)}"
                             f"{did_you_mean(str(given['inner']), choices)}")
        if "inner" in given:
            given["inner"] = inner.name
    params = accepted(method, inner)
    names = {p.name for p in params}
    unknown = [k for k in given if k not in names]
    if unknown and strict:
        flag = "--" + unknown[0].replace("_", "-")
        reads = ", ".join(p.flag for p in params) or "no options"
        raise UsageError(f"{flag}: not used by --method {method.name} (it reads {reads})")
    values = {p.name: p.check(given[p.name]) if p.name in given else p.default for p in params}
    return DeltaParams(**values)._with("", inner)


@dataclass(frozen=True)
class MergePlan:
    """A merge request resolved once: the method, its validated parameters (defaults filled in,
    the ``inner`` method looked up), its kind."""

    method: MergeMethod
    params: DeltaParams

    @property
    def kind(self) -> MergeKind:
        return self.method.kind

    @property
    def inner(self) -> MergeMethod | None:
        return self.params.inner_method


def plan(name: str, given: dict[str, Any], strict: bool = True) -> MergePlan:
    """Look ``name`` up and resolve ``given`` against it: the one place a merge request is resolved."""
    method = get_method(name)
    return MergePlan(method, resolve(method, given, strict))
