"""G^R: SimCLR over slices (Chaitanya et al., NeurIPS 2020; docs/mri_pretraining.md): positives =
the other view of the same slice, negatives = every other image of the batch.

Its batches are random slices (:func:`~segcore.strategies.random_batches.distinct_loader`: the
same number of slices as a G^D batch, m volumes × S partitions, drawn at random and distinct),
not the partition-stratified batches of G^D- and G^D, which G^R does not need: its loss ignores
partitions.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from segcore.errors import InputError
from segcore.prepared import PreparedData, PreparedDataset
from segcore.strategies.global_contrastive import GlobalContrastiveStrategy
from segcore.strategies.random_batches import distinct_loader


class GRStrategy(GlobalContrastiveStrategy):
    name = "GR"

    def batch_size(self, data: PreparedData) -> int:
        """Slices per process and step: m × S, as a G^D batch (S = the data's partitions; 1 without)."""
        partitions = len({int(p) for p in data.partition if p >= 0}) or 1
        return self.volumes_per_batch * partitions

    def loader(
        self,
        data: PreparedData,
        groups: list[str],
        steps: int,
        seed: int,
        start_step: int,
        world: int,
        workers: int,
        pin_memory: bool,
    ) -> DataLoader:
        ds = PreparedDataset(data, data.sample_indices(groups), with_label=False)
        size = self.batch_size(data)
        if len(ds) < size * world:
            raise InputError(data.folder, f"only {len(ds)} slices to pretrain on; a G^R batch needs {size * world}")
        return distinct_loader(ds, size, world, steps, seed, start_step, workers, pin_memory)
