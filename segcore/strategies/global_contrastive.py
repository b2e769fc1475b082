"""The global stage of Chaitanya et al. (NeurIPS 2020; docs/methods.md): encoder + g1 trained on
two cropped, intensity-jittered views per slice, with batches of m volumes × S partitions.

The three strategies differ only in their positives and negatives (:mod:`.gr`, :mod:`.gd_minus`,
:mod:`.gd`; masks in :func:`segcore.losses.global_contrastive.global_masks`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from segcore.heads import GlobalProjectionHead
from segcore.losses.global_contrastive import GlobalContrastiveLoss
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData
from segcore.strategies.base import PretrainStrategy, partition_loader
from segcore.strategies.partitions import PartitionBatchSampler
from segcore.views import crop_resize, intensity_jitter

# the reference's intensity augmentation of the global views
BRIGHTNESS = 0.3
CONTRAST = (0.7, 1.3)


def group_ids(groups: list[str], device: torch.device) -> torch.Tensor:
    """Map group (volume) names of a batch to consecutive integer ids: (B,) long."""
    names = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    return torch.tensor([names[g] for g in groups], device=device, dtype=torch.long)


class GlobalContrastiveStrategy(PretrainStrategy):
    """g1 on the last encoder block (flattened; its size from ``image_size``), InfoNCE with the
    masks of ``name``; ``volumes_per_batch`` m volumes per process and step."""

    stage = "global"

    def __init__(
        self,
        net: SegmentationNetwork,
        image_size: tuple[int, int],
        volumes_per_batch: int = 4,
        temperature: float = 0.1,
        crop_scale: tuple[float, float] = (0.5, 0.75),
    ) -> None:
        super().__init__()
        c, h, w = net.bottleneck_shape(image_size)
        self.head = GlobalProjectionHead(c * h * w)
        self.criterion = GlobalContrastiveLoss(self.name, temperature=temperature)
        self.volumes_per_batch, self.crop_scale = volumes_per_batch, tuple(crop_scale)

    def view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return intensity_jitter(crop_resize(x, self.crop_scale, g), g, brightness=BRIGHTNESS, contrast=CONTRAST)

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["image"]  # (B, C, H, W)
        views = torch.cat([self.view(x, g), self.view(x, g)])  # (2B, C, H, W): view 1 then view 2
        z = self.head(net.encode(views)[-1])  # (2B, D), unit norm
        meta = batch["meta"]
        volume = group_ids(meta["group"], x.device).repeat(2)  # (2B,)
        partition = torch.as_tensor(meta["partition"], device=x.device).repeat(2)
        slice_uid = torch.as_tensor(meta["sample"], device=x.device).repeat(2)
        loss = self.criterion(z, volume, partition, slice_uid)
        self.chance = float(self.criterion.chance)
        return loss, {}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        return list(net.encoder.parameters()) + list(self.head.parameters())

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
        # the global batch of all processes: m volumes per process, each process takes its m
        sampler = PartitionBatchSampler(data, groups, self.volumes_per_batch * world, steps, seed)
        return partition_loader(data, sampler, steps, start_step, workers, pin_memory)

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"g1": self.head.state_dict()}
