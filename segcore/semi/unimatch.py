"""UniMatch (Yang et al., CVPR 2023): FixMatch with two strong views of each unlabeled sample
(independent intensity jitter, blur and CutMix boxes) and a feature-perturbed view (channel
dropout on every encoder feature map of the weak view, then the decoder and head), all supervised
by the weak view's confident pseudo-labels. Unlabeled loss = 0.25 L(strong 1) + 0.25 L(strong 2)
+ 0.5 L(perturbed), UniMatch's weights; the two strong views go through one forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segcore.semi.augment import weak_view
from segcore.semi.base import SemiMode, UnlabeledTerms
from segcore.semi.batchnorm import unlabeled_batchnorm
from segcore.semi.pseudo import teacher_probabilities


def channel_dropout(features: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Dropout of whole channels of ``features`` (B, C, h, w) with probability ``p``, survivors
    scaled by 1 / (1 - p) (``nn.Dropout2d``, but drawn from ``g``: resumable)."""
    if p <= 0:
        return features
    b, c = features.shape[:2]
    keep = (torch.rand(b, c, 1, 1, generator=g) >= p).to(features.dtype).to(features.device)
    return features * keep / (1.0 - p)


def perturbed_logits(net: nn.Module, x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Logits (B, K, H, W) of ``net`` on ``x`` with :func:`channel_dropout` on every encoder map."""
    features = [channel_dropout(f, p, g) for f in net.encode(x)]
    return net.head(net.decode(features)[-1])


class UniMatch(SemiMode):
    """Two strong views and a feature-perturbed view (module docstring)."""

    name = "unimatch"

    def unlabeled_terms(self, task: Any, g: torch.Generator) -> UnlabeledTerms:
        x = self.draw(task.net, task.device, g)
        x_w, valid = weak_view(x, task.augment, g)
        probs = teacher_probabilities(task.net, x_w)
        labels, confident, stats = self.pseudo(probs, valid)
        x_1, (y_1, c_1, v_1) = self.strong(x_w, [labels, confident, valid], g)  # independent draws:
        x_2, (y_2, c_2, v_2) = self.strong(x_w, [labels, confident, valid], g)  # other jitter, other boxes
        b = len(x)
        logits, features = self.student_forward(task.net, torch.cat([x_1, x_2]))
        with unlabeled_batchnorm(task.net, self.cfg.strong_bn):
            logits_fp = perturbed_logits(task.net, x_w, self.cfg.fp_dropout, g)
        loss = (
            0.25 * self.loss_on(logits[:b], y_1, c_1, v_1)
            + 0.25 * self.loss_on(logits[b:], y_2, c_2, v_2)
            + 0.5 * self.loss_on(logits_fp, labels, confident, valid)
        )
        return UnlabeledTerms(loss, features[-1][:b], y_1, c_1, stats)
