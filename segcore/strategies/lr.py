"""L^R: positive = the same region in the other view of the same image (docs/methods.md)."""

from __future__ import annotations

from segcore.strategies.local_contrastive import LocalContrastiveStrategy


class LRStrategy(LocalContrastiveStrategy):
    name = "LR"
