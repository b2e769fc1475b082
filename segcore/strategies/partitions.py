"""Partition-aware batches for the global and local contrastive strategies (docs/methods.md).

A batch takes ``m`` volumes × ``S`` partitions and one random slice from each partition
block; the partition of a slice is read from the prepared manifest, never recomputed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from segcore.errors import InputError
from segcore.prepared import PreparedData


class PartitionBatchSampler(Sampler[list[int]]):
    """Yields ``steps`` batches of sample indices, ordered volume-major: [v0p0, v0p1, ..., v1p0, ...]."""

    def __init__(
        self, data: PreparedData, groups: Sequence[str], volumes_per_batch: int, steps: int, seed: int
    ) -> None:
        self.steps = steps
        self.m = volumes_per_batch
        self.seed = seed
        parts = sorted({int(p) for p in data.partition if p >= 0})
        if not parts:
            raise InputError(data.folder, "prepared data has no slice partitions (MRI preprocess writes them)")
        self.partitions = parts
        table: dict[str, list[np.ndarray]] = {}
        for g in groups:
            idx = data.sample_indices([g])
            blocks = [idx[data.partition[idx] == p] for p in parts]
            if any(len(b) == 0 for b in blocks):
                continue  # a volume with fewer slices than partitions cannot fill every block
            table[g] = blocks
        if len(table) < self.m:
            raise InputError(
                data.folder, f"only {len(table)} volumes have a slice in every partition; need {self.m} per batch"
            )
        self.groups = sorted(table)
        self.table = table

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.steps):
            chosen = rng.choice(len(self.groups), size=self.m, replace=False)
            batch = []
            for v in chosen:
                for block in self.table[self.groups[v]]:
                    batch.append(int(block[rng.integers(len(block))]))
            yield batch
