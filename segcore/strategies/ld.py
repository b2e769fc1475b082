"""L^D: as L^R, plus the same region of the same partition in other volumes (docs/methods.md)."""

from __future__ import annotations

from segcore.strategies.local_contrastive import LocalContrastiveStrategy


class LDStrategy(LocalContrastiveStrategy):
    name = "LD"
