"""Terrain features from a DEM on a north-up grid: slope, aspect, hillshade.

Conventions (those of GDAL ``gdaldem``): rows run north to south, columns west to east; ``xres``
and ``yres`` are the positive ground sizes of a pixel in metres along columns and rows; slope is
in degrees from horizontal; aspect is the compass direction the slope faces (downslope), in
degrees clockwise from north in [0, 360); hillshade is the cosine of the angle between the
surface normal and the sun, in [0, 1].

Derivatives are central differences (``np.gradient``; one-sided on the border), so a tilted
plane gives its exact slope and aspect everywhere.
"""

from __future__ import annotations

import numpy as np

TERRAIN_CHANNELS = ("elevation", "slope", "aspect_sin", "aspect_cos", "hillshade")
# the sun of the hillshade channel unless configured: gdaldem hillshade's defaults (light from the
# north-west, 45 degrees above the horizon)
HILLSHADE_AZIMUTH = 315.0
HILLSHADE_ALTITUDE = 45.0


def _gradients(dem: np.ndarray, xres: float, yres: float) -> tuple[np.ndarray, np.ndarray]:
    """(dz/dx east, dz/dy north), both (H, W), unitless (metres per metre)."""
    if xres <= 0 or yres <= 0:
        raise ValueError(f"pixel sizes must be positive, got xres={xres}, yres={yres}")
    if min(dem.shape) < 2:
        raise ValueError(f"DEM must be at least 2x2 pixels, got {dem.shape}")
    d_row, d_col = np.gradient(dem.astype(np.float64))
    dz_east = d_col / xres
    dz_north = -d_row / yres  # row index grows southward
    return dz_east, dz_north


def slope_aspect(dem: np.ndarray, xres: float, yres: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope (degrees) and aspect (degrees clockwise from north, [0, 360)) of ``dem`` (H, W).

    Flat cells (zero gradient) get aspect 0.
    """
    dz_east, dz_north = _gradients(dem, xres, yres)
    slope = np.degrees(np.arctan(np.hypot(dz_east, dz_north)))
    # the surface faces down the gradient: direction (-dz_east, -dz_north) as a compass bearing
    aspect = np.degrees(np.arctan2(-dz_east, -dz_north)) % 360.0
    aspect = np.where((dz_east == 0) & (dz_north == 0), 0.0, aspect)
    return slope.astype(np.float32), aspect.astype(np.float32)


def hillshade(
    dem: np.ndarray,
    xres: float,
    yres: float,
    azimuth: float = HILLSHADE_AZIMUTH,
    altitude: float = HILLSHADE_ALTITUDE,
) -> np.ndarray:
    """Illumination in [0, 1] by a sun at ``azimuth`` (degrees clockwise from north, where the
    light comes from) and ``altitude`` (degrees above the horizon). (H, W) float32."""
    return _shade(*slope_aspect(dem, xres, yres), azimuth, altitude)


def _shade(slope: np.ndarray, aspect: np.ndarray, azimuth: float, altitude: float) -> np.ndarray:
    """:func:`hillshade` from the (float32) slope and aspect of :func:`slope_aspect`."""
    s = np.radians(slope.astype(np.float64))
    a = np.radians(aspect.astype(np.float64))
    zenith = np.radians(90.0 - altitude)
    az = np.radians(azimuth)
    shade = np.cos(zenith) * np.cos(s) + np.sin(zenith) * np.sin(s) * np.cos(az - a)
    return np.clip(shade, 0.0, 1.0).astype(np.float32)


def terrain_channels(
    dem: np.ndarray,
    xres: float,
    yres: float,
    azimuth: float = HILLSHADE_AZIMUTH,
    altitude: float = HILLSHADE_ALTITUDE,
) -> np.ndarray:
    """Stack of :data:`TERRAIN_CHANNELS`, (5, H, W) float32.

    Elevation is the raw DEM in metres (standardised later with the training statistics);
    aspect enters as its sine and cosine so that 359° and 1° are neighbours; on flat cells both
    are 0 because the aspect is undefined there. NaN in ``dem`` (no data) propagates to the
    neighbouring cells of every derivative channel, which are then treated as no data.
    """
    slope, aspect = slope_aspect(dem, xres, yres)
    flat = slope == 0
    rad = np.radians(aspect.astype(np.float64))
    aspect_sin = np.where(flat, 0.0, np.sin(rad))
    aspect_cos = np.where(flat, 0.0, np.cos(rad))
    aspect_sin = np.where(np.isnan(slope), np.nan, aspect_sin)
    aspect_cos = np.where(np.isnan(slope), np.nan, aspect_cos)
    shade = _shade(slope, aspect, azimuth, altitude)  # the same slope and aspect, computed once
    shade = np.where(np.isnan(slope), np.nan, shade)
    return np.stack([dem, slope, aspect_sin, aspect_cos, shade]).astype(np.float32)  # (5, H, W)
