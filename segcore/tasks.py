"""LightningModules: the training step only connects parts from losses/heads/queues.

:class:`SegmentationTask` is the supervised fine-tuning task for both domains. Validation
accumulates per-group, per-class true-positive / false-positive / false-negative counts, so the
MRI score is the Dice of whole volumes (groups = subjects) and the remote-sensing score is the
mIoU over all validation pixels.

Resumable by construction: the random draws of a training step (augmentation, views) come from
a generator seeded by (seed, rank, global step) (:func:`~segcore.training.step_generator`), and
every record a task keeps between steps (best weights, scores, history, losses) is saved into
and restored from Lightning checkpoints (``on_save_checkpoint`` / ``on_load_checkpoint``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from segcore.augment import BatchSpatialAugment
from segcore.losses import SoftDiceCELoss
from segcore.momentum import ema_decay, ema_update, momentum_copy
from segcore.training import step_generator
from segcore.views import crop_resize, intensity_jitter


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



# Adam(W) as one multi-tensor (foreach) kernel per operation over all parameters, not a Python
# loop over ~170 tensors: the AdamW step of the RS dual network takes 7.0 instead of 13.8 ms on
# one CPU thread (4 % of a training step), with bitwise the same update. torch picks foreach on
# CUDA by itself but the loop on CPU. Not fused=True: its CPU kernel (torch 2.14) updates a
# channels-last weight wrongly when the gradient is contiguous (0.015 off after 10 steps).
OPTIMIZER_KWARGS = {"foreach": True}


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
        x, y = batch["image"], batch["label"]
        if self.augment is not None:
            x, y = self.augment(x, y, step_generator(self.seed, self.global_rank, self.global_step))
        logits = self.net(x)  # (B, K, H, W)
        loss = self.loss(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(logits))
        return loss

    @property
    def eval_net(self) -> nn.Module:
        """The network validated and kept: the weight average when ``weight_ema`` > 0, else ``net``."""
        return self.net if self.ema_net is None else self.ema_net

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_net is not None:  # after the optimiser step
            ema_update(self.ema_net, self.net, ema_decay(self.weight_ema, int(self.global_step) - 1), average_buffers=True)

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
            "best_score": self.best_score, "best_step": self.best_step, "best_state": self.best_state, "history": self.history,
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
        return [g for g in ({"params": slow, "lr": self.lr * self.pretrained_lr_scale}, {"params": fast}) if g["params"]]

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.param_groups(), lr=self.lr, weight_decay=self.weight_decay, **OPTIMIZER_KWARGS)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_steps), eta_min=self.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def group_ids(groups: list[str], device: torch.device) -> torch.Tensor:
    """Map group (volume) names of a batch to consecutive integer ids: (B,) long."""
    names = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    return torch.tensor([names[g] for g in groups], device=device, dtype=torch.long)


class GlobalContrastiveTask(L.LightningModule):
    """Stage 1 (METHODS §1): encoder + g1 trained with G^R, G^D- or G^D on two views per slice."""

    def __init__(
        self,
        net: nn.Module,
        head: nn.Module,
        loss: nn.Module,
        lr: float = 1e-3,
        crop_scale: tuple[float, float] = (0.5, 0.75),
        brightness: float = 0.3,
        contrast: tuple[float, float] = (0.7, 1.3),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.net, self.head, self.loss = net, head, loss
        self.lr = lr
        self.crop_scale, self.brightness, self.contrast = crop_scale, brightness, contrast
        self.seed = seed
        self.losses: list[float] = []

    def view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return intensity_jitter(crop_resize(x, self.crop_scale, g), g, brightness=self.brightness, contrast=self.contrast)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = batch["image"]  # (B, C, H, W)
        b = x.shape[0]
        g = step_generator(self.seed, self.global_rank, self.global_step)
        views = torch.cat([self.view(x, g), self.view(x, g)])  # (2B, C, H, W): view 1 then view 2
        z = self.head(self.net.encode(views)[-1])  # (2B, D), unit norm
        meta = batch["meta"]
        volume = group_ids(meta["group"], x.device).repeat(2)  # (2B,)
        partition = torch.as_tensor(meta["partition"], device=x.device).repeat(2)
        slice_uid = torch.as_tensor(meta["sample"], device=x.device).repeat(2)
        loss = self.loss(z, volume, partition, slice_uid)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=b)
        self.losses.append(float(loss.detach()))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["contrastive_task"] = {"losses": self.losses}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.losses = list(checkpoint["contrastive_task"]["losses"])

    def configure_optimizers(self) -> Any:
        params = list(self.net.encoder.parameters()) + list(self.head.parameters())
        return torch.optim.Adam(params, lr=self.lr, **OPTIMIZER_KWARGS)


class LocalContrastiveTask(L.LightningModule):
    """Stage 2 (METHODS §2): frozen encoder; the first ``n_blocks`` decoder blocks + g2 are trained
    with L^R or L^D on two intensity-only views (pixels stay aligned between views)."""

    def __init__(
        self,
        net: nn.Module,
        n_blocks: int,
        head: nn.Module,
        loss: nn.Module,
        lr: float = 1e-3,
        brightness: float = 0.3,
        contrast: tuple[float, float] = (0.7, 1.3),
        noise_std: float = 0.05,
        gamma: tuple[float, float] | None = (0.7, 1.5),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.net, self.head, self.loss = net, head, loss
        self.n_blocks = n_blocks
        self.lr = lr
        self.brightness, self.contrast, self.noise_std, self.gamma = brightness, contrast, noise_std, gamma
        self.seed = seed
        self.losses: list[float] = []
        for p in self.net.encoder.parameters():
            p.requires_grad_(False)

    # BatchNorm statistics of the frozen encoder must not drift either: eval mode from the start
    # of every fit (on_train_start also runs when Lightning resumes mid-epoch, where it skips
    # on_train_epoch_start) and after every later switch to training mode
    def on_train_start(self) -> None:
        self.net.encoder.eval()

    def train(self, mode: bool = True) -> LocalContrastiveTask:
        super().train(mode)
        self.net.encoder.eval()
        return self

    def view(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return intensity_jitter(
            x, g, brightness=self.brightness, contrast=self.contrast, noise_std=self.noise_std, gamma=self.gamma
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = batch["image"]  # (B, C, H, W)
        b = x.shape[0]
        g = step_generator(self.seed, self.global_rank, self.global_step)
        with torch.no_grad():
            feats = self.net.encode(torch.cat([self.view(x, g), self.view(x, g)]))  # levels of (2B, C_i, h_i, w_i)
        f = self.head(self.net.decode(feats, self.n_blocks)[-1])  # (2B, C, h, w)
        f1, f2 = f[:b], f[b:]
        meta = batch["meta"]
        volume = group_ids(meta["group"], x.device)
        partition = torch.as_tensor(meta["partition"], device=x.device)
        loss = self.loss(f1, f2, volume, partition)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=b)
        self.losses.append(float(loss.detach()))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["contrastive_task"] = {"losses": self.losses}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.losses = list(checkpoint["contrastive_task"]["losses"])

    def configure_optimizers(self) -> Any:
        params = [p for blk in list(self.net.decoder)[: self.n_blocks] for p in blk.parameters()]
        params += list(self.head.parameters()) + list(self.loss.parameters())
        return torch.optim.Adam(params, lr=self.lr, **OPTIMIZER_KWARGS)
