"""Pseudo-labels from a teacher's prediction: the confidence threshold (fixed, or per class from
the teacher's class probabilities), distribution alignment of the teacher's probabilities to the
labeled class frequencies, the loss on confident pixels, the eval-mode teacher forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# momentum of the moving average of the teacher's mean class probabilities (adaptive thresholds):
# a few tens of steps, where a fine-tuning run has hundreds
CLASS_PROB_MOMENTUM = 0.99


@torch.no_grad()
def teacher_probabilities(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax (B, K, H, W) float32 of ``net`` on ``x`` in eval mode (BatchNorm by its running
    statistics, which this forward does not change), without gradients; ``net``'s mode restored."""
    was_training = net.training
    net.eval()
    try:
        return net(x).float().softmax(dim=1)
    finally:
        net.train(was_training)


def pseudo_labels(
    probs: torch.Tensor, threshold: float | torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labels (B, H, W) int64 = argmax of ``probs`` (B, K, H, W), and the confidence mask
    (B, H, W) bool: the top probability reaches the threshold of the predicted class
    (``threshold``: one number, or (K,) per class) and the pixel is in ``valid`` (when given)."""
    conf, labels = probs.max(dim=1)
    thr = threshold[labels] if isinstance(threshold, torch.Tensor) else threshold
    confident = conf >= thr
    if valid is not None:
        confident = confident & valid
    return labels, confident


@torch.no_grad()
def fold_class_mean(average: torch.Tensor, probs: torch.Tensor, valid: torch.Tensor, momentum: float) -> None:
    """Fold the mean class probabilities of ``probs`` (B, K, H, W) over the ``valid`` (B, H, W)
    pixels into the moving ``average`` (K,) in place: ``average = m * average + (1 - m) * mean``;
    no change when no pixel is valid."""
    w = valid.unsqueeze(1).to(probs.dtype)
    n = w.sum()
    if n > 0:
        mean = (probs * w).sum(dim=(0, 2, 3)) / n
        average.mul_(momentum).add_(mean.to(average), alpha=1 - momentum)


class ClassThresholds(nn.Module):
    """Per-class thresholds ``tau * p_c / max_k p_k``, with ``p`` a moving average (momentum
    :data:`CLASS_PROB_MOMENTUM`) of the teacher's mean probability of each class over in-image
    unlabeled pixels; ``p`` starts at 1/K (every threshold = tau). The scaling of FreeMatch's
    self-adaptive class thresholds (Wang et al., ICLR 2023) with tau fixed: a class the teacher
    predicts rarely (a small structure against background) gets a lower threshold than the
    dominant class. The average is module state (a buffer): it is in every resume checkpoint."""

    def __init__(self, num_classes: int, tau: float, momentum: float = CLASS_PROB_MOMENTUM) -> None:
        super().__init__()
        self.tau, self.momentum = tau, momentum
        self.register_buffer("class_prob", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Fold this step's mean class probabilities (``probs`` (B, K, H, W) over ``valid`` (B, H, W)
        pixels) into the average; return the thresholds (K,) to use now."""
        fold_class_mean(self.class_prob, probs, valid, self.momentum)
        return self.thresholds()

    def thresholds(self) -> torch.Tensor:
        return self.tau * self.class_prob / self.class_prob.max()


class DistributionAlignment(nn.Module):
    """Distribution alignment of the teacher's class probabilities (ReMixMatch, Berthelot et al.,
    ICLR 2020; per pixel): ``p~ = normalise(p * prior / mean)``, with ``prior`` (K,) the class
    frequencies of the run's labeled pixels and ``mean`` a moving average (momentum
    :data:`CLASS_PROB_MOMENTUM`) of the teacher's mean class probabilities over in-image unlabeled
    pixels, starting at ``prior``. A teacher that predicts a rare class (landslide pixels,
    2 % of a scene) less often than the labels hold it has that class's probabilities raised
    until its predictions match the labeled frequencies again; argmax and thresholds then work on
    the aligned probabilities. Both vectors are buffers: they are in every resume checkpoint."""

    def __init__(self, prior: torch.Tensor, momentum: float = CLASS_PROB_MOMENTUM) -> None:
        super().__init__()
        prior = torch.as_tensor(prior, dtype=torch.float32)
        if prior.dim() != 1 or bool((prior <= 0).any()):
            raise ValueError(f"the class prior must be a vector of positive frequencies, got {prior.tolist()}")
        self.momentum = momentum
        self.register_buffer("prior", prior / prior.sum())
        self.register_buffer("teacher_mean", self.prior.clone())

    @torch.no_grad()
    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Fold this step's mean of ``probs`` (B, K, H, W) over ``valid`` (B, H, W) pixels into the
        moving average; return the aligned probabilities (B, K, H, W), summing to 1 per pixel."""
        fold_class_mean(self.teacher_mean, probs, valid, self.momentum)
        ratio = (self.prior / self.teacher_mean.clamp(min=1e-6)).to(probs)
        aligned = probs * ratio.view(1, -1, 1, 1)
        return aligned / aligned.sum(dim=1, keepdim=True).clamp(min=1e-12)


def class_balanced_mean(
    values: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Mean over the classes that have a pixel in ``mask`` of the mean of ``values`` over that
    class's masked pixels (all (B, H, W); ``labels`` in 0..num_classes-1): every class present
    weighs the same, whatever its pixel count; 0 (with a gradient path) when ``mask`` is empty."""
    if not bool(mask.any()):
        return values.sum() * 0.0
    idx = labels[mask]
    sums = values.new_zeros(num_classes).index_add(0, idx, values[mask])
    counts = torch.bincount(idx, minlength=num_classes).to(values.dtype)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def present_class_dice_ce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    confident: torch.Tensor,
    smooth: float = 1e-5,
    balance: bool = False,
) -> torch.Tensor:
    """Soft Dice + cross-entropy of ``logits`` (B, K, H, W) against ``labels`` (B, H, W) over the
    ``confident`` pixels: CE = mean over confident pixels; Dice = batch-wise soft Dice of each
    foreground class (1..K-1) that has a confident pixel, averaged over those classes (0 terms:
    no Dice). The supervised loss (:class:`~segcore.losses.segmentation.SoftDiceCELoss`) counts
    a class absent from the target with Dice ~0, which on pseudo-labels, where a class is often
    absent only because none of its pixels is confident yet, would push its probability to 0.
    ``balance``: the CE is :func:`class_balanced_mean` over the confident pixels."""
    k = logits.shape[1]
    w = confident.unsqueeze(1).to(logits.dtype)  # (B, 1, H, W)
    n = confident.sum()
    if n == 0:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    ce = class_balanced_mean(ce, labels, confident, k) if balance else torch.where(confident, ce, 0.0).sum() / n
    probs = logits.float().softmax(dim=1) * w
    onehot = F.one_hot(labels, k).movedim(-1, 1).to(probs.dtype) * w
    inter = (probs * onehot).sum(dim=(0, 2, 3))[1:]  # (K-1,)
    denom = (probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3)))[1:]
    present = onehot.sum(dim=(0, 2, 3))[1:] > 0
    if not bool(present.any()):
        return ce
    dice = (2 * inter[present] + smooth) / (denom[present] + smooth)
    return ce + (1 - dice.mean())


def unlabeled_loss(
    kind: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    confident: torch.Tensor,
    valid: torch.Tensor,
    balance: bool = False,
) -> torch.Tensor:
    """The loss of ``logits`` (B, K, H, W) against pseudo-``labels`` (B, H, W) on ``confident``
    pixels. ``ce``: cross-entropy summed over confident pixels, divided by the number of
    ``valid`` (in-image) pixels, so the term grows with the share of confident pixels (UniMatch's
    normalisation); ``dice-ce``: :func:`present_class_dice_ce` (soft Dice of the foreground classes
    that have confident pixels + CE over the confident pixels). ``balance``: each pseudo-class
    present weighs the same in the CE (:func:`class_balanced_mean`); for ``ce`` times the share of
    confident pixels, so that the term still grows with the coverage and equals the unbalanced one
    when every class has as many confident pixels."""
    if kind == "ce":
        ce = F.cross_entropy(logits.float(), labels, reduction="none")  # (B, H, W)
        if balance:
            share = confident.sum() / valid.sum().clamp(min=1)
            return share * class_balanced_mean(ce, labels, confident, logits.shape[1])
        return torch.where(confident, ce, 0.0).sum() / valid.sum().clamp(min=1)
    if kind == "dice-ce":
        return present_class_dice_ce(logits, labels, confident, balance=balance)
    raise ValueError(f"unknown unlabeled loss {kind!r} (ce or dice-ce)")
