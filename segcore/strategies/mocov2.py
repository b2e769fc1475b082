"""MoCo v2 (Chen et al. 2020, "Improved baselines with momentum contrastive learning";
docs/ssl_baselines.md): image-level contrast of a query encoder against a momentum key encoder
and a queue of earlier keys.

Query: view 1 through the network's encoder, pooled over space, then a 2-layer MLP head
(Lightly's ``MoCoProjectionHead``). Key: view 2 through the momentum copies of encoder and head
(EMA ``θk ← m·θk + (1−m)·θq``, :func:`segcore.momentum.ema_update`, m = 0.999). Loss: InfoNCE of
the query against its key and the K queued keys (:func:`segcore.losses.queue_info_nce`,
T = 0.2); the keys are enqueued after the loss (:class:`segcore.queue.MomentumQueue`, K = 65,536).

Step order, as in the hyper-pixel strategy: queries → EMA update → keys (no gradient) → loss with
the queue as it was → enqueue. The key network normalises with the BatchNorm running statistics
copied from the query network (eval mode): in one process that takes the place of MoCo's
shuffled BatchNorm, which keeps batch statistics from telling the positive from the queue.
Chance level: log(1 + queued keys) (every similarity equal; 0 while the queue is empty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead
from torch import nn

from segcore.losses.queue_info_nce import queue_info_nce
from segcore.momentum import ema_update, momentum_copy
from segcore.networks import SegmentationNetwork
from segcore.queue import MomentumQueue
from segcore.strategies.ssl_baseline import BaselineStrategy, encoder_channels, pooled_encoding
from segcore.strategies.ssl_views import ViewOptions, two_views


class MoCoV2Strategy(BaselineStrategy):
    """``K`` queue length, ``m`` EMA momentum, ``T`` temperature; head ``proj_hidden`` →
    ``proj_dim``. Trains the encoder and the head."""

    name = "mocov2"
    stage = "image-level"

    def __init__(
        self,
        net: SegmentationNetwork,
        image_size: Sequence[int],
        *,
        batch_size: int = 16,
        K: int = 65536,
        m: float = 0.999,
        T: float = 0.2,
        proj_hidden: int = 256,
        proj_dim: int = 128,
        views: ViewOptions | None = None,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(batch_size=batch_size, views=views or ViewOptions(), weight_decay=weight_decay)
        if not 0.0 <= m <= 1.0 or T <= 0:
            raise ValueError(f"need 0 <= m <= 1 and T > 0, got m={m}, T={T}")
        self.K, self.m, self.T = K, m, T
        self.head = MoCoProjectionHead(encoder_channels(net, image_size), proj_hidden, proj_dim)
        self.key_net, self.key_head = momentum_copy(net), momentum_copy(self.head)
        self.queue = MomentumQueue(K, proj_dim)

    def keys(self, net: SegmentationNetwork, x: torch.Tensor) -> torch.Tensor:
        """EMA update, then the keys (B, D) of ``x`` from the momentum encoder and head."""
        with torch.no_grad():
            ema_update(self.key_net, net, self.m)  # before the keys: MoCo's order
            ema_update(self.key_head, self.head, self.m)
            self.key_net.eval()  # running statistics (see the module docstring)
            return self.key_head(pooled_encoding(self.key_net, x))

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        (x1, _), (x2, _) = two_views(batch["image"], g, self.views)
        q = self.head(pooled_encoding(net, x1))  # (B, D)
        k = self.keys(net, x2)  # (B, D), no gradient
        queued = len(self.queue)
        loss = queue_info_nce(q, k, self.queue.keys(), self.T)
        self.queue.enqueue(F.normalize(k, dim=1))  # after the loss: no key is its own negative
        self.chance = math.log(1 + queued)
        return loss, {"queue": float(queued)}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        return list(net.encoder.parameters()) + list(self.head.parameters())

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "projection": self.head.state_dict(),
            "momentum_net": self.key_net.state_dict(),
            "momentum_projection": self.key_head.state_dict(),
            "queue": self.queue.state_dict(),
        }
