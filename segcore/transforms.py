"""Training augmentations as MONAI dictionary transforms on ``{"image", "label"}`` samples.

Samples carry ``image`` (C, H, W) and ``label`` (H, W); MONAI's spatial transforms want a
channel axis on the label, so :class:`LabelChannel` adds it before and removes it after.
Labels are always resampled with nearest-neighbour so class values (and 255 = ignore) survive.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.transforms import (
    Compose,
    MapTransform,
    Rand2DElasticd,
    RandFlipd,
    RandRotate90d,
    RandRotated,
    RandZoomd,
)


class LabelChannel(MapTransform):
    """Add (``add=True``) or remove the leading channel axis of ``label``."""

    def __init__(self, add: bool) -> None:
        super().__init__(keys=["label"], allow_missing_keys=True)
        self.add = add

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        d = dict(data)
        if "label" in d:
            lab = torch.as_tensor(d["label"])
            d["label"] = lab[None] if self.add else lab[0].long()
        if "image" in d:
            d["image"] = torch.as_tensor(d["image"]).float()
        return d


def mri_train_transform(rotate_deg: float = 15.0, scale: float = 0.1, elastic_prob: float = 0.2) -> Compose:
    """Small rotations, scaling, flips and elastic deformation (METHODS §3)."""
    keys = ["image", "label"]
    return Compose(
        [
            LabelChannel(add=True),
            RandRotated(keys, range_x=math.radians(rotate_deg), prob=0.5, mode=("bilinear", "nearest"), padding_mode="zeros", allow_missing_keys=True),
            RandZoomd(keys, min_zoom=1 - scale, max_zoom=1 + scale, prob=0.5, mode=("bilinear", "nearest"), padding_mode="constant", allow_missing_keys=True),
            RandFlipd(keys, prob=0.5, spatial_axis=0, allow_missing_keys=True),
            RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),
            Rand2DElasticd(keys, spacing=(16, 16), magnitude_range=(0.5, 1.5), prob=elastic_prob, mode=("bilinear", "nearest"), padding_mode="zeros", allow_missing_keys=True),
            LabelChannel(add=False),
        ]
    )


def rs_train_transform() -> Compose:
    """Flips and 90° rotations: they keep the pixel grid, so terrain and nodata stay exact.

    Aspect channels (sin, cos) are not rotated with the image; the nets learn from slope and
    hillshade mostly, and the label is what must stay aligned.
    """
    keys = ["image", "label"]
    return Compose(
        [
            LabelChannel(add=True),
            RandFlipd(keys, prob=0.5, spatial_axis=0, allow_missing_keys=True),
            RandFlipd(keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),
            RandRotate90d(keys, prob=0.5, max_k=3, allow_missing_keys=True),
            LabelChannel(add=False),
        ]
    )


class StripMeta:
    """Convert MONAI MetaTensors back to plain tensors (cheaper collation, no meta drift)."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        d = dict(data)
        for k in ("image", "label"):
            if k in d and hasattr(d[k], "as_tensor"):
                d[k] = d[k].as_tensor()
        return d


def with_strip(transform: Compose) -> Compose:
    return Compose([transform, StripMeta()])
