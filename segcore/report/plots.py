"""Figures of the results report, drawn with matplotlib's object API.

``matplotlib.figure.Figure`` is used directly (no ``pyplot``): no global figure state, no GUI
backend, PNG through Agg and SVG through matplotlib's SVG writer, whatever ``MPLBACKEND`` says.
Every function returns a ``Figure``; :func:`save_figure` writes it as PNG and SVG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import contourpy
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from segcore.report.domains import budget_order

# colour-blind-safe, readable on grey MRI and on RGB composites
CLASS_COLORS = ["#e41a1c", "#4daf4a", "#377eb8", "#ff7f00", "#984ea3", "#a65628"]
LINE_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
VARIANT_STYLES = ["-", "--", ":", "-."]
TRUTH_STYLE, PRED_STYLE = "solid", "dashed"
SLICE_NAMES = ("base", "mid", "apex")


def save_figure(fig: Figure, stem: str | Path, dpi: int = 110) -> dict[str, Path]:
    """Write ``<stem>.png`` and ``<stem>.svg``; returns both paths."""
    stem = Path(stem)
    paths = {"png": stem.with_name(stem.name + ".png"), "svg": stem.with_name(stem.name + ".svg")}
    fig.savefig(paths["png"], dpi=dpi, facecolor="white")
    # the layout is solved; solving it again for the SVG would double the cost
    fig.set_layout_engine("none")
    # no creation date: the same results give the same file
    fig.savefig(paths["svg"], facecolor="white", metadata={"Date": None})
    return paths


def message_figure(text: str) -> Figure:
    """A small figure that only says why there is nothing to draw."""
    fig = Figure(figsize=(6, 1.4))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#555555")
    return fig


def _panel_grid(
    n_rows: int,
    n_cols: int,
    panel_in: tuple[float, float],
    left_in: float,
    right_in: float,
    top_in: float,
    bottom_in: float = 0.55,
    gap_in: tuple[float, float] = (0.6, 0.3),
    sharex: bool | str = False,
) -> tuple[Figure, np.ndarray]:
    """Plot panels of a fixed size in inches, with fixed margins (legend on the right). Fixed,
    not constrained layout: the layout solver costs more than drawing a dozen line panels."""
    width = left_in + n_cols * panel_in[0] + (n_cols - 1) * gap_in[0] + right_in
    height = top_in + n_rows * panel_in[1] + (n_rows - 1) * gap_in[1] + bottom_in
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(
        n_rows,
        n_cols,
        squeeze=False,
        sharex=sharex,
        gridspec_kw={
            "left": left_in / width,
            "right": 1 - right_in / width,
            "top": 1 - top_in / height,
            "bottom": bottom_in / height,
            "wspace": gap_in[0] / panel_in[0],
            "hspace": gap_in[1] / panel_in[1],
        },
    )
    return fig, axes


def budget_figure(
    stats: pd.DataFrame,
    panels: Sequence[tuple[str, str, str]],
    method_order: Sequence[str] = (),
    xlabel: str = "label budget",
) -> Figure:
    """Metric against label budget, one line per method (× variant), error bars = sd over seeds.

    ``stats``: rows of :func:`segcore.report.statistics.seed_summary` (columns method, variant, budget,
    metric, class, mean, sd, n). ``panels``: (metric, class, axis label), one panel each. The
    budget axis is categorical in budget order (``"all"`` last); lines are nudged sideways so
    their error bars do not hide each other.
    """
    budgets = sorted(set(stats["budget"]), key=budget_order)
    xpos = {b: i for i, b in enumerate(budgets)}
    methods = list(dict.fromkeys([*method_order, *sorted(set(stats["method"]))]))
    variants = sorted(set(stats["variant"]))
    lines = [(m, v) for m in methods for v in variants if ((stats["method"] == m) & (stats["variant"] == v)).any()]
    fig, grid = _panel_grid(1, len(panels), (3.6, 2.7), left_in=0.8, right_in=1.9, top_in=0.4, gap_in=(0.8, 0.3))
    axes = grid[0]
    width = 0.3
    for ax, (metric, cls, label) in zip(axes, panels, strict=True):
        sub = stats[(stats["metric"] == metric) & (stats["class"] == cls)]
        for k, (method, variant) in enumerate(lines):
            g = sub[(sub["method"] == method) & (sub["variant"] == variant)]
            if g.empty:
                continue
            g = g.iloc[sorted(range(len(g)), key=lambda r: budget_order(g["budget"].iloc[r]))]
            shift = (k - (len(lines) - 1) / 2) * (width / max(len(lines) - 1, 1)) if len(lines) > 1 else 0.0
            x = np.array([xpos[b] for b in g["budget"]], dtype=float) + shift
            sd = np.nan_to_num(g["sd"].to_numpy(dtype=float), nan=0.0)  # one seed: no bar
            ax.errorbar(
                x,
                g["mean"].to_numpy(dtype=float),
                yerr=sd,
                capsize=3,
                marker="o",
                markersize=4,
                linewidth=1.4,
                color=LINE_COLORS[methods.index(method) % len(LINE_COLORS)],
                linestyle=VARIANT_STYLES[variants.index(variant) % len(VARIANT_STYLES)],
                label=method if not variant else f"{method} [{variant}]",
            )
        ax.set_xticks(range(len(budgets)), budgets)
        ax.set_xlim(-0.5, len(budgets) - 0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", title="method", fontsize=8)
    return fig


@dataclass
class OverlayRow:
    """One run's overlay arrays (an ``overlay.npz``) and the row label shown beside them."""

    label: str
    arrays: Mapping[str, np.ndarray]


def outline_segments(mask: np.ndarray) -> list[np.ndarray]:
    """Boundary of a binary (H, W) mask as polylines of (x, y) = (column, row) pixel
    coordinates: the 0.5 iso-line, as ``ax.contour`` would draw it, without its cost."""
    if not mask.any() or mask.all():
        return []
    gen = contourpy.contour_generator(z=mask.astype(np.float64), line_type=contourpy.LineType.Separate)
    return [np.asarray(line) for line in gen.lines(0.5)]


def _outlines(ax: Axes, masks: Sequence[tuple[np.ndarray, str]], style: str) -> None:
    """Outlines of several (mask, colour) pairs as one line collection with one line style."""
    segments, colors = [], []
    for mask, color in masks:
        lines = outline_segments(mask)
        segments += lines
        colors += [color] * len(lines)
    if segments:
        ax.add_collection(LineCollection(segments, colors=colors, linestyles=style, linewidths=1.0))


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _image_grid(
    n_rows: int, n_cols: int, panel_in: float, left_in: float, top_in: float = 0.45, bottom_in: float = 0.45
) -> tuple[Figure, np.ndarray]:
    """A grid of square image panels with fixed margins (row labels left, titles top, legend
    below). Fixed margins, not constrained layout: with dozens of panels the layout solver
    costs more than the drawing."""
    gap = 0.08 * panel_in
    width = left_in + n_cols * panel_in + (n_cols - 1) * gap + 0.1
    height = top_in + n_rows * panel_in + (n_rows - 1) * gap + bottom_in
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(
        n_rows,
        n_cols,
        squeeze=False,
        gridspec_kw={
            "left": left_in / width,
            "right": 1 - 0.1 / width,
            "top": 1 - top_in / height,
            "bottom": bottom_in / height,
            "wspace": gap / panel_in,
            "hspace": gap / panel_in,
        },
    )
    return fig, axes


def mri_overlay_figure(rows: Sequence[OverlayRow], class_names: Sequence[str], panel_in: float = 1.35) -> Figure:
    """Slices of the test subjects with true (solid) and predicted (dashed) class contours.

    Each row is one run; columns are subject × slice (base, mid, apex). Arrays per row:
    image (n, S, H, W) float, truth and pred (n, S, H, W) uint8 with labels 1..K for
    ``class_names``, subject (n,) str.
    """
    n_cols = max(r.arrays["image"].shape[0] * r.arrays["image"].shape[1] for r in rows)
    fig, axes = _image_grid(len(rows), n_cols, panel_in, left_in=1.2)
    first_subjects = [str(x) for x in np.asarray(rows[0].arrays["subject"])]
    for i, row in enumerate(rows):
        image, truth, pred, subjects = (np.asarray(row.arrays[k]) for k in ("image", "truth", "pred", "subject"))
        # subjects named once, on the first row, unless a run scored other subjects
        titled = i == 0 or [str(x) for x in subjects] != first_subjects
        n, s = image.shape[:2]
        for j in range(n_cols):
            ax = axes[i, j]
            _bare(ax)
            if j >= n * s:
                ax.set_axis_off()
                continue
            subj, sl = divmod(j, s)
            img = image[subj, sl].astype(np.float32)
            lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            colors = [CLASS_COLORS[k % len(CLASS_COLORS)] for k in range(len(class_names))]
            _outlines(ax, [(truth[subj, sl] == k + 1, c) for k, c in enumerate(colors)], TRUTH_STYLE)
            _outlines(ax, [(pred[subj, sl] == k + 1, c) for k, c in enumerate(colors)], PRED_STYLE)
            if titled:
                name = SLICE_NAMES[sl] if s == len(SLICE_NAMES) else f"slice {sl}"
                ax.set_title(f"{subjects[subj]}\n{name}", fontsize=7)
            if j == 0:
                ax.set_ylabel(row.label, fontsize=8)
    handles = [Line2D([], [], color=CLASS_COLORS[k % len(CLASS_COLORS)], label=c) for k, c in enumerate(class_names)]
    handles += [
        Line2D([], [], color="black", linestyle=TRUTH_STYLE, label="truth"),
        Line2D([], [], color="black", linestyle=PRED_STYLE, label="prediction"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig


def rs_overlay_figure(
    rows: Sequence[OverlayRow], max_tiles: int = 4, panel_in: float = 1.8, ignore_index: int = 255
) -> Figure:
    """Test tiles as RGB composite and hillshade with true (solid) and predicted (dashed)
    landslide outlines; nodata (truth == ``ignore_index``) greyed out.

    Each run takes two rows (RGB, hillshade); columns are tiles. Arrays per row: rgb
    (n, H, W, 3) in [0, 1], hillshade (n, H, W), truth (n, H, W) uint8, pred (n, H, W) uint8,
    tile (n,) str; class 1 is the landslide.
    """
    n_cols = min(max_tiles, max(len(r.arrays["tile"]) for r in rows))
    fig, axes = _image_grid(2 * len(rows), n_cols, panel_in, left_in=1.3)
    truth_color, pred_color = "#ffd700", "#e41a1c"
    for i, row in enumerate(rows):
        rgb, shade, truth, pred, tiles = (
            np.asarray(row.arrays[k]) for k in ("rgb", "hillshade", "truth", "pred", "tile")
        )
        for j in range(n_cols):
            for r, (view, name) in enumerate(((rgb, "RGB"), (shade, "hillshade"))):
                ax = axes[2 * i + r, j]
                _bare(ax)
                if j >= len(tiles):
                    ax.set_axis_off()
                    continue
                if name == "RGB":
                    ax.imshow(np.clip(view[j], 0.0, 1.0), interpolation="nearest")
                else:
                    ax.imshow(view[j], cmap="gray", interpolation="nearest")
                nodata = truth[j] == ignore_index
                if nodata.any():
                    ax.imshow(
                        np.ma.masked_where(~nodata, np.ones(nodata.shape)),
                        cmap="Greys",
                        vmin=0,
                        vmax=1.5,
                        alpha=0.7,
                        interpolation="nearest",
                    )
                _outlines(ax, [((truth[j] == 1) & ~nodata, truth_color)], TRUTH_STYLE)
                _outlines(ax, [(pred[j] == 1, pred_color)], PRED_STYLE)
                if i == 0 and r == 0:
                    ax.set_title(str(tiles[j]), fontsize=7)
                if j == 0:
                    ax.set_ylabel(f"{row.label}\n{name}", fontsize=8)
    handles = [
        Line2D([], [], color=truth_color, linestyle=TRUTH_STYLE, label="landslide (truth)"),
        Line2D([], [], color=pred_color, linestyle=PRED_STYLE, label="landslide (prediction)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    return fig


@dataclass
class Curve:
    """One Lightning log drawn as lines: ``frame`` is its metrics.csv (``step`` + metric columns);
    curves with the same ``label`` share a colour and a legend entry; ``group`` picks the column
    of panels."""

    label: str
    group: str
    frame: pd.DataFrame


def _metric_columns(curves: Sequence[Curve]) -> list[str]:
    """train/* before val/* before others; within each, losses first."""
    cols = list(dict.fromkeys(c for cv in curves for c in cv.frame.columns if c not in ("step", "epoch")))
    cols = [c for c in cols if any(cv.frame[c].notna().any() for cv in curves if c in cv.frame.columns)]

    def key(c: str) -> tuple[int, int, str]:
        prefix = 0 if c.startswith("train") else 1 if c.startswith("val") else 2
        return (prefix, 0 if c.endswith("loss") else 1, c)

    return sorted(cols, key=key)


def curves_figure(curves: Sequence[Curve], columns: Sequence[str] | None = None, title: str = "") -> Figure:
    """Training and validation curves: a row of panels per logged metric, a column per group,
    a line per log (against the optimisation step). Validation points get markers: there are few."""
    columns = list(columns) if columns is not None else _metric_columns(curves)
    groups = list(dict.fromkeys(c.group for c in curves))
    labels = list(dict.fromkeys(c.label for c in curves))
    fig, axes = _panel_grid(
        max(len(columns), 1), len(groups), (3.0, 1.9), left_in=0.9, right_in=1.6, top_in=0.75, sharex="col"
    )
    for j, group in enumerate(groups):
        axes[0, j].set_title(group, fontsize=9)
        for i, col in enumerate(columns):
            ax = axes[i, j]
            for cv in curves:
                if cv.group != group or col not in cv.frame.columns:
                    continue
                d = cv.frame[["step", col]].dropna()
                if d.empty:
                    continue
                ax.plot(
                    d["step"].to_numpy(),
                    d[col].to_numpy(dtype=float),
                    color=LINE_COLORS[labels.index(cv.label) % len(LINE_COLORS)],
                    linewidth=1.0,
                    alpha=0.85,
                    marker="o" if col.startswith("val") else None,
                    markersize=2.5,
                    label=cv.label,
                )
            if j == 0:
                ax.set_ylabel(col, fontsize=8)
            if i == len(columns) - 1:
                ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=LINE_COLORS[k % len(LINE_COLORS)], label=lab) for k, lab in enumerate(labels)]
    fig.legend(handles=handles, loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


@dataclass
class SelectionLine:
    """One fine-tuning run's validation scores (``values`` at ``steps``) in the panel of its
    cell (``row``: method [variant]; ``column``: label budget); ``label`` names the run (its
    seed) and picks the colour; the selected step ``best_step`` (None: not recorded) is marked."""

    row: str
    column: str
    label: str
    steps: Sequence[int]
    values: Sequence[float]
    best_step: int | None
    best_value: float


SELECTED_MARKER = "*"


def selection_figure(lines: Sequence[SelectionLine], ylabel: str = "validation score", title: str = "") -> Figure:
    """Model selection in fine-tuning: a panel per cell (rows method × variant in the given
    order, columns label budget in budget order), a line per run through its validation scores, and a star on
    the step whose weights were kept. Panels of cells that were not run stay empty."""
    rows = list(dict.fromkeys(line.row for line in lines))
    cols = sorted(dict.fromkeys(line.column for line in lines), key=budget_order)
    labels = list(dict.fromkeys(line.label for line in lines))
    fig, axes = _panel_grid(len(rows), len(cols), (2.8, 1.9), left_in=0.9, right_in=1.7, top_in=0.8, gap_in=(0.6, 0.75))
    used: set[tuple[int, int]] = set()
    for line in lines:
        i, j = rows.index(line.row), cols.index(line.column)
        ax = axes[i, j]
        color = LINE_COLORS[labels.index(line.label) % len(LINE_COLORS)]
        ax.plot(
            np.asarray(line.steps),
            np.asarray(line.values, dtype=float),
            color=color,
            linewidth=1.0,
            marker="o",
            markersize=2.5,
        )
        if line.best_step is not None and math.isfinite(line.best_value):
            ax.plot(
                [line.best_step],
                [line.best_value],
                linestyle="none",
                marker=SELECTED_MARKER,
                markersize=11,
                color=color,
                markeredgecolor="black",
                markeredgewidth=0.6,
                zorder=3,
            )
        if (i, j) not in used:
            used.add((i, j))
            ax.set_title(f"{line.row}, budget {line.column}", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if (i, j) not in used:
                axes[i, j].set_axis_off()
    handles = [Line2D([], [], color=LINE_COLORS[k % len(LINE_COLORS)], label=lab) for k, lab in enumerate(labels)]
    handles.append(
        Line2D(
            [],
            [],
            linestyle="none",
            marker=SELECTED_MARKER,
            markersize=10,
            color="#999999",
            markeredgecolor="black",
            label="selected step",
        )
    )
    fig.legend(handles=handles, loc="center right", fontsize=8)  # in the right margin, clear of the title
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
