"""Full-scene prediction by sliding window, back to a GeoTIFF on the input's grid.

The scene is read and aligned exactly as ``rs preprocess`` built the training tiles
(:func:`rs.scene_channels.load_scene_channels`: same channels, same terrain derivation) and
standardised with the training statistics stored in the prepared data's manifest; nodata
pixels read as 0, like the filled training pixels. Tiles of the training size slide with
overlap; overlapping predictions are averaged with a weight that is 1 inside the tile and
ramps down linearly over the overlap towards the tile border, which hides tile seams (the
border pixels of a tile have the least context). Nodata pixels get probability 0 for every
class and label 255 in the written GeoTIFF.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs.geotiff import RasterGrid, as_grid, read_raster, write_geotiff
from rs.scene_channels import load_scene_channels
from rs.terrain import HILLSHADE_ALTITUDE, HILLSHADE_AZIMUTH
from rs.tiling import tile_windows, window_from_list
from segcore.errors import InputError

PREDICTION_NODATA = 255
PredictFn = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]


def load_manifest(manifest: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A manifest given as a dict, a prepared-data folder, or a manifest.json path."""
    if isinstance(manifest, dict):
        return manifest
    path = Path(manifest)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise InputError(path, "no manifest.json of prepared training data here; run rs preprocess first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"manifest is not valid JSON ({err})") from err


def blend_weight(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float32 weight: 1 in the interior, linear ramp over ``overlap`` pixels
    toward each border, never 0 (border pixels of the scene have only one tile)."""
    ramp = np.minimum(np.arange(1, tile + 1), np.arange(tile, 0, -1)).astype(np.float64)
    w1 = np.minimum(ramp / max(overlap, 1), 1.0)
    return np.outer(w1, w1).astype(np.float32)


@dataclass
class ScenePrediction:
    """probabilities (K, H, W) float32 (0 at nodata), valid (H, W) bool, and the image grid."""

    probabilities: np.ndarray
    valid: np.ndarray
    grid: RasterGrid
    profile: dict[str, Any]

    def labels(self) -> np.ndarray:
        """Arg-max class per pixel, (H, W) uint8, 255 at nodata."""
        return labels_from_probabilities(self.probabilities, self.valid)


def labels_from_probabilities(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(K, H, W) probabilities → (H, W) uint8 arg-max, :data:`PREDICTION_NODATA` where invalid."""
    return np.where(valid, probabilities.argmax(axis=0), PREDICTION_NODATA).astype(np.uint8)


def _as_numpy(y: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().to("cpu", torch.float32).numpy()
    return np.asarray(y, dtype=np.float32)


def predict_scene_detailed(
    image_path: str | Path,
    dem_path: str | Path,
    predict_fn: PredictFn,
    manifest: dict[str, Any] | str | Path,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 16,
    region: np.ndarray | None = None,
) -> ScenePrediction:
    """Slide ``predict_fn`` over the scene; see :func:`predict_scene`. Also returns the mask.

    ``region`` (H, W) bool: predict only the windows that touch it (e.g. the held-out area that
    evaluation scores). Inside it the result is exactly the whole-scene one, since every window
    covering a pixel of the region touches the region; pixels no window covered are invalid."""
    m = load_manifest(manifest)
    if m.get("domain") != "rs" or m.get("source") != "geotiff" or "normalization" not in m:
        raise InputError(
            None,
            "scene prediction needs prepared GeoTIFF training data (domain 'rs', source 'geotiff', with normalization)",
        )
    spectral = list(m["spectral_channels"])
    info = read_raster(image_path, what="image", read_data=False)
    if info.count != len(spectral):
        raise InputError(
            image_path,
            f"image has {info.count} band(s) but the model was trained on {len(spectral)} "
            f"({', '.join(m['channels'][i] for i in spectral)})",
        )
    terrain_opts = m.get("terrain", {})
    scene, grid, profile = load_scene_channels(
        image_path,
        dem_path,
        len(spectral),
        terrain_opts.get("hillshade_azimuth", HILLSHADE_AZIMUTH),
        terrain_opts.get("hillshade_altitude", HILLSHADE_ALTITUDE),
    )
    mean = np.asarray(m["normalization"]["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(m["normalization"]["std"], dtype=np.float32)[:, None, None]
    if scene.channels.shape[0] != mean.shape[0]:
        raise InputError(
            image_path,
            f"scene has {scene.channels.shape[0]} channels, the training data {mean.shape[0]}",
        )
    tile = int(tile if tile is not None else m["image_size"][0])
    overlap = int(overlap if overlap is not None else m.get("overlap", tile // 4))
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")

    h, w = scene.valid.shape
    ph, pw = max(h, tile), max(w, tile)
    x = np.zeros((mean.shape[0], ph, pw), dtype=np.float32)  # (C, H, W) standardised, 0 at nodata
    x[:, :h, :w] = np.where(scene.valid[None], (scene.channels - mean) / std, 0.0)
    windows = tile_windows(ph, pw, tile, overlap)
    if region is not None:
        if region.shape != (h, w):
            raise ValueError(f"region {region.shape} differs from the scene's {(h, w)}")
        padded = np.zeros((ph, pw), dtype=bool)
        padded[:h, :w] = region
        windows = [wi for wi in windows if padded[wi.toslices()].any()]
    weight = blend_weight(tile, overlap)
    acc: np.ndarray | None = None
    wsum = np.zeros((ph, pw), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            xb = torch.from_numpy(np.stack([x[:, wi.toslices()[0], wi.toslices()[1]] for wi in batch]))  # (B, C, t, t)
            yb = _as_numpy(predict_fn(xb))  # (B, K, t, t)
            if yb.ndim != 4 or yb.shape[0] != len(batch) or yb.shape[2:] != (tile, tile):
                raise ValueError(f"predict_fn must return (B, K, {tile}, {tile}), got {yb.shape}")
            if acc is None:
                acc = np.zeros((yb.shape[1], ph, pw), dtype=np.float64)
            for wi, y in zip(batch, yb, strict=True):
                rs, cs = wi.toslices()
                acc[:, rs, cs] += y * weight
                wsum[rs, cs] += weight
    if acc is None:  # no window touched the region
        acc = np.zeros((1, ph, pw), dtype=np.float64)
    covered = wsum > 0  # everywhere without a region
    probs = np.divide(acc, wsum, out=np.zeros_like(acc), where=covered)[:, :h, :w].astype(np.float32)
    valid = scene.valid & covered[:h, :w]
    probs[:, ~valid] = 0.0
    return ScenePrediction(probs, valid, grid, profile)


def predict_scene(
    image_path: str | Path,
    dem_path: str | Path,
    predict_fn: PredictFn,
    manifest: dict[str, Any] | str | Path,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Class probabilities (K, H, W) float32 over the whole image grid.

    ``predict_fn`` takes standardised tiles (B, C, tile, tile) float32 (a CPU tensor: move it to
    the model's device inside) and returns probabilities (B, K, tile, tile) (tensor or array);
    it is called under ``torch.inference_mode()``. ``manifest``: the training data's manifest (dict,
    folder or path): channels, normalisation, terrain options, default tile and overlap.
    Nodata pixels are 0 in every class. InputError naming the image if its band count differs
    from training, and the usual read/alignment errors (no CRS, DEM not overlapping...).
    """
    return predict_scene_detailed(image_path, dem_path, predict_fn, manifest, tile, overlap, batch_size).probabilities


def write_prediction_geotiff(path: str | Path, labels: np.ndarray, profile: dict[str, Any] | RasterGrid) -> None:
    """Write class labels (H, W) uint8 with the input's CRS, transform and shape; 255 = nodata.

    ``profile``: the input image's rasterio profile (``crs``, ``transform``, ``width``,
    ``height``) or its :class:`RasterGrid`. Written atomically.
    """
    grid = as_grid(profile)
    if labels.shape != grid.shape:
        raise ValueError(f"labels {labels.shape} do not match the input grid {grid.shape}")
    write_geotiff(
        path,
        labels.astype(np.uint8),
        grid,
        nodata=PREDICTION_NODATA,
        descriptions=["class"],
        tags={"classes": "0 background, 1 landslide, 255 nodata"},
    )


def split_mask(manifest: dict[str, Any] | str | Path, scene: str, split: str) -> np.ndarray:
    """(H, W) bool: pixels of ``scene`` covered by its tiles of ``split`` ("train", "val",
    "test"), to score a full-scene prediction on the held-out area only."""
    m = load_manifest(manifest)
    if scene not in m.get("scenes", {}):
        raise InputError(
            None,
            f"scene '{scene}' is not in the prepared data (have {sorted(m.get('scenes', {}))[:5]}...)",
        )
    rec = m["scenes"][scene]
    h, w = int(rec["height"]), int(rec["width"])
    tile = int(m["image_size"][0])
    mask = np.zeros((max(h, tile), max(w, tile)), dtype=bool)
    for g in m["groups"].values():
        if g["scene"] == scene and g["split"] == split:
            rs, cs = window_from_list(g["window"]).toslices()
            mask[rs, cs] = True
    return mask[:h, :w]


__all__ = [
    "PREDICTION_NODATA",
    "ScenePrediction",
    "blend_weight",
    "labels_from_probabilities",
    "load_manifest",
    "predict_scene",
    "predict_scene_detailed",
    "split_mask",
    "write_prediction_geotiff",
]
