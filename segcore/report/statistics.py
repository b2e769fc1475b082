"""Statistics over seeds: per-cell mean and SD, and paired comparisons against the baseline.

Over seeds, a cell (domain, dataset, method, variant, budget) gets the mean and the sample SD
(ddof=1) of its finite per-seed values and their count n. Against the from-scratch baseline
(method ``none``, same variant and budget) runs are paired by seed. The paired differences are
also grouped by labeled set (``label_seed``): how much of their spread comes from the labeled
set and how much from the run (:func:`variance_split`), and whether one labeled set carries the
gain (:func:`leave_best_set_out`). Formulas: docs/report.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from segcore.report.domains import higher_is_better, method_order
from segcore.report.tidy import CELL, RUN_SCOPE


def seed_summary(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample SD (ddof=1; NaN for one value) and n of the finite per-seed values of every
    run-level number, per cell: columns ``domain, dataset, method, variant, budget, metric,
    class, mean, sd, n, n_runs, seeds``."""
    cols = [*CELL, "metric", "class"]
    out_cols = [*cols, "mean", "sd", "n", "n_runs", "seeds"]
    runs = tidy[tidy["scope"] == RUN_SCOPE]
    rows = []
    for key, g in runs.groupby(cols, sort=False):
        values = g["value"].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        rows.append(
            {
                **dict(zip(cols, key, strict=True)),
                "mean": float(finite.mean()) if finite.size else math.nan,
                "sd": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                "n": int(finite.size),
                "n_runs": len(values),
                "seeds": " ".join(str(s) for s in sorted(g["seed"])),
            }
        )
    return pd.DataFrame(rows, columns=out_cols)


def variance_split(diffs: Sequence[float], sets: Sequence[Hashable]) -> dict[str, Any]:
    """How much of the spread of paired differences comes from the labeled set, how much from
    the run: the one-way random-effects variance components of ``diffs`` grouped by ``sets``
    (one labeled-set key per difference), by the method of moments (ANOVA estimates).

    With k sets, n differences, n_g in set g, set means m_g and overall mean m:
    MS_within = Σ_g Σ_i (d_gi − m_g)² / (n − k), MS_between = Σ_g n_g (m_g − m)² / (k − 1),
    n0 = (n − Σ_g n_g² / n) / (k − 1); var_within = MS_within,
    var_between = max(0, (MS_between − MS_within) / n0). Returns ``n_sets`` (k),
    ``sd_between`` and ``sd_within`` (square roots) and ``share_between`` (var_between /
    (var_between + var_within)). Defined only with two sets or more and at least one set of two
    runs or more (n > k); otherwise, as when every set has one run and set and run cannot be
    told apart, the three are NaN.
    """
    d = np.asarray(diffs, dtype=np.float64)
    keys = list(dict.fromkeys(sets))
    groups = [d[[i for i, s in enumerate(sets) if s == key]] for key in keys]
    n, k = len(d), len(keys)
    out: dict[str, Any] = {"n_sets": k, "sd_between": math.nan, "sd_within": math.nan, "share_between": math.nan}
    if k < 2 or n <= k:
        return out
    mean = d.mean()
    ms_within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / (n - k)
    ms_between = sum(len(g) * float((g.mean() - mean) ** 2) for g in groups) / (k - 1)
    n0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
    var_between = max(0.0, (ms_between - ms_within) / n0)
    total = var_between + ms_within
    out.update(
        sd_between=math.sqrt(var_between),
        sd_within=math.sqrt(ms_within),
        share_between=var_between / total if total > 0 else math.nan,
    )
    return out


def leave_best_set_out(diffs: Sequence[float], sets: Sequence[Hashable], higher_better: bool = True) -> dict[str, Any]:
    """Does one labeled set carry the gain? The mean difference without the pairs of the set
    whose mean difference is the best (largest gain in the metric's direction; of equal ones
    the first), and the mark.

    With s = +1 when higher is better (else −1), G the mean of all differences and G₋ the mean
    without the best set: ``single_set`` is true when there are two sets or more, s·G > 0 (a
    gain) and s·G₋ < s·G / 2: left out, the gain falls below half of itself or changes sign.
    Returns ``best_set`` (its key as text, "" with fewer than two sets), ``mean_without_best``
    (G₋; NaN with fewer than two sets) and ``single_set``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    keys = list(dict.fromkeys(sets))
    if len(keys) < 2:
        return {"best_set": "", "mean_without_best": math.nan, "single_set": False}
    sign = 1.0 if higher_better else -1.0
    in_set = {key: np.array([s == key for s in sets]) for key in keys}
    best = max(keys, key=lambda key: (sign * float(d[in_set[key]].mean()), -keys.index(key)))
    gain, without = sign * float(d.mean()), float(d[~in_set[best]].mean())
    return {
        "best_set": str(best),
        "mean_without_best": without,
        "single_set": bool(gain > 0 and sign * without < gain / 2),
    }


def paired_stats(
    method: Mapping[int, float],
    baseline: Mapping[int, float],
    higher_better: bool = True,
    sets: Mapping[int, Hashable] | None = None,
) -> dict[str, Any]:
    """Paired comparison by seed of ``method`` against ``baseline`` (each ``{seed: value}``).

    Only seeds with a finite value on both sides pair. Returns ``mean_diff`` and ``sd_diff``
    (ddof=1) of ``method - baseline``, ``n_pairs``, ``p_value`` (two-sided paired t-test,
    ``scipy.stats.ttest_rel``; NaN for fewer than two pairs or when every difference is the
    same, where the t statistic is undefined), ``wins`` (seeds where the method is strictly
    better, in the metric's own direction) and the paired ``seeds``; and, by labeled set
    (``sets``: ``{seed: labeled-set key}``; by default every seed its own set, as fine-tuning
    draws the labeled set from the seed), the keys of :func:`variance_split` and
    :func:`leave_best_set_out`.
    """
    seeds = sorted(s for s in method if s in baseline and math.isfinite(method[s]) and math.isfinite(baseline[s]))
    a = np.array([method[s] for s in seeds], dtype=np.float64)
    b = np.array([baseline[s] for s in seeds], dtype=np.float64)
    diff = a - b
    n = len(seeds)
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    p = math.nan
    if n > 1 and sd > 1e-12 * max(1.0, float(np.abs(diff).max())):
        from scipy.stats import ttest_rel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(ttest_rel(a, b).pvalue)
    wins = int(np.sum(diff > 0) if higher_better else np.sum(diff < 0))
    keys = [s if sets is None else sets[s] for s in seeds]
    return {
        "mean_diff": float(diff.mean()) if n else math.nan,
        "sd_diff": sd,
        "n_pairs": n,
        "p_value": p,
        "wins": wins,
        "seeds": " ".join(str(s) for s in seeds),
        **variance_split(diff, keys),
        **leave_best_set_out(diff, keys, higher_better),
    }


def paired_comparison(
    tidy: pd.DataFrame,
    metric: str,
    cls: str = "",
    baseline: str = "none",
    baseline_of: Callable[[str], str | None] | None = None,
) -> pd.DataFrame:
    """Every method against ``baseline`` in the same (domain, dataset, variant, budget), paired
    by seed (:func:`paired_stats`). Cells without a baseline run are left out. With
    ``baseline_of``, each method is paired with ``baseline_of(method)`` instead (methods it
    maps to None are left out): the semi-supervised runs against the same init without the mode
    (:func:`~segcore.report.domains.semi_baseline`).

    A pair's labeled set is the ``label_seed`` of its two runs; where the method's and the
    baseline's differ (a method trained on another set than its baseline), the pair's set is
    the two of them, ``(method's, baseline's)``: pairs are repeats only when both match."""
    cols = [
        "domain",
        "dataset",
        "variant",
        "budget",
        "metric",
        "class",
        "method",
        "baseline",
        "mean_method",
        "mean_baseline",
        "mean_diff",
        "sd_diff",
        "n_pairs",
        "p_value",
        "wins",
        "seeds",
        "n_sets",
        "sd_between",
        "sd_within",
        "share_between",
        "best_set",
        "mean_without_best",
        "single_set",
    ]
    sub = tidy[(tidy["scope"] == RUN_SCOPE) & (tidy["metric"] == metric) & (tidy["class"] == cls)]
    rows = []
    for (domain, dataset, variant, budget), g in sub.groupby(["domain", "dataset", "variant", "budget"], sort=False):
        by_method = {
            m: dict(zip(gm["seed"].astype(int), gm["value"].astype(float), strict=True))
            for m, gm in g.groupby("method")
        }
        label_seeds = {
            m: dict(zip(gm["seed"].astype(int), gm["label_seed"].astype(int), strict=True))
            for m, gm in g.groupby("method")
        }
        for method in method_order(by_method, baseline):
            other = baseline if baseline_of is None else baseline_of(method)
            if method == other or other is None or other not in by_method:
                continue
            base = by_method[other]
            ours, theirs = label_seeds[method], label_seeds[other]
            sets = {s: ours[s] if ours[s] == theirs.get(s) else (ours[s], theirs.get(s)) for s in ours}
            stats = paired_stats(by_method[method], base, higher_is_better(metric), sets)
            paired = stats["seeds"].split()
            rows.append(
                {
                    "domain": domain,
                    "dataset": dataset,
                    "variant": variant,
                    "budget": budget,
                    "metric": metric,
                    "class": cls,
                    "method": method,
                    "baseline": other,
                    "mean_method": float(np.mean([by_method[method][int(s)] for s in paired])) if paired else math.nan,
                    "mean_baseline": float(np.mean([base[int(s)] for s in paired])) if paired else math.nan,
                    **stats,
                }
            )
    return pd.DataFrame(rows, columns=cols)
