"""Global contrastive loss of the encoder (G^R, G^D-, G^D; docs/methods.md): three mask
builders over one masked InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segcore.losses.info_nce import chance_level, info_nce_masked

GLOBAL_STRATEGIES = ("GR", "GD-", "GD")


def global_masks(
    volume: torch.Tensor, partition: torch.Tensor, slice_uid: torch.Tensor, strategy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative masks (N, N) for one embedding per (volume, partition, slice, view).

    Inputs are (N,) integer ids; two embeddings with equal (volume, slice_uid) are two views of
    one slice. G^R: positives = other view of the same slice, negatives = everything else.
    G^D-: same positives, negatives = other partitions only. G^D: positives also = same
    partition of other volumes (all views), negatives = other partitions.
    """
    if strategy not in GLOBAL_STRATEGIES:
        raise ValueError(f"strategy must be one of {GLOBAL_STRATEGIES}, got {strategy!r}")
    eye = torch.eye(volume.shape[0], dtype=torch.bool, device=volume.device)
    same_volume = volume[:, None] == volume[None, :]  # (N, N)
    same_slice = same_volume & (slice_uid[:, None] == slice_uid[None, :])
    same_partition = partition[:, None] == partition[None, :]
    pos = same_slice
    if strategy == "GD":
        pos = pos | (same_partition & ~same_volume)
    neg = ~same_slice if strategy == "GR" else ~same_partition
    pos = pos & ~eye
    return pos, neg & ~pos & ~eye


class GlobalContrastiveLoss(nn.Module):
    """G^R / G^D- / G^D on g1 embeddings ``z`` (N, D) (normalised here again, harmlessly)."""

    def __init__(self, strategy: str = "GD", temperature: float = 0.1) -> None:
        super().__init__()
        if strategy not in GLOBAL_STRATEGIES:
            raise ValueError(f"strategy must be one of {GLOBAL_STRATEGIES}, got {strategy!r}")
        self.strategy, self.T = strategy, temperature
        self.chance = torch.tensor(float("nan"))  # the loss at chance level of the last call

    def forward(
        self,
        z: torch.Tensor,
        volume: torch.Tensor,
        partition: torch.Tensor,
        slice_uid: torch.Tensor,
    ) -> torch.Tensor:
        dev = z.device
        pos, neg = global_masks(volume.to(dev), partition.to(dev), slice_uid.to(dev), self.strategy)
        self.chance = chance_level(pos, neg)
        return info_nce_masked(F.normalize(z, dim=1), pos, neg, self.T)
