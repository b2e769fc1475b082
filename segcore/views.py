"""Batched, per-image random views for contrastive pretraining (METHODS §1–2).

Every random value is drawn per image (the reference draws one per batch chunk; a quirk we
do not copy). All functions take a ``torch.Generator`` so views are reproducible, and run on
whatever device ``x`` lives on.
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g).to(device)


def crop_resize(x: torch.Tensor, scale: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    """Crop a random square box per image (side = scale × image side) and resize it back.

    x: (B, C, H, W). The reference crops 100×100 out of 192×192 (scale ≈ 0.52).
    """
    b, _, h, w = x.shape
    side = _uniform(b, scale[0], scale[1], g, x.device)  # (B,) fraction of the side
    bh, bw = side * h, side * w
    y0 = torch.rand(b, generator=g).to(x.device) * (h - bh)
    x0 = torch.rand(b, generator=g).to(x.device) * (w - bw)
    boxes = torch.stack([torch.arange(b, device=x.device, dtype=x.dtype), x0, y0, x0 + bw, y0 + bh], dim=1)  # (B, 5)
    return roi_align(x, boxes.to(x.dtype), output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)


def intensity_jitter(
    x: torch.Tensor,
    g: torch.Generator,
    brightness: float = 0.3,
    contrast: tuple[float, float] = (0.7, 1.3),
    clip: tuple[float, float] = (0.0, 1.5),
    noise_std: float = 0.0,
    gamma: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Brightness shift U(-b, b), contrast factor about the image mean, optional gamma and
    Gaussian noise, then clipping. x: (B, C, H, W) with intensities roughly in [0, 1]."""
    b = x.shape[0]
    dev = x.device
    out = x
    if gamma is not None:
        gm = _uniform(b, gamma[0], gamma[1], g, dev).view(b, 1, 1, 1)
        out = out.clamp_min(0).pow(gm)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    c = _uniform(b, contrast[0], contrast[1], g, dev).view(b, 1, 1, 1)
    shift = _uniform(b, -brightness, brightness, g, dev).view(b, 1, 1, 1)
    out = (out - mean) * c + mean + shift
    if noise_std > 0:
        sd = _uniform(b, 0.0, noise_std, g, dev).view(b, 1, 1, 1)
        out = out + sd * torch.randn(out.shape, generator=g).to(dev)
    return out.clamp(clip[0], clip[1])
