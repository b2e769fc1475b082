"""Typed options of the report stage (``segpretrain report``); light, checked before pandas loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segcore.config import option

# a pretraining stage whose loss falls below this fraction of chance within this fraction of its
# first steps has collapsed: its pretext task is trivially solved (docs/report.md)
COLLAPSE_FRACTION = 0.05
COLLAPSE_WINDOW = 0.25


@dataclass
class ReportConfig:
    input: list[Path] = option(None, "metrics.json files of the evaluate stages (any domain)", required=True)
    out: Path = option(None, "output folder: index.html, tables (CSV, Markdown, HTML, Parquet), plots/", required=True)
    logs: list[str] = option(
        default_factory=list,
        nargs="*",
        help="Lightning metrics.csv files or quoted glob patterns (** allowed) of finetune and pretrain runs",
    )
    pretrain: list[str] = option(
        default_factory=list,
        nargs="*",
        help="train.json files or quoted glob patterns of the pretraining stages: pretext loss against chance",
    )
    collapse_fraction: float = option(
        COLLAPSE_FRACTION, "a pretraining stage whose loss falls below this fraction of chance ...", gt=0, lt=1
    )
    collapse_window: float = option(
        COLLAPSE_WINDOW,
        "... within this fraction of its first steps has collapsed (a trivially solved pretext task)",
        gt=0,
        le=1,
    )
    benchmarks: list[str] = option(
        default_factory=list,
        nargs="*",
        help="Snakemake benchmark TSV files or quoted glob patterns (<dir>/benchmarks/<rule>/*.tsv): time and memory "
        "per rule",
    )
    overlays: list[Path] | None = option(
        None, "overlay.npz files; when not given, those beside the --input files", nargs="*"
    )
    overlay_budgets: list[str] | None = option(
        None, "label budgets shown in the overlay figures; when not given, the smallest and the largest", nargs="*"
    )
    domains: list[str] | None = option(
        None,
        "domains that get the full set of tables and plots even without results; when not given, those in --input",
        nargs="*",
    )
    baseline: str = option("none", "the from-scratch method that gains are measured against")
    plots: bool = option(True, "draw the plots (--no-plots: tables only)", action="bool")
    title: str = option("Few-label segmentation: results", "page title")
    html_max_rows: int = option(50000, "rows of the tidy table shown in index.html (all are in the CSV)", ge=0)
