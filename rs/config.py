"""Typed options of the remote-sensing stages (the defaults and help texts ``rs <stage> --help``
shows). Light on purpose: the CLI checks every option with these before torch loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segcore.config import (
    EvaluateConfig,
    FinetuneConfig,
    HyperPixelConfig,
    PredictConfig,
    PretrainConfig,
    option,
)


@dataclass
class FusionNetworkConfig:
    """The network of the remote-sensing stages: an smp U-Net on stacked channels (early) or a
    spectral and a terrain encoder fused at every scale (dual)."""

    fusion: Literal["early", "dual"] = option(
        "early", "early: stacked channels, one encoder; dual: spectral + terrain encoders fused at every scale"
    )
    encoder: str = option("resnet18", "segmentation-models-pytorch encoder (no pretrained weights are downloaded)")
    encoder_depth: int = option(4, "encoder stages")
    decoder_channels: str = option("64,32,16,8", "decoder widths, one per encoder stage")


@dataclass
class RSFinetuneConfig(FinetuneConfig):
    batch_size: int = option(16, "tiles per batch")
    network: FusionNetworkConfig = option(default_factory=FusionNetworkConfig, prefix="")
    percent: float = option(100.0, "labeled tiles, in percent of the labeled pool")
    hpcl: HyperPixelConfig = option(default_factory=HyperPixelConfig, prefix="hpcl_")


@dataclass
class RSPretrainConfig(PretrainConfig):
    batch_size: int = option(16, "tiles per batch")
    lr: float = option(1e-3, "learning rate (AdamW)")
    network: FusionNetworkConfig = option(default_factory=FusionNetworkConfig, prefix="")
    method: Literal["hpcl"] = option(
        "hpcl", "hpcl: hyper-pixel contrast with a momentum encoder and a queue (our definition, docs/hpcl.md)"
    )
    queue_size: int = option(4096, "K: keys in the queue of negatives")
    momentum: float = option(0.99, "m: EMA momentum of the key encoder")
    temperature: float = option(0.1, "T of the InfoNCE similarities")
    proj_dim: int = option(128, "projection head output (queue) dimension D")
    proj_hidden: int = option(256, "projection head hidden width")
    max_anchors: int = option(0, "hyper-pixels per step in the loss (random subset; 0 = all)")
    batch_negatives: bool = option(
        False, "the other hyper-pixels' keys of the same step are negatives too (besides the queue)", action="bool"
    )
    key_batchnorm: Literal["batch", "running"] = option(
        "running",
        "BatchNorm of the key encoder: the running statistics copied from the online net (eval mode) or batch "
        "statistics (train mode; use with --batch-negatives)",
    )
    crop_scale: tuple[float, float] = option(
        (0.6, 1.0), "views: crop side as a fraction of the tile side (1 1: no crop)", metavar=("LO", "HI")
    )
    dihedral: bool = option(True, "views: random flips and quarter turns (image and superpixels alike)", action="bool")
    jitter: Literal["spectral", "elevation", "all"] = option(
        "spectral",
        "views: which channels get the photometric jitter; 'elevation': the spectral bands and the elevation "
        "channel (absolute height, which alone names a hyper-pixel) but not slope, aspect or hillshade; "
        "'all' also shifts and scales every terrain channel, so that a hyper-pixel cannot find its positive "
        "by its (otherwise identical) terrain values alone",
    )
    brightness: float = option(0.2, "views: max shift per jittered channel (standardised units)")
    contrast: tuple[float, float] = option((0.8, 1.2), "views: gain range per jittered channel", metavar=("LO", "HI"))
    noise_std: float = option(0.05, "views: max std of Gaussian noise on the jittered channels")
    drop_terrain: float = option(
        0.0,
        "views: probability, per view and tile, that every non-spectral (terrain) channel is set to 0, its "
        "standardised mean (modality dropout: the spectra must then find the hyper-pixel's positive; 0: off)",
    )


@dataclass
class RSEvaluateConfig(EvaluateConfig):
    whole_scene: bool = option(
        True,
        "also predict whole scenes by sliding window and score the held-out area once per pixel (the headline numbers)",
        action="bool",
    )


@dataclass
class RSPredictConfig(PredictConfig):
    batch_size: int = option(16, "tiles per inference batch")
    image: list[Path] = option(None, "multispectral scene GeoTIFF(s), same bands as in training", required=True)
    dem: list[Path] = option(None, "DEM GeoTIFF per --image (any CRS/resolution overlapping it)", required=True)
    overlap: int | None = option(None, "tile overlap in pixels (default: the training data's)")
    probabilities: bool = option(
        False,
        "also write <image>_probabilities.tif: float32 class probabilities, one band per class (NaN at nodata)",
        action="store_true",
    )
