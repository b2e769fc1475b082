"""Training and evaluation loaders whose batches are a function of (seed, step).

Under DDP the samplers draw one global batch of ``batch_size × world`` and each process takes
its own contiguous slice, so N processes with batch b see the samples one process with batch
N·b sees; no DistributedSampler is involved.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from segcore.runtime.seeds import step_seed


def collate_samples(batch: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in batch[0]:
        if key == "meta":
            out["meta"] = {k: [b["meta"][k] for b in batch] for k in batch[0]["meta"]}
        else:
            out[key] = torch.stack([torch.as_tensor(b[key]) for b in batch])
    return out


def process_rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rank_slice(batch: Sequence[int], rank: int, world: int) -> list[int]:
    if len(batch) % world:
        raise ValueError(f"a global batch of {len(batch)} samples does not split over {world} processes")
    per = len(batch) // world
    return [int(i) for i in batch[rank * per : (rank + 1) * per]]


class StepBatchSampler(Sampler[list[int]]):
    """Batches drawn with replacement (few labeled samples) where batch k is a function of (seed, k).

    Step k draws a global batch of ``batch_size × world`` indices in ``[0, n_samples)`` from a
    generator seeded by (seed, k); this process yields its rank's contiguous slice of
    ``batch_size``. Iteration starts at ``start_step`` (the restored global step of a resumed
    run). ``len()`` is the whole run's ``steps``: Lightning counts the batches trained before a
    resume as already consumed.
    """

    def __init__(self, n_samples: int, batch_size: int, steps: int, seed: int, start_step: int = 0) -> None:
        if n_samples <= 0 or batch_size <= 0:
            raise ValueError(f"need n_samples > 0 and batch_size > 0, got {n_samples}, {batch_size}")
        self.n_samples, self.batch_size, self.steps, self.seed = n_samples, batch_size, steps, seed
        self.start_step = start_step

    def __len__(self) -> int:
        return self.steps

    def global_batch(self, step: int, world: int = 1) -> np.ndarray:
        """The ``batch_size × world`` sample indices of ``step``: (B·world,) int64."""
        rng = np.random.default_rng(step_seed(self.seed, step))
        return rng.integers(0, self.n_samples, size=self.batch_size * world)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = process_rank_and_world()
        for step in range(self.start_step, self.steps):
            yield _rank_slice(self.global_batch(step, world).tolist(), rank, world)


class ShardedBatchSampler(Sampler[list[int]]):
    """Wraps a deterministic batch sampler (same batches for the same seed, e.g. the MRI
    partition sampler) built for the global batch: skips the ``start_step`` batches a resumed run
    has already trained, and yields this process's contiguous slice of every global batch.

    Skipping replays index draws only (no data is read), so it costs microseconds per step.
    """

    def __init__(self, batches: Sampler[list[int]] | Iterable[list[int]], steps: int, start_step: int = 0) -> None:
        self.batches, self.steps, self.start_step = batches, steps, start_step

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = process_rank_and_world()
        for step, batch in enumerate(self.batches):
            if step >= self.steps:
                return
            if step >= self.start_step:
                yield _rank_slice(batch, rank, world)


def step_loader(
    ds: Dataset, batch_size: int, steps: int, seed: int, workers: int = 0, start_step: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A loader of ``steps`` batches drawn with replacement; batch k is a function of (seed, k)
    (:class:`StepBatchSampler`), so a resumed run (``start_step`` > 0) continues the same stream."""
    sampler = StepBatchSampler(len(ds), batch_size, steps, seed, start_step=start_step)  # type: ignore[arg-type]
    return batch_loader(ds, sampler, workers=workers, pin_memory=pin_memory)


def batch_loader(
    ds: Dataset, batch_sampler: Sampler[list[int]], workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A training loader over a batch sampler (one item = one batch of sample indices)."""
    return DataLoader(
        ds,
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )


def eval_loader(ds: Dataset, batch_size: int, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_samples, pin_memory=pin_memory
    )
