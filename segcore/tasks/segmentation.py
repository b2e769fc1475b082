"""Supervised segmentation task for both domains, with validation by whole groups.

Validation accumulates per-group, per-class true-positive / false-positive / false-negative
counts, so the MRI score is the Dice of whole volumes (groups = subjects) and the
remote-sensing score is the mIoU over all validation pixels.

Resumable by construction: the random draws of a training step (augmentation) come from a
generator seeded by (seed, rank, global step) (:func:`~segcore.runtime.seeds.step_generator`),
and every record the task keeps between steps (best weights, scores, history) is saved into and
restored from Lightning checkpoints (``on_save_checkpoint`` / ``on_load_checkpoint``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from segcore.augment import BatchSpatialAugment
from segcore.losses.segmentation import SoftDiceCELoss
from segcore.momentum import ema_decay, ema_update, momentum_copy
from segcore.prepared import IGNORE_INDEX
from segcore.runtime.seeds import step_generator
from segcore.tasks.optim import adamw_cosine


def class_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Per-class (tp, fp, fn) counts of one prediction: (K, 3) int64; ignored pixels excluded."""
    valid = target != ignore_index
    p = pred[valid]
    t = target[valid]
    k = torch.arange(num_classes, device=pred.device)[:, None]  # (K, 1)
    tp = ((p[None] == k) & (t[None] == k)).sum(1)
    fp = ((p[None] == k) & (t[None] != k)).sum(1)
    fn = ((p[None] != k) & (t[None] == k)).sum(1)
    return torch.stack([tp, fp, fn], dim=1).long()  # (K, 3)


def score_from_counts(counts: dict[str, torch.Tensor], metric: str) -> float:
    """``dice``: mean over groups of the mean foreground Dice (classes absent from both skipped).
    ``miou``: IoU of every class over the pooled counts, averaged over classes seen."""
    if not counts:
        return float("nan")
    if metric == "dice":
        per_group = []
        for c in counts.values():
            tp, fp, fn = c[1:, 0].double(), c[1:, 1].double(), c[1:, 2].double()
            denom = 2 * tp + fp + fn
            present = denom > 0
            if present.any():
                per_group.append(float((2 * tp[present] / denom[present]).mean()))
        return float(sum(per_group) / len(per_group)) if per_group else float("nan")
    if metric == "miou":
        c = torch.stack(list(counts.values())).sum(0).double()  # (K, 3)
        denom = c.sum(1)
        present = denom > 0
        return float((c[present, 0] / denom[present]).mean()) if present.any() else float("nan")
    raise ValueError(f"unknown validation metric {metric!r}")


@dataclass
class SupervisedStep:
    """The labeled part of a training step: its loss (every supervised term), the decoder maps
    of the network on the augmented batch (coarse to fine; the last is what the head reads) and
    the augmented labels (B, H, W)."""

    loss: torch.Tensor
    features: list[torch.Tensor]
    labels: torch.Tensor


class SegmentationTask(L.LightningModule):
    """Supervised segmentation: soft Dice + cross-entropy, best weights kept by validation score."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        val_metric: str = "dice",
        max_steps: int = 1000,
        augment: BatchSpatialAugment | None = None,
        seed: int = 0,
        weight_ema: float = 0.0,
        pretrained: Sequence[str] = (),
        pretrained_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = net
        if pretrained_lr_scale <= 0:
            raise ValueError(f"pretrained_lr_scale must be > 0, got {pretrained_lr_scale}")
        # parameters of net loaded from a pretrained checkpoint train at lr x pretrained_lr_scale
        self.pretrained, self.pretrained_lr_scale = set(pretrained), pretrained_lr_scale
        if not 0.0 <= weight_ema < 1.0:
            raise ValueError(f"weight_ema must lie in [0, 1), got {weight_ema}")
        self.weight_ema = weight_ema
        # an exponential moving average of the weights, validated and exported instead of net
        self.ema_net = momentum_copy(net) if weight_ema > 0 else None
        self.augment = augment
        self.seed = seed
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_metric = val_metric
        self.max_steps = max_steps
        self.loss = SoftDiceCELoss(num_classes, ignore_index=ignore_index, ce_weight=ce_weight, dice_weight=dice_weight)
        self.best_score = -math.inf
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self._counts: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        sup = self.supervised_step(batch)
        self.log("train/loss", sup.loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(sup.labels))
        return sup.loss

    def supervised_step(self, batch: dict[str, Any]) -> SupervisedStep:
        """The labeled part of a training step: augmentation (drawn from the step's generator),
        the forward pass, the loss. Subclasses add terms here (and log their parts); a
        semi-supervised task adds the unlabeled part after it."""
        x, y = batch["image"], batch["label"]
        if self.augment is not None:
            x, y = self.augment(x, y, step_generator(self.seed, self.global_rank, self.global_step))
        logits, features = self.net.forward_with_features(x)  # (B, K, H, W), decoder maps
        return SupervisedStep(self.loss(logits, y), features, y)

    @property
    def eval_net(self) -> nn.Module:
        """The network validated and kept: the weight average when ``weight_ema`` > 0, else ``net``."""
        return self.net if self.ema_net is None else self.ema_net

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_net is not None:  # after the optimiser step
            ema_update(
                self.ema_net, self.net, ema_decay(self.weight_ema, int(self.global_step) - 1), average_buffers=True
            )

    def on_validation_epoch_start(self) -> None:
        self._counts = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.eval_net(batch["image"])
        loss = self.loss(logits, batch["label"])
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(logits))
        pred = logits.argmax(1)  # (B, H, W)
        for i, group in enumerate(batch["meta"]["group"]):
            c = class_counts(pred[i], batch["label"][i], self.num_classes, self.ignore_index).cpu()
            self._counts[group] = self._counts.get(group, 0) + c

    def on_validation_epoch_end(self) -> None:
        score = score_from_counts(self._counts, self.val_metric)
        if self.trainer.sanity_checking:
            return
        # every process scores the whole validation set with the same weights: same value
        self.log(f"val/{self.val_metric}", score, prog_bar=True, sync_dist=True)
        self.history.append({"step": int(self.global_step), f"val_{self.val_metric}": score})
        if not math.isnan(score) and score > self.best_score:
            self.best_score = score
            self.best_step = int(self.global_step)
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.eval_net.state_dict().items()})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["segmentation_task"] = {
            "best_score": self.best_score,
            "best_step": self.best_step,
            "best_state": self.best_state,
            "history": self.history,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["segmentation_task"]
        self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
        self.best_state, self.history = state["best_state"], list(state["history"])

    def param_groups(self, extra: Sequence[nn.Parameter] = ()) -> list[dict[str, Any]]:
        """AdamW parameter groups: ``net``'s pretrained parameters at lr x ``pretrained_lr_scale``
        (when that is not 1), every other parameter of ``net`` and ``extra`` at lr."""
        if self.pretrained_lr_scale == 1.0 or not self.pretrained:
            return [{"params": [*self.net.parameters(), *extra]}]
        named = list(self.net.named_parameters())
        slow = [p for n, p in named if n in self.pretrained]
        fast = [p for n, p in named if n not in self.pretrained] + list(extra)
        return [
            g for g in ({"params": slow, "lr": self.lr * self.pretrained_lr_scale}, {"params": fast}) if g["params"]
        ]

    def configure_optimizers(self) -> Any:
        return adamw_cosine(self.param_groups(), self.lr, self.weight_decay, self.max_steps)
