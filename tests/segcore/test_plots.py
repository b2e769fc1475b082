"""Report figures: each is drawn, saved as PNG and SVG, and shows something (not a blank image)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from segcore.report import plots
from segcore.report.statistics import seed_summary
from tests.data.report import make


def assert_nontrivial_png(path, min_bytes: int = 3000) -> np.ndarray:
    """A real PNG of some size whose pixels vary (several colours, real contrast)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > min_bytes
    pixels = imread(path)[..., :3]
    assert pixels.std() > 0.05
    assert len(np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 20
    return pixels


def save_and_check(fig, tmp_path, name: str) -> np.ndarray:
    paths = plots.save_figure(fig, tmp_path / name, dpi=72)  # low resolution: quicker, still checks the drawing
    assert paths == {"png": tmp_path / f"{name}.png", "svg": tmp_path / f"{name}.svg"}
    svg = paths["svg"].read_text()
    assert "<svg" in svg and len(svg) > 2000
    return assert_nontrivial_png(paths["png"])


def test_budget_figure(tmp_path):
    stats = seed_summary(make_tidy(tmp_path))
    fig = plots.budget_figure(
        stats[stats.domain == "rs"], [("miou", "", "mIoU"), ("f1", "", "landslide F1")], ["none"], "label budget (%)"
    )
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["mIoU", "landslide F1"]
    # one line per method × variant, budgets as ordered categories
    assert len(axes[0].containers) == 4
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["5", "100"]
    save_and_check(fig, tmp_path, "budget")


def make_tidy(tmp_path) -> pd.DataFrame:
    from segcore.report.tidy import load_metrics

    files = [
        make.rs_run(tmp_path / "res", m, f, p, s, overlay=False)
        for (m, f, p), seeds in make.RS_CM.items()
        for s in seeds
    ]
    return load_metrics(files)


def test_mri_overlay_figure_draws_truth_and_prediction(tmp_path):
    rows = [
        plots.OverlayRow("none\nbudget 1", make.mri_overlay(0)),
        plots.OverlayRow("GD\nbudget 1", make.mri_overlay(1)),
    ]
    fig = plots.mri_overlay_figure(rows, make.MRI_CLASSES)
    assert len(fig.axes) == 2 * 6  # 2 runs × (2 subjects × 3 slices)
    assert fig.axes[0].get_title() == "s01\nbase" and fig.axes[5].get_title() == "s02\napex"
    # every panel: a truth and a prediction outline collection
    assert all(len(ax.collections) == 2 for ax in fig.axes)
    save_and_check(fig, tmp_path, "mri_overlay")


def test_rs_overlay_figure_marks_nodata_and_outlines(tmp_path):
    fig = plots.rs_overlay_figure([plots.OverlayRow("hpcl [dual]", make.rs_overlay(0))], max_tiles=2)
    assert len(fig.axes) == 2 * 2  # RGB and hillshade rows, 2 of the 3 tiles
    assert all(len(ax.images) == 2 for ax in fig.axes)  # the view + the nodata shading
    pixels = save_and_check(fig, tmp_path, "rs_overlay")
    assert pixels.shape[2] == 3


def test_curves_figure_from_lightning_logs(tmp_path):
    logs = [make.lightning_log(tmp_path / f"s{s}" / "metrics.csv", "val/dice", s) for s in (0, 1)]
    curves = [plots.Curve("budget 1", "none", pd.read_csv(p)) for p in logs] + [
        plots.Curve("budget 2", "GD", pd.read_csv(logs[0]))
    ]
    fig = plots.curves_figure(curves, title="fine-tuning")
    axes = np.array(fig.axes).reshape(3, 2)  # rows train/loss, val/loss, val/dice; columns none, GD
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["train/loss", "val/loss", "val/dice"]
    assert len(axes[0, 0].lines) == 2 and len(axes[0, 1].lines) == 1
    # validation rows are sparse in a Lightning log: only their own steps are drawn
    assert axes[2, 0].lines[0].get_xdata().tolist() == [19, 39, 59]
    save_and_check(fig, tmp_path, "curves")


def test_message_figure_is_small_but_not_blank(tmp_path):
    plots.save_figure(plots.message_figure("no overlay.npz"), tmp_path / "msg")
    pixels = imread(tmp_path / "msg.png")[..., :3]
    assert pixels.min() < 0.5 < pixels.max()


def test_outline_segments_follow_the_pixel_boundary():
    mask = np.zeros((8, 10), bool)
    mask[2:5, 3:7] = True  # rows 2..4, columns 3..6
    (line,) = plots.outline_segments(mask)
    # the 0.5 iso-line runs halfway between pixel centres: x (columns) 2.5..6.5, y (rows) 1.5..4.5
    assert line[:, 0].min() == pytest.approx(2.5) and line[:, 0].max() == pytest.approx(6.5)
    assert line[:, 1].min() == pytest.approx(1.5) and line[:, 1].max() == pytest.approx(4.5)
    assert np.allclose(line[0], line[-1])  # closed
    assert plots.outline_segments(np.zeros((4, 4), bool)) == []
    assert plots.outline_segments(np.ones((4, 4), bool)) == []


def test_selection_figure_marks_the_selected_step(tmp_path):
    lines = [
        plots.SelectionLine("none", "2", "seed 0", [20, 40, 60], [0.5, 0.7, 0.6], 40, 0.7),
        plots.SelectionLine("none", "1", "seed 0", [20, 40, 60], [0.4, 0.5, 0.6], 60, 0.6),
        plots.SelectionLine("none", "1", "seed 1", [20, 40, 60], [0.45, 0.55, 0.5], 40, 0.55),
        plots.SelectionLine(
            "GD", "1", "seed 0", [20, 40, 60], [0.5, float("nan"), 0.6], None, float("nan")
        ),  # no best_step recorded
    ]
    fig = plots.selection_figure(lines, ylabel="val_dice")
    axes = np.array(fig.axes[:4]).reshape(2, 2)  # rows none, GD; columns budget 1, 2 (budget order, not line order)
    assert [ax.get_title() for ax in axes[0]] == ["none, budget 1", "none, budget 2"] and axes[
        1, 0
    ].get_title() == "GD, budget 1"
    assert not axes[1, 1].axison  # GD was not run at budget 2
    stars = [
        (ln.get_xdata().tolist(), ln.get_ydata().tolist())
        for ln in axes[0, 0].lines
        if ln.get_marker() == plots.SELECTED_MARKER
    ]
    assert stars == [([60], [0.6]), ([40], [0.55])]
    assert not [ln for ln in axes[1, 0].lines if ln.get_marker() == plots.SELECTED_MARKER]
    save_and_check(fig, tmp_path, "selection")
