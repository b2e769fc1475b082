"""Deterministic, balanced choice of the labeled subset for a label budget and a seed.

Candidates are the labeled pool's units: MRI subjects (all volumes of one person count as one
unit), remote-sensing tiles. With ``N`` candidates, budget ``b`` and seed ``s``:

* **balanced**: seeds ``0 .. floor(N/b) - 1`` draw pairwise disjoint sets, and seeds
  ``0 .. ceil(N/b) - 1`` together use every candidate. With N = 8 and b = 2, seeds 0-3 label
  8 different subjects; the old per-seed random draws gave seeds 0 and 1 the same subject at
  budget 1 on the demo.
* **nested**: for one seed, the set of budget ``b`` is contained in the set of every larger
  budget, for all seeds and budgets, so a learning curve over budgets adds labels to one set.
* **deterministic**: sets depend on (sorted candidates, b, s) only; seeds ``s`` and ``s + N``
  draw the same set.

The issue that asked for balanced draws (issue 20) proposed contiguous blocks of one fixed
permutation ``P`` (seed ``s`` takes positions ``s*b .. s*b + b - 1``). Those are disjoint, but
never nest beyond seed 0 (budget 1 of seed 1 is ``P[1]``, budget 2 of seed 1 is
``{P[2], P[3]}``). The construction here keeps the disjointness and coverage of blocks and
nests, by building every seed's set one budget at a time (:func:`balanced_sets`): at budget
``b`` each of the seeds ``s < floor(N/b)`` adds one candidate that none of those seeds holds
yet, so they stay disjoint, and they take first the candidates that seed ``floor(N/b)`` does
not hold; what they leave over (``N mod b`` candidates) is then among that seed's ``b - 1``
earlier ones (it was disjoint from them at budget ``b - 1``, or held their leftover then), so
coverage holds. For
``N = 2m`` this gives ``{P[s], P[s + m]}`` at budget 2. Seeds past ``ceil(N/b)`` (a second round)
add, at each budget, the candidate that overlaps least with the earlier seeds' sets and has been
used least in its round and overall (ties: permutation order); that spreads the labels but
gives no guarantee.

Fixed lists (:func:`draw_labeled` ``fixed=``) take precedence over the draw, as the reference
protocols name their labeled subjects.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from segcore.salts import PERMUTATION_SALT


def _permutation(candidates: Sequence[str]) -> list[str]:
    ordered = sorted(candidates)
    rng = np.random.default_rng(np.random.SeedSequence([PERMUTATION_SALT, len(ordered)]))
    return [ordered[i] for i in rng.permutation(len(ordered))]


def parse_budget(budget: str | int) -> int | None:
    """``"all"`` → None; otherwise a positive int."""
    if isinstance(budget, str) and budget.strip().lower() == "all":
        return None
    n = int(budget)
    if n < 1:
        raise ValueError(f"label budget must be >= 1 or 'all', got {budget!r}")
    return n


def balanced_sets(n: int, budget: int, seeds: int) -> list[list[int]]:
    """Positions (into the fixed permutation) labeled by seeds ``0 .. seeds - 1`` at ``budget``.

    Row ``s`` lists seed ``s``'s positions in the order they were added, so its first ``k``
    entries are its set at budget ``k`` (nesting). ``1 <= budget <= n``, ``1 <= seeds <= n``.
    Cost: ~``n * budget`` array operations, memory ~``n * log(budget)``.
    """
    if not (1 <= budget <= n and 1 <= seeds <= n):
        raise ValueError(f"need 1 <= budget ({budget}) <= n ({n}) and 1 <= seeds ({seeds}) <= n")
    # rows computed at budget k: the disjoint ones (n // k), the one after them and the seeds
    # asked for; never more than at budget k - 1, so every row has all its earlier entries
    rows_at = [max(seeds, min(n, n // k + 1)) for k in range(1, budget + 1)]
    columns: list[np.ndarray] = []  # columns[j][s]: the (j+1)-th position of row s
    for k in range(1, budget + 1):  # budget k: every row gets its k-th position
        n_rows, m = rows_at[k - 1], n // k  # rows 0 .. m-1 stay pairwise disjoint
        held = np.stack([c[:n_rows] for c in columns], axis=1) if columns else np.zeros((n_rows, 0), dtype=np.int64)
        taken = np.zeros(n, dtype=bool)
        taken[held[:m].ravel()] = True
        free = np.flatnonzero(~taken)  # n - (k-1)*m >= m positions
        if n % k and m < n_rows:
            # row m must hold, at budget k, the n mod k positions rows 0 .. m-1 leave over: let
            # those rows take first what row m does not hold. Then the leftover is a subset of
            # row m's k-1 positions (module docstring), and row m's k-th position is free.
            in_m = np.isin(free, held[m])
            free = np.concatenate([free[~in_m], free[in_m]])
        new = np.empty(n_rows, dtype=np.int64)
        new[:m] = free[:m]
        for s in range(m, n_rows):
            # past the disjoint rows: least overlap with any earlier row, then the position held
            # by the fewest rows of this round (rows j*m .. s-1), then by the fewest earlier
            # rows, then permutation order
            earlier = np.concatenate([held[:s], new[:s, None]], axis=1)  # (s, k)
            overlap = np.isin(earlier, held[s]).sum(axis=1)  # shared with row s so far
            worst = np.full(n, overlap.max(initial=0), dtype=np.int64)
            np.maximum.at(worst, earlier.ravel(), np.repeat(overlap + 1, k))
            worst[held[s]] = k + 1  # never a position the row holds: above any real overlap
            in_round = np.bincount(earlier[(s // m) * m :].ravel(), minlength=n)
            new[s] = int(np.lexsort((np.arange(n), np.bincount(earlier.ravel(), minlength=n), in_round, worst))[0])
        columns.append(new)
    return [[int(c[s]) for c in columns] for s in range(seeds)]


def select_count(candidates: Sequence[str], budget: str | int, seed: int) -> list[str]:
    """Seed ``seed``'s balanced set of ``budget`` candidates, in the order they join it (its
    first ``k`` are its set at budget ``k``); every candidate, sorted, for ``"all"`` or a
    budget of all candidates."""
    n = parse_budget(budget)
    perm = _permutation(candidates)
    if n is not None and n > len(perm):
        raise ValueError(f"label budget {n} exceeds the {len(perm)} labeled candidates")
    if seed < 0:
        raise ValueError(f"label seed must be >= 0, got {seed}")
    if n is None or n == len(perm):
        return sorted(perm)
    row = balanced_sets(len(perm), n, int(seed) % len(perm) + 1)[-1]
    return [perm[p] for p in row]


def select_percent(candidates: Sequence[str], percent: float, seed: int) -> list[str]:
    """``ceil(percent% of candidates)`` (at least one), drawn as :func:`select_count` does."""
    if not 0 < percent <= 100:
        raise ValueError(f"label percentage must be in (0, 100], got {percent}")
    n = max(1, math.ceil(len(candidates) * percent / 100.0 - 1e-9))
    return select_count(candidates, n, seed)


def match_names(requested: Iterable[str], known: Iterable[str], what: str = "subject") -> list[str]:
    """Resolve names as a user wrote them against ``known`` names.

    A name matches exactly, or, when it is all digits, the one known name whose trailing number
    is the same (``2``, ``02`` and ``002`` all name ``patient002``). Raises ValueError for a
    name that matches none or several, or that is given twice.
    """
    known = sorted(set(known))
    numbered: dict[int, list[str]] = {}
    for name in known:
        if m := re.search(r"(\d+)$", name):
            numbered.setdefault(int(m.group(1)), []).append(name)
    out: list[str] = []
    for raw in requested:
        name = str(raw).strip()
        if name in known:
            hit = name
        elif re.fullmatch(r"\d+", name) and len(numbered.get(int(name), [])) == 1:
            hit = numbered[int(name)][0]
        else:
            several = numbered.get(int(name), []) if re.fullmatch(r"\d+", name) else []
            shown = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "")
            raise ValueError(
                f"{what} '{name}' is ambiguous: {', '.join(several)}"
                if len(several) > 1
                else f"unknown {what} '{name}' ({len(known)} known: {shown})"
            )
        if hit in out:
            raise ValueError(f"{what} '{hit}' is named twice")
        out.append(hit)
    return out


def fixed_combinations(value: Any, budget: str | int) -> list[list[str]] | None:
    """The fixed labeled combinations for ``budget`` from an option value, or None.

    Accepted: None; one combination (a list of names, or a string of names separated by spaces
    or commas); several combinations (a list of such); or a mapping from budget to either (YAML
    config: ``{1: [[patient002], [patient042]], 2: [[patient042, patient062]]}``), where a
    budget without an entry gives None (the balanced draw).
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        by_budget = {str(k).strip().lower(): v for k, v in value.items()}
        value = by_budget.get(str(budget).strip().lower())
        if value is None:
            return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"fixed labeled subjects must be names or lists of names, got {value!r}")

    def names(item: Any) -> list[str]:
        if isinstance(item, str):
            return [t for t in re.split(r"[\s,]+", item) if t]
        if isinstance(item, (list, tuple)) and all(isinstance(t, (str, int)) for t in item):
            return [str(t) for t in item]
        raise ValueError(f"a fixed combination must be a list of names, got {item!r}")

    if all(isinstance(v, (list, tuple)) for v in value):
        combos = [names(v) for v in value]
    else:
        combos = [names(" ".join(str(v) for v in value))]
    if any(not c for c in combos):
        raise ValueError("a fixed combination names no subject")
    return combos


def draw_labeled(
    units: Mapping[str, Sequence[str]],
    budget: str | int,
    seed: int,
    fixed: Any = None,
    elsewhere: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Choose the labeled units and return ``(units, groups)``.

    ``units``: the labeled pool, ``{unit (subject): [group ids (volumes)]}``; the budget counts
    units, and every group of a chosen unit is labeled. ``fixed``: see
    :func:`fixed_combinations`; one combination serves every seed, several are picked by
    ``seed`` (an error when ``seed`` has none); a combination must be of ``budget`` units
    unless the budget is ``"all"``. ``elsewhere``: ``{unit: split}`` of units outside the pool,
    for the error that names a fixed unit's split. Raises ValueError with a plain message.
    """
    combos = fixed_combinations(fixed, budget)
    if combos is None:
        chosen = select_count(list(units), budget, seed)
    else:
        if len(combos) > 1 and not 0 <= seed < len(combos):
            raise ValueError(
                f"{len(combos)} fixed labeled combinations are given; label seed {seed} has none (seeds "
                f"0-{len(combos) - 1})"
            )
        combo = combos[0] if len(combos) == 1 else combos[seed]
        elsewhere = dict(elsewhere or {})
        chosen = match_names(combo, [*units, *elsewhere], "subject")
        outside = [f"'{u}' is in the {elsewhere[u]} split" for u in chosen if u not in units]
        if outside:
            raise ValueError(f"fixed labeled subjects must come from the labeled pool: {'; '.join(outside)}")
        n = parse_budget(budget)
        if n is not None and n != len(chosen):
            raise ValueError(f"label budget {n} but the fixed combination {chosen} has {len(chosen)} subjects")
    groups = [g for unit in chosen for g in units[unit]]
    return list(chosen), groups


class _CommandLineCombinations(list):
    """Combinations given on the command line (a plain list once written out)."""


class FixedCombinations(argparse.Action):
    """``--labeled-subjects A B`` is one combination; each repeat of the option adds one. The
    first use on the command line replaces combinations that came from a ``--config`` file."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        combos = current if isinstance(current, _CommandLineCombinations) else _CommandLineCombinations()
        combos.append([str(v) for v in (values if isinstance(values, list) else [values])])
        setattr(namespace, self.dest, combos)
