"""Typed options of the MRI stages (the defaults and help texts ``medseg <stage> --help`` shows).

Light on purpose: the CLI parses and checks every option with these before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from segcore.budget import FixedCombinations
from segcore.config import EvaluateConfig, FinetuneConfig, PredictConfig, PretrainConfig, option

# the demo's U-Net widths (the reference's are 16, 32, 64, 128, 128, 128)
DEFAULT_CHANNELS = "16,32,64,128,128"
CHANNELS_HELP = "U-Net encoder widths, comma-separated (ignored with --init: taken from the checkpoint)"


@dataclass
class MRIFinetuneConfig(FinetuneConfig):
    budget: str = option("all", "labeled subjects (all volumes of each): an integer or 'all' (the whole labeled pool)")
    labeled_subjects: Any = option(
        None,
        "fixed labeled subjects instead of the draw (names or numbers; repeat the option for several combinations, "
        "picked by the label seed; in a --config file also a mapping budget -> combinations); docs/mri_data.md",
        action=FixedCombinations,
        nargs="+",
        metavar="SUBJECT",
    )
    channels: str = option(DEFAULT_CHANNELS, CHANNELS_HELP)


@dataclass
class MRIPretrainConfig(PretrainConfig):
    batch_size: int = option(0, "hpcl: slices per batch (0: 16); the global and local stages take --volumes-per-batch")
    channels: str = option(DEFAULT_CHANNELS, CHANNELS_HELP)
    stage: Literal["global", "local"] = option(
        "global", "global: encoder + g1; local: decoder blocks + g2 (needs --init)"
    )
    strategy: str | None = option(None, "global: GR, GD- or GD (default GD); local: LR or LD (default LR)")
    init: Path | None = option(None, "checkpoint to start from (the local stage needs the global stage's)")
    volumes_per_batch: int = option(4, "m: volumes per batch (batch = m × S partitions slices)")
    temperature: float = option(0.1, "T of the InfoNCE similarities")
    crop_scale: tuple[float, float] = option(
        (0.5, 0.75), "global views: crop side as a fraction of the image side (min max)"
    )
    local_blocks: int | None = option(
        None, "l: decoder blocks trained by the local stage (default: those up to the H/4 map)"
    )
    local_negatives: Literal["neighbours", "all", "batch"] = option(
        "all",
        "local negatives: the reference's 5 neighbouring regions, all other regions of the image, or every other "
        "region of the batch",
    )
    noise_std: float = option(0.05, "local and hpcl views: max std of added Gaussian noise")
    method: Literal["stages", "hpcl"] = option(
        "stages",
        "stages: the global/local stage chosen by --stage; hpcl: hyper-pixel contrastive pretraining of encoder "
        "+ decoder (ignores --stage)",
    )
    queue_size: int = option(4096, "hpcl: K, keys in the queue of negatives")
    momentum: float = option(0.99, "hpcl: m, EMA momentum of the key encoder")
    n_segments: int | None = option(None, "hpcl: SLIC superpixels per slice (default: one per 8x8 pixels)")
    compactness: float = option(0.5, "hpcl: SLIC compactness on the standardised slice")
    max_anchors: int = option(0, "hpcl: hyper-pixels per step in the loss (random subset; 0 = all)")


@dataclass
class MRIEvaluateConfig(EvaluateConfig):
    save_predictions: bool = option(True, "write native-space NIfTI predictions", action="bool")
    overlay_subjects: int = option(3, "subjects whose slices go into overlay.npz for the report")


@dataclass
class MRIPredictConfig(PredictConfig):
    input: Path = option(None, "a NIfTI file or a folder of them (*.nii, *.nii.gz)", required=True)
    slice_axis: str | None = option(
        None,
        "canonical axis to slice along: auto (largest spacing), 0, 1 or 2 (default: as the model's training data)",
    )
    batch_size: int = option(32, "sliding windows per network call")
    overlap: float = option(
        0.25,
        "overlap of the sliding windows (the training image size) over a larger slice, as a fraction of the window "
        "side, in [0, 1)",
    )
