"""G^D (the paper's main method): positives = the other view of the same slice and the same
partition of other volumes; negatives = images of other partitions (docs/methods.md)."""

from __future__ import annotations

from segcore.strategies.global_contrastive import GlobalContrastiveStrategy


class GDStrategy(GlobalContrastiveStrategy):
    name = "GD"
