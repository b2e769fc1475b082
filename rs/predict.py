"""Scene prediction for ``rs predict``: whole-scene sliding-window prediction (blended overlaps) → GeoTIFF with the
input's CRS, transform, shape and a nodata value (255) where the input has no data."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rs.config import RSPredictConfig
from rs.evaluate import scene_predictor
from rs.scene_prediction import predict_scene_detailed, write_prediction_geotiff
from segcore.errors import InputError
from segcore.prepared import IGNORE_INDEX as NODATA_LABEL
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def predict_scenes(net: torch.nn.Module, cfg: RSPredictConfig, tmp: Path) -> None:
    """``<image name>_prediction.tif`` per ``--image``/``--dem`` pair into ``tmp``, predicted whole
    by sliding window with the channels, normalisation and tiles of the training data."""
    if len(cfg.image) != len(cfg.dem):
        raise InputError(None, f"{len(cfg.image)} --image but {len(cfg.dem)} --dem; give one DEM per scene")
    manifest = PreparedData(cfg.data).manifest
    for image, dem in zip(cfg.image, cfg.dem, strict=True):
        pred = predict_scene_detailed(
            image, dem, scene_predictor(net), manifest, overlap=cfg.overlap, batch_size=cfg.batch_size
        )
        labels = pred.labels()
        name = image.name.removesuffix(".tiff").removesuffix(".tif")
        write_prediction_geotiff(tmp / f"{name}_prediction.tif", labels, pred.profile)
        valid = labels != NODATA_LABEL
        if not valid.any():
            log.warning(
                "%s: no pixel with image and DEM data (all nodata); the prediction is all nodata (%d)",
                image,
                NODATA_LABEL,
            )
        log.info(
            "%s: %.2f%% of valid pixels predicted as landslide",
            image,
            100 * float((labels[valid] == 1).mean()) if valid.any() else 0.0,
        )
