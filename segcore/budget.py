"""Deterministic choice of the labeled subset for a label budget and a seed.

The order is a seeded permutation of the sorted candidates, so budgets nest: for one seed the
volumes of budget 1 are among those of budget 2. Different seeds give different subsets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _permutation(candidates: Sequence[str], seed: int) -> list[str]:
    ordered = sorted(candidates)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    return [ordered[i] for i in rng.permutation(len(ordered))]


def parse_budget(budget: str | int) -> int | None:
    """``"all"`` → None; otherwise a positive int."""
    if isinstance(budget, str) and budget.strip().lower() == "all":
        return None
    n = int(budget)
    if n < 1:
        raise ValueError(f"label budget must be >= 1 or 'all', got {budget!r}")
    return n


def select_count(candidates: Sequence[str], budget: str | int, seed: int) -> list[str]:
    """The first ``budget`` candidates of the seed's permutation (all of them for ``"all"``)."""
    n = parse_budget(budget)
    perm = _permutation(candidates, seed)
    if n is None:
        return sorted(perm)
    if n > len(perm):
        raise ValueError(f"label budget {n} exceeds the {len(perm)} labeled candidates")
    return perm[:n]


def select_percent(candidates: Sequence[str], percent: float, seed: int) -> list[str]:
    """``ceil(percent% of candidates)`` (at least one) from the seed's permutation."""
    if not 0 < percent <= 100:
        raise ValueError(f"label percentage must be in (0, 100], got {percent}")
    n = max(1, math.ceil(len(candidates) * percent / 100.0 - 1e-9))
    return _permutation(candidates, seed)[:n]


def label_seed(args: Any) -> int:
    """The seed that draws the labeled set: ``args.label_seed`` when set, else ``args.seed``."""
    value = getattr(args, "label_seed", None)
    return int(args.seed if value is None else value)
