"""Scene prediction for ``rs predict``: whole-scene sliding-window prediction (blended overlaps),
streamed in row strips (:mod:`rs.scene_prediction`), into cloud-optimised GeoTIFFs with the
input's CRS, transform and shape: ``<image name>_prediction.tif`` (classes, 255 where the input
has no data, a colour table, overviews) and with ``--probabilities`` also
``<image name>_probabilities.tif`` (float32, one band per class)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from rs.config import RSPredictConfig
from rs.evaluate import scene_predictor
from rs.scene_prediction import predict_scene_to_geotiff
from segcore.errors import InputError
from segcore.labels import IGNORE_INDEX as NODATA_LABEL

log = logging.getLogger(__name__)


def predict_scenes(net: torch.nn.Module, preprocessing: dict[str, Any], cfg: RSPredictConfig, tmp: Path) -> None:
    """The prediction GeoTIFF(s) of every ``--image``/``--dem`` pair into ``tmp``, with the
    channels, normalisation and tiles of the model's training data (``preprocessing``)."""
    if len(cfg.image) != len(cfg.dem):
        raise InputError(None, f"{len(cfg.image)} --image but {len(cfg.dem)} --dem; give one DEM per scene")
    if cfg.batch_size < 1:
        raise InputError(None, f"--batch-size must be >= 1, got {cfg.batch_size}")
    for image, dem in zip(cfg.image, cfg.dem, strict=True):
        name = image.name.removesuffix(".tiff").removesuffix(".tif")
        probabilities = tmp / f"{name}_probabilities.tif" if cfg.probabilities else None
        summary = predict_scene_to_geotiff(
            image,
            dem,
            scene_predictor(net),
            preprocessing,
            tmp / f"{name}_prediction.tif",
            probabilities,
            overlap=cfg.overlap,
            batch_size=cfg.batch_size,
        )
        valid, per_class = summary["valid_pixels"], summary["class_pixels"]
        if not valid:
            log.warning(
                "%s: no pixel with image and DEM data (all nodata); the prediction is all nodata (%d)",
                image,
                NODATA_LABEL,
            )
        log.info(
            "%s: %.2f%% of valid pixels predicted as landslide",
            image,
            100 * per_class[1] / valid if valid and len(per_class) > 1 else 0.0,
        )
