"""SLIC superpixels of prepared images, and a dataset whose samples carry them.

``rs preprocess`` stores superpixels with the tiles (``superpixels.npy``); MRI slices get theirs
at the start of a hyper-pixel pretraining run (:func:`slic_superpixels`, in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from segcore.prepared import PreparedData, PreparedDataset


def slic_superpixels(
    images: np.ndarray,
    n_segments: int,
    compactness: float = 0.5,
    indices: Sequence[int] | None = None,
    batch: int = 256,
) -> np.ndarray:
    """SLIC labels (n, H, W) int32, from 0 per image, of ``images[indices]`` ((N, C, H, W); all
    N images without ``indices``).

    Each image is standardised per channel first (zero mean, unit std over its pixels), so that
    ``compactness`` means the same for any intensity scale (``rs preprocess`` uses 0.5 on its
    standardised channels too). ``images`` may be a memory map: it is read ``batch`` images at
    a time.
    """
    from skimage.segmentation import slic

    idx = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    _, _, h, w = images.shape
    out = np.empty((len(idx), h, w), dtype=np.int32)
    for start in range(0, len(idx), batch):
        chunk = np.asarray(images[idx[start : start + batch]], dtype=np.float64)  # (b, C, H, W)
        mean = chunk.mean(axis=(2, 3), keepdims=True)
        std = chunk.std(axis=(2, 3), keepdims=True)
        chunk = (chunk - mean) / np.where(std > 1e-8, std, 1.0)
        for j, img in enumerate(chunk):
            out[start + j] = slic(
                np.moveaxis(img, 0, -1),
                n_segments=n_segments,
                compactness=compactness,
                channel_axis=-1,
                start_label=0,
                convert2lab=False,
            )
    return out


class SuperpixelDataset(PreparedDataset):
    """:class:`~segcore.prepared.PreparedDataset` whose samples also carry ``superpixels``
    (H, W) long, taken from an in-memory array (N, H, W) indexed like the prepared data (for
    superpixels computed at the start of a run rather than stored by preprocessing)."""

    def __init__(
        self, data: PreparedData, indices: Sequence[int], superpixels: np.ndarray, with_label: bool = False
    ) -> None:
        super().__init__(data, indices, with_label=with_label)
        if superpixels.shape[0] != len(data):
            raise ValueError(f"superpixels hold {superpixels.shape[0]} maps, the data {len(data)} samples")
        self.superpixels = superpixels

    def __getitem__(self, k: int) -> dict[str, Any]:
        sample = super().__getitem__(k)
        sample["superpixels"] = torch.from_numpy(self.superpixels[int(self.indices[k])].astype(np.int64))
        return sample
