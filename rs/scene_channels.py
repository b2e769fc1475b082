"""A GeoTIFF scene as the channels the network sees: the image bands, then the terrain channels
derived from the DEM aligned onto the image grid.

Used by ``rs preprocess`` (training tiles) and by whole-scene prediction (:mod:`rs.scene_prediction`),
so that both build the channels exactly alike. Channels::

    B, G, R, NIR (the image bands, named by their band descriptions), elevation, slope,
    aspect_sin, aspect_cos, hillshade

A pixel is valid where the image is not nodata and every terrain channel is defined; labels are
resampled to the image grid (nearest) and are :data:`rs.align.LABEL_NODATA` outside valid pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from rs.align import LABEL_NODATA, align_dem_to_image, align_label_to_image
from rs.geotiff import RasterGrid, pixel_size_metres, read_raster
from rs.terrain import HILLSHADE_ALTITUDE, HILLSHADE_AZIMUTH, terrain_channels
from segcore.errors import InputError


@dataclass
class SceneChannels:
    """A scene ready for tiling: raw channels (C, H, W) float32 (NaN/any value where invalid),
    valid (H, W) bool, labels (H, W) uint8 with 255 unknown (None if unlabeled)."""

    channels: np.ndarray
    valid: np.ndarray
    label: np.ndarray | None
    transform: Affine
    band_names: list[str] = field(default_factory=list)


def band_names(descriptions: list[str | None] | tuple[str | None, ...]) -> list[str]:
    """Channel names of the image bands: their descriptions, ``band_<i>`` where there is none."""
    return [d if d else f"band_{i + 1}" for i, d in enumerate(descriptions)]


def load_scene_channels(
    image_path: str | Path,
    dem_path: str | Path,
    expected_bands: int | None = None,
    azimuth: float = HILLSHADE_AZIMUTH,
    altitude: float = HILLSHADE_ALTITUDE,
    label_path: str | Path | None = None,
) -> tuple[SceneChannels, RasterGrid, dict[str, Any]]:
    """Read an image and its DEM and build the channels exactly as training data are built.

    Returns (scene, image grid, image profile). InputError naming the offending file for a
    missing/corrupt file, a missing CRS, a band count other than ``expected_bands``, a rotated
    image grid, or a DEM/label that does not overlap the image.
    """
    image = read_raster(image_path, expected_bands=expected_bands, what="image")
    if not image.grid.is_north_up():
        raise InputError(image_path, "image grid is rotated or not north-up; warp it to a north-up grid first")
    valid = image.valid_mask()
    dem, dem_valid = align_dem_to_image(dem_path, image.grid)
    xres, yres = pixel_size_metres(image.grid)
    terrain = terrain_channels(dem, xres, yres, azimuth, altitude)  # (5, H, W)
    valid &= dem_valid & np.isfinite(terrain).all(axis=0)
    channels = np.concatenate([image.data.astype(np.float32), terrain])  # (C, H, W)
    names = band_names(image.descriptions)
    label = None
    if label_path is not None:
        label = align_label_to_image(label_path, image.grid)
        label = np.where(valid, label, LABEL_NODATA).astype(np.uint8)
    return (
        SceneChannels(channels, valid, label, image.grid.transform, names),
        image.grid,
        image.profile,
    )


def pad_to_tile(scene: SceneChannels, tile: int) -> SceneChannels:
    """Pad a scene smaller than one tile with invalid pixels (bottom/right)."""
    c, h, w = scene.channels.shape
    ph, pw = max(h, tile), max(w, tile)
    if (ph, pw) == (h, w):
        return scene
    channels = np.full((c, ph, pw), np.nan, dtype=np.float32)
    channels[:, :h, :w] = scene.channels
    valid = np.zeros((ph, pw), dtype=bool)
    valid[:h, :w] = scene.valid
    label = None
    if scene.label is not None:
        label = np.full((ph, pw), LABEL_NODATA, dtype=np.uint8)
        label[:h, :w] = scene.label
    return SceneChannels(channels, valid, label, scene.transform, scene.band_names)
