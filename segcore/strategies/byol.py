"""BYOL (Grill et al., NeurIPS 2020; docs/ssl_baselines.md): an online network predicts the
target network's projection of the other view; no negatives.

Online: the network's encoder pooled over space → projector → predictor (Lightly's
``BYOLProjectionHead`` and ``BYOLPredictionHead``: Linear–BN–ReLU–Linear). Target: EMA copies of
encoder and projector, ``θt ← τ·θt + (1−τ)·θo`` with τ rising from ``tau`` (0.99) to 1 by a cosine
over the run (Lightly's ``cosine_schedule``), updated before the targets are computed; targets
carry no gradient. Loss, symmetrised over the two views:

    L = mean_i [ (2 − 2 cos(p1_i, z2_i)) + (2 − 2 cos(p2_i, z1_i)) ],  in [0, 8],

with p the online predictions and z the target projections (Lightly's
``NegativeCosineSimilarity`` gives −mean cos). BYOL has no chance level in the InfoNCE sense;
``chance`` records 4, the loss of predictions uncorrelated with their targets (E cos = 0), so
that the report's collapse rule (a loss far below that early in training) flags the collapse
BYOL is built to avoid: constant outputs, which drive the loss to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from segcore.momentum import ema_update, momentum_copy
from segcore.networks import SegmentationNetwork
from segcore.strategies.ssl_baseline import BaselineStrategy, encoder_channels, pooled_encoding
from segcore.strategies.ssl_views import ViewOptions, two_views

UNCORRELATED_LOSS = 4.0  # (2 − 2·0) per direction, two directions


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The symmetrised BYOL loss of predictions p1, p2 (B, D) against targets z1, z2 (B, D)
    (view 1 predicts view 2's target and vice versa)."""
    ncs = NegativeCosineSimilarity()  # −mean cos
    return (2 + 2 * ncs(p1, z2.detach())) + (2 + 2 * ncs(p2, z1.detach()))


class BYOLStrategy(BaselineStrategy):
    """``steps`` of the run (the τ schedule's length), base EMA momentum ``tau``; projector and
    predictor ``proj_hidden`` → ``proj_dim``. Trains the encoder, projector and predictor."""

    name = "byol"
    stage = "image-level"
    updates: torch.Tensor

    def __init__(
        self,
        net: SegmentationNetwork,
        image_size: Sequence[int],
        *,
        steps: int,
        batch_size: int = 16,
        tau: float = 0.99,
        proj_hidden: int = 256,
        proj_dim: int = 128,
        views: ViewOptions | None = None,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(batch_size=batch_size, views=views or ViewOptions(), weight_decay=weight_decay)
        if not 0.0 <= tau <= 1.0 or steps < 1:
            raise ValueError(f"need 0 <= tau <= 1 and steps >= 1, got tau={tau}, steps={steps}")
        self.tau, self.steps = tau, steps
        self.projector = BYOLProjectionHead(encoder_channels(net, image_size), proj_hidden, proj_dim)
        self.predictor = BYOLPredictionHead(proj_dim, proj_hidden, proj_dim)
        self.target_net, self.target_projector = momentum_copy(net), momentum_copy(self.projector)
        # EMA updates done so far: the τ schedule's position, kept in the resume checkpoint
        self.register_buffer("updates", torch.zeros((), dtype=torch.long), persistent=True)
        self.chance = UNCORRELATED_LOSS

    def momentum(self, update: int) -> float:
        """τ of EMA update ``update`` (0-based): τ_base → 1 by a cosine over ``steps``."""
        return cosine_schedule(min(update, self.steps - 1), self.steps, self.tau, 1.0)

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        (x1, _), (x2, _) = two_views(batch["image"], g, self.views)
        b = x1.shape[0]
        p = self.predictor(self.projector(pooled_encoding(net, torch.cat([x1, x2]))))  # (2B, D)
        tau = self.momentum(int(self.updates))
        with torch.no_grad():
            ema_update(self.target_net, net, tau)
            ema_update(self.target_projector, self.projector, tau)
            self.updates += 1
            self.target_net.train()  # BYOL's target normalises with batch statistics
            z = self.target_projector(pooled_encoding(self.target_net, torch.cat([x1, x2])))  # (2B, D)
        loss = byol_loss(p[:b], p[b:], z[:b], z[b:])
        self.chance = UNCORRELATED_LOSS
        return loss, {"tau": tau}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        return list(net.encoder.parameters()) + list(self.projector.parameters()) + list(self.predictor.parameters())

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "projector": self.projector.state_dict(),
            "predictor": self.predictor.state_dict(),
            "target_net": self.target_net.state_dict(),
            "target_projector": self.target_projector.state_dict(),
        }
