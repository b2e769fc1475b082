"""LightningModules: the training step only connects parts from losses/heads/queues.

:class:`SegmentationTask` is the supervised fine-tuning task for both domains. Validation
accumulates per-group, per-class true-positive / false-positive / false-negative counts, so the
MRI score is the Dice of whole volumes (groups = subjects) and the remote-sensing score is the
mIoU over all validation pixels.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from torch import nn

from segcore.losses import SoftDiceCELoss


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


class SegmentationTask(L.LightningModule):
    """Supervised segmentation: soft Dice + cross-entropy, best weights kept by validation score."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        ignore_index: int = 255,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        val_metric: str = "dice",
        max_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.net = net
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
        logits = self.net(batch["image"])  # (B, K, H, W)
        loss = self.loss(logits, batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(logits))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._counts = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.net(batch["image"])
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
        self.log(f"val/{self.val_metric}", score, prog_bar=True)
        self.history.append({"step": int(self.global_step), f"val_{self.val_metric}": score})
        if not math.isnan(score) and score > self.best_score:
            self.best_score = score
            self.best_step = int(self.global_step)
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.net.state_dict().items()})

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_steps), eta_min=self.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
