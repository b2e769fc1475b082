"""Typed options of the remote-sensing stages (the defaults and help texts ``rs <stage> --help``
shows). Light on purpose: the CLI checks every option with these before torch loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rs.terrain import HILLSHADE_ALTITUDE, HILLSHADE_AZIMUTH
from segcore.config import (
    ContrastivePretrainConfig,
    EvaluateConfig,
    FinetuneConfig,
    HyperPixelConfig,
    PredictConfig,
    option,
)
from segcore.runtime.pool import parse_workers


@dataclass
class RSPreprocessConfig:
    """``rs preprocess``: scenes (GeoTIFF + DEM) or a Landslide4Sense folder to prepared tiles."""

    input: Path | None = option(
        None,
        "raw folder: a demo-data folder (scenes.json) or a Landslide4Sense folder (img/, mask/; or the release's "
        "TrainData/, ValidData/, TestData/: the official splits, docs/landslide4sense.md)",
    )
    image: list[str] | None = option(
        None, "scene image GeoTIFF (repeatable or comma-separated)", action="extend", metavar="TIF"
    )
    dem: list[str] | None = option(
        None, "DEM GeoTIFF per --image (any CRS/resolution overlapping the image)", action="extend", metavar="TIF"
    )
    label: list[str] | None = option(
        None, "label GeoTIFF (0/1) per --image, 'none' for an unlabeled scene", action="extend", metavar="TIF"
    )
    out: Path = option(None, "prepared-data folder to write", required=True)
    seed: int = option(0, "seed of the block/scene split", ge=0)
    tile: int | None = option(
        None,
        "tile size in pixels (default 64 for GeoTIFF scenes, 128 for Landslide4Sense; the release: 128 only)",
        ge=1,
    )
    overlap: int | None = option(
        None,
        "overlap between neighbouring tiles in pixels (default 16 for GeoTIFF, 0 for Landslide4Sense; the "
        "release: 0 only)",
        ge=0,
    )
    split_by: Literal["block", "scene"] = option(
        "block",
        "assign splits by spatial blocks of tiles or by whole scenes (Landslide4Sense: per patch; the release: its "
        "folders)",
    )
    block_tiles: int = option(4, "block side in tile strides for the block split", ge=1)
    val_fraction: float = option(
        0.15, "fraction of blocks (scenes) for validation (unused for the Landslide4Sense release)", ge=0, lt=1
    )
    test_fraction: float = option(
        0.25, "fraction of blocks (scenes) for the held-out test (unused for the Landslide4Sense release)", ge=0, lt=1
    )
    n_segments: int | None = option(None, "SLIC superpixels per tile (default: one per 8x8 pixels)", ge=1)
    compactness: float = option(0.5, "SLIC compactness on standardised channels (higher = more regular)", gt=0)
    superpixel_terrain_weight: float = option(0.5, "weight of the terrain channels in the SLIC distance", ge=0)
    hillshade_azimuth: float = option(HILLSHADE_AZIMUTH, "sun azimuth of the hillshade channel (degrees from north)")
    hillshade_altitude: float = option(
        HILLSHADE_ALTITUDE, "sun altitude of the hillshade channel (degrees)", ge=0, le=90
    )
    workers: int = option(
        1,
        "processes computing superpixels and writing tiles in parallel ('auto': one per usable core); the output "
        "is the same for any count",
        parse=parse_workers,
    )


@dataclass
class RSDemoDataConfig:
    """``rs demo-data``: the built-in synthetic scenes (GeoTIFF image, DEM in another CRS, labels)."""

    out: Path = option(None, "output folder (scenes/ and scenes.json)", required=True)
    n_scenes: int = option(4, "number of scenes", ge=1)
    size: int = option(512, "scene width and height in pixels", ge=32)
    seed: int = option(0, "random seed: the scenes are a function of it", ge=0)
    pixel_size: float = option(10.0, "image pixel size in metres", gt=0)
    dem_resolution: float = option(25.0, "DEM pixel size in metres (coarser than the image)", gt=0)
    landslides_per_km2: float = option(1.5, "mean landslide count per square kilometre", ge=0)


@dataclass
class FusionNetworkConfig:
    """The network of the remote-sensing stages: an smp U-Net on stacked channels (early) or a
    spectral and a terrain encoder fused at every scale (dual)."""

    fusion: Literal["early", "dual"] = option(
        "early", "early: stacked channels, one encoder; dual: spectral + terrain encoders fused at every scale"
    )
    encoder: str = option("resnet18", "segmentation-models-pytorch encoder (no pretrained weights are downloaded)")
    encoder_depth: int = option(4, "encoder stages", ge=1, le=5)
    decoder_channels: str = option("64,32,16,8", "decoder widths, one per encoder stage")


@dataclass
class RSFinetuneConfig(FinetuneConfig):
    batch_size: int = option(16, "tiles per batch", ge=1)
    network: FusionNetworkConfig = option(default_factory=FusionNetworkConfig, prefix="")
    percent: float = option(100.0, "labeled tiles, in percent of the labeled pool", gt=0, le=100)
    hpcl: HyperPixelConfig = option(default_factory=HyperPixelConfig, prefix="hpcl_")


@dataclass
class RSPretrainConfig(ContrastivePretrainConfig):
    batch_size: int = option(16, "tiles per batch", ge=1)
    lr: float = option(1e-3, "learning rate (AdamW)", gt=0)
    network: FusionNetworkConfig = option(default_factory=FusionNetworkConfig, prefix="")
    method: Literal["hpcl", "mocov2", "byol", "densecl", "detcon"] = option(
        "hpcl",
        "hpcl: hyper-pixel contrast with a momentum encoder and a queue (our definition, docs/hpcl.md); mocov2, "
        "byol, densecl, detcon: the generic baselines (docs/ssl_baselines.md)",
    )
    temperature: float | None = option(
        None, "T of the InfoNCE similarities (default: the method's: hpcl and detcon 0.1, mocov2 and densecl 0.2)", gt=0
    )
    masks: Literal["auto", "stored", "slic", "felzenszwalb"] = option(
        "auto",
        "detcon: the masks; auto, stored: the superpixels rs preprocess stored (superpixels.npy); slic: SLIC "
        "computed at the start of the run (--n-segments, --compactness); felzenszwalb: Felzenszwalb-Huttenlocher "
        "segments (--fh-scale)",
    )
    n_segments: int | None = option(
        None, "detcon --masks slic: SLIC superpixels per tile (default: one per 8x8 pixels)", ge=1
    )
    compactness: float = option(0.5, "detcon --masks slic: SLIC compactness on the standardised tile", gt=0)
    batch_negatives: bool = option(
        False, "the other hyper-pixels' keys of the same step are negatives too (besides the queue)", action="bool"
    )
    key_batchnorm: Literal["batch", "running"] = option(
        "running",
        "BatchNorm of the key encoder: the running statistics copied from the online net (eval mode) or batch "
        "statistics (train mode; use with --batch-negatives)",
    )
    crop_scale: tuple[float, float] = option(
        (0.6, 1.0),
        "views (hpcl and the baselines): crop side as a fraction of the tile side (1 1: no crop)",
        metavar=("LO", "HI"),
        gt=0,
        le=1,
    )
    dihedral: bool = option(True, "views: random flips and quarter turns (image and superpixels alike)", action="bool")
    jitter: Literal["spectral", "elevation", "all"] = option(
        "spectral",
        "views: which channels get the photometric jitter; 'elevation': the spectral bands and the elevation "
        "channel (absolute height, which alone names a hyper-pixel) but not slope, aspect or hillshade; "
        "'all' also shifts and scales every terrain channel, so that a hyper-pixel cannot find its positive "
        "by its (otherwise identical) terrain values alone",
    )
    brightness: float = option(0.2, "views: max shift per jittered channel (standardised units)", ge=0)
    contrast: tuple[float, float] = option((0.8, 1.2), "views: gain range per jittered channel", metavar=("LO", "HI"))
    noise_std: float = option(0.05, "views: max std of Gaussian noise on the jittered channels", ge=0)
    drop_terrain: float = option(
        0.0,
        "views: probability, per view and tile, that every non-spectral (terrain) channel is set to 0, its "
        "standardised mean (modality dropout: the spectra must then find the hyper-pixel's positive; 0: off)",
        ge=0,
        le=1,
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
    batch_size: int = option(16, "tiles per inference batch", ge=1)
    image: list[Path] = option(None, "multispectral scene GeoTIFF(s), same bands as in training", required=True)
    dem: list[Path] = option(None, "DEM GeoTIFF per --image (any CRS/resolution overlapping it)", required=True)
    overlap: int | None = option(None, "tile overlap in pixels (default: the training data's)", ge=0)
    probabilities: bool = option(
        False,
        "also write <image>_probabilities.tif: float32 class probabilities, one band per class (NaN at nodata)",
        action="store_true",
    )
