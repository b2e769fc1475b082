"""G^R: SimCLR over slices; positives = the other view of the same slice, negatives = every other
image of the batch (docs/methods.md)."""

from __future__ import annotations

from segcore.strategies.global_contrastive import GlobalContrastiveStrategy


class GRStrategy(GlobalContrastiveStrategy):
    name = "GR"
