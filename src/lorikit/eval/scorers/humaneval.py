"""HumanEval scoring: build the test program of a completion, and pass@k.

pass@k with the unbiased estimator of Chen et al. (2021), for n samples of which c pass:

    pass@k = 1 - C(n - c, k) / C(n, k)      (1 when n - c < k)

computed as 1 - prod_{i = n-c+1}^{n} (1 - k / i) to stay exact for large n. The benchmark score is
the mean over problems. A completion passes only if the problem's ``check(entry_point)`` returns
without raising, run in its own sandbox against the program (prompt + completion) in another one,
with plain values passed between them (``lorikit.eval.sandbox``): nothing the program does in its
own process (output, exit codes, ``sys.exit(0)``, writing to descriptors, objects whose ``==`` is
always true) can make the test pass.
"""

from __future__ import annotations

from ..sandbox.config import Sample

# Codex / HumanEval convention: a completion ends where a new top-level statement begins.
STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]


def sample(problem: dict, completion: str) -> Sample:
    """The program (prompt + completion) and its test (the problem's ``check``, with the prompt as
    trusted context: its imports and helpers, whatever the completion redefines)."""
    return Sample(program=f"{problem['prompt']}{completion}\n", test=problem["test"],
                  entry_point=problem["entry_point"], context=problem["prompt"])


def pass_at_k(n: int, c: int, k: int) -> float:
    import numpy as np  # here, not at the top: the task registry imports this module for --help

    if not 0 <= c <= n or k <= 0:
        raise ValueError(f"pass@k needs 0 <= c <= n and k > 0 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem (got {n})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(per_problem: list[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given (n, c) for each."""
    import numpy as np

    return float(np.mean([pass_at_k(n, c, k) for n, c in per_problem])) if per_problem else 0.0
