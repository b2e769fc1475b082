"""The overlay.npz files beside metrics.json: reading them, matching them to runs, picking the
runs shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segcore.errors import InputError
from segcore.report.domains import budget_order, method_order
from segcore.report.tidy import RunRecord

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
        if (
            len(shape) != 4
            or arrays["truth"].shape != shape
            or arrays["pred"].shape != shape
            or len(arrays["subject"]) != shape[0]
        ):
            raise InputError(
                path,
                f"expected image, truth, pred of one shape (n, S, H, W) and n subjects; got "
                f"{shape}, {arrays['truth'].shape}, {arrays['pred'].shape}, {arrays['subject'].shape}",
            )
    elif domain == "rs":
        n, h, w = arrays["truth"].shape if arrays["truth"].ndim == 3 else (-1, -1, -1)
        if (
            n < 0
            or arrays["rgb"].shape != (n, h, w, 3)
            or arrays["hillshade"].shape != (n, h, w)
            or arrays["pred"].shape != (n, h, w)
            or len(arrays["tile"]) != n
        ):
            raise InputError(
                path,
                f"expected rgb (n, H, W, 3), hillshade, truth, pred (n, H, W) and n tiles; got "
                f"{arrays['rgb'].shape}, {arrays['hillshade'].shape}, {arrays['truth'].shape}, "
                f"{arrays['pred'].shape}, {arrays['tile'].shape}",
            )
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


def pick_overlays(
    found: Mapping[RunRecord, Path], domain: str, budgets: Sequence[str] | None, baseline: str = "none"
) -> list[tuple[RunRecord, Path]]:
    """Runs to show, one per (method, variant, budget) at its lowest seed; by default the
    smallest and the largest label budget of the domain (the few-label regime and the upper bound)."""
    runs = [r for r in found if r.domain == domain]
    if not runs:
        return []
    available = sorted({r.budget for r in runs}, key=budget_order)
    chosen = (
        [b for b in (budgets or []) if b in available]
        if budgets
        else list(dict.fromkeys([available[0], available[-1]]))
    )
    best: dict[tuple[str, str, str, str], RunRecord] = {}
    for r in runs:
        if r.budget in chosen:
            key = (r.dataset, r.method, r.variant, r.budget)
            if key not in best or r.seed < best[key].seed:
                best[key] = r
    order = {m: i for i, m in enumerate(method_order({k[1] for k in best}, baseline))}
    keys = sorted(best, key=lambda k: (k[0], budget_order(k[3]), order[k[1]], k[2]))
    return [(best[k], found[best[k]]) for k in keys]
