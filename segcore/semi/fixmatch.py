"""FixMatch for segmentation (Sohn et al., NeurIPS 2020; per pixel as in UniMatch, Yang et al.,
CVPR 2023): pseudo-labels are the argmax of an eval-mode, no-grad prediction of the student on a
weak view (the domain's flips, rotations, scaling); where the top probability reaches tau the
student's loss on a strong view of the same sample (intensity jitter, blur, CutMix with another
unlabeled sample, applied to image and pseudo-label alike) is added with weight lambda."""

from __future__ import annotations

from typing import Any

import torch

from segcore.semi.augment import weak_view
from segcore.semi.base import SemiMode, UnlabeledTerms
from segcore.semi.pseudo import teacher_probabilities


class FixMatch(SemiMode):
    """One strong view per unlabeled sample (:class:`~segcore.semi.base.SemiMode` for the rest)."""

    name = "fixmatch"

    def unlabeled_terms(self, task: Any, g: torch.Generator) -> UnlabeledTerms:
        x = self.draw(task.net, task.device, g)
        x_w, valid = weak_view(x, task.augment, g)
        probs = teacher_probabilities(task.net, x_w)  # (B, K, H, W), no grad, BatchNorm untouched
        labels, confident, stats = self.pseudo(probs, valid)
        x_s, (y_s, c_s, v_s) = self.strong(x_w, [labels, confident, valid], g)
        logits, features = self.student_forward(task.net, x_s)
        return UnlabeledTerms(self.loss_on(logits, y_s, c_s, v_s), features[-1], y_s, c_s, stats)
