"""Intensity normalisation of MRI volumes, shared by preprocessing and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# the intensity range kept per volume, in percentiles (clipped outside, scaled to [0, 1] inside)
DEFAULT_PERCENTILES = (0.5, 99.5)


def percentile_scale(
    data: np.ndarray, percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> tuple[np.ndarray, float, float]:
    """``data`` clipped to its ``percentiles`` and scaled to [0, 1] (float32), and the two
    intensities (lo, hi) that became 0 and 1; all zeros for a constant volume."""
    lo, hi = (float(v) for v in np.percentile(data, percentiles))
    if hi <= lo:
        return np.zeros_like(data, dtype=np.float32), lo, hi
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), lo, hi
