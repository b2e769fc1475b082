"""Where DetCon's masks come from (docs/ssl_baselines.md): the SLIC superpixels ``rs
preprocess`` stores (``superpixels.npy``), SLIC computed at the start of the run (MRI slices:
:func:`segcore.superpixels.slic_superpixels`), or Felzenszwalb–Huttenlocher segments computed at
the start of the run (the masks of the DetCon paper)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segcore.errors import InputError
from segcore.prepared import PreparedData, PreparedDataset
from segcore.superpixels import SuperpixelDataset, slic_superpixels

log = logging.getLogger(__name__)
MASK_SOURCES = ("stored", "slic", "felzenszwalb")
PIXELS_PER_SEGMENT = 64  # default SLIC density and Felzenszwalb minimum size: one per 8×8 pixels


def felzenszwalb_masks(
    images: np.ndarray, indices: Sequence[int], scale: float = 100.0, min_size: int = PIXELS_PER_SEGMENT
) -> np.ndarray:
    """Felzenszwalb–Huttenlocher segments (n, H, W) int32, from 0 per image, of ``images[indices]``
    ((N, C, H, W), any C), each image standardised per channel first (as SLIC's)."""
    from skimage.segmentation import felzenszwalb

    idx = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(idx), *images.shape[-2:]), dtype=np.int32)
    for j, i in enumerate(idx):
        img = np.asarray(images[i], dtype=np.float64)  # (C, H, W)
        mean, std = img.mean(axis=(1, 2), keepdims=True), img.std(axis=(1, 2), keepdims=True)
        img = (img - mean) / np.where(std > 1e-8, std, 1.0)
        channel_axis = -1 if img.shape[0] > 1 else None
        pixels = np.moveaxis(img, 0, -1) if img.shape[0] > 1 else img[0]
        out[j] = felzenszwalb(pixels, scale=scale, sigma=0.5, min_size=min_size, channel_axis=channel_axis)
    return out


@dataclass(frozen=True)
class MaskSource:
    """``kind``: stored, slic or felzenszwalb; ``n_segments`` and ``compactness``: SLIC's (None:
    one superpixel per 8×8 pixels); ``fh_scale``: Felzenszwalb's scale (larger: fewer, larger
    segments; minimum segment size 64 pixels)."""

    kind: str = "stored"
    n_segments: int | None = None
    compactness: float = 0.5
    fh_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.kind not in MASK_SOURCES:
            raise ValueError(f"mask source must be one of {MASK_SOURCES}, got {self.kind!r}")

    def dataset(self, data: PreparedData, groups: list[str]) -> PreparedDataset:
        """The pretraining images of ``groups``, each sample with its ``superpixels`` (H, W) long.
        Stored masks that are missing or of the wrong shape are an :class:`InputError`."""
        indices = data.sample_indices(groups)
        if self.kind == "stored":
            masks = data.extra("superpixels")  # InputError when preprocessing did not write it
            if masks.shape != data.labels.shape:
                raise InputError(
                    data.folder / "superpixels.npy", f"shape {masks.shape} differs from the images' {data.labels.shape}"
                )
            return PreparedDataset(data, indices, with_label=False, extras=["superpixels"])
        t0 = time.perf_counter()
        h, w = data.manifest["image_size"]
        full = np.full((len(data), h, w), -1, dtype=np.int32)
        if self.kind == "slic":
            n = self.n_segments or max(1, (h * w) // PIXELS_PER_SEGMENT)
            full[indices] = slic_superpixels(data.images, n, self.compactness, indices)
        else:
            full[indices] = felzenszwalb_masks(data.images, indices, self.fh_scale)
        log.info("%s masks of %d images in %.1fs", self.kind, len(indices), time.perf_counter() - t0)
        return SuperpixelDataset(data, indices, full)
