"""CMA-ES over a box, one logged evaluation at a time, replaying a previous run's log.

The optimiser is the ``cma`` package (Hansen's reference implementation, ``pip install
'lorikit[search]'``) in the unit cube: every coordinate (a merge weight, a method knob) is mapped
linearly from its range to [0, 1], so one step size fits all. Its samples come from a private
``numpy`` generator seeded by ``seed``, so a search is a pure function of its settings and the
objective values it is told: a rerun asks the same points in the same order, takes the values of
those already in the log and evaluates only the rest.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import LorikitError
from .log import EvalLog

log = logging.getLogger(__name__)
REPLAY_TOLERANCE = 1e-9


def _cma():
    try:
        import cma
    except ImportError as exc:
        raise LorikitError("merge-search needs the cma package: pip install 'lorikit[search]'") from exc
    return cma


@dataclass
class Space:
    """Named coordinates, each with a range; the optimiser sees the unit cube."""

    names: list[str]
    low: list[float]
    high: list[float]

    def values(self, unit: list[float]) -> list[float]:
        return [lo + min(max(u, 0.0), 1.0) * (hi - lo) for u, lo, hi in zip(unit, self.low, self.high)]

    def unit(self, values: list[float]) -> list[float]:
        return [(v - lo) / (hi - lo) for v, lo, hi in zip(values, self.low, self.high)]


def make_strategy(x0: list[float], sigma: float, seed: int, popsize: int | None):
    cma = _cma()
    rng = np.random.default_rng(seed)
    opts = {"bounds": [0.0, 1.0], "seed": math.nan, "randn": lambda *shape: rng.standard_normal(shape),
            "verbose": -9, "verb_log": 0, "verb_disp": 0, "tolx": 1e-6, "tolfun": 1e-9}
    if popsize is not None:
        opts["popsize"] = popsize
    return cma.CMAEvolutionStrategy(list(x0), sigma, opts)


def minimize(objective: Callable[[list[float]], dict[str, Any]], space: Space, x0: list[float], sigma: float,
             budget: int, seed: int, eval_log: EvalLog, popsize: int | None = None,
             progress: bool = True) -> list[dict[str, Any]]:
    """Minimise ``objective(values)['objective']`` with at most ``budget`` evaluations; return the records.

    ``objective`` gets the coordinate values (not the unit cube) and returns a JSON-able dict with
    a finite ``objective``. Evaluation 0 is the start ``x0`` itself (so the result is never worse
    than the start); the rest are CMA-ES samples. Records already in ``eval_log`` are replayed.
    """
    es = make_strategy(space.unit(x0), sigma, seed, popsize)
    replayed = min(len(eval_log.records), budget)
    bar = tqdm(total=budget, desc="merge-search", unit="eval", disable=not progress)
    try:
        start = _replay_or_evaluate(objective, space, space.unit(x0), 0, eval_log, values=list(x0))
        best, done = start["objective"], 1
        bar.update(1)
        while done < budget:
            xs = es.ask()
            told = []
            for x in xs[: budget - done]:
                record = _replay_or_evaluate(objective, space, [float(u) for u in x], done, eval_log)
                told.append(record["objective"])
                best, done = min(best, record["objective"]), done + 1
                bar.update(1)
                bar.set_postfix(best=f"{best:.4g}", replayed=min(done, replayed))
            if len(told) < len(xs):
                break
            es.tell(xs, told)
            if es.stop():
                log.info("CMA-ES stopped after %d evaluations: %s", done, dict(es.stop()))
                break
    finally:
        bar.close()
    return eval_log.records[:done]


def _replay_or_evaluate(objective, space: Space, x: list[float], index: int, eval_log: EvalLog,
                        values: list[float] | None = None) -> dict[str, Any]:
    if index < len(eval_log.records):
        record = eval_log.records[index]
        logged = record.get("x", [])
        if len(logged) != len(x) or any(abs(a - b) > REPLAY_TOLERANCE for a, b in zip(logged, x)):
            raise LorikitError(f"{eval_log.path}: evaluation {index} was at another point than this run asks "
                               "(a different cma version?); pass --overwrite to start afresh")
        return record
    t0 = time.perf_counter()
    values = space.values(x) if values is None else values
    result = objective(values)
    value = result.get("objective")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        named = ", ".join(f"{n}={v:.4g}" for n, v in zip(space.names, values))
        raise LorikitError(f"merge-search: the objective is {value} at evaluation {index} ({named}); "
                           "a diverged adapter or an empty dev set?")
    record = {"x": x, **result, "seconds": round(time.perf_counter() - t0, 3)}
    eval_log.append(record)
    return eval_log.records[-1]
