"""Hyper-pixels: superpixels embedded by the mean hypercolumn of their pixels (our HPCL
definition, docs/hpcl.md), matched between views, and anchors drawn among them.

A hyper-pixel's embedding is the mean over its pixels of the hypercolumn, i.e. every decoder
output upsampled to the input size and concatenated (``net.decoder_features(x)``, width
``net.hypercolumn_channels``); a projection head maps it to the contrastive space.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from segcore.heads import HyperPixelProjectionHead
from segcore.networks import SegmentationNetwork
from segcore.prepared import IGNORE_INDEX


def hypercolumn_superpixel_embed(
    features: list[torch.Tensor],
    superpixels: torch.Tensor,
    labels: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Hyper-pixels: the mean hypercolumn over each (image, superpixel) pair.

    ``features``: multi-scale maps (B, C_i, h_i, w_i), each upsampled bilinearly to (H, W) and
    concatenated to (B, sum C_i, H, W). ``superpixels`` (B, H, W) ids per image (pixels < 0
    belong to no hyper-pixel). Returns, for the P hyper-pixels sorted by (image, id):
    ``emb`` (P, sum C_i), ``batch_idx`` (P,), ``sp_id`` (P,), ``majority`` (P,) the most frequent
    valid label (ties to the lowest class; ``ignore_index`` if none is valid; None without
    ``labels``), ``boundary`` (P,) bool: some pixel has a 4-neighbour with another valid label
    (all False without labels).
    """
    B, H, W = superpixels.shape
    cols = [
        f if f.shape[-2:] == (H, W) else F.interpolate(f, size=(H, W), mode="bilinear", align_corners=False)
        for f in features
    ]
    hc = torch.cat(cols, dim=1)  # (B, C, H, W)
    dev = hc.device
    sp = superpixels.to(dev).long()
    inside = sp >= 0  # (B, H, W)
    n_sp = int(sp.max().clamp(min=0)) + 1
    key = torch.arange(B, device=dev)[:, None, None] * n_sp + sp  # (B, H, W)
    uniq, inv = torch.unique(key[inside], return_inverse=True)  # (P,), (V,)
    P = uniq.shape[0]
    pix = hc.permute(0, 2, 3, 1)[inside]  # (V, C)
    sums = pix.new_zeros(P, pix.shape[1]).index_add(0, inv, pix)  # (P, C)
    counts = torch.zeros(P, device=dev).index_add_(0, inv, torch.ones_like(inv, dtype=torch.float))
    emb = sums / counts[:, None].to(sums.dtype)
    batch_idx, sp_id = uniq // n_sp, uniq % n_sp
    if labels is None:
        return emb, batch_idx, sp_id, None, torch.zeros(P, dtype=torch.bool, device=dev)
    lab = labels.to(dev).long()
    lab_ok = (lab != ignore_index) & (lab >= 0)  # (B, H, W)
    n_cls = int(lab[lab_ok].max()) + 1 if bool(lab_ok.any()) else 1
    ok = lab_ok[inside]  # (V,)
    hist = (
        torch.zeros(P * n_cls, device=dev)
        .index_add_(0, inv[ok] * n_cls + lab[inside][ok], torch.ones(int(ok.sum()), device=dev))
        .view(P, n_cls)
    )
    majority = torch.where(hist.sum(1) > 0, hist.argmax(1), ignore_index)
    edge = torch.zeros_like(lab_ok)  # (B, H, W): pixel touches another valid label
    dv = lab_ok[:, 1:] & lab_ok[:, :-1] & (lab[:, 1:] != lab[:, :-1])  # (B, H-1, W)
    dh = lab_ok[:, :, 1:] & lab_ok[:, :, :-1] & (lab[:, :, 1:] != lab[:, :, :-1])  # (B, H, W-1)
    edge[:, 1:] |= dv
    edge[:, :-1] |= dv
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    touches = torch.zeros(P, device=dev).index_add_(0, inv, edge[inside].float())
    return emb, batch_idx, sp_id, majority, touches > 0


def sample_anchors(
    boundary: torch.Tensor,
    n: int,
    boundary_fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (min(n, P),) of anchors among P hyper-pixels, ``boundary_fraction`` of them on boundaries.

    Drawn without replacement; when one kind runs short the other fills the rest.
    """
    if not 0.0 <= boundary_fraction <= 1.0:
        raise ValueError(f"boundary_fraction must lie in [0, 1], got {boundary_fraction}")
    b_idx = torch.nonzero(boundary.cpu(), as_tuple=True)[0]
    o_idx = torch.nonzero(~boundary.cpu(), as_tuple=True)[0]
    n = min(n, boundary.numel())
    n_b = min(round(n * boundary_fraction), b_idx.numel())
    n_o = min(n - n_b, o_idx.numel())
    n_b = min(n - n_o, b_idx.numel())
    b_pick = b_idx[torch.randperm(b_idx.numel(), generator=generator)[:n_b]]
    o_pick = o_idx[torch.randperm(o_idx.numel(), generator=generator)[:n_o]]
    return torch.cat([b_pick, o_pick]).to(boundary.device)


def match_hyperpixels(
    batch_a: torch.Tensor, id_a: torch.Tensor, batch_b: torch.Tensor, id_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i_a, i_b), each (P,), of the hyper-pixels present in both views, such that
    ``(batch_a[i_a], id_a[i_a]) == (batch_b[i_b], id_b[i_b])``. Both inputs sorted by
    (image, id), as :func:`hypercolumn_superpixel_embed` returns them."""
    n = int(torch.cat([id_a, id_b]).max().clamp(min=0)) + 1 if id_a.numel() + id_b.numel() else 1
    key_a, key_b = batch_a * n + id_a, batch_b * n + id_b  # (P_a,), (P_b,) sorted
    common = key_a[torch.isin(key_a, key_b)]
    return torch.searchsorted(key_a, common), torch.searchsorted(key_b, common)


class HyperPixels(NamedTuple):
    """Hyper-pixels of a batch, sorted by (image, superpixel id); P rows each."""

    emb: torch.Tensor  # (P, sum C_i) mean hypercolumns (before the projection head)
    batch_idx: torch.Tensor  # (P,) image index in the batch
    sp_id: torch.Tensor  # (P,) superpixel id within its image
    majority: torch.Tensor | None  # (P,) majority label (ignore_index where none); None unlabeled
    boundary: torch.Tensor  # (P,) bool: touches another class


def hyperpixels(
    features: list[torch.Tensor],
    superpixels: torch.Tensor,
    labels: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> HyperPixels:
    """:func:`hypercolumn_superpixel_embed` as a :class:`HyperPixels`."""
    return HyperPixels(*hypercolumn_superpixel_embed(features, superpixels, labels, ignore_index))


def build_projection_head(net: SegmentationNetwork, hidden: int = 256, out_dim: int = 128) -> HyperPixelProjectionHead:
    """The projection head for ``net``'s hypercolumns (in_dim = ``net.hypercolumn_channels``)."""
    return HyperPixelProjectionHead(net.hypercolumn_channels, hidden, out_dim)
