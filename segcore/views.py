"""Batched, per-image random views for contrastive pretraining (docs/methods.md).

Every random value is drawn per image (the reference draws one per batch chunk; a quirk we
do not copy). All functions take a ``torch.Generator`` so views are reproducible, and run on
whatever device ``x`` lives on. :func:`correspondence_view` transforms an image and its
superpixel map alike, so that a superpixel id names the same ground in two views.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
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


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform k in 0..7 of the square's symmetry group on the last two axes: rotate by
    ``k % 4`` quarter turns, then transpose when ``k >= 4`` (exact: only indexing)."""
    out = torch.rot90(x, k % 4, dims=(-2, -1))
    return out.transpose(-2, -1) if k >= 4 else out


def correspondence_view(
    x: torch.Tensor,
    superpixels: torch.Tensor,
    g: torch.Generator,
    *,
    dihedral_transforms: bool = True,
    crop_scale: tuple[float, float] | None = None,
    jitter_channels: Sequence[int] | None = None,
    brightness: float = 0.2,
    contrast: tuple[float, float] = (0.8, 1.2),
    noise_std: float = 0.05,
    drop_channels: Sequence[int] | None = None,
    drop_prob: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random view of ``x`` (B, C, H, W) and of its superpixel map (B, H, W), geometry shared.

    Per image: a dihedral transform k in 0..7 (:func:`dihedral`; 0..3 as rotations by 0 and 180
    degrees and flips only when H != W), then with ``crop_scale`` a random square box of side
    s in [lo, hi] of the image resized back (image bilinear, superpixels nearest, ids unchanged:
    ids cut off by the box are simply absent from the view). Then per image and per jittered
    channel a gain U(contrast) about the channel mean and a shift U(-brightness, brightness) (in
    the data's units, standardised for rs), plus Gaussian noise of std U(0, noise_std); channels
    not in ``jitter_channels`` (default: all) are left as they are. (Left-alone channels are
    identical in both views up to geometry: the terrain channels alone let a hyper-pixel find
    its positive among thousands; docs/hpcl.md.) Last, with ``drop_prob`` > 0, each image's
    ``drop_channels`` are all set to 0 (the mean of a standardised channel) with probability
    ``drop_prob`` (modality dropout): a view without terrain must find its positive in a view
    with it from the spectra alone. With ``drop_prob`` 0 no random number is drawn for it.
    Returns (view (B, C, H, W), superpixels (B, H, W) long, k (B,) long).
    """
    b, c, h, w = x.shape
    dev = x.device
    sp = superpixels.to(dev).long()
    n_k = (8 if h == w else 4) if dihedral_transforms else 1
    ks = torch.randint(0, n_k, (b,), generator=g)  # (B,)
    xs, sps = torch.empty_like(x), torch.empty_like(sp)
    for k in ks.unique().tolist():
        sel = (ks == k).nonzero(as_tuple=True)[0].to(dev)
        if h == w:
            xs[sel], sps[sel] = dihedral(x[sel], k), dihedral(sp[sel], k)
        else:  # k bit 0: flip rows, bit 1: flip columns
            dims = [d for d, bit in ((-2, 1), (-1, 2)) if k & bit]
            xs[sel], sps[sel] = (x[sel].flip(dims), sp[sel].flip(dims)) if dims else (x[sel], sp[sel])
    if crop_scale is not None and crop_scale[0] < 1.0:
        s = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * torch.rand(b, generator=g)  # (B,) side fraction
        t = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - s)[:, None]  # (B, 2) box centre, normalised
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = s, s, t
        grid = F.affine_grid(theta.to(dev), [b, 1, h, w], align_corners=False)  # (B, H, W, 2) float32
        # the outermost sample points may lie up to half a pixel beyond the edge pixels' centres:
        # border padding keeps them on the image (zeros would darken the rim)
        xs = F.grid_sample(xs, grid.to(xs.dtype), mode="bilinear", padding_mode="border", align_corners=False)
        # ids as float32 are exact below 2**24; nearest keeps them ids
        sps = (
            F.grid_sample(sps[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)[:, 0]
            .round()
            .long()
        )
    channels = list(range(c)) if jitter_channels is None else list(jitter_channels)
    if channels:
        idx = torch.tensor(channels, device=dev)
        part = xs.index_select(1, idx)  # (B, c_j, H, W)
        n_c = len(channels)
        gain = contrast[0] + (contrast[1] - contrast[0]) * torch.rand(b, n_c, 1, 1, generator=g)
        shift = (torch.rand(b, n_c, 1, 1, generator=g) * 2 - 1) * brightness
        mean = part.mean(dim=(2, 3), keepdim=True)  # (B, c_j, 1, 1)
        part = (part - mean) * gain.to(part) + mean + shift.to(part)
        if noise_std > 0:
            sd = noise_std * torch.rand(b, 1, 1, 1, generator=g)
            part = part + sd.to(part) * torch.randn(part.shape, generator=g).to(part)
        xs = xs.index_copy(1, idx, part)
    if drop_prob > 0 and drop_channels:
        drop = (torch.rand(b, generator=g) < drop_prob).to(dev)  # (B,)
        keep = torch.ones(b, c, 1, 1, dtype=xs.dtype, device=dev)
        keep[:, list(drop_channels)] = (~drop).to(xs.dtype)[:, None, None, None]
        xs = xs * keep
    return xs, sps, ks
