"""Views of unlabeled samples: the weak view (the domain's spatial augmentation) and the strong
view (intensity jitter per channel, Gaussian blur, CutMix across the batch).

The strong view is made from the weak one by operations that keep every pixel where it is,
except CutMix, which moves a box of another sample into place and is applied to the image and to
every per-pixel target (pseudo-label, confidence mask, in-image mask) with the same box: the
pseudo-label of a pixel stays the one predicted for the image content now at that pixel. All
random draws come from a CPU ``torch.Generator`` (a function of the training step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segcore.augment import BatchSpatialAugment


def weak_view(
    x: torch.Tensor, augment: BatchSpatialAugment | None, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weak view of unlabeled images ``x`` (B, C, H, W): the fine-tuning augmentation of the
    domain (flips, rotations, scaling; quarter turns on tiles). Returns the view and its in-image
    mask (B, H, W) bool (False where the view shows what lies outside the image)."""
    b, _, h, w = x.shape
    if augment is None:
        return x, torch.ones(b, h, w, dtype=torch.bool, device=x.device)
    zeros = torch.zeros(b, h, w, dtype=torch.long, device=x.device)
    x_w, lab = augment(x, zeros, g)
    return x_w, lab != augment.ignore_index


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur of each sample of ``x`` (B, C, H, W) with its own ``sigma`` (B,)
    pixels (0: unchanged), kernel 2 * ``radius`` + 1 wide, reflect padding."""
    b, c, h, w = x.shape
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    s = sigma.to(torch.float64).clamp(min=1e-6)[:, None]
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * s**2))  # (B, k)
    kernel = kernel / kernel.sum(1, keepdim=True)
    kernel = torch.where((sigma > 0)[:, None], kernel, (offsets == 0).to(torch.float64)[None])
    k = kernel.to(x.dtype).to(x.device).repeat_interleave(c, dim=0)  # (B*C, k)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def cutmix_boxes(
    b: int, h: int, w: int, prob: float, area: tuple[float, float], g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix boxes and partners of a batch: ``box`` (B, H, W) bool (True where sample i shows
    its partner) and ``partner`` (B,) int64, the batch rolled by a random shift in 1..B-1 (never the
    sample itself). Each sample gets a box with probability ``prob``: area a fraction in ``area``
    of the image, aspect ratio in [0.3, 1/0.3] (log-uniform), placed uniformly inside the image."""
    box = torch.zeros(b, h, w, dtype=torch.bool)
    if b < 2:
        return box, torch.arange(b)
    shift = int(torch.randint(1, b, (1,), generator=g))
    partner = (torch.arange(b) + shift) % b
    on = torch.rand(b, generator=g) < prob
    frac = _uniform(b, area[0], area[1], g)
    ratio = torch.exp(_uniform(b, math.log(0.3), -math.log(0.3), g))
    u_y, u_x = torch.rand(b, generator=g, dtype=torch.float64), torch.rand(b, generator=g, dtype=torch.float64)
    for i in range(b):
        if not on[i]:
            continue
        bh = max(1, min(h, round(math.sqrt(float(frac[i]) / float(ratio[i])) * h)))
        bw = max(1, min(w, round(math.sqrt(float(frac[i]) * float(ratio[i])) * w)))
        y0 = int(float(u_y[i]) * (h - bh + 1))
        x0 = int(float(u_x[i]) * (w - bw + 1))
        box[i, y0 : y0 + bh, x0 : x0 + bw] = True
    return box, partner


def apply_cutmix(
    x: torch.Tensor, targets: Sequence[torch.Tensor], box: torch.Tensor, partner: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Paste, inside each sample's ``box``, its ``partner``'s pixels: into the image (B, C, H, W)
    and into every per-pixel target (B, H, W) alike."""
    box = box.to(x.device)
    partner = partner.to(x.device)
    x_mixed = torch.where(box[:, None], x[partner], x)
    mixed = [torch.where(box, t[partner], t) for t in targets]
    return x_mixed, mixed


@dataclass
class StrongAugment:
    """The strong view of a weak view: per sample, with probability ``jitter_prob`` an intensity
    jitter of each channel in ``jitter_channels`` (gain in 1 ± ``jitter_gain`` about the sample's
    channel mean, shift up to ± ``jitter_shift`` × the channel's std in the sample); with
    probability ``blur_prob`` a Gaussian blur, sigma in ``blur_sigma`` pixels; then CutMix across
    the batch (:func:`cutmix_boxes`) applied to the image and the per-pixel targets alike."""

    jitter_channels: Sequence[int]
    jitter_shift: float = 0.3
    jitter_gain: float = 0.3
    jitter_prob: float = 0.8
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    cutmix_prob: float = 0.5
    cutmix_area: tuple[float, float] = (0.02, 0.4)

    def photometric(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Intensity jitter and blur of ``x`` (B, C, H, W); pixels stay where they are."""
        b, c, h, w = x.shape
        channels = torch.tensor(list(self.jitter_channels), dtype=torch.long)
        n = len(channels)
        on = (torch.rand(b, generator=g) < self.jitter_prob).to(torch.float64)[:, None]  # (B, 1)
        gain = 1 + (torch.rand(b, n, generator=g, dtype=torch.float64) * 2 - 1) * self.jitter_gain * on
        shift = (torch.rand(b, n, generator=g, dtype=torch.float64) * 2 - 1) * self.jitter_shift * on
        blur_on = torch.rand(b, generator=g) < self.blur_prob
        sigma = _uniform(b, self.blur_sigma[0], self.blur_sigma[1], g) * blur_on
        out = x
        if n and (self.jitter_gain > 0 or self.jitter_shift > 0):
            sel = channels.to(x.device)
            part = x.index_select(1, sel)  # (B, n, H, W)
            mean = part.mean(dim=(2, 3), keepdim=True)
            std = part.std(dim=(2, 3), keepdim=True)
            gain_t = gain.to(x.dtype).to(x.device)[:, :, None, None]
            shift_t = shift.to(x.dtype).to(x.device)[:, :, None, None]
            part = (part - mean) * gain_t + mean + shift_t * std
            out = x.clone()
            out[:, sel] = part
        if bool(blur_on.any()):
            radius = max(1, math.ceil(3 * self.blur_sigma[1]))
            radius = min(radius, h - 1, w - 1)
            out = gaussian_blur(out, sigma, radius)
        return out

    def __call__(
        self, x: torch.Tensor, targets: Sequence[torch.Tensor], g: torch.Generator
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The strong view of ``x`` (B, C, H, W) and the ``targets`` (each (B, H, W)) moved with it."""
        b, _, h, w = x.shape
        out = self.photometric(x, g)
        box, partner = cutmix_boxes(b, h, w, self.cutmix_prob, self.cutmix_area, g)
        return apply_cutmix(out, targets, box, partner)
