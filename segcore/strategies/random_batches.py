"""Batches of random, distinct images for the strategies that need no partition structure
(G^R, the generic baselines of docs/ssl_baselines.md): every step draws its own batch, a
function of (seed, step), without replacement, so no image is its own negative."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from segcore.runtime.sampling import ShardedBatchSampler, batch_loader
from segcore.runtime.seeds import step_seed


class DistinctRandomBatches(Sampler[list[int]]):
    """``steps`` global batches of ``size`` distinct positions in ``[0, n)``; batch k is drawn
    from a generator seeded by (seed, k), so a resumed run replays the same stream."""

    def __init__(self, n: int, size: int, steps: int, seed: int) -> None:
        if not 0 < size <= n:
            raise ValueError(f"a batch of {size} distinct images needs at least {size} images, got {n}")
        self.n, self.size, self.steps, self.seed = n, size, steps, seed

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> list[int]:
        rng = np.random.default_rng(step_seed(self.seed, step))
        return rng.choice(self.n, size=self.size, replace=False).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.steps):
            yield self.batch(step)


def distinct_loader(
    ds: Dataset,
    batch_size: int,
    world: int,
    steps: int,
    seed: int,
    start_step: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader:
    """Loader of ``batch_size`` distinct samples of ``ds`` per process and step: one global
    batch of ``batch_size × world`` distinct samples per step, each process takes its slice."""
    sampler = DistinctRandomBatches(len(ds), batch_size * world, steps, seed)  # type: ignore[arg-type]
    return batch_loader(ds, ShardedBatchSampler(sampler, steps, start_step), workers, pin_memory)
