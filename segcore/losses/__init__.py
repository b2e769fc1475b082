"""Losses, one concern per module: the masked InfoNCE (:mod:`.info_nce`), the queue InfoNCE
(:mod:`.queue_info_nce`), the global and local contrastive losses, the hyper-pixel loss and the
supervised segmentation loss."""

from segcore.losses.global_contrastive import GLOBAL_STRATEGIES, GlobalContrastiveLoss, global_masks
from segcore.losses.hyperpixel import HyperPixelContrastLoss, mochi_negatives
from segcore.losses.info_nce import info_nce_keys, info_nce_logits, info_nce_masked
from segcore.losses.local_contrastive import (
    LOCAL_NEGATIVES,
    LOCAL_STRATEGIES,
    N_REGIONS,
    REFERENCE_NEIGHBOURS,
    LocalContrastiveLoss,
    local_masks,
    region_centres,
)
from segcore.losses.queue_info_nce import queue_info_nce
from segcore.losses.segmentation import SoftDiceCELoss

__all__ = [
    "GLOBAL_STRATEGIES",
    "LOCAL_NEGATIVES",
    "LOCAL_STRATEGIES",
    "N_REGIONS",
    "REFERENCE_NEIGHBOURS",
    "GlobalContrastiveLoss",
    "HyperPixelContrastLoss",
    "LocalContrastiveLoss",
    "SoftDiceCELoss",
    "global_masks",
    "info_nce_keys",
    "info_nce_logits",
    "info_nce_masked",
    "local_masks",
    "mochi_negatives",
    "queue_info_nce",
    "region_centres",
]
