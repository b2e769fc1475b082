"""``rs predict``: whole-scene sliding-window prediction (blended overlaps) → GeoTIFF with the
input's CRS, transform, shape and a nodata value (255) where the input has no data."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from rs.evaluate import load_model, scene_predictor
from rs.scene_prediction import predict_scene_detailed, write_prediction_geotiff
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def add_predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", type=Path, nargs="+", required=True, help="multispectral scene GeoTIFF(s), same bands as in training")
    p.add_argument("--dem", type=Path, nargs="+", required=True, help="DEM GeoTIFF per --image (any CRS/resolution overlapping it)")
    p.add_argument("--model", type=Path, required=True, help="fine-tuned model checkpoint (model.pt)")
    p.add_argument("--data", type=Path, required=True, help="prepared data the model was trained on (channels, normalisation, tile size)")
    p.add_argument("--out", type=Path, required=True, help="output folder: <image name>_prediction.tif per scene")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (default: the training data's)")
    p.add_argument("--batch-size", type=int, default=16, help="tiles per inference batch")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")


def run_predict(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if len(args.image) != len(args.dem):
        raise InputError(None, f"{len(args.image)} --image but {len(args.dem)} --dem; give one DEM per scene")
    manifest = PreparedData(args.data).manifest
    net, _ = load_model(args.model)
    with atomic_dir(args.out) as tmp:
        for image, dem in zip(args.image, args.dem, strict=True):
            pred = predict_scene_detailed(image, dem, scene_predictor(net), manifest, overlap=args.overlap, batch_size=args.batch_size)
            labels = pred.labels()
            name = image.name.removesuffix(".tiff").removesuffix(".tif")
            write_prediction_geotiff(tmp / f"{name}_prediction.tif", labels, pred.profile)
            valid = labels != 255
            log.info("%s: %.2f%% of valid pixels predicted as landslide", image, 100 * float((labels[valid] == 1).mean()) if valid.any() else 0.0)
        write_yaml(tmp / "config.yaml", resolved_args(args))
