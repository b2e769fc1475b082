"""G^D-: positives = the other view of the same slice; negatives = images of other partitions
only (same-partition images of other volumes are neither; docs/methods.md)."""

from __future__ import annotations

from segcore.strategies.global_contrastive import GlobalContrastiveStrategy


class GDMinusStrategy(GlobalContrastiveStrategy):
    name = "GD-"
