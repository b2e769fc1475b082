"""The label-guided local contrastive term of semi-supervised fine-tuning: pixel embeddings of
the last decoder map (a small projection head), labeled pixels with their ground truth and
confidently pseudo-labeled unlabeled pixels with their pseudo-label, sampled per class
(:mod:`segcore.losses.label_contrastive`)."""

from __future__ import annotations

import torch
from torch import nn

from segcore.losses.label_contrastive import label_contrastive_loss, sample_pixels_per_class


class PixelProjectionHead(nn.Module):
    """Linear(C, H) + ReLU + Linear(H, D) applied to pixel features (N, C) → (N, D), H = max(C, D);
    the loss normalises the output."""

    def __init__(self, in_channels: int, out_dim: int = 64) -> None:
        super().__init__()
        hidden = max(in_channels, out_dim)
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def pixel_contrast(
    head: PixelProjectionHead,
    maps: list[torch.Tensor],
    labels: list[torch.Tensor],
    num_classes: int,
    per_class: int,
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The term over the pixels of several feature maps (each (B, C, H, W)) and their labels (each
    (B, H, W); values outside 0..K-1, e.g. the ignore index or -1, are never sampled): up to
    ``per_class`` pixels per class over all of them together, projected by ``head``."""
    feats = torch.cat([m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in maps])  # (P, C)
    flat = torch.cat([lab.reshape(-1) for lab in labels])  # (P,)
    idx = sample_pixels_per_class(flat, num_classes, per_class, generator)
    return label_contrastive_loss(head(feats[idx].float()), flat[idx], temperature)
