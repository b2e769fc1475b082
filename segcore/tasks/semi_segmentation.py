"""Segmentation with a semi-supervised mode (segcore/semi/, docs/semi_supervised.md) beside the
supervised loss, and beside the class-aware hyper-pixel term when that is on.

A training step: the supervised part of the base task alone (its labeled forward is the only
one that updates BatchNorm running statistics), then the mode's unlabeled part with a generator
of its own (a function of seed, rank and step, another stream than the supervised augmentation's:
the labeled batches and their augmentation are those of the same run without the mode), then
one backward pass of the sum. After the optimiser step the mode updates its teacher. The mode
(teacher, heads, threshold state) is module state: every resume checkpoint holds it; the
exported model is ``net`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segcore.runtime.seeds import step_seed
from segcore.salts import SEMI_SALT
from segcore.semi.base import SemiMode
from segcore.tasks.hyperpixel_segmentation import HyperPixelSegmentationTask
from segcore.tasks.segmentation import SegmentationTask


def semi_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator of the unlabeled part of one training step of one process:
    step_seed(seed, rank, step, SEMI_SALT), a stream unrelated to the supervised augmentation's."""
    return torch.Generator().manual_seed(step_seed(seed, rank, step, SEMI_SALT))


class SemiSupervisedMixin:
    """The semi-supervised step on top of a segmentation task (module docstring). Keyword
    ``semi``: the :class:`~segcore.semi.base.SemiMode`; the rest goes to the base task."""

    semi: SemiMode

    def __init__(self, net: nn.Module, num_classes: int, *, semi: SemiMode, **kwargs: Any) -> None:
        super().__init__(net, num_classes, **kwargs)  # type: ignore[call-arg]
        self.semi = semi

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        sup = self.supervised_step(batch)  # type: ignore[attr-defined]
        g = semi_generator(self.seed, self.global_rank, self.global_step)  # type: ignore[attr-defined]
        extra, logs = self.semi.step(self, sup, g)
        loss = sup.loss + extra
        n = len(sup.labels)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)  # type: ignore[attr-defined]
        self.log("train/sup_loss", sup.loss, on_step=True, on_epoch=False, batch_size=n)  # type: ignore[attr-defined]
        for key, value in logs.items():
            self.log(f"train/{key}", value, on_step=True, on_epoch=False, batch_size=n)  # type: ignore[attr-defined]
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)  # type: ignore[misc]
        self.semi.after_optimizer_step(self.net, int(self.global_step))  # type: ignore[attr-defined]

    def on_validation_epoch_end(self) -> None:
        before = len(self.history)  # type: ignore[attr-defined]
        super().on_validation_epoch_end()  # type: ignore[misc]
        if len(self.history) > before:  # type: ignore[attr-defined]
            coverage = self.semi.take_coverage()
            if coverage is not None:  # mean pseudo-label coverage since the previous validation
                self.history[-1]["semi_coverage"] = coverage  # type: ignore[attr-defined]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint["semi_segmentation"] = self.semi.record_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        self.semi.load_record_state(checkpoint.get("semi_segmentation", {}))

    def param_groups(self, extra: Sequence[nn.Parameter] = ()) -> list[dict[str, Any]]:
        # the base task's groups (and its own heads), with the mode's trainable heads at lr
        own = [p for p in self.semi.parameters() if p.requires_grad]
        return super().param_groups([*extra, *own])  # type: ignore[misc]


class SemiSegmentationTask(SemiSupervisedMixin, SegmentationTask):
    """:class:`~segcore.tasks.segmentation.SegmentationTask` with a semi-supervised mode."""


class SemiHyperPixelSegmentationTask(SemiSupervisedMixin, HyperPixelSegmentationTask):
    """:class:`~segcore.tasks.hyperpixel_segmentation.HyperPixelSegmentationTask` (the class-aware
    hyper-pixel term) with a semi-supervised mode."""


def semi_task_class(base: type) -> type:
    """The semi-supervised variant of a task class of fine-tuning."""
    variants = {SegmentationTask: SemiSegmentationTask, HyperPixelSegmentationTask: SemiHyperPixelSegmentationTask}
    if base not in variants:
        raise ValueError(f"no semi-supervised variant of {base.__name__}")
    return variants[base]
