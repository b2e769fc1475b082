"""Supervised segmentation loss: soft Dice + cross-entropy with an ignore label."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segcore.labels import IGNORE_INDEX


class SoftDiceCELoss(nn.Module):
    """``dice_weight`` * (1 - mean soft Dice) + ``ce_weight`` * cross-entropy.

    ``logits`` (B, K, *spatial), ``target`` (B, *spatial) integer labels. Soft Dice per class is
    batch-wise, (2 sum p*y + smooth) / (sum p + sum y + smooth) over all valid pixels of the
    batch, averaged over classes 1..K-1 (0..K-1 with ``include_background``). Cross-entropy is the
    mean over valid pixels. Pixels labelled ``ignore_index`` count in neither.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        include_background: bool = False,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_classes < 2 and not include_background:
            raise ValueError("Dice without background needs num_classes >= 2")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.include_background, self.smooth = include_background, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        K = self.num_classes
        if logits.shape[1] != K or logits.shape[2:] != target.shape[1:] or logits.shape[0] != target.shape[0]:
            raise ValueError(f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)} and K={K}")
        target = target.long()
        valid = target != self.ignore_index  # (B, *spatial)
        if bool((valid & ((target < 0) | (target >= K))).any()):
            raise ValueError(f"target has labels outside [0, {K}) that are not ignore_index={self.ignore_index}")
        t = torch.where(valid, target, 0)
        w = valid.unsqueeze(1).to(logits.dtype)  # (B, 1, *spatial)
        probs = logits.softmax(dim=1) * w  # (B, K, *spatial)
        onehot = F.one_hot(t, K).movedim(-1, 1).to(logits.dtype) * w  # (B, K, *spatial)
        dims = (0, *range(2, logits.ndim))
        inter = (probs * onehot).sum(dims)  # (K,)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)  # (K,)
        dice_loss = 1 - (dice if self.include_background else dice[1:]).mean()
        ce = F.cross_entropy(logits, t, reduction="none")  # (B, *spatial)
        ce = torch.where(valid, ce, 0.0).sum() / valid.sum().clamp(min=1)
        return self.ce_weight * ce + self.dice_weight * dice_loss
