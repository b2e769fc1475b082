"""The results report: every evaluated cell in one tidy table, tables over seeds, plots, one HTML page.

Inputs (all written by earlier stages):

* ``metrics.json`` of the evaluate stages. MRI (``medseg evaluate``): ``domain``, ``dataset``,
  ``split``, ``method``, ``budget``, ``seed``, ``classes``, ``summary`` (``dice_mean``,
  ``dice_<class>``, ``dice_per_class`` ...), ``n_subjects`` and ``per_subject``. Remote sensing
  (``rs evaluate``): the same run keys plus ``variant`` (the fusion), ``class_names`` and a
  ``summary`` of ``miou``, ``iou_<class>``, ``precision``, ``recall``, ``f1``, ``overall_accuracy``.
* ``overlay.npz`` beside a ``metrics.json`` (a few test slices or tiles with truth and prediction).
* Lightning ``logs/metrics.csv`` of the fine-tuning and pretraining stages.

The tidy table has one row per number: ``domain, dataset, split, method, variant, budget,
seed, scope, class, metric, value, source``. ``scope`` is a subject id (MRI per-subject
values) or ``"all"`` (a value over the whole evaluated split); ``class`` is ``""`` for values
that are not of one class (``dice_mean``, ``miou``, ``f1``). Summary keys named
``<metric>_<class>`` become ``metric=<metric>, class=<class>`` (``dice_RV`` → ``dice``/``RV``,
``iou_landslide`` → ``iou``/``landslide``); ``null`` (NaN or inf in the evaluate stage) becomes NaN.

Over seeds, a cell (domain, dataset, method, variant, budget) gets the mean and the sample SD
(ddof=1) of its finite per-seed values and their count n. Against the from-scratch baseline
(method ``none``, same variant and budget) runs are paired by seed.

The stage (``medseg report`` / ``rs report``) writes one folder, atomically:
``index.html`` (tables, plots embedded as PNG, every number; no external resources),
``tables.md``, ``tables.html``, ``metrics_tidy.csv`` / ``.parquet``, ``seed_stats.csv``,
``paired_stats.csv``, per domain ``<domain>_summary.csv``, ``_per_class.csv``, ``_gains.csv``,
and ``plots/<domain>_{budget,overlays,finetune_curves,pretrain_curves}.{png,svg}`` (fixed
names a workflow can declare; a figure without data says so), plus ``config.yaml``.
"""

from __future__ import annotations

import argparse
import base64
import glob
import html
import json
import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml

log = logging.getLogger(__name__)

TIDY_COLUMNS = ["domain", "dataset", "split", "method", "variant", "budget", "seed", "scope", "class", "metric", "value", "source"]
# one evaluated cell, before seeds
CELL = ["domain", "dataset", "method", "variant", "budget"]
RUN_SCOPE = "all"
# top-level counts of a metrics file that are kept as numbers of the run
COUNT_FIELDS = ("n_subjects", "n_tiles", "n_pixels")


@dataclass(frozen=True)
class Headline:
    """A table and plot metric: ``metric`` of ``cls`` ("" = not per class), shown as ``label``."""

    metric: str
    cls: str
    label: str

    @property
    def key(self) -> str:
        return self.metric if not self.cls else f"{self.metric}_{self.cls}"


# the headline metrics of each domain, in table order
HEADLINE: dict[str, list[Headline]] = {
    "mri": [Headline("dice_mean", "", "Dice"), Headline("hd95_mean", "", "HD95 (mm)")],
    "rs": [Headline("miou", "", "mIoU"), Headline("iou", "landslide", "landslide IoU"), Headline("f1", "", "landslide F1")],
}
# more headline metrics where a dataset's benchmark reports them: Landslide4Sense ranks by the
# landslide F1 and reports precision and recall beside it (docs/landslide4sense.md)
DATASET_HEADLINE: dict[tuple[str, str], list[Headline]] = {
    ("rs", "landslide4sense"): [
        Headline("precision", "", "landslide precision"),
        Headline("recall", "", "landslide recall"),
    ],
}
# metrics broken down by class in the per-class tables
PER_CLASS: dict[str, list[str]] = {"mri": ["dice", "hd95"], "rs": ["iou"]}
BUDGET_AXIS = {"mri": "label budget (labeled volumes)", "rs": "label budget (% of tiles labeled)"}
DOMAIN_TITLE = {"mri": "MRI", "rs": "Remote sensing"}


def higher_is_better(metric: str) -> bool:
    """Distances (HD95, in mm) and losses improve downwards; overlaps and scores upwards."""
    return not (metric.startswith("hd") or "loss" in metric)


def budget_text(value: Any) -> str:
    """A label budget as text: ``2`` and ``2.0`` → ``"2"``, ``"all"`` stays."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def budget_order(budget: str) -> tuple[int, float, str]:
    """Sort key: numbers ascending, then other names, ``"all"`` last."""
    try:
        return (0, float(budget), "")
    except ValueError:
        return (2, math.inf, "") if budget == "all" else (1, math.inf, budget)


def method_order(methods: Iterable[str], baseline: str = "none") -> list[str]:
    """The baseline first, then the other methods alphabetically."""
    unique = sorted(set(methods))
    return [m for m in unique if m == baseline] + [m for m in unique if m != baseline]


def row_label(method: str, variant: str = "", dataset: str = "") -> str:
    text = method if not variant else f"{method} [{variant}]"
    return text if not dataset else f"{dataset}: {text}"


# --------------------------------------------------------------------------------------------
# reading metrics files into the tidy table


@dataclass(frozen=True)
class RunRecord:
    """One evaluated run (one metrics.json): the cell keys, the seed, and where it came from."""

    domain: str
    dataset: str
    split: str
    method: str
    variant: str
    budget: str
    seed: int
    source: Path
    classes: tuple[str, ...] = ()

    @property
    def cell(self) -> tuple[str, str, str, str, str]:
        return (self.domain, self.dataset, self.method, self.variant, self.budget)


def _number(value: Any) -> float | None:
    """A metric value as float (``None`` → NaN); ``None`` for things that are not numbers."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _split_class(key: str, classes: Sequence[str]) -> tuple[str, str]:
    """``"dice_RV"`` → ``("dice", "RV")`` when RV is a class; other keys → ``(key, "")``."""
    for c in sorted(classes, key=len, reverse=True):
        if key.endswith(f"_{c}") and len(key) > len(c) + 1:
            return key[: -len(c) - 1], c
    return key, ""


def read_run(path: str | Path) -> tuple[RunRecord, list[dict[str, Any]]]:
    """One metrics.json: its run record and its tidy rows (see the module docstring)."""
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a readable metrics.json ({err})") from err
    if not isinstance(m, dict):
        raise InputError(path, "metrics file is not a JSON object")
    for key in ("domain", "method", "budget", "seed", "summary"):
        if m.get(key) is None:
            raise InputError(path, f"metrics file lacks '{key}'")
    if not isinstance(m["summary"], dict):
        raise InputError(path, "'summary' is not a mapping of metric names to values")
    try:
        seed = int(m["seed"])
    except (TypeError, ValueError) as err:
        raise InputError(path, f"seed {m['seed']!r} is not an integer") from err
    summary: dict[str, Any] = m["summary"]
    classes = [str(c) for c in (m.get("classes") or [])] + [str(c) for c in (m.get("class_names") or [])]
    for value in summary.values():
        if isinstance(value, dict):
            classes += [str(c) for c in value]
    run = RunRecord(
        domain=str(m["domain"]), dataset=str(m.get("dataset") or ""), split=str(m.get("split") or "test"),
        method=str(m["method"]), variant=str(m.get("variant") or ""), budget=budget_text(m["budget"]),
        seed=seed, source=path, classes=tuple(dict.fromkeys(classes)),
    )
    base = {
        "domain": run.domain, "dataset": run.dataset, "split": run.split, "method": run.method, "variant": run.variant,
        "budget": run.budget, "seed": run.seed, "source": str(path),
    }
    rows: list[dict[str, Any]] = []

    def add(scope: str, cls: str, metric: str, value: float) -> None:
        rows.append({**base, "scope": scope, "class": cls, "metric": metric, "value": value})

    for key, value in summary.items():
        if isinstance(value, dict) and key.endswith("_per_class"):
            # {class: {mean, std, n, n_nan, n_inf}}; the mean is already the summary's <metric>_<class>
            metric = key[: -len("_per_class")]
            for cls, stats in value.items():
                if not isinstance(stats, dict):
                    raise InputError(path, f"summary.{key}.{cls} is not a mapping")
                for stat in ("std", "n", "n_nan", "n_inf"):
                    number = _number(stats.get(stat))
                    if number is not None and stat in stats:
                        add(RUN_SCOPE, str(cls), f"{metric}_{stat}", number)
            continue
        number = _number(value)
        if number is None:
            continue  # text or lists in a summary are not metrics
        metric, cls = _split_class(key, run.classes)
        add(RUN_SCOPE, cls, metric, number)
    for key in COUNT_FIELDS:
        number = _number(m.get(key, "absent"))
        if number is not None:
            add(RUN_SCOPE, "", key, number)
    per_subject = m.get("per_subject") or {}
    if not isinstance(per_subject, dict):
        raise InputError(path, "'per_subject' is not a mapping of subject ids")
    for subject, entry in per_subject.items():
        if not isinstance(entry, dict):
            raise InputError(path, f"per_subject.{subject} is not a mapping")
        for key, value in entry.items():
            if isinstance(value, dict):
                for cls, v in value.items():
                    number = _number(v)
                    if number is None:
                        raise InputError(path, f"per_subject.{subject}.{key}.{cls} is not a number ({v!r})")
                    add(str(subject), str(cls), key, number)
            else:
                number = _number(value)
                if number is not None:
                    add(str(subject), "", key, number)
    return run, rows


def read_runs(paths: Iterable[str | Path]) -> tuple[list[RunRecord], pd.DataFrame]:
    """Every metrics file: run records and the tidy table (columns :data:`TIDY_COLUMNS`).

    Two files for the same cell and seed (and split) are an error: pairing by seed needs one.
    """
    runs: list[RunRecord] = []
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], Path] = {}
    for path in paths:
        run, run_rows = read_run(path)
        key = (*run.cell, run.seed, run.split)
        if key in seen:
            raise InputError(path, f"same method, budget, seed and split as {seen[key]}")
        seen[key] = run.source
        runs.append(run)
        rows += run_rows
    tidy = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    tidy["seed"] = tidy["seed"].astype(np.int64)
    tidy["value"] = tidy["value"].astype(np.float64)
    return runs, tidy


def load_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The tidy table of every number in the given metrics files (see :func:`read_runs`)."""
    return read_runs(paths)[1]


# --------------------------------------------------------------------------------------------
# statistics over seeds


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


# --------------------------------------------------------------------------------------------
# text tables (Markdown, HTML, CSV)


def format_value(value: float, metric: str) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2f}" if metric.startswith("hd") else f"{value:.3f}"


def format_cell(mean: float, sd: float, n: int, metric: str = "") -> str:
    """``"0.812 ± 0.034 (n=3)"``; the SD shows as ``–`` with one seed."""
    if n == 0:
        return "–"
    return f"{format_value(mean, metric)} ± {format_value(sd, metric)} (n={n})"


def format_gain(row: Mapping[str, Any], metric: str) -> str:
    """``"+0.090 ± 0.046 (n=3, p=0.0766, wins 3/3)"``."""
    n = int(row["n_pairs"])
    if n == 0:
        return "no paired seeds"
    fmt = ".2f" if metric.startswith("hd") else ".3f"
    sd = "–" if not math.isfinite(row["sd_diff"]) else format(row["sd_diff"], fmt)
    p = "–" if not math.isfinite(row["p_value"]) else f"{row['p_value']:.3g}"
    return f"{row['mean_diff']:+{fmt}} ± {sd} (n={n}, p={p}, wins {int(row['wins'])}/{n})"


@dataclass
class TextTable:
    """A formatted table: row labels (one or more index columns), column headers, cell texts,
    and the cells to emphasise (the best per column)."""

    title: str
    index_names: list[str]
    columns: list[str]
    rows: list[tuple[tuple[str, ...], list[str]]] = field(default_factory=list)
    bold: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""

    @property
    def empty(self) -> bool:
        return not self.rows

    def to_frame(self) -> pd.DataFrame:
        data = [[*labels, *cells] for labels, cells in self.rows]
        return pd.DataFrame(data, columns=[*self.index_names, *self.columns])

    def to_markdown(self) -> str:
        def esc(text: str) -> str:
            return text.replace("|", "\\|")

        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        if self.empty:
            return "\n".join([*lines, "(no results)", ""])
        lines.append("| " + " | ".join(esc(c) for c in [*self.index_names, *self.columns]) + " |")
        lines.append("|" + "---|" * len(self.index_names) + "---:|" * len(self.columns))
        for i, (labels, cells) in enumerate(self.rows):
            texts = [f"**{c}**" if (i, j) in self.bold and c else c for j, c in enumerate(cells)]
            lines.append("| " + " | ".join(esc(t) for t in [*labels, *texts]) + " |")
        return "\n".join([*lines, ""])

    def to_html(self, table_id: str = "") -> str:
        e = html.escape
        parts = [f"<h3>{e(self.title)}</h3>"]
        if self.note:
            parts.append(f'<p class="note">{e(self.note)}</p>')
        if self.empty:
            return "\n".join([*parts, '<p class="note">(no results)</p>'])
        attr = f' id="{e(table_id)}"' if table_id else ""
        parts.append(f'<table class="results"{attr}><thead><tr>')
        parts += [f'<th scope="col">{e(c)}</th>' for c in [*self.index_names, *self.columns]]
        parts.append("</tr></thead><tbody>")
        for i, (labels, cells) in enumerate(self.rows):
            tds = [f'<th scope="row">{e(x)}</th>' for x in labels]
            tds += [f"<td><strong>{e(c)}</strong></td>" if (i, j) in self.bold and c else f"<td>{e(c)}</td>" for j, c in enumerate(cells)]
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</tbody></table>")
        return "\n".join(parts)


def _best_rows(means: Sequence[float], higher_better: bool) -> list[int]:
    finite = [m for m in means if math.isfinite(m)]
    if not finite:
        return []
    best = max(finite) if higher_better else min(finite)
    return [i for i, m in enumerate(means) if math.isfinite(m) and math.isclose(m, best, rel_tol=1e-12, abs_tol=1e-12)]


def _row_keys(sub: pd.DataFrame, baseline: str) -> list[tuple[str, str, str]]:
    """(dataset, method, variant) in table order: dataset, then method (baseline first), then variant."""
    keys = set(zip(sub["dataset"], sub["method"], sub["variant"], strict=True))
    order = {m: i for i, m in enumerate(method_order({k[1] for k in keys}, baseline))}
    return sorted(keys, key=lambda k: (k[0], order[k[1]], k[2]))


def headline_table(stats: pd.DataFrame, domain: str, headline: Headline, baseline: str = "none") -> TextTable:
    """Rows method (× variant), columns label budget, cells mean ± sd (n seeds); best per column bold."""
    sub = stats[(stats["domain"] == domain) & (stats["metric"] == headline.metric) & (stats["class"] == headline.cls)]
    budgets = sorted(set(sub["budget"]), key=budget_order)
    table = TextTable(
        title=f"{DOMAIN_TITLE.get(domain, domain)}: {headline.label} by label budget (mean ± sd over seeds)",
        index_names=["method"], columns=budgets,
        note=f"{'Higher' if higher_is_better(headline.metric) else 'Lower'} is better; best mean per budget in bold; blank = not run.",
    )
    multi_dataset = sub["dataset"].nunique() > 1
    lookup = {(r["dataset"], r["method"], r["variant"], r["budget"]): r for r in sub.to_dict("records")}
    means: list[list[float]] = []
    for dataset, method, variant in _row_keys(sub, baseline):
        cells, row_means = [], []
        for b in budgets:
            r = lookup.get((dataset, method, variant, b))
            cells.append("" if r is None else format_cell(r["mean"], r["sd"], r["n"], headline.metric))
            row_means.append(math.nan if r is None else r["mean"])
        table.rows.append(((row_label(method, variant, dataset if multi_dataset else ""),), cells))
        means.append(row_means)
    for j in range(len(budgets)):
        for i in _best_rows([m[j] for m in means], higher_is_better(headline.metric)):
            table.bold.add((i, j))
    return table


def per_class_table(stats: pd.DataFrame, domain: str, metric: str, baseline: str = "none") -> TextTable:
    """Rows (class, method × variant), columns label budget; best per class and column bold."""
    sub = stats[(stats["domain"] == domain) & (stats["metric"] == metric) & (stats["class"] != "")]
    budgets = sorted(set(sub["budget"]), key=budget_order)
    table = TextTable(
        title=f"{DOMAIN_TITLE.get(domain, domain)}: {metric} per class (mean ± sd over seeds)",
        index_names=["class", "method"], columns=budgets,
        note="Per-class value of each run (mean over test subjects for MRI), then mean ± sd over seeds; best per class and budget in bold.",
    )
    multi_dataset = sub["dataset"].nunique() > 1
    lookup = {(r["dataset"], r["method"], r["variant"], r["budget"], r["class"]): r for r in sub.to_dict("records")}
    for cls in list(dict.fromkeys(sub["class"])):
        first = len(table.rows)
        means: list[list[float]] = []
        for dataset, method, variant in _row_keys(sub[sub["class"] == cls], baseline):
            cells, row_means = [], []
            for b in budgets:
                r = lookup.get((dataset, method, variant, b, cls))
                cells.append("" if r is None else format_cell(r["mean"], r["sd"], r["n"], metric))
                row_means.append(math.nan if r is None else r["mean"])
            table.rows.append(((cls, row_label(method, variant, dataset if multi_dataset else "")), cells))
            means.append(row_means)
        for j in range(len(budgets)):
            for i in _best_rows([m[j] for m in means], higher_is_better(metric)):
                table.bold.add((first + i, j))
    return table


def gains_table(pairs: pd.DataFrame, domain: str, headline: Headline, baseline: str = "none") -> TextTable:
    """Rows method (× variant), columns label budget, cells the paired gain over ``baseline``."""
    sub = pairs[(pairs["domain"] == domain) & (pairs["metric"] == headline.metric) & (pairs["class"] == headline.cls)]
    budgets = sorted(set(sub["budget"]), key=budget_order)
    direction = "higher" if higher_is_better(headline.metric) else "lower"
    table = TextTable(
        title=f"{DOMAIN_TITLE.get(domain, domain)}: {headline.label} gain over '{baseline}' (paired by seed)",
        index_names=["method"], columns=budgets,
        note=(f"Method minus '{baseline}' (same variant, same budget, same seed): mean ± sd of the differences, "
              f"n pairs, paired t-test p (– with fewer than two pairs or identical differences), seeds where the method is better "
              f"({direction} is better)."),
    )
    multi_dataset = sub["dataset"].nunique() > 1
    lookup = {(r["dataset"], r["method"], r["variant"], r["budget"]): r for r in sub.to_dict("records")}
    for dataset, method, variant in _row_keys(sub, baseline):
        cells = []
        for b in budgets:
            r = lookup.get((dataset, method, variant, b))
            cells.append("" if r is None else format_gain(r, headline.metric))
        table.rows.append(((row_label(method, variant, dataset if multi_dataset else ""),), cells))
    return table


def combined_frame(tables: Sequence[tuple[str, TextTable]], name: str = "metric") -> pd.DataFrame:
    """Several tables stacked into one CSV-ready frame, each row tagged with its ``name``."""
    frames = [t.to_frame().assign(**{name: label}) for label, t in tables if not t.empty]
    if not frames:
        return pd.DataFrame(columns=[name])
    frame = pd.concat(frames, ignore_index=True)
    budget_cols = sorted((c for c in frame.columns if c not in (name, "class", "method")), key=budget_order)
    return frame[[name, *[c for c in ("class", "method") if c in frame.columns], *budget_cols]]


# --------------------------------------------------------------------------------------------
# inputs beside the metrics: overlays and training logs


OVERLAY_KEYS = {"mri": ("image", "truth", "pred", "subject"), "rs": ("rgb", "hillshade", "truth", "pred", "tile")}


def read_overlay(path: str | Path, domain: str) -> dict[str, np.ndarray]:
    """The arrays of an ``overlay.npz``, checked against the domain's contract.

    MRI: image (n, S, H, W) float, truth and pred (n, S, H, W) uint8, subject (n,) str.
    Remote sensing: rgb (n, H, W, 3) float in [0, 1], hillshade (n, H, W), truth (n, H, W)
    uint8 (255 = nodata), pred (n, H, W) uint8, tile (n,) str.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise InputError(path, f"not a readable overlay.npz ({err})") from err
    missing = [k for k in OVERLAY_KEYS.get(domain, ()) if k not in arrays]
    if missing:
        raise InputError(path, f"overlay lacks arrays {missing} (has {sorted(arrays)})")
    if domain == "mri":
        shape = arrays["image"].shape
        if len(shape) != 4 or arrays["truth"].shape != shape or arrays["pred"].shape != shape or len(arrays["subject"]) != shape[0]:
            raise InputError(path, f"expected image, truth, pred of one shape (n, S, H, W) and n subjects; got "
                             f"{shape}, {arrays['truth'].shape}, {arrays['pred'].shape}, {arrays['subject'].shape}")
    elif domain == "rs":
        n, h, w = arrays["truth"].shape if arrays["truth"].ndim == 3 else (-1, -1, -1)
        if (n < 0 or arrays["rgb"].shape != (n, h, w, 3) or arrays["hillshade"].shape != (n, h, w)
                or arrays["pred"].shape != (n, h, w) or len(arrays["tile"]) != n):
            raise InputError(path, f"expected rgb (n, H, W, 3), hillshade, truth, pred (n, H, W) and n tiles; got "
                             f"{arrays['rgb'].shape}, {arrays['hillshade'].shape}, {arrays['truth'].shape}, "
                             f"{arrays['pred'].shape}, {arrays['tile'].shape}")
    return arrays


def find_overlays(runs: Sequence[RunRecord], explicit: Sequence[Path] | None = None) -> dict[RunRecord, Path]:
    """``overlay.npz`` of each run: the given files (matched to the metrics.json beside them) or,
    by default, whichever exist beside the runs' metrics files."""
    if explicit is None:
        return {r: r.source.parent / "overlay.npz" for r in runs if (r.source.parent / "overlay.npz").is_file()}
    by_folder = {r.source.parent.resolve(): r for r in runs}
    found = {}
    for path in explicit:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "overlay file does not exist")
        run = by_folder.get(path.parent.resolve())
        if run is None:
            raise InputError(path, "no --input metrics.json in the same folder, so the run is unknown")
        found[run] = path
    return found


def pick_overlays(found: Mapping[RunRecord, Path], domain: str, budgets: Sequence[str] | None, baseline: str = "none") -> list[tuple[RunRecord, Path]]:
    """Runs to show, one per (method, variant, budget) at its lowest seed; by default the
    smallest and the largest label budget of the domain (the few-label regime and the upper bound)."""
    runs = [r for r in found if r.domain == domain]
    if not runs:
        return []
    available = sorted({r.budget for r in runs}, key=budget_order)
    chosen = [b for b in (budgets or []) if b in available] if budgets else list(dict.fromkeys([available[0], available[-1]]))
    best: dict[tuple[str, str, str, str], RunRecord] = {}
    for r in runs:
        if r.budget in chosen:
            key = (r.dataset, r.method, r.variant, r.budget)
            if key not in best or r.seed < best[key].seed:
                best[key] = r
    order = {m: i for i, m in enumerate(method_order({k[1] for k in best}, baseline))}
    keys = sorted(best, key=lambda k: (k[0], budget_order(k[3]), order[k[1]], k[2]))
    return [(best[k], found[best[k]]) for k in keys]


@dataclass(frozen=True)
class LogRun:
    """One Lightning ``metrics.csv`` and the run it belongs to (from its path and train.json)."""

    path: Path
    domain: str
    stage: str  # finetune, pretrain, or "" when the path does not say
    method: str
    variant: str
    budget: str
    seed: int | None
    label: str  # the run folder below the stage folder, e.g. "GD/budget_1/seed_0"


STAGE_FOLDERS = ("finetune", "pretrain")


def describe_log(path: str | Path) -> LogRun:
    """Who wrote a log: ``<domain>/<stage>/<method>[/<variant>]/(budget_|pct_)<B>/seed_<S>/logs/metrics.csv``
    (finetune) or ``<domain>/<stage>/<name...>/logs/metrics.csv`` (pretrain); a ``train.json``
    in the run folder, when present, overrides method, variant, budget, seed and domain."""
    path = Path(path)
    parts = path.parts
    logs_at = max((i for i, p in enumerate(parts[:-1]) if p == "logs"), default=len(parts) - 1)
    run_dir = Path(*parts[:logs_at]) if logs_at > 0 else path.parent
    stage_at = max((i for i, p in enumerate(parts[:logs_at]) if p in STAGE_FOLDERS), default=-1)
    stage = parts[stage_at] if stage_at >= 0 else ""
    domain = parts[stage_at - 1] if stage_at >= 1 else ""
    run_parts = list(parts[stage_at + 1 : logs_at]) if stage_at >= 0 else [run_dir.name]
    method, variant, budget, seed = (run_parts[0] if run_parts else ""), "", "", None
    for i, p in enumerate(run_parts):
        if p.startswith(("budget_", "pct_")):
            budget = p.split("_", 1)[1]
            variant = "/".join(run_parts[1:i])
        elif p.startswith("seed_") and p[5:].isdigit():
            seed = int(p[5:])
    train = run_dir / "train.json"
    if train.is_file():
        try:
            record = json.loads(train.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if isinstance(record, dict):
            method = str(record.get("method") or method)
            variant = str(record.get("variant") or variant)
            budget = budget_text(record["budget"]) if record.get("budget") is not None else budget
            seed = int(record["seed"]) if isinstance(record.get("seed"), int) and stage != "pretrain" else seed
            domain = str(record.get("domain") or domain)
    return LogRun(path, domain, stage, method, variant, budget, seed, "/".join(run_parts))


def select_finetune_logs(logs: Sequence[LogRun], runs: Sequence[RunRecord], domain: str, baseline: str = "none") -> list[LogRun]:
    """The fine-tuning logs of the evaluated runs of ``domain`` (same method, variant, budget
    and seed), in table order; logs of runs that were never evaluated are left out."""
    cells = {(r.method, r.variant, r.budget, r.seed) for r in runs if r.domain == domain}
    chosen = [lg for lg in logs if lg.domain == domain and lg.stage == "finetune" and (lg.method, lg.variant, lg.budget, lg.seed) in cells]
    order = method_order({lg.method for lg in chosen}, baseline)
    return sorted(chosen, key=lambda lg: (order.index(lg.method), lg.variant, budget_order(lg.budget), lg.seed or 0))


def read_lightning_log(path: str | Path) -> pd.DataFrame:
    """A Lightning ``CSVLogger`` file: one row per logging call, ``step`` plus metric columns
    (``train/loss``, ``val/dice`` ...); a column is empty on rows that logged other metrics."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(path, f"not a readable Lightning metrics.csv ({err})") from err
    if "step" not in frame.columns:
        raise InputError(path, f"Lightning log lacks a 'step' column (has {list(frame.columns)})")
    return frame


def expand_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Files and glob patterns (``**`` allowed) → existing files, sorted within each pattern.

    A pattern that matches nothing only logs a warning (a workflow may have run no such stage);
    a plain path that does not exist is an error.
    """
    out: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                log.warning("no file matches %s", text)
            out += matches
        elif Path(text).is_file():
            out.append(Path(text))
        else:
            raise InputError(text, "log file does not exist")
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------
# the page


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #bbb; }
nav a { margin-right: 1rem; }
table.results { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
table.results th, table.results td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
table.results th[scope=row], table.results thead th:first-child { text-align: left; }
table.results thead th { background: #f0f0f0; }
table.results strong { color: #0b5394; }
p.note { color: #555; font-size: .85rem; margin: .2rem 0; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: .9rem; }
details { margin: 1rem 0; }
table.tidy { border-collapse: collapse; font-size: .75rem; }
table.tidy td, table.tidy th { border: 1px solid #ddd; padding: .1rem .4rem; }
"""


def figure_html(png: Path, caption: str, svg_href: str | None = None) -> str:
    """A figure with the PNG embedded (base64), so the page is one self-contained file."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    link = f' (<a href="{html.escape(svg_href)}">SVG</a>)' if svg_href else ""
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}{link}</figcaption></figure>")


def tidy_html(tidy: pd.DataFrame, max_rows: int) -> str:
    """The tidy table as HTML (values as Python's shortest exact float text)."""
    e = html.escape
    shown = tidy if len(tidy) <= max_rows else tidy.iloc[:max_rows]
    head = "".join(f"<th>{e(c)}</th>" for c in tidy.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = [repr(float(v)) if isinstance(v, float) else str(v) for v in row]
        body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    note = "" if len(shown) == len(tidy) else f'<p class="note">First {max_rows} of {len(tidy)} rows; all rows are in metrics_tidy.csv.</p>'
    return (f"<details><summary>Every number ({len(tidy)} rows: metrics_tidy.csv, metrics_tidy.parquet)</summary>{note}"
            f'<table class="tidy" id="tidy"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></details>')


def page_html(title: str, intro: str, sections: Sequence[tuple[str, str, str]], tidy_block: str) -> str:
    """The whole page: ``sections`` are (anchor, heading, inner HTML), then the tidy table when
    given. No scripts, no external stylesheets, fonts or images."""
    e = html.escape
    if tidy_block:
        sections = [*sections, ("data", "All numbers", tidy_block)]
    nav = " ".join(f'<a href="#{e(a)}">{e(h)}</a>' for a, h, _ in sections)
    body = "\n".join(f'<section id="{e(a)}"><h2>{e(h)}</h2>\n{inner}\n</section>' for a, h, inner in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n<h1>{e(title)}</h1>\n"
            f"<p>{e(intro)}</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n")


# --------------------------------------------------------------------------------------------
# the stage


@dataclass
class DomainTables:
    headline: list[tuple[Headline, TextTable]]
    per_class: list[tuple[str, TextTable]]
    gains: list[tuple[Headline, TextTable]]
    pairs: pd.DataFrame


def domain_headlines(domain: str, stats: pd.DataFrame) -> list[Headline]:
    """The domain's headline metrics (and those of its datasets, :data:`DATASET_HEADLINE`); for an
    unknown domain every run-level metric not of a class."""
    if domain in HEADLINE:
        datasets = sorted(set(stats.loc[stats["domain"] == domain, "dataset"]))
        extra = [h for d in datasets for h in DATASET_HEADLINE.get((domain, d), [])]
        return list(dict.fromkeys(HEADLINE[domain] + extra))
    sub = stats[(stats["domain"] == domain) & (stats["class"] == "")]
    return [Headline(m, "", m) for m in dict.fromkeys(sub["metric"]) if m not in COUNT_FIELDS]


def build_domain_tables(tidy: pd.DataFrame, stats: pd.DataFrame, domain: str, baseline: str = "none") -> DomainTables:
    headlines = domain_headlines(domain, stats)
    pairs = [paired_comparison(tidy[tidy["domain"] == domain], h.metric, h.cls, baseline) for h in headlines]
    pairs_frame = pd.concat(pairs, ignore_index=True) if pairs else paired_comparison(tidy.iloc[:0], "", "", baseline)
    return DomainTables(
        headline=[(h, headline_table(stats, domain, h, baseline)) for h in headlines],
        per_class=[(m, per_class_table(stats, domain, m, baseline)) for m in PER_CLASS.get(domain, [])],
        gains=[(h, gains_table(pairs_frame, domain, h, baseline)) for h in headlines],
        pairs=pairs_frame,
    )


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=Path, nargs="+", required=True, help="metrics.json files of the evaluate stages (any domain)")
    p.add_argument("--out", type=Path, required=True, help="output folder: index.html, tables (CSV, Markdown, HTML, Parquet), plots/")
    p.add_argument("--logs", nargs="*", default=[], help="Lightning metrics.csv files or quoted glob patterns (** allowed) of finetune and pretrain runs")
    p.add_argument("--overlays", type=Path, nargs="*", default=None, help="overlay.npz files; when not given, those beside the --input files")
    p.add_argument("--overlay-budgets", nargs="*", default=None, help="label budgets shown in the overlay figures; when not given, the smallest and the largest")
    p.add_argument("--domains", nargs="*", default=None, help="domains that get the full set of tables and plots even without results; when not given, those in --input")
    p.add_argument("--baseline", default="none", help="the from-scratch method that gains are measured against")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True, help="draw the plots (--no-plots: tables only)")
    p.add_argument("--title", default="Few-label segmentation: results", help="page title")
    p.add_argument("--html-max-rows", type=int, default=50000, help="rows of the tidy table shown in index.html (all are in the CSV)")


def run_report(args: argparse.Namespace) -> None:
    runs, tidy = read_runs(list(args.input))
    stats = seed_summary(tidy)
    domains = list(dict.fromkeys([*(args.domains or []), *(r.domain for r in runs)]))
    logs = [describe_log(p) for p in expand_paths(args.logs or [])]
    overlays = find_overlays(runs, args.overlays) if args.plots else {}
    md = [f"# {args.title}", "", f"{len(runs)} evaluated runs; mean ± sd over seeds (sample SD), n = seeds.", ""]
    html_tables: list[str] = []
    sections: list[tuple[str, str, str]] = []
    with atomic_dir(args.out) as tmp:
        tidy.to_csv(tmp / "metrics_tidy.csv", index=False)
        tidy.to_parquet(tmp / "metrics_tidy.parquet", index=False)
        stats.to_csv(tmp / "seed_stats.csv", index=False)
        all_pairs = []
        for domain in domains:
            tables = build_domain_tables(tidy, stats, domain, args.baseline)
            all_pairs.append(tables.pairs)
            combined_frame([(h.label, t) for h, t in tables.headline]).to_csv(tmp / f"{domain}_summary.csv", index=False)
            combined_frame(list(tables.per_class)).to_csv(tmp / f"{domain}_per_class.csv", index=False)
            combined_frame([(h.label, t) for h, t in tables.gains]).to_csv(tmp / f"{domain}_gains.csv", index=False)
            ordered = [t for _, t in tables.headline] + [t for _, t in tables.gains] + [t for _, t in tables.per_class]
            title = DOMAIN_TITLE.get(domain, domain)
            md += [f"## {title}", "", *[t.to_markdown() for t in ordered]]
            html_tables += [f"<h2>{html.escape(title)}</h2>", *[t.to_html() for t in ordered]]
            inner = [t.to_html() for _, t in tables.headline]
            if args.plots:
                inner += _domain_figures(tmp, domain, stats, runs, overlays, logs, args)
            inner += [t.to_html() for _, t in tables.gains] + [t.to_html() for _, t in tables.per_class]
            sections.append((domain, title, "\n".join(inner)))
        pairs = pd.concat(all_pairs, ignore_index=True) if all_pairs else paired_comparison(tidy.iloc[:0], "", "", args.baseline)
        pairs.to_csv(tmp / "paired_stats.csv", index=False)
        (tmp / "tables.md").write_text("\n".join(md))
        (tmp / "tables.html").write_text(page_html(args.title, "Tables only.", [("tables", "Tables", "\n".join(html_tables))], ""))
        intro = (f"{len(runs)} evaluated runs from {len(args.input)} metrics files. Cells are mean ± sample SD over seeds "
                 f"(n = seeds); gains are paired by seed against '{args.baseline}'. Tables as CSV beside this page.")
        (tmp / "index.html").write_text(page_html(args.title, intro, sections, tidy_html(tidy, args.html_max_rows)))
        write_yaml(tmp / "config.yaml", resolved_args(args))
        # a report is for reading: the temporary folder is private (0700) until renamed
        tmp.chmod(0o755)
    log.info("report of %d runs (%d numbers) in %s", len(runs), len(tidy), args.out)


def _domain_figures(
    tmp: Path, domain: str, stats: pd.DataFrame, runs: Sequence[RunRecord], overlays: Mapping[RunRecord, Path],
    logs: Sequence[LogRun], args: argparse.Namespace,
) -> list[str]:
    """Draw the domain's four figures into ``tmp/plots`` (PNG + SVG); return their HTML.

    The file names are fixed (``<domain>_budget``, ``_overlays``, ``_finetune_curves``,
    ``_pretrain_curves``) so a workflow can declare them; a figure without data says so.
    """
    from segcore import plots  # matplotlib only when drawing

    out = tmp / "plots"
    out.mkdir(exist_ok=True)
    blocks: list[str] = []
    headlines = domain_headlines(domain, stats)
    sub = stats[stats["domain"] == domain]
    order = method_order(sub["method"], args.baseline)

    def emit(name: str, fig: Any, caption: str, has_data: bool) -> None:
        plots.save_figure(fig, out / name)
        if has_data:
            blocks.append(figure_html(out / f"{name}.png", caption, f"plots/{name}.svg"))
        else:
            blocks.append(f'<p class="note">{html.escape(caption)}: no data.</p>')

    has = not sub.empty
    fig = plots.budget_figure(sub, [(h.metric, h.cls, h.label) for h in headlines], method_order=order,
                              xlabel=BUDGET_AXIS.get(domain, "label budget")) if has else plots.message_figure(f"{domain}: no metrics")
    emit(f"{domain}_budget", fig, f"{DOMAIN_TITLE.get(domain, domain)}: headline metrics against label budget, mean ± sd over seeds", has)

    picked = pick_overlays(overlays, domain, args.overlay_budgets, args.baseline)
    rows = [plots.OverlayRow(f"{row_label(r.method, r.variant)}\nbudget {r.budget}, seed {r.seed}", read_overlay(p, domain)) for r, p in picked]
    if rows and domain == "mri":
        fg = next((r.classes for r, _ in picked), ())
        classes = [c for c in fg if c.lower() not in ("background",)] or ["1", "2", "3"]
        fig = plots.mri_overlay_figure(rows, classes)
    elif rows and domain == "rs":
        fig = plots.rs_overlay_figure(rows)
    else:
        fig = plots.message_figure(f"{domain}: no overlay.npz beside the metrics files")
    emit(f"{domain}_overlays", fig, f"{DOMAIN_TITLE.get(domain, domain)}: test examples, truth solid and prediction dashed", bool(rows))

    finetune = select_finetune_logs(logs, runs, domain, args.baseline)
    curves = [plots.Curve(f"budget {lg.budget}", row_label(lg.method, lg.variant), read_lightning_log(lg.path)) for lg in finetune]
    fig = plots.curves_figure(curves, title="fine-tuning: training loss and validation") if curves else plots.message_figure(f"{domain}: no fine-tuning logs")
    emit(f"{domain}_finetune_curves", fig, f"{DOMAIN_TITLE.get(domain, domain)}: fine-tuning curves (Lightning logs), one line per seed, colour = label budget", bool(curves))

    pretrain = sorted((lg for lg in logs if lg.domain == domain and lg.stage == "pretrain"), key=lambda lg: lg.label)
    curves = [plots.Curve(lg.label, "pretraining", read_lightning_log(lg.path)) for lg in pretrain]
    fig = plots.curves_figure(curves, title="pretraining loss") if curves else plots.message_figure(f"{domain}: no pretraining logs")
    emit(f"{domain}_pretrain_curves", fig, f"{DOMAIN_TITLE.get(domain, domain)}: pretraining curves (Lightning logs), one line per run", bool(curves))
    return blocks
