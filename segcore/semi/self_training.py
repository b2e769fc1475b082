"""Self-training with a teacher (after Chaitanya et al., MedIA 2023, who add the label-guided local
contrastive term): a teacher predicts the unlabeled samples (eval mode, no gradients); its
confident pixels are pseudo-labels, and image and pseudo-label go through the fine-tuning
augmentation together, exactly as a labeled sample does; the student's loss on them (Dice + CE
over the confident pixels by default) is added with weight lambda. The teacher is an
exponential moving average of the student (``--semi-teacher ema``, updated after every
optimiser step, never by gradients) or the student as it was at the end of the previous round
(``round``: a copy every ``--semi-round-steps`` steps; no unlabeled loss in the first round).
The local contrastive term is on by default here (``--semi-contrast-weight``, 0.1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segcore.momentum import ema_decay, ema_update, momentum_copy
from segcore.semi.base import SemiMode, UnlabeledTerms
from segcore.semi.pseudo import teacher_probabilities


class SelfTraining(SemiMode):
    """A teacher network of its own (module docstring); ``net`` is the student it starts from."""

    name = "self-training"

    def __init__(self, *args: Any, net: nn.Module, **kwargs: Any) -> None:
        super().__init__(*args, net=net, **kwargs)
        self.teacher = momentum_copy(net)  # frozen parameters; module state, so in every checkpoint

    def unlabeled_terms(self, task: Any, g: torch.Generator) -> UnlabeledTerms | None:
        if self.cfg.teacher == "round" and int(task.global_step) < self.cfg.round_steps:
            return None  # the first round: no previous model to take pseudo-labels from
        x = self.draw(task.net, task.device, g)
        b, _, h, w = x.shape
        probs = teacher_probabilities(self.teacher, x)
        labels, confident, stats = self.pseudo(probs, torch.ones(b, h, w, dtype=torch.bool, device=x.device))
        # K marks "in the image, not confident": the augmentation moves it like a label and
        # marks pixels from outside the image ignore_index, so the two stay apart
        marked = torch.where(confident, labels, self.num_classes)
        if task.augment is not None:
            x, marked = task.augment(x, marked, g)
        valid = marked != self.ignore_index
        confident = valid & (marked < self.num_classes)
        labels = torch.where(confident, marked, 0)
        logits, features = self.student_forward(task.net, x)
        return UnlabeledTerms(self.loss_on(logits, labels, confident, valid), features[-1], labels, confident, stats)

    @torch.no_grad()
    def after_optimizer_step(self, net: nn.Module, steps_done: int) -> None:
        if self.cfg.teacher == "ema":
            # the weight average of the student (BatchNorm statistics averaged too: the teacher
            # predicts in eval mode), with the warm-up of segcore.momentum.ema_decay
            ema_update(self.teacher, net, ema_decay(self.cfg.teacher_momentum, steps_done - 1), average_buffers=True)
        elif steps_done % self.cfg.round_steps == 0:
            ema_update(self.teacher, net, 0.0)  # the end of a round: the teacher becomes the student
