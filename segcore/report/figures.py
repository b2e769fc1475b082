"""The figures of a domain's section: drawn into ``plots/`` with fixed names, returned as HTML."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segcore.report.config import ReportConfig
from segcore.report.domains import BUDGET_AXIS, DOMAIN_TITLE, method_order, row_label
from segcore.report.logs import LogRun, read_lightning_log, read_selection, select_finetune_logs
from segcore.report.overlays import pick_overlays, read_overlay
from segcore.report.page import figure_html
from segcore.report.tables import domain_headlines
from segcore.report.tidy import RunRecord


def domain_figures(
    tmp: Path,
    domain: str,
    stats: pd.DataFrame,
    runs: Sequence[RunRecord],
    overlays: Mapping[RunRecord, Path],
    logs: Sequence[LogRun],
    cfg: ReportConfig,
) -> list[str]:
    """Draw the domain's figures into ``tmp/plots`` (PNG + SVG); return their HTML.

    The file names are fixed (``<domain>_budget``, ``_overlays``, ``_finetune_curves``,
    ``_selection``, ``_pretrain_curves``) so a workflow can declare them; a figure without data
    says so.
    """
    from segcore.report import plots  # matplotlib only when drawing

    out = tmp / "plots"
    out.mkdir(exist_ok=True)
    blocks: list[str] = []
    headlines = domain_headlines(domain, stats)
    sub = stats[stats["domain"] == domain]
    order = method_order(sub["method"], cfg.baseline)

    def emit(name: str, fig: Any, caption: str, has_data: bool) -> None:
        plots.save_figure(fig, out / name)
        if has_data:
            blocks.append(figure_html(out / f"{name}.png", caption, f"plots/{name}.svg"))
        else:
            blocks.append(f'<p class="note">{html.escape(caption)}: no data.</p>')

    has = not sub.empty
    fig = (
        plots.budget_figure(
            sub,
            [(h.metric, h.cls, h.label) for h in headlines],
            method_order=order,
            xlabel=BUDGET_AXIS.get(domain, "label budget"),
        )
        if has
        else plots.message_figure(f"{domain}: no metrics")
    )
    emit(
        f"{domain}_budget",
        fig,
        f"{DOMAIN_TITLE.get(domain, domain)}: headline metrics against label budget, mean ± sd over seeds",
        has,
    )

    picked = pick_overlays(overlays, domain, cfg.overlay_budgets, cfg.baseline)
    rows = [
        plots.OverlayRow(f"{row_label(r.method, r.variant)}\nbudget {r.budget}, seed {r.seed}", read_overlay(p, domain))
        for r, p in picked
    ]
    if rows and domain == "mri":
        fg = next((r.classes for r, _ in picked), ())
        classes = [c for c in fg if c.lower() not in ("background",)] or ["1", "2", "3"]
        fig = plots.mri_overlay_figure(rows, classes)
    elif rows and domain == "rs":
        fig = plots.rs_overlay_figure(rows)
    else:
        fig = plots.message_figure(f"{domain}: no overlay.npz beside the metrics files")
    emit(
        f"{domain}_overlays",
        fig,
        f"{DOMAIN_TITLE.get(domain, domain)}: test examples, truth solid and prediction dashed",
        bool(rows),
    )

    finetune = select_finetune_logs(logs, runs, domain, cfg.baseline)
    curves = [
        plots.Curve(f"budget {lg.budget}", row_label(lg.method, lg.variant), read_lightning_log(lg.path))
        for lg in finetune
    ]
    fig = (
        plots.curves_figure(curves, title="fine-tuning: training loss and validation")
        if curves
        else plots.message_figure(f"{domain}: no fine-tuning logs")
    )
    emit(
        f"{domain}_finetune_curves",
        fig,
        f"{DOMAIN_TITLE.get(domain, domain)}: fine-tuning curves (Lightning logs), one line per seed, colour "
        "= label budget",
        bool(curves),
    )

    picks = [sel for sel in (read_selection(lg) for lg in finetune) if sel is not None]
    lines = [
        plots.SelectionLine(
            row_label(sel.run.method, sel.run.variant),
            sel.run.budget,
            f"seed {sel.run.seed}",
            sel.steps,
            sel.values,
            sel.best_step,
            sel.best_value,
        )
        for sel in picks
    ]
    metrics = ", ".join(dict.fromkeys(sel.metric for sel in picks)) or "validation score"
    fig = (
        plots.selection_figure(lines, ylabel=metrics, title="fine-tuning: validation score and the selected step")
        if lines
        else plots.message_figure(f"{domain}: no train.json with a validation history")
    )
    emit(
        f"{domain}_selection",
        fig,
        f"{DOMAIN_TITLE.get(domain, domain)}: model selection in fine-tuning, one panel per cell: the validation "
        f"score ({metrics}, train.json history) at each validation, one line per seed; the star marks the "
        "step whose weights were kept "
        "(the first best score)",
        bool(lines),
    )

    pretrain = sorted((lg for lg in logs if lg.domain == domain and lg.stage == "pretrain"), key=lambda lg: lg.label)
    curves = [plots.Curve(lg.label, "pretraining", read_lightning_log(lg.path)) for lg in pretrain]
    fig = (
        plots.curves_figure(curves, title="pretraining loss")
        if curves
        else plots.message_figure(f"{domain}: no pretraining logs")
    )
    emit(
        f"{domain}_pretrain_curves",
        fig,
        f"{DOMAIN_TITLE.get(domain, domain)}: pretraining curves (Lightning logs), one line per run",
        bool(curves),
    )
    return blocks
