"""Why the local stage's pretext collapses with negatives from the same image only, and what
batch-wide negatives change (docs/mri_pretraining.md, the demo's local stage)."""

from __future__ import annotations

import math

import pytest
import torch

from segcore.losses.local_contrastive import LocalContrastiveLoss


@pytest.mark.parametrize("negatives", ["neighbours", "all", "batch"])
def test_position_alone_solves_same_image_negatives_but_not_batch_negatives(negatives: str) -> None:
    """Feature maps that encode nothing but the pixel position (random per position, identical in
    every image and view): same-image negatives are other positions, told apart by position alone,
    so the loss is near 0, the collapse the report flags; with batch negatives the same position
    of every other image is a negative exactly as similar as the positive, so the loss cannot
    fall below log(1 + 2(B − 1)), whatever the encoder does with position."""
    torch.manual_seed(0)
    B, C, h, w = 4, 3, 12, 12
    f = torch.randn(1, C, h, w).expand(B, C, h, w)
    loss_fn = LocalContrastiveLoss(C, strategy="LR", temperature=0.1, negatives=negatives, out_dim=32)
    with torch.no_grad():
        loss = float(loss_fn(f, f))
    if negatives == "batch":
        assert loss >= math.log(1 + 2 * (B - 1)) - 1e-4
    else:
        assert loss < 0.05 * float(loss_fn.chance)
