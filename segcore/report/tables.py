"""Text tables of the report: building them from the statistics and writing them as Markdown,
HTML and CSV-ready frames."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from segcore.report.domains import (
    DATASET_HEADLINE,
    DOMAIN_TITLE,
    HEADLINE,
    PER_CLASS,
    Headline,
    budget_order,
    higher_is_better,
    method_order,
    row_label,
    semi_baseline,
)
from segcore.report.statistics import paired_comparison
from segcore.report.tidy import COUNT_FIELDS


def format_value(value: float, metric: str) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2f}" if metric.startswith("hd") else f"{value:.3f}"


def format_cell(mean: float, sd: float, n: int, metric: str = "") -> str:
    """``"0.812 ± 0.034 (n=3)"``; the SD shows as ``–`` with one seed."""
    if n == 0:
        return "–"
    return f"{format_value(mean, metric)} ± {format_value(sd, metric)} (n={n})"


SINGLE_SET_MARK = "‡"
# a cell most of whose seeds kept the weights of their last validation: the score may still have
# been rising when training stopped (segcore.stages.finetune.selection_record, docs/report.md)
RISING_MARK = "↗"


def format_gain(row: Mapping[str, Any], metric: str) -> str:
    """``"+0.090 ± 0.046 (n=3, p=0.0766, wins 3/3)"``; where runs repeat a labeled set, the
    split of the spread (``"; 2 labeled sets: sd 0.030 between, 0.020 within (69% between)"``
    inside the brackets), and where one labeled set carries the gain, the mark and the mean gain
    without that set (``" ‡ one labeled set carries it: +0.010 without set 2"``)."""
    n = int(row["n_pairs"])
    if n == 0:
        return "no paired seeds"
    fmt = ".2f" if metric.startswith("hd") else ".3f"
    sd = "–" if not math.isfinite(row["sd_diff"]) else format(row["sd_diff"], fmt)
    p = "–" if not math.isfinite(row["p_value"]) else f"{row['p_value']:.3g}"
    text = f"{row['mean_diff']:+{fmt}} ± {sd} (n={n}, p={p}, wins {int(row['wins'])}/{n}"
    share = float(row.get("share_between", math.nan))
    if math.isfinite(share):
        text += (
            f"; {int(row['n_sets'])} labeled sets: sd {row['sd_between']:{fmt}} between, "
            f"{row['sd_within']:{fmt}} within ({share:.0%} between)"
        )
    text += ")"
    if row.get("single_set"):
        without = row["mean_without_best"]
        text += f" {SINGLE_SET_MARK} one labeled set carries it: {without:+{fmt}} without set {row['best_set']}"
    return text


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
            tds += [
                f"<td><strong>{e(c)}</strong></td>" if (i, j) in self.bold and c else f"<td>{e(c)}</td>"
                for j, c in enumerate(cells)
            ]
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
        index_names=["method"],
        columns=budgets,
        note=(
            f"{'Higher' if higher_is_better(headline.metric) else 'Lower'} is better; best mean per budget "
            "in bold; blank = not run."
        ),
    )
    multi_dataset = sub["dataset"].nunique() > 1
    lookup = {(r["dataset"], r["method"], r["variant"], r["budget"]): r for r in sub.to_dict("records")}
    ends = stats[(stats["domain"] == domain) & (stats["metric"] == "at_last_validation")]
    at_end = {(r["dataset"], r["method"], r["variant"], r["budget"]): r for r in ends.to_dict("records")}
    marked = False
    means: list[list[float]] = []
    for dataset, method, variant in _row_keys(sub, baseline):
        cells, row_means = [], []
        for b in budgets:
            r = lookup.get((dataset, method, variant, b))
            cell = "" if r is None else format_cell(r["mean"], r["sd"], r["n"], headline.metric)
            rising = at_end.get((dataset, method, variant, b))
            if r is not None and rising is not None and rising["mean"] > 0.5:
                cell += f" {RISING_MARK}"
                marked = True
            cells.append(cell)
            row_means.append(math.nan if r is None else r["mean"])
        table.rows.append(((row_label(method, variant, dataset if multi_dataset else ""),), cells))
        means.append(row_means)
    if marked:
        table.note += (
            f" {RISING_MARK}: in most seeds the best validation score came at the last validation, so the "
            "score may still have been rising: train longer before reading a difference as a better model "
            "rather than a faster start (docs/report.md)."
        )
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
        index_names=["class", "method"],
        columns=budgets,
        note=(
            "Per-class value of each run (mean over test subjects for MRI), then mean ± sd over seeds; best "
            "per class and budget in bold."
        ),
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


def gains_table(
    pairs: pd.DataFrame, domain: str, headline: Headline, baseline: str = "none", semi: bool = False
) -> TextTable:
    """Rows method (× variant), columns label budget, cells the paired gain over ``baseline``;
    with ``semi``, each semi-supervised method's gain over the same init without the mode (the
    pairs of :func:`~segcore.report.statistics.paired_comparison` with ``baseline_of``)."""
    sub = pairs[(pairs["domain"] == domain) & (pairs["metric"] == headline.metric) & (pairs["class"] == headline.cls)]
    budgets = sorted(set(sub["budget"]), key=budget_order)
    direction = "higher" if higher_is_better(headline.metric) else "lower"
    title = f"{DOMAIN_TITLE.get(domain, domain)}: {headline.label} gain over '{baseline}' (paired by seed)"
    against = f"'{baseline}'"
    if semi:
        title = (
            f"{DOMAIN_TITLE.get(domain, domain)}: {headline.label} gain of semi-supervised fine-tuning over the same "
            "init without it (paired by seed)"
        )
        against = "the same init without the semi-supervised mode (none+fixmatch − none, GD+LR+fixmatch − GD+LR)"
    table = TextTable(
        title=title,
        index_names=["method"],
        columns=budgets,
        note=(
            f"Method minus {against} (same variant, same budget, same seed): mean ± sd of the differences, "
            "n pairs, paired t-test p (– with fewer than two pairs or identical differences), seeds where "
            "the method is better "
            f"({direction} is better). Where runs repeat a labeled set (same label_seed, other seed): sd of "
            "the differences "
            "between labeled sets and within a set, run to run (random-effects estimates). "
            f"{SINGLE_SET_MARK}: one labeled set "
            f"carries the gain: without the set of the largest gain the mean gain falls below half or changes sign "
            f"(docs/report.md)."
        ),
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


@dataclass
class DomainTables:
    headline: list[tuple[Headline, TextTable]]
    per_class: list[tuple[str, TextTable]]
    gains: list[tuple[Headline, TextTable]]
    pairs: pd.DataFrame
    semi_gains: list[tuple[Headline, TextTable]] = field(default_factory=list)
    semi_pairs: pd.DataFrame | None = None


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
    own = tidy[tidy["domain"] == domain]
    pairs = [paired_comparison(own, h.metric, h.cls, baseline) for h in headlines]
    pairs_frame = pd.concat(pairs, ignore_index=True) if pairs else paired_comparison(tidy.iloc[:0], "", "", baseline)
    semi = [paired_comparison(own, h.metric, h.cls, baseline, baseline_of=semi_baseline) for h in headlines]
    semi_frame = pd.concat(semi, ignore_index=True) if semi else pairs_frame.iloc[:0]
    return DomainTables(
        headline=[(h, headline_table(stats, domain, h, baseline)) for h in headlines],
        per_class=[(m, per_class_table(stats, domain, m, baseline)) for m in PER_CLASS.get(domain, [])],
        gains=[(h, gains_table(pairs_frame, domain, h, baseline)) for h in headlines],
        pairs=pairs_frame,
        semi_gains=[(h, gains_table(semi_frame, domain, h, baseline, semi=True)) for h in headlines],
        semi_pairs=semi_frame,
    )
