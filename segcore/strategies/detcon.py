"""DetCon-S (Hénaff et al., ICCV 2021; docs/ssl_baselines.md): SimCLR over mask-pooled features.

* Masks: superpixels (:mod:`segcore.strategies.masks`: the stored SLIC superpixels of ``rs
  preprocess``, SLIC computed at the start of the run for MRI, or Felzenszwalb), warped with the
  geometric part of each view (:mod:`segcore.strategies.ssl_views`: nearest resampling, ids kept),
  so a mask id names the same ground in both views.
* Features: the network's hypercolumn (every decoder output upsampled to the input size and
  concatenated, as the hyper-pixel strategy's) averaged over each mask (Lightly's
  ``pool_masked``), then a projection MLP (Lightly's ``SimCLRProjectionHead``). The paper pools
  the last backbone map with downsampled masks; our masks (one per 8×8 pixels) are smaller than a
  cell of the U-Nets' 1/16-resolution bottleneck, so we pool at input resolution and train the
  decoder too.
* Sampling: ``n_masks`` (16) mask ids per image among those present in both views, without
  replacement where enough are (else all of them, then repeats drawn at random).
* Loss: Lightly's ``DetConSLoss`` (T = 0.1): a mask in one view is positive with the same mask of
  the same image in the other view; negatives are the other masks of both views of the same
  image and every mask of the other images of the batch; symmetrised over the views (the sum of
  both directions; repeated masks weighted down). Chance level: the loss with every embedding
  equal (every similarity equal), computed on the step's masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightly.loss import DetConSLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.models.utils import pool_masked
from torch import nn

from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData, PreparedDataset
from segcore.strategies.masks import MaskSource
from segcore.strategies.ssl_baseline import BaselineStrategy
from segcore.strategies.ssl_views import ViewOptions, two_views


def hypercolumn(features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """Decoder maps (B, C_i, h_i, w_i) upsampled (bilinear) to ``size`` and concatenated: (B, ΣC_i, H, W)."""
    return torch.cat(
        [
            f if tuple(f.shape[-2:]) == tuple(size) else F.interpolate(f, size=tuple(size), mode="bilinear")
            for f in features
        ],
        dim=1,
    )


def sample_masks(
    m1: torch.Tensor, m2: torch.Tensor, n: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` mask ids per image for each view of masks ``m1``, ``m2`` (B, H, W).

    Returns (ids1, ids2, match1, match2), each (B, n) long: the ids to pool in each view, and the
    labels the loss compares (equal labels of one image = positives). Ids are drawn among those
    present in both views: without replacement where at least ``n`` are, else every one of them
    and then repeats at random. An image whose views share no mask (disjoint crops) pools ids of
    each view apart, with labels that match nothing: it gives negatives only.
    """
    b = m1.shape[0]
    ids1, ids2, lab1, lab2 = (torch.empty(b, n, dtype=torch.long) for _ in range(4))
    offset = int(max(m1.max(), m2.max())) + 1  # labels >= offset match no id of the other view

    def draw(pool: torch.Tensor) -> torch.Tensor:
        order = pool[torch.randperm(pool.numel(), generator=g)]
        if order.numel() >= n:
            return order[:n]
        extra = order[torch.randint(0, order.numel(), (n - order.numel(),), generator=g)]
        return torch.cat([order, extra])

    for i in range(b):
        p1, p2 = m1[i][m1[i] >= 0].unique().cpu(), m2[i][m2[i] >= 0].unique().cpu()
        common = p1[torch.isin(p1, p2)]
        if common.numel():
            ids1[i] = ids2[i] = lab1[i] = lab2[i] = draw(common)
        else:
            ids1[i], ids2[i] = draw(p1), draw(p2)
            lab1[i], lab2[i] = ids1[i], ids2[i] + offset
    dev = m1.device
    return ids1.to(dev), ids2.to(dev), lab1.to(dev), lab2.to(dev)


def pool_ids(features: torch.Tensor, masks: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean of ``features`` (B, C, H, W) over the pixels of each mask ``ids`` (B, M) of ``masks``
    (B, H, W): (B, M, C). Pixels of no mask (id < 0) are left out."""
    n_cls = int(masks.max().clamp(min=0)) + 2  # the last class collects pixels of no mask
    pooled = pool_masked(features, torch.where(masks >= 0, masks, n_cls - 1), n_cls)  # (B, C, n_cls)
    return torch.gather(pooled, 2, ids[:, None, :].expand(-1, pooled.shape[1], -1)).transpose(1, 2)


class DetConStrategy(BaselineStrategy):
    """``masks`` where the masks come from, ``n_masks`` sampled per image, ``T`` temperature;
    projection ``proj_hidden`` → ``proj_dim``. Trains encoder, decoder and the projection."""

    name = "detcon"
    stage = "mask-level"

    def __init__(
        self,
        net: SegmentationNetwork,
        image_size: Sequence[int],
        *,
        masks: MaskSource | None = None,
        batch_size: int = 16,
        n_masks: int = 16,
        T: float = 0.1,
        proj_hidden: int = 256,
        proj_dim: int = 128,
        views: ViewOptions | None = None,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(batch_size=batch_size, views=views or ViewOptions(), weight_decay=weight_decay)
        if n_masks < 1 or T <= 0:
            raise ValueError(f"need n_masks >= 1 and T > 0, got {n_masks}, {T}")
        self.masks, self.n_masks, self.T = masks or MaskSource(), n_masks, T
        self.head = SimCLRProjectionHead(net.hypercolumn_channels, proj_hidden, proj_dim)
        self.criterion = DetConSLoss(temperature=T, gather_distributed=False)

    def dataset(self, data: PreparedData, groups: list[str]) -> PreparedDataset:
        return self.masks.dataset(data, groups)

    def embed(self, net: SegmentationNetwork, x: torch.Tensor, masks: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Projected mask-pooled hypercolumns (B, M, D) of masks ``ids`` (B, M)."""
        pooled = pool_ids(hypercolumn(net.decoder_features(x), x.shape[-2:]), masks, ids)  # (B, M, C)
        return self.head(pooled.flatten(0, 1)).view(*ids.shape, -1)

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        (x1, m1), (x2, m2) = two_views(batch["image"], g, self.views, masks=batch["superpixels"])
        assert m1 is not None and m2 is not None
        ids1, ids2, lab1, lab2 = sample_masks(m1, m2, self.n_masks, g)
        b = x1.shape[0]
        z = self.embed(net, torch.cat([x1, x2]), torch.cat([m1, m2]), torch.cat([ids1, ids2]))  # (2B, M, D)
        z1, z2 = z[:b], z[b:]
        loss = self.criterion(z1, z2, lab1, lab2)
        with torch.no_grad():  # every embedding equal: every similarity equal
            self.chance = float(self.criterion(torch.zeros_like(z1), torch.zeros_like(z2), lab1, lab2))
        return loss, {"shared_masks": float((lab1 == lab2).float().mean())}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        """Encoder, decoder and projection (the segmentation head is re-initialised by fine-tuning)."""
        skip = {id(p) for p in net.head.parameters()}
        return [p for p in net.parameters() if id(p) not in skip] + list(self.head.parameters())

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"projection": self.head.state_dict()}
