"""SLIC superpixels of the prepared tiles (the hyper-pixels of HPCL, docs/hpcl.md), computed once
by ``rs preprocess`` over the standardised channels."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import slic

PIXELS_PER_SEGMENT_SIDE = 8  # default: one superpixel per 8x8 pixels


def default_n_segments(tile: int) -> int:
    """Superpixels per ``tile`` x ``tile`` tile unless configured: one per 8x8 pixels."""
    return max(1, (tile // PIXELS_PER_SEGMENT_SIDE) ** 2)


def superpixels(x: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC labels (H, W) int32 from 0 of a standardised tile ``x`` (C, H, W)."""
    labels = slic(
        np.moveaxis(x, 0, -1).astype(np.float64),  # (H, W, C)
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=-1,
        start_label=0,
        convert2lab=False,
    )
    return labels.astype(np.int32)
