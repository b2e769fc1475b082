"""DenseCL (Wang et al., CVPR 2021; docs/ssl_baselines.md): MoCo v2 plus a dense branch.

* Global branch: MoCo v2 (:mod:`segcore.strategies.mocov2`): pooled encoder output, 2-layer MLP
  head, InfoNCE of the query against its momentum key and a queue.
* Dense branch: the last encoder map (B, C, h, w), average-pooled to an S×S grid when ``grid`` is
  given (default: its own h×w), projected per cell by a 2-layer 1×1-conv MLP (Lightly's
  ``DenseCLProjectionHead`` applied to every cell). The positive key of query cell i is the key
  cell j whose *backbone* feature is most similar to query cell i's, argmax_j cos(f_q,i, f_k,j)
  (:func:`dense_correspondence`, Lightly's ``most_similar_index``); the negatives are a second
  queue holding, per key image, the mean of its dense key projections.
* Loss: (1 − λ)·global + λ·dense, λ = 0.5; both with temperature T = 0.2.

Momentum, queues and step order as MoCo v2 (:func:`segcore.momentum.ema_update`,
:class:`segcore.queue.MomentumQueue`, :func:`segcore.losses.queue_info_nce`). Chance level:
(1 − λ)·log(1 + |global queue|) + λ·log(1 + |dense queue|).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightly.models.modules import DenseCLProjectionHead
from lightly.models.utils import most_similar_index
from torch import nn

from segcore.losses.queue_info_nce import queue_info_nce
from segcore.momentum import ema_update, momentum_copy
from segcore.networks import SegmentationNetwork
from segcore.queue import MomentumQueue
from segcore.strategies.ssl_baseline import BaselineStrategy, encoder_channels
from segcore.strategies.ssl_views import ViewOptions, two_views


def dense_correspondence(query_cells: torch.Tensor, key_cells: torch.Tensor) -> torch.Tensor:
    """For each query cell (B, N, C) the index (B, N) of the key cell (B, N', C) of the same
    image with the most similar feature (cosine; ties to the lowest index)."""
    return most_similar_index(query_cells, key_cells)


class DenseCLStrategy(BaselineStrategy):
    """``K`` queue length (both queues), ``m`` EMA momentum, ``T`` temperature, ``dense_weight``
    λ, ``grid`` S (None: the encoder map's own size). Trains the encoder and both heads."""

    name = "densecl"
    stage = "dense"

    def __init__(
        self,
        net: SegmentationNetwork,
        image_size: Sequence[int],
        *,
        batch_size: int = 16,
        K: int = 65536,
        m: float = 0.999,
        T: float = 0.2,
        dense_weight: float = 0.5,
        grid: int | None = None,
        proj_hidden: int = 256,
        proj_dim: int = 128,
        views: ViewOptions | None = None,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(batch_size=batch_size, views=views or ViewOptions(), weight_decay=weight_decay)
        if not 0.0 <= m <= 1.0 or T <= 0 or not 0.0 <= dense_weight <= 1.0:
            raise ValueError(f"need 0 <= m <= 1, T > 0 and 0 <= dense_weight <= 1, got {m}, {T}, {dense_weight}")
        if grid is not None and grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.K, self.m, self.T, self.dense_weight, self.grid = K, m, T, dense_weight, grid
        c = encoder_channels(net, image_size)
        self.head = DenseCLProjectionHead(c, proj_hidden, proj_dim)
        self.dense_head = DenseCLProjectionHead(c, proj_hidden, proj_dim)  # a 1×1-conv MLP on every cell
        self.key_net = momentum_copy(net)
        self.key_head, self.key_dense_head = momentum_copy(self.head), momentum_copy(self.dense_head)
        self.queue, self.dense_queue = MomentumQueue(K, proj_dim), MomentumQueue(K, proj_dim)

    def branches(
        self, net: SegmentationNetwork, head: nn.Module, dense_head: nn.Module, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone cells (B, S², C), global projection (B, D), dense projections (B, S², D)."""
        f = net.encode(x)[-1]  # (B, C, h, w)
        if self.grid is not None:
            f = F.adaptive_avg_pool2d(f, self.grid)  # (B, C, S, S)
        cells = f.flatten(2).transpose(1, 2)  # (B, S², C)
        return cells, head(f.mean(dim=(2, 3))), dense_head(cells)

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        (x1, _), (x2, _) = two_views(batch["image"], g, self.views)
        q_cells, q_global, q_dense = self.branches(net, self.head, self.dense_head, x1)
        with torch.no_grad():
            for key, online in (
                (self.key_net, net),
                (self.key_head, self.head),
                (self.key_dense_head, self.dense_head),
            ):
                ema_update(key, online, self.m)  # before the keys: MoCo's order
            self.key_net.eval()
            k_cells, k_global, k_dense = self.branches(self.key_net, self.key_head, self.key_dense_head, x2)
            match = dense_correspondence(q_cells.detach(), k_cells)  # (B, S²)
            k_matched = torch.gather(k_dense, 1, match[..., None].expand_as(k_dense))  # (B, S², D)
        n_global, n_dense = len(self.queue), len(self.dense_queue)
        loss_global = queue_info_nce(q_global, k_global, self.queue.keys(), self.T)
        loss_dense = queue_info_nce(q_dense.flatten(0, 1), k_matched.flatten(0, 1), self.dense_queue.keys(), self.T)
        lam = self.dense_weight
        loss = (1 - lam) * loss_global + lam * loss_dense
        self.queue.enqueue(F.normalize(k_global, dim=1))
        self.dense_queue.enqueue(F.normalize(k_dense.mean(dim=1), dim=1))  # one pooled dense key per image
        self.chance = (1 - lam) * math.log(1 + n_global) + lam * math.log(1 + n_dense)
        return loss, {"loss_global": float(loss_global.detach()), "loss_dense": float(loss_dense.detach())}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        return list(net.encoder.parameters()) + list(self.head.parameters()) + list(self.dense_head.parameters())

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "projection": self.head.state_dict(),
            "dense_projection": self.dense_head.state_dict(),
            "momentum_net": self.key_net.state_dict(),
            "momentum_projection": self.key_head.state_dict(),
            "momentum_dense_projection": self.key_dense_head.state_dict(),
            "queue": self.queue.state_dict(),
            "dense_queue": self.dense_queue.state_dict(),
        }
