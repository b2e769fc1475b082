"""What the generic self-supervised baselines share (MoCo v2, BYOL, DenseCL, DetCon; their
definitions: docs/ssl_baselines.md): batches of random distinct images, two views for any number
of channels (:mod:`segcore.strategies.ssl_views`), the pooled encoder output as the image-level
representation, AdamW.

The encoder is the segmentation network's (``net.encode(x)[-1]``, the bottleneck map), so the
pretrained weights go to fine-tuning under the checkpoint prefix ``encoder.`` (DetCon, which pools
the decoder's hypercolumn, also under ``decoder.``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from segcore.errors import InputError
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData, PreparedDataset
from segcore.strategies.base import PretrainStrategy
from segcore.strategies.random_batches import distinct_loader
from segcore.strategies.ssl_views import ViewOptions
from segcore.tasks.optim import OPTIMIZER_KWARGS


def encoder_channels(net: SegmentationNetwork, image_size: Sequence[int]) -> int:
    """Width C of ``net.encode(x)[-1]`` for images of ``image_size`` (H, W): one forward pass of a
    zero image in eval mode (BatchNorm statistics untouched), the train/eval mode restored."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        c = int(net.encode(torch.zeros(1, net.in_channels, *(int(s) for s in image_size)))[-1].shape[1])
    net.train(was_training)
    return c


def pooled_encoding(net: SegmentationNetwork, x: torch.Tensor) -> torch.Tensor:
    """The image-level representation: the bottleneck map averaged over space, (B, C)."""
    return net.encode(x)[-1].mean(dim=(2, 3))


class BaselineStrategy(PretrainStrategy):
    """Base of the four baselines: ``batch_size`` distinct images per process and step, views
    ``views``, AdamW with ``weight_decay``. Subclasses implement :meth:`loss` and
    :meth:`trained_parameters`; DetCon overrides :meth:`dataset` to add masks."""

    def __init__(self, *, batch_size: int, views: ViewOptions, weight_decay: float = 1e-4) -> None:
        super().__init__()
        if batch_size < 2:
            raise ValueError(f"contrastive batches need at least 2 images, got {batch_size}")
        self.batch_size, self.views, self.weight_decay = batch_size, views, weight_decay

    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay, **OPTIMIZER_KWARGS)

    def dataset(self, data: PreparedData, groups: list[str]) -> PreparedDataset:
        return PreparedDataset(data, data.sample_indices(groups), with_label=False)

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
        ds = self.dataset(data, groups)
        if len(ds) < self.batch_size * world:
            raise InputError(
                data.folder,
                f"only {len(ds)} images to pretrain on; a batch needs {self.batch_size * world} distinct ones",
            )
        return distinct_loader(ds, self.batch_size, world, steps, seed, start_step, workers, pin_memory)
