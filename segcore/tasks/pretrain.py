"""The pretraining task: one LightningModule for every strategy (:mod:`segcore.strategies`).

The training step connects the parts (a generator seeded by (seed, rank, step), the strategy's
loss of the batch) and keeps the loss per step; the strategy holds everything else.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from segcore.networks import SegmentationNetwork
from segcore.runtime.seeds import step_generator
from segcore.strategies.base import PretrainStrategy


class PretrainTask(L.LightningModule):
    """Trains ``net`` with ``strategy`` (views, loss, heads) at learning rate ``lr``."""

    def __init__(self, net: SegmentationNetwork, strategy: PretrainStrategy, lr: float = 1e-3, seed: int = 0) -> None:
        super().__init__()
        self.net, self.strategy = net, strategy
        self.lr, self.seed = lr, seed
        self.losses: list[float] = []
        # the strategy's chance level at each step (it changes while a queue fills; docs/report.md)
        self.chances: list[float] = []

    def on_train_start(self) -> None:
        # also runs when Lightning resumes mid-epoch, where it skips on_train_epoch_start
        self.strategy.set_train_mode(self.net, self.training)

    def train(self, mode: bool = True) -> PretrainTask:
        super().train(mode)
        self.strategy.set_train_mode(self.net, mode)
        return self

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        g = step_generator(self.seed, self.global_rank, self.global_step)
        loss, extra = self.strategy.loss(self.net, batch, g)
        n = batch["image"].shape[0]
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=n)
        for name, value in extra.items():
            self.log(f"train/{name}", value, on_step=True, batch_size=n)
        self.losses.append(float(loss.detach()))
        self.chances.append(float(self.strategy.chance))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pretrain_task"] = {"losses": self.losses, "chances": self.chances}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.losses = list(checkpoint["pretrain_task"]["losses"])
        # a checkpoint written before chances were kept: unknown (NaN) for its steps
        self.chances = list(checkpoint["pretrain_task"].get("chances", [math.nan] * len(self.losses)))

    def configure_optimizers(self) -> Any:
        return self.strategy.optimizer(self.strategy.trained_parameters(self.net), self.lr)
