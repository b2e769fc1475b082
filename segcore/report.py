"""Tables over every evaluated cell: method × label budget, mean ± sd over seeds.

Input: ``metrics.json`` files written by the evaluate stages. Each holds ``domain``,
``method``, ``budget``, ``seed`` and a ``summary`` of scalar metrics (MRI: ``dice_mean``,
``hd95_mean``, ``dice_per_class``; remote sensing: ``miou``, ``f1``, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml

log = logging.getLogger(__name__)

# the headline metrics of each domain, in table order
HEADLINE = {"mri": ["dice_mean", "hd95_mean"], "rs": ["miou", "iou_landslide", "f1"]}


def load_metrics(paths: list[Path]) -> pd.DataFrame:
    """One row per (file, scalar summary metric): domain, method, budget, seed, metric, value."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            m = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(path, f"not a readable metrics.json ({err})") from err
        for key in ("domain", "method", "budget", "seed", "summary"):
            if key not in m:
                raise InputError(path, f"metrics file lacks '{key}'")
        base = {
            "domain": m["domain"], "dataset": m.get("dataset", ""), "method": str(m["method"]),
            "variant": str(m.get("variant", "")), "budget": str(m["budget"]), "seed": int(m["seed"]), "source": str(path),
        }
        for metric, value in m["summary"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({**base, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=["domain", "dataset", "method", "variant", "budget", "seed", "source", "metric", "value"])


def _budget_key(b: str) -> tuple[int, float]:
    return (1, math.inf) if b == "all" else (0, float(b))


def summary_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows = method (+ variant), columns = budget; cells 'mean ± sd (n)'. Also returns numbers."""
    sub = df[df.metric == metric]
    rows = []
    for (method, variant, budget), g in sub.groupby(["method", "variant", "budget"], sort=False):
        vals = g["value"].to_numpy(dtype=float)
        rows.append({
            "method": method, "variant": variant, "budget": budget, "mean": float(np.mean(vals)),
            "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"), "n": len(vals),
        })
    return pd.DataFrame(rows, columns=["method", "variant", "budget", "mean", "sd", "n"])


def format_cell(mean: float, sd: float, n: int) -> str:
    sd_text = "–" if math.isnan(sd) else f"{sd:.3f}"
    return f"{mean:.3f} ± {sd_text} (n={n})"


def pivot_text(stats: pd.DataFrame) -> pd.DataFrame:
    if stats.empty:
        return pd.DataFrame()
    stats = stats.assign(cell=[format_cell(r.mean, r.sd, r.n) for r in stats.itertuples()])
    stats = stats.assign(row=[m if not v else f"{m} [{v}]" for m, v in zip(stats.method, stats.variant, strict=True)])
    table = stats.pivot(index="row", columns="budget", values="cell")
    cols = sorted(table.columns, key=_budget_key)
    return table[cols].rename_axis(index="method", columns="budget")


def to_markdown(table: pd.DataFrame, title: str) -> str:
    if table.empty:
        return f"### {title}\n\n(no results)\n"
    header = "| " + " | ".join([table.index.name or "", *[str(c) for c in table.columns]]) + " |"
    sep = "|" + "---|" * (len(table.columns) + 1)
    body = ["| " + " | ".join([str(idx), *[str(v) if isinstance(v, str) else "" for v in row]]) + " |" for idx, row in table.iterrows()]
    return "\n".join([f"### {title}", "", header, sep, *body, ""])


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=Path, nargs="+", required=True, help="metrics.json files (any domain)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the tables")


def run_report(args: argparse.Namespace) -> None:
    df = load_metrics(list(args.input))
    with atomic_dir(args.out) as tmp:
        df.to_csv(tmp / "metrics_long.csv", index=False)
        md = []
        for domain in sorted(df.domain.unique()):
            for metric in HEADLINE.get(domain, []):
                stats = summary_table(df[df.domain == domain], metric)
                if stats.empty:
                    continue
                stats.to_csv(tmp / f"{domain}_{metric}_stats.csv", index=False)
                table = pivot_text(stats)
                table.to_csv(tmp / f"{domain}_{metric}.csv")
                md.append(to_markdown(table, f"{domain}: {metric} (mean ± sd over seeds)"))
        (tmp / "tables.md").write_text("\n".join(md))
        write_yaml(tmp / "config.yaml", {"input": [str(p) for p in args.input], "out": str(args.out)})
    log.info("wrote tables for %d metrics files to %s", len(args.input), args.out)
