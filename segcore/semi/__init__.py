"""Semi-supervised fine-tuning: the unlabeled pool keeps training the network after
pretraining (docs/semi_supervised.md). One module per mode, registered by name:

* ``self-training`` (:mod:`.self_training`): an EMA or previous-round teacher's confident
  pseudo-labels, plus the label-guided local contrastive term (:mod:`.contrast`);
* ``fixmatch`` (:mod:`.fixmatch`): weak-view pseudo-labels train a strong view;
* ``unimatch`` (:mod:`.unimatch`): two strong views and a feature-perturbed view.

Shared: the unlabeled stream (:mod:`.pool`), views (:mod:`.augment`), pseudo-labels and
thresholds (:mod:`.pseudo`), BatchNorm of unlabeled forwards (:mod:`.batchnorm`), the mode base
(:mod:`.base`). The task that runs a mode beside the supervised loss (and beside the class-aware
hyper-pixel term) is :mod:`segcore.tasks.semi_segmentation`.
"""

from __future__ import annotations

from collections.abc import Sequence

from segcore.config import SEMI_MODES, SemiConfig
from segcore.errors import InputError
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData
from segcore.semi.base import SemiMode
from segcore.semi.fixmatch import FixMatch
from segcore.semi.pool import label_prior, unlabeled_dataset, unlabeled_groups
from segcore.semi.self_training import SelfTraining
from segcore.semi.unimatch import UniMatch

MODES: dict[str, type[SemiMode]] = {"self-training": SelfTraining, "fixmatch": FixMatch, "unimatch": UniMatch}
assert tuple(MODES) == SEMI_MODES, "segcore.config.SEMI_MODES names the registered modes"

__all__ = ["MODES", "SemiMode", "build_semi_mode", "check_semi_config", "unlabeled_dataset", "unlabeled_groups"]


def check_semi_config(cfg: SemiConfig) -> None:
    """:class:`InputError` (one line, naming the options) for values no mode can run with."""
    problems = []
    if not 0.0 <= cfg.threshold <= 1.0:
        problems.append(f"--semi-threshold must lie in [0, 1], got {cfg.threshold}")
    if cfg.weight < 0 or cfg.warmup < 0 or cfg.batch_size < 0:
        problems.append("--semi-weight, --semi-warmup and --semi-batch-size must be >= 0")
    for name in ("jitter_prob", "blur_prob", "cutmix_prob"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            problems.append(f"--semi-{name.replace('_', '-')} must lie in [0, 1], got {getattr(cfg, name)}")
    if cfg.jitter_shift < 0 or not 0 <= cfg.jitter_gain < 1:
        problems.append("need --semi-jitter-shift >= 0 and 0 <= --semi-jitter-gain < 1")
    if not 0 < cfg.blur_sigma[0] <= cfg.blur_sigma[1]:
        problems.append(f"--semi-blur-sigma needs 0 < LO <= HI, got {list(cfg.blur_sigma)}")
    if not 0 < cfg.cutmix_area[0] <= cfg.cutmix_area[1] <= 1:
        problems.append(f"--semi-cutmix-area needs 0 < LO <= HI <= 1, got {list(cfg.cutmix_area)}")
    if not 0 <= cfg.fp_dropout < 1:
        problems.append(f"--semi-fp-dropout must lie in [0, 1), got {cfg.fp_dropout}")
    if not 0 <= cfg.teacher_momentum <= 1 or cfg.round_steps < 1:
        problems.append("need 0 <= --semi-teacher-momentum <= 1 and --semi-round-steps >= 1")
    if cfg.contrast < 0 or cfg.contrast_temperature <= 0 or cfg.contrast_pixels < 2 or cfg.contrast_dim < 1:
        problems.append(
            "need --semi-contrast-weight >= 0, --semi-contrast-temperature > 0, --semi-contrast-pixels >= 2 and "
            "--semi-contrast-dim >= 1"
        )
    if problems:
        raise InputError(None, "; ".join(problems))


def build_semi_mode(
    cfg: SemiConfig, data: PreparedData, labeled: Sequence[str], net: SegmentationNetwork, batch_size: int
) -> SemiMode:
    """The mode ``cfg.mode`` for a run whose labeled set is ``labeled`` (group ids): its
    unlabeled stream is :func:`~segcore.semi.pool.unlabeled_dataset`, the intensity jitter of
    its strong views changes the spectral channels (every channel of MRI slices); with
    ``--semi-align distribution`` its class prior is that of the labeled set's pixels."""
    check_semi_config(cfg)
    if cfg.mode not in MODES:
        raise InputError(None, f"unknown --semi mode {cfg.mode!r} (choose from none, {', '.join(MODES)})")
    return MODES[cfg.mode](
        cfg,
        unlabeled_dataset(data, labeled),
        net=net,
        num_classes=data.num_classes,
        ignore_index=data.ignore_index,
        jitter_channels=data.spectral_channels,
        feature_channels=int(net.decoder_channels[-1]),
        batch_size=batch_size,
        label_prior=label_prior(data, labeled) if cfg.align == "distribution" else None,
    )
