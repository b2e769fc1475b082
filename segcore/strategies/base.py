"""What a pretraining strategy is: its views, its batches, its loss, and what it exports.

A strategy is an ``nn.Module`` holding its own trainable parts (projection heads, region
embeddings, momentum networks, queues), so a Lightning checkpoint of the
:class:`~segcore.tasks.pretrain.PretrainTask` that runs it holds everything a resumed run
needs. The task's training step only connects the parts: ``loss(net, batch, g)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData, PreparedDataset
from segcore.runtime.sampling import ShardedBatchSampler, batch_loader, step_loader
from segcore.tasks.optim import OPTIMIZER_KWARGS


class PretrainStrategy(nn.Module):
    """Base class of a pretraining method registered by name (:mod:`segcore.strategies`).

    Subclasses set ``name`` and ``stage`` (recorded in the checkpoint) and implement
    :meth:`loss`, :meth:`trained_parameters` and :meth:`loader`; the other methods have
    defaults that suit most strategies.
    """

    name: ClassVar[str]
    stage: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.chance: float = float("nan")  # the loss at chance level of the last step

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The pretext loss of one batch (and extra values to log), random draws from ``g``."""
        raise NotImplementedError

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        raise NotImplementedError

    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, **OPTIMIZER_KWARGS)

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
        """The training loader: ``steps`` batches, batch k a function of (seed, k), starting at
        ``start_step`` (a resumed run); each of ``world`` processes takes its slice."""
        raise NotImplementedError

    def set_train_mode(self, net: SegmentationNetwork, mode: bool) -> None:
        """Called whenever the task switches train/eval mode (e.g. to keep a frozen part in eval)."""

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        """State dicts stored apart under ``heads`` in the checkpoint (fine-tuning drops them)."""
        return {}


def partition_loader(
    data: PreparedData, sampler: Any, steps: int, start_step: int, workers: int, pin_memory: bool
) -> DataLoader:
    """Loader over a deterministic sampler of global batches of prepared sample indices."""
    ds = PreparedDataset(data, list(range(len(data))), with_label=False)
    return batch_loader(ds, ShardedBatchSampler(sampler, steps, start_step), workers, pin_memory)


def random_loader(
    ds: PreparedDataset, batch_size: int, steps: int, seed: int, start_step: int, workers: int, pin_memory: bool
) -> DataLoader:
    """Loader of ``batch_size`` samples drawn with replacement per step and process."""
    return step_loader(ds, batch_size, steps, seed, workers, start_step=start_step, pin_memory=pin_memory)
