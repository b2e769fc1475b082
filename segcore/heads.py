"""Projection heads: g1 (global, on the last encoder block), g2 (local, per pixel), hyper-pixel MLP.

Heads exist only for pretraining / the auxiliary contrastive term: fine-tuning drops them.
Linear layers have no bias where the reference (Chaitanya et al.) has none: a bias before an
L2 normalisation or a BatchNorm only adds a direction shared by every embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalProjectionHead(nn.Module):
    """g1: flatten the last encoder block, Linear(hidden) + ReLU, Linear(out_dim), L2-normalise.

    Input (B, C, h, w) with ``in_features = C * h * w``; output (B, out_dim), unit norm.
    """

    def __init__(self, in_features: int, hidden: int = 1024, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(),  # (B, C * h * w)
            nn.Linear(in_features, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=1)  # (B, out_dim)


class LocalProjectionHead(nn.Module):
    """g2: 1x1 conv + BN + ReLU, then a linear 1x1 conv; applied to every pixel.

    Input (B, in_channels, h, w); output (B, out_channels, h, w), not normalised (the local loss
    flattens 3x3 windows of it, maps them linearly and normalises those).
    ``hidden`` and ``out_channels`` default to ``in_channels`` (the reference keeps the width).
    """

    def __init__(self, in_channels: int, hidden: int | None = None, out_channels: int | None = None) -> None:
        super().__init__()
        hidden = in_channels if hidden is None else hidden
        out_channels = in_channels if out_channels is None else out_channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, out_channels, h, w)


class HyperPixelProjectionHead(nn.Module):
    """MLP on hyper-pixel (superpixel-pooled hypercolumn) embeddings, L2-normalised output.

    Input (P, in_dim); output (P, out_dim), unit norm. Linear + ReLU + Linear as in MoCo v2.
    """

    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=1)  # (P, out_dim)
