"""Per-channel normalisation statistics of ``rs preprocess``: mean and standard deviation over the
valid pixels of the training tiles only (each pixel of the union of a scene's training tiles
counted once), accumulated one scene at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.windows import Window

from rs.scene_channels import SceneChannels

MIN_STD = 1e-6  # below this a channel counts as constant and is left unscaled (std 1)


class ChannelStatistics:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self, channels: int) -> None:
        self.n = np.zeros(channels)
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def add(self, values: np.ndarray) -> None:
        """Add samples ``values`` (C, M)."""
        self.merge(batch_moments(values))

    def merge(self, moments: tuple[int, np.ndarray, np.ndarray] | None) -> None:
        """Add a batch by its :func:`batch_moments` (the same arithmetic as :meth:`add`: a batch's
        moments computed in a worker process merge to the same bits)."""
        if moments is None:
            return
        nb, mb, m2b = moments
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, population std) per channel, float32; std 1 for a constant channel."""
        std = np.sqrt(self.m2 / np.maximum(self.n, 1))
        std = np.where(std > MIN_STD, std, 1.0)  # a constant channel stays as is
        return self.mean.astype(np.float32), std.astype(np.float32)


def batch_moments(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(count, mean (C,), sum of squared deviations (C,)) of samples ``values`` (C, M), float64;
    None without samples."""
    if values.shape[1] == 0:
        return None
    x = values.astype(np.float64)
    mb = x.mean(axis=1)
    return x.shape[1], mb, ((x - mb[:, None]) ** 2).sum(axis=1)


def training_statistics(scene: SceneChannels, windows: Sequence[Window]) -> np.ndarray:
    """Valid pixel values (C, M) of the union of ``windows`` of one scene (each pixel once)."""
    cover = np.zeros(scene.valid.shape, dtype=bool)
    for w in windows:
        rs, cs = w.toslices()
        cover[rs, cs] = True
    cover &= scene.valid
    return scene.channels[:, cover]
