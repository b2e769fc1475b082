"""The views of the generic self-supervised baselines (MoCo v2, BYOL, DenseCL, DetCon;
docs/ssl_baselines.md), for any number of channels.

ImageNet recipes jitter colour (hue, saturation, grayscale), which means nothing for a
single-channel MRI slice or for 14 spectral and terrain channels. These views keep the recipes'
geometry and replace their colour operations by per-channel ones:

* geometric, shared by the image and its masks: a random dihedral transform (flips and quarter
  turns; flips and half turns when H != W) and a random square crop of side s·H, s ~ U(crop_scale),
  resized back (image bilinear, masks nearest);
* photometric, per image and per jittered channel: a gain about the channel mean, a shift, and
  Gaussian noise (:func:`segcore.views.correspondence_view`, which does both).

DetCon needs the masks to follow the geometry; the other methods pass none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from segcore.views import correspondence_view


@dataclass(frozen=True)
class ViewOptions:
    """``crop_scale``: side fraction (lo, hi) of the crop, None = no crop; ``dihedral``: random
    flips and quarter turns; ``jitter_channels``: the channels that get gain, shift and noise
    (None: all); ``brightness``: max shift; ``contrast``: gain range; ``noise_std``: max std."""

    crop_scale: tuple[float, float] | None = (0.5, 1.0)
    dihedral: bool = True
    jitter_channels: Sequence[int] | None = None
    brightness: float = 0.2
    contrast: tuple[float, float] = (0.8, 1.2)
    noise_std: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)  # further correspondence_view options

    def kwargs(self) -> dict[str, Any]:
        crop = None if self.crop_scale is None or self.crop_scale[0] >= 1.0 else tuple(self.crop_scale)
        return {
            "dihedral_transforms": self.dihedral,
            "crop_scale": crop,
            "jitter_channels": None if self.jitter_channels is None else list(self.jitter_channels),
            "brightness": self.brightness,
            "contrast": tuple(self.contrast),
            "noise_std": self.noise_std,
            **self.extra,
        }


def random_view(
    x: torch.Tensor, g: torch.Generator, options: ViewOptions, masks: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One view of ``x`` (B, C, H, W), any C, and of its ``masks`` (B, H, W) integer ids (or
    None): (view (B, C, H, W), masks (B, H, W) long or None)."""
    sp = masks if masks is not None else torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)
    view, warped, _ = correspondence_view(x, sp, g, **options.kwargs())
    return view, (warped if masks is not None else None)


def two_views(
    x: torch.Tensor, g: torch.Generator, options: ViewOptions, masks: torch.Tensor | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]:
    """Two independent random views of the batch (each with its masks, or None)."""
    return random_view(x, g, options, masks), random_view(x, g, options, masks)
