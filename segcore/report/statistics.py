"""Statistics over seeds: per-cell mean and SD, and paired comparisons against the baseline.

Over seeds, a cell (domain, dataset, method, variant, budget) gets the mean and the sample SD
(ddof=1) of its finite per-seed values and their count n. Against the from-scratch baseline
(method ``none``, same variant and budget) runs are paired by seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
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
        rows.append({
            **dict(zip(cols, key, strict=True)),
            "mean": float(finite.mean()) if finite.size else math.nan,
            "sd": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
            "n": int(finite.size), "n_runs": len(values), "seeds": " ".join(str(s) for s in sorted(g["seed"])),
        })
    return pd.DataFrame(rows, columns=out_cols)


def paired_stats(method: Mapping[int, float], baseline: Mapping[int, float], higher_better: bool = True) -> dict[str, Any]:
    """Paired comparison by seed of ``method`` against ``baseline`` (each ``{seed: value}``).

    Only seeds with a finite value on both sides pair. Returns ``mean_diff`` and ``sd_diff``
    (ddof=1) of ``method - baseline``, ``n_pairs``, ``p_value`` (two-sided paired t-test,
    ``scipy.stats.ttest_rel``; NaN for fewer than two pairs or when every difference is the
    same, where the t statistic is undefined), ``wins`` (seeds where the method is strictly
    better, in the metric's own direction) and the paired ``seeds``.
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
    return {
        "mean_diff": float(diff.mean()) if n else math.nan, "sd_diff": sd, "n_pairs": n, "p_value": p,
        "wins": wins, "seeds": " ".join(str(s) for s in seeds),
    }


def paired_comparison(tidy: pd.DataFrame, metric: str, cls: str = "", baseline: str = "none") -> pd.DataFrame:
    """Every method against ``baseline`` in the same (domain, dataset, variant, budget), paired
    by seed (:func:`paired_stats`). Cells without a baseline run are left out."""
    cols = ["domain", "dataset", "variant", "budget", "metric", "class", "method", "baseline",
            "mean_method", "mean_baseline", "mean_diff", "sd_diff", "n_pairs", "p_value", "wins", "seeds"]
    sub = tidy[(tidy["scope"] == RUN_SCOPE) & (tidy["metric"] == metric) & (tidy["class"] == cls)]
    rows = []
    for (domain, dataset, variant, budget), g in sub.groupby(["domain", "dataset", "variant", "budget"], sort=False):
        by_method = {m: dict(zip(gm["seed"].astype(int), gm["value"].astype(float), strict=True)) for m, gm in g.groupby("method")}
        if baseline not in by_method:
            continue
        base = by_method[baseline]
        for method in method_order(by_method, baseline):
            if method == baseline:
                continue
            stats = paired_stats(by_method[method], base, higher_is_better(metric))
            paired = stats["seeds"].split()
            rows.append({
                "domain": domain, "dataset": dataset, "variant": variant, "budget": budget, "metric": metric, "class": cls,
                "method": method, "baseline": baseline,
                "mean_method": float(np.mean([by_method[method][int(s)] for s in paired])) if paired else math.nan,
                "mean_baseline": float(np.mean([base[int(s)] for s in paired])) if paired else math.nan,
                **stats,
            })
    return pd.DataFrame(rows, columns=cols)
