"""What every semi-supervised mode shares: drawing unlabeled samples, pseudo-labels with the
threshold, the unlabeled loss, the local contrastive term and the per-step records.

A mode is a :class:`SemiMode` (an ``nn.Module`` owned by the task, so its teacher, heads and
threshold state are in every resume checkpoint). Each training step the task calls
:meth:`SemiMode.step` after its supervised part; the mode's :meth:`~SemiMode.unlabeled_terms`
draws ``batch_size`` unlabeled samples with the step's generator (a function of seed, rank and
step: a resumed run draws what the uninterrupted one drew), predicts pseudo-labels with a
teacher in eval mode without gradients, and computes the loss of the student on a view of them,
inside :func:`~segcore.semi.batchnorm.unlabeled_batchnorm` (the running statistics stay those of
the labeled data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from segcore.config import SemiConfig
from segcore.runtime.sampling import collate_samples
from segcore.semi.augment import StrongAugment
from segcore.semi.batchnorm import unlabeled_batchnorm
from segcore.semi.contrast import PixelProjectionHead, pixel_contrast
from segcore.semi.pseudo import ClassThresholds, DistributionAlignment, pseudo_labels, unlabeled_loss


@dataclass
class UnlabeledTerms:
    """What a mode's unlabeled part of a step gives: its loss (unweighted), the student's last
    decoder map on the view the loss trained (B, C, H, W) with its pseudo-labels and confidence
    mask (B, H, W) (for the local contrastive term), and numbers to log."""

    loss: torch.Tensor
    features: torch.Tensor | None
    labels: torch.Tensor
    confident: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def ramp(warmup: int, step: int) -> float:
    """min(1, (step + 1) / warmup): linear warm-up over ``warmup`` steps (0: none)."""
    return 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)


def _is_channels_last(net: nn.Module) -> bool:
    """Whether ``net``'s convolution weights are channels-last (then so are its inputs)."""
    return any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in net.parameters()
    )


class SemiMode(nn.Module):
    """The shared part of the modes (module docstring). ``unlabeled``: samples with ``image``
    (no label); ``jitter_channels``: the channels the strong view's intensity jitter changes;
    ``feature_channels``: width of the net's last decoder map (the contrastive term's input);
    ``batch_size``: the labeled batch, the default unlabeled batch; ``label_prior``: class
    frequencies (K,) of the run's labeled pixels (needed by ``--semi-align distribution``)."""

    name = ""

    def __init__(
        self,
        cfg: SemiConfig,
        unlabeled: Dataset,
        *,
        net: nn.Module,
        num_classes: int,
        ignore_index: int,
        jitter_channels: Sequence[int],
        feature_channels: int,
        batch_size: int,
        label_prior: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.unlabeled = unlabeled  # a Dataset, not module state
        self.batch_size = cfg.batch_size if cfg.batch_size > 0 else batch_size
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.loss_kind = cfg.unlabeled_loss
        self.strong = StrongAugment(
            jitter_channels=list(jitter_channels),
            jitter_shift=cfg.jitter_shift,
            jitter_gain=cfg.jitter_gain,
            jitter_prob=cfg.jitter_prob,
            blur_prob=cfg.blur_prob,
            blur_sigma=tuple(cfg.blur_sigma),
            cutmix_prob=cfg.cutmix_prob,
            cutmix_area=tuple(cfg.cutmix_area),
        )
        self.class_thresholds = (
            ClassThresholds(num_classes, cfg.threshold) if cfg.threshold_mode == "adaptive" else None
        )
        if cfg.align == "distribution" and label_prior is None:
            raise ValueError("--semi-align distribution needs the labeled class frequencies (label_prior)")
        self.alignment = (
            DistributionAlignment(torch.tensor(label_prior, dtype=torch.float32))
            if cfg.align == "distribution"
            else None
        )
        self.contrast_weight = cfg.contrast
        self.contrast_head = (
            PixelProjectionHead(feature_channels, cfg.contrast_dim) if self.contrast_weight > 0 else None
        )
        # mean pseudo-label coverage since the last validation (sum, steps): for the history
        self.coverage_sum, self.coverage_steps = 0.0, 0

    # ------------------------------------------------------------------ the pieces

    def draw(self, net: nn.Module, device: torch.device, g: torch.Generator) -> torch.Tensor:
        """``batch_size`` unlabeled images (B, C, H, W), drawn with replacement by ``g``."""
        picks = torch.randint(len(self.unlabeled), (self.batch_size,), generator=g).tolist()
        x = collate_samples([self.unlabeled[i] for i in picks])["image"].to(device)
        return x.contiguous(memory_format=torch.channels_last) if _is_channels_last(net) else x

    def pseudo(self, probs: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Pseudo-labels and confidence mask of teacher ``probs`` (B, K, H, W) on ``valid`` pixels
        with the configured threshold (after distribution alignment, when on), and the step's
        coverage numbers: ``semi_coverage``
        (confident / in-image pixels), ``semi_fg_confident`` (foreground share of the confident
        pixels), ``semi_fg_predicted`` (foreground share of the in-image pixels' argmax)."""
        if self.alignment is not None:
            probs = self.alignment(probs, valid)
        threshold: float | torch.Tensor = self.cfg.threshold
        if self.class_thresholds is not None:
            threshold = self.class_thresholds.update(probs, valid)
        labels, confident = pseudo_labels(probs, threshold, valid)
        n_valid = valid.sum().clamp(min=1)
        n_conf = confident.sum()
        stats = {
            "semi_coverage": float(n_conf / n_valid),
            "semi_fg_confident": float((confident & (labels > 0)).sum() / n_conf.clamp(min=1)),
            "semi_fg_predicted": float((valid & (labels > 0)).sum() / n_valid),
        }
        return labels, confident, stats

    def student_forward(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and decoder maps of the student on an unlabeled view, BatchNorm statistics untouched."""
        with unlabeled_batchnorm(net, self.cfg.strong_bn):
            return net.forward_with_features(x)

    def loss_on(
        self, logits: torch.Tensor, labels: torch.Tensor, confident: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        return unlabeled_loss(self.loss_kind, logits, labels, confident, valid, balance=self.cfg.balance == "class")

    # ------------------------------------------------------------------ a step

    def unlabeled_terms(self, task: Any, g: torch.Generator) -> UnlabeledTerms | None:
        """The mode's unlabeled part of a step (None: no unlabeled loss at this step)."""
        raise NotImplementedError

    def step(self, task: Any, sup: Any, g: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted semi-supervised loss of a step, added to the supervised ``sup.loss``:
        ``weight`` × ramp × the unlabeled loss, plus ``contrast weight`` × ramp × the local
        contrastive term over the labeled pixels (``sup.features``, ``sup.labels``) and the
        confident unlabeled ones. Returns it and the numbers to log."""
        factor = ramp(self.cfg.warmup, int(task.global_step))
        terms = self.unlabeled_terms(task, g)
        loss = sup.loss.new_zeros(())
        logs = {"semi_weight": self.cfg.weight * factor}
        if terms is not None:
            loss = loss + self.cfg.weight * factor * terms.loss
            logs.update(semi_loss=float(terms.loss.detach()), **terms.stats)
            self.coverage_sum += terms.stats.get("semi_coverage", 0.0)
            self.coverage_steps += 1
        if self.contrast_head is not None:
            maps, labels = [sup.features[-1]], [sup.labels]
            if terms is not None and terms.features is not None:
                maps.append(terms.features)
                labels.append(torch.where(terms.confident, terms.labels, -1))
            term = pixel_contrast(
                self.contrast_head,
                maps,
                labels,
                self.num_classes,
                self.cfg.contrast_pixels,
                self.cfg.contrast_temperature,
                g,
            )
            loss = loss + self.contrast_weight * factor * term
            logs["semi_contrast"] = float(term.detach())
        return loss, logs

    def after_optimizer_step(self, net: nn.Module, steps_done: int) -> None:
        """After the optimiser step that made ``steps_done`` steps (a teacher update)."""

    def take_coverage(self) -> float | None:
        """Mean coverage over the steps since the last call (None when there were none); resets."""
        if self.coverage_steps == 0:
            return None
        mean = self.coverage_sum / self.coverage_steps
        self.coverage_sum, self.coverage_steps = 0.0, 0
        return mean

    def record_state(self) -> dict[str, Any]:
        return {"coverage_sum": self.coverage_sum, "coverage_steps": self.coverage_steps}

    def load_record_state(self, state: dict[str, Any]) -> None:
        self.coverage_sum = float(state.get("coverage_sum", 0.0))
        self.coverage_steps = int(state.get("coverage_steps", 0))
