"""The local stage of Chaitanya et al. (docs/methods.md): the global stage's encoder frozen, the
first l decoder blocks + g2 trained on two intensity-only views (pixels stay aligned), regions of
the decoder map contrasted by :class:`~segcore.losses.local_contrastive.LocalContrastiveLoss`.

L^R and L^D differ only in their positives (:mod:`.lr`, :mod:`.ld`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from segcore.heads import LocalProjectionHead
from segcore.losses.local_contrastive import LocalContrastiveLoss
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData
from segcore.strategies.base import PretrainStrategy, partition_loader
from segcore.strategies.global_contrastive import BRIGHTNESS, CONTRAST, group_ids
from segcore.strategies.partitions import PartitionBatchSampler
from segcore.views import intensity_jitter

# the local views' gamma range: intensity only, so pixels stay aligned between views
GAMMA = (0.7, 1.5)


class LocalContrastiveStrategy(PretrainStrategy):
    """g2 on the output of decoder block ``n_blocks`` (width ``net.decoder_channels[n_blocks - 1]``);
    ``negatives``: the reference's 5 neighbouring regions, all other regions of the image, or the
    whole batch (:func:`~segcore.losses.local_contrastive.local_masks`)."""

    stage = "local"

    def __init__(
        self,
        net: SegmentationNetwork,
        n_blocks: int,
        volumes_per_batch: int = 4,
        temperature: float = 0.1,
        negatives: str = "neighbours",
        noise_std: float = 0.05,
    ) -> None:
        super().__init__()
        if not 1 <= n_blocks <= len(net.decoder):
            raise ValueError(f"the local stage trains 1..{len(net.decoder)} decoder blocks, got {n_blocks}")
        width = net.decoder_channels[n_blocks - 1]
        self.n_blocks = n_blocks
        self.head = LocalProjectionHead(width)
        self.criterion = LocalContrastiveLoss(
            in_channels=width, strategy=self.name, temperature=temperature, negatives=negatives
        )
        self.volumes_per_batch, self.noise_std = volumes_per_batch, noise_std
        for p in net.encoder.parameters():
            p.requires_grad_(False)

    def set_train_mode(self, net: SegmentationNetwork, mode: bool) -> None:
        # the frozen encoder's BatchNorm statistics must not drift either
        net.encoder.eval()

    def view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return intensity_jitter(x, g, brightness=BRIGHTNESS, contrast=CONTRAST, noise_std=self.noise_std, gamma=GAMMA)

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["image"]  # (B, C, H, W)
        b = x.shape[0]
        with torch.no_grad():
            feats = net.encode(torch.cat([self.view(x, g), self.view(x, g)]))  # levels of (2B, C_i, h_i, w_i)
        f = self.head(net.decode(feats, self.n_blocks)[-1])  # (2B, C, h, w)
        f1, f2 = f[:b], f[b:]
        meta = batch["meta"]
        volume = group_ids(meta["group"], x.device)
        partition = torch.as_tensor(meta["partition"], device=x.device)
        loss = self.criterion(f1, f2, volume, partition)
        self.chance = float(self.criterion.chance)
        return loss, {}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        params = [p for blk in list(net.decoder)[: self.n_blocks] for p in blk.parameters()]
        return params + list(self.head.parameters()) + list(self.criterion.parameters())

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
        sampler = PartitionBatchSampler(data, groups, self.volumes_per_batch * world, steps, seed)
        return partition_loader(data, sampler, steps, start_step, workers, pin_memory)

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"g2": self.head.state_dict(), "g2_region": self.criterion.state_dict()}
