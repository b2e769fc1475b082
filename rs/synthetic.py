"""Synthetic landslide scenes (``rs demo-data``): imagery, a DEM in another CRS, and labels.

What a scene contains and why (docs/methods.md, section 6; section 4 on what makes it hard enough):

* Terrain: a spectral-synthesis fractal surface whose lowlands are flattened into plains, and a
  meandering river that carves a flat floodplain. Truth lives on a fine grid at the image pixel
  size in UTM zone 33N (EPSG:32633), with a margin around the image.
* Land cover on that terrain: forest and meadows on slopes, agricultural parcels (crops,
  meadow, bare tilled soil) on flat ground, bare rock and scree high up, forest clear-cuts on
  moderate slopes, roads, and a braided river (gravel bars around a water thread).
* Landslides: placed where the slope is steep (weight rising from 12° to 32°, so some sit on
  moderate slopes), elongated downslope along the local aspect, with a depression below the
  head scarp and a deposit bulge at the toe written into the terrain; spectra drawn from the
  same bare soil/rock family as the tilled fields, with rougher texture; older ones are partly
  revegetated (30-75% of pixels).
* Look-alikes that only the terrain (or shape and context) tells apart: bare fields, roads and
  river gravel on flat ground share the landslide spectra; clear-cuts and rock on slopes make
  slope alone an imperfect cue.
* The DEM is partial evidence: it is sampled from the terrain at a coarser resolution
  (``dem_resolution``, 25 m by default against 10 m pixels) in another CRS (EPSG:4326 for even
  scenes, EPSG:3035 for odd ones) over a slightly larger extent, with correlated and white
  height errors, and it predates most fresh landslides (their scarp and deposit are missing from
  it; older landslides are in it).
* Nodata: the second scene has a slanted swath-edge strip of nodata (image value 0, declared in
  the profile) wide enough to make whole tiles empty; the third scene's DEM has a void (nodata
  -9999).

Images are uint16 reflectance x 10000 (nodata 0), bands B, G, R, NIR; labels uint8 0/1 on the
image grid; DEMs float32 metres. Everything is a function of ``seed``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points
from rasterio.warp import transform_bounds
from scipy import ndimage

from rs.config import RSDemoDataConfig
from rs.geotiff import RasterGrid, write_geotiff
from rs.terrain import hillshade, slope_aspect
from segcore.config import to_record
from segcore.outputs import atomic_dir, write_json, write_yaml

log = logging.getLogger(__name__)

BAND_NAMES = ("B", "G", "R", "NIR")
IMAGE_CRS = "EPSG:32633"
DEM_CRS = ("EPSG:4326", "EPSG:3035")
IMAGE_NODATA = 0
DEM_NODATA = -9999.0
REFLECTANCE_SCALE = 10000.0
SCENE_SALT = 0x5CE7E  # mixed into the seed of every scene

# surface reflectance (B, G, R, NIR) of the cover types
FOREST = np.array([0.025, 0.045, 0.030, 0.30])
GRASS = np.array([0.040, 0.080, 0.060, 0.38])
CROP_GREEN = np.array([0.035, 0.075, 0.045, 0.45])
CROP_RIPE = np.array([0.070, 0.100, 0.120, 0.28])
SHRUB = np.array([0.035, 0.065, 0.045, 0.33])
DRY_SOIL = np.array([0.120, 0.160, 0.210, 0.280])
ROCK = np.array([0.140, 0.170, 0.190, 0.240])
GRAVEL = np.array([0.120, 0.150, 0.170, 0.220])
ROAD = np.array([0.110, 0.130, 0.150, 0.190])
WATER = np.array([0.060, 0.050, 0.030, 0.015])
HAZE = np.array([0.012, 0.008, 0.004, 0.0])


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with power spectrum ~ 1/k^beta, (H, W) float64."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    amp = k ** (-beta / 2.0)
    amp[0, 0] = 0.0
    spectrum = amp * (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape))
    field = np.fft.irfft2(spectrum, s=shape)
    return (field - field.mean()) / field.std()


def _rank_uniform(field: np.ndarray) -> np.ndarray:
    """Map values to their rank in (0, 1): a uniform field with the spatial structure of ``field``."""
    flat = field.ravel()
    ranks = np.empty(flat.size)
    ranks[np.argsort(flat)] = (np.arange(flat.size) + 0.5) / flat.size
    return ranks.reshape(field.shape)


def _polyline_distance(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance in pixels from every pixel to a polyline through ``points`` ((K, 2) row, col)."""
    line = np.zeros(shape, dtype=bool)
    for (r0, c0), (r1, c1) in zip(points[:-1], points[1:], strict=True):
        n = int(max(abs(r1 - r0), abs(c1 - c0)) * 2) + 2
        rr = np.clip(np.round(np.linspace(r0, r1, n)).astype(int), 0, shape[0] - 1)
        cc = np.clip(np.round(np.linspace(c0, c1, n)).astype(int), 0, shape[1] - 1)
        line[rr, cc] = True
    return ndimage.distance_transform_edt(~line)


def _meander(rng: np.random.Generator, size: int, horizontal: bool) -> np.ndarray:
    """A smooth random curve crossing a ``size`` grid from one side to the other, (K, 2) row, col."""
    t = np.linspace(-0.05, 1.05, 80) * size
    base = rng.uniform(0.3, 0.7) * size
    wander = np.zeros_like(t)
    for k in range(1, 4):
        wander += (
            rng.uniform(0.02, 0.08)
            / k
            * size
            * np.sin(2 * np.pi * k * t / size * rng.uniform(0.8, 1.6) + rng.uniform(0, 2 * np.pi))
        )
    across = base + wander + rng.uniform(-0.15, 0.15) * (t - size / 2)
    return np.stack([across, t], axis=1) if horizontal else np.stack([t, across], axis=1)


def _soil(rng: np.random.Generator) -> np.ndarray:
    """A bare-soil spectrum: dry soil darkened by moisture and scaled by brightness."""
    moisture = rng.uniform(0.0, 1.0)
    brightness = rng.normal(1.0, 0.1)
    return DRY_SOIL * (1.0 - 0.45 * moisture) * brightness * rng.normal(1.0, 0.03, size=4)


def _jitter(rng: np.random.Generator, spectrum: np.ndarray, bright: float = 0.08, band: float = 0.03) -> np.ndarray:
    return spectrum * rng.normal(1.0, bright) * rng.normal(1.0, band, size=4)


class _Painter:
    """Cover map painted object by object: each pixel points to a spectrum and a texture
    strength; :meth:`render` turns it into reflectance (4, H, W) with per-pixel texture."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int]) -> None:
        self.index = np.zeros(shape, dtype=np.int32)
        self.spectra: list[np.ndarray] = [np.zeros(4)]
        self.textures: list[float] = [0.0]
        self.rng = rng

    def paint(self, mask: np.ndarray, spectrum: np.ndarray, texture: float) -> None:
        self.index[mask] = len(self.spectra)
        self.spectra.append(np.asarray(spectrum, dtype=float))
        self.textures.append(float(texture))

    def paint_many(self, mask: np.ndarray, which: np.ndarray, spectra: np.ndarray, textures: np.ndarray) -> None:
        """Paint object ``which[i]`` (0..n-1, one per pixel of ``mask``) with ``spectra[which]``."""
        self.index[mask] = len(self.spectra) + which
        self.spectra.extend(np.asarray(spectra, dtype=float))
        self.textures.extend(float(t) for t in textures)

    def render(self) -> np.ndarray:
        shape = self.index.shape
        texture = ndimage.gaussian_filter(self.rng.normal(size=shape), 0.7)
        texture /= texture.std()
        band_noise = self.rng.normal(size=(4, *shape))
        spectra = np.stack(self.spectra)[self.index]  # (H, W, 4)
        strength = np.asarray(self.textures)[self.index]  # (H, W)
        tex = 1.0 + strength * texture
        return np.moveaxis(spectra, -1, 0) * tex[None] * (1.0 + 0.25 * strength[None] * band_noise)  # (4, H, W)


def _dem_grid(image_grid: RasterGrid, dem_crs: str, dem_resolution: float, margin_fraction: float) -> RasterGrid:
    """A north-up grid in ``dem_crs`` covering the image footprint plus a margin on every side."""
    left, bottom, right, top = image_grid.bounds
    pad = margin_fraction * max(right - left, top - bottom)
    l2, b2, r2, t2 = transform_bounds(
        image_grid.crs, dem_crs, left - pad, bottom - pad, right + pad, top + pad, densify_pts=21
    )
    crs = CRS.from_user_input(dem_crs)
    if crs.is_geographic:
        lat = math.radians(0.5 * (b2 + t2))
        yres = dem_resolution / 111_320.0
        xres = dem_resolution / (111_320.0 * math.cos(lat))
    else:
        xres = yres = dem_resolution
    left0 = math.floor(l2 / xres) * xres
    top0 = math.ceil(t2 / yres) * yres
    width = int(math.ceil((r2 - left0) / xres))
    height = int(math.ceil((top0 - b2) / yres))
    return RasterGrid(crs, Affine(xres, 0.0, left0, 0.0, -yres, top0), height, width)


def _sample_dem(
    terrain: np.ndarray,
    fine_transform: Affine,
    fine_crs: str,
    dem_grid: RasterGrid,
    pixel_size: float,
    dem_resolution: float,
) -> np.ndarray:
    """Elevation at every DEM pixel centre: the fine terrain smoothed to the DEM footprint, then
    interpolated at the centre's position in the fine (image CRS) grid. (Hd, Wd) float64."""
    smooth = ndimage.gaussian_filter(terrain, 0.45 * dem_resolution / pixel_size)
    rows, cols = np.mgrid[0 : dem_grid.height, 0 : dem_grid.width]
    xs, ys = dem_grid.transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    ex, ny = transform_points(dem_grid.crs, fine_crs, xs, ys)
    inv = ~fine_transform
    fc, fr = inv @ (np.asarray(ex), np.asarray(ny))
    # map_coordinates indexes pixel centres at integer positions
    coords = np.stack([np.asarray(fr) - 0.5, np.asarray(fc) - 0.5])
    values = ndimage.map_coordinates(smooth, coords, order=1, mode="nearest")
    return values.reshape(dem_grid.height, dem_grid.width)


def _landslide(
    rng: np.random.Generator,
    center: tuple[int, int],
    aspect_deg: float,
    shape: tuple[int, int],
    boundary_noise: np.ndarray,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Footprint and height change of one landslide around ``center`` (row, col).

    Returns (box slices, mask (h, w) bool, dz (h, w) metres) or None if it leaves the grid.
    The long axis points downslope (``aspect_deg``); the head scarp is a depression in the upper
    third, the deposit a bulge over the lower part, and the toe is wider than the head.
    """
    length = float(np.clip(rng.lognormal(math.log(20.0), 0.45), 7.0, 55.0))
    width = max(4.0, length * rng.uniform(0.3, 0.7))
    depth = rng.uniform(2.0, 7.0) * (length / 25.0) ** 0.7
    r0, c0 = center
    half = int(math.ceil(0.6 * length + width)) + 2
    if r0 - half < 0 or c0 - half < 0 or r0 + half >= shape[0] or c0 + half >= shape[1]:
        return None
    box = (slice(r0 - half, r0 + half + 1), slice(c0 - half, c0 + half + 1))
    rr, cc = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    dx, dy = cc, -rr  # east, north
    a = math.radians(aspect_deg)
    u = dx * math.sin(a) + dy * math.cos(a)  # downslope distance from the centre
    v = -dx * math.cos(a) + dy * math.sin(a)
    s = (u + length / 2) / length  # 0 at the head, 1 at the toe
    spread = 0.65 + 0.7 * np.clip(s, 0, 1)  # the deposit spreads out
    inside = ((u / (length / 2)) ** 2 + (v / (width / 2 * spread)) ** 2) < 1.0 + 0.35 * boundary_noise[box]
    mask = ndimage.binary_opening(inside, iterations=1)
    mask = ndimage.binary_fill_holes(mask)
    if mask.sum() < 12:
        return None
    scarp = np.exp(-(((s - 0.18) / 0.14) ** 2))
    deposit = np.exp(-(((s - 0.78) / 0.2) ** 2))
    dz = depth * (0.8 * deposit - scarp) * np.exp(-((v / (width * 0.6 * spread)) ** 2))
    dz = ndimage.gaussian_filter(np.where(ndimage.binary_dilation(mask, iterations=2), dz, 0.0), 1.0)
    return box, mask, dz


@dataclass
class _Ground:
    """The true terrain of a scene on the fine grid (image pixels plus a margin)."""

    z: np.ndarray  # (g, g) elevation, metres
    n: np.ndarray  # (g, g) the normalised fractal the mountains are made of
    slope: np.ndarray  # (g, g) degrees
    smooth_slope: np.ndarray  # (g, g) degrees, of the smoothed surface
    smooth_aspect: np.ndarray  # (g, g) degrees from north
    znorm: np.ndarray  # (g, g) elevation rescaled to [0, 1]
    river: np.ndarray  # (P, 2) the river's polyline
    d_river: np.ndarray  # (g, g) distance to the river, pixels


def _terrain(rng: np.random.Generator, g: int, size: int, pixel_size: float) -> _Ground:
    """Fractal mountains over flattened plains, a floodplain along a meandering river."""
    shape = (g, g)
    n = fractal_noise(rng, shape, beta=3.6)
    n = (n - n.min()) / (n.max() - n.min())
    plain = rng.uniform(0.35, 0.5)
    h = np.clip((n - plain) / (1 - plain), 0, None)
    relief = rng.uniform(450.0, 750.0) * (size * pixel_size / 5120.0) ** 0.5
    hills = fractal_noise(rng, shape, beta=3.0)
    hills = ndimage.gaussian_filter(hills, 4.0)
    # mountains + rolling foothills, so that flat ground and steep ground are not a binary split
    z = relief * h**1.25 + 25.0 * n + rng.uniform(40.0, 90.0) * hills / hills.std()
    river = _meander(rng, g, horizontal=bool(rng.integers(2)))
    d_river = _polyline_distance(river, shape)
    valley = rng.uniform(25.0, 45.0) * (size / 512.0)
    z = z * (1 - np.exp(-((d_river / valley) ** 2))) + 300.0
    # a regional gradient: the valley floor is not perfectly flat
    z += 0.004 * pixel_size * (np.arange(g)[None, :] - g / 2)
    slope, _ = slope_aspect(z, pixel_size, pixel_size)
    smooth_slope, smooth_aspect = slope_aspect(ndimage.gaussian_filter(z, 3.0), pixel_size, pixel_size)
    znorm = (z - z.min()) / (z.max() - z.min())
    return _Ground(z, n, slope, smooth_slope, smooth_aspect, znorm, river, d_river)


def _paint_parcels(rng: np.random.Generator, paint: _Painter, ground: _Ground) -> tuple[np.ndarray, np.ndarray]:
    """Agricultural parcels on flat ground (crops, meadows, bare tilled soil) with natural field
    margins. Returns the flat-ground mask and the bare fields, (g, g) bool each."""
    g = ground.z.shape[0]
    flat = (ndimage.gaussian_filter(ground.slope, 3.0) < rng.uniform(9.0, 13.0)) & (ground.znorm < 0.5)
    theta = rng.uniform(0, np.pi)
    rows, cols = np.mgrid[0:g, 0:g].astype(float)
    pu = cols * math.cos(theta) + rows * math.sin(theta)
    pv = -cols * math.sin(theta) + rows * math.cos(theta)
    cuts_u = np.cumsum(rng.uniform(12, 40, size=200)) - 2 * g
    cuts_v = np.cumsum(rng.uniform(15, 50, size=200)) - 2 * g
    parcel = np.searchsorted(cuts_u, pu) * 1000 + np.searchsorted(cuts_v, pv)
    ids, inverse = np.unique(parcel[flat], return_inverse=True)
    kinds = rng.choice(3, size=len(ids), p=[0.45, 0.25, 0.30])  # crop, meadow, bare
    spectra = (
        np.stack(
            [
                _jitter(rng, CROP_GREEN + (CROP_RIPE - CROP_GREEN) * rng.uniform(0, 1))
                if kind == 0
                else (_jitter(rng, GRASS) if kind == 1 else _soil(rng))
                for kind in kinds
            ]
        )
        if len(ids)
        else np.zeros((0, 4))
    )
    paint.paint_many(flat, inverse, spectra, np.where(kinds == 0, 0.04, 0.05))
    bare_field = np.zeros((g, g), dtype=bool)
    bare_field[flat] = kinds[inverse] == 2
    parcel_masks = np.zeros((g, g), dtype=np.int64)
    parcel_masks[flat] = inverse + 1
    # field margins (hedges/tracks) stay natural: a one-pixel ring between parcels
    edges = (ndimage.maximum_filter(parcel_masks, 3) != ndimage.minimum_filter(parcel_masks, 3)) & flat
    paint.paint(edges, _jitter(rng, GRASS), 0.08)
    return flat, bare_field & ~edges


def _paint_clearcuts(
    rng: np.random.Generator,
    paint: _Painter,
    ground: _Ground,
    forest: np.ndarray,
    flat: np.ndarray,
    regrow: np.ndarray,
    size: int,
) -> np.ndarray:
    """Bare, partly regrowing rectangles and patches in forest on moderate slopes: (g, g) bool of
    the bare part."""
    g = ground.z.shape[0]
    shape = (g, g)
    rows, cols = np.mgrid[0:g, 0:g].astype(float)
    n_cuts = rng.poisson(12 * (size / 512.0) ** 2)
    cand = np.flatnonzero((forest & ~flat & (ground.smooth_slope > 8) & (ground.smooth_slope < 35)).ravel())
    edge_noise = fractal_noise(rng, shape, 2.2)
    clearcut = np.zeros(shape, dtype=bool)
    for _ in range(n_cuts if cand.size else 0):
        r, c = divmod(int(rng.choice(cand)), g)
        phi = rng.uniform(0, np.pi)
        a, b = rng.uniform(5, 16), rng.uniform(4, 11)
        box = (slice(max(r - 25, 0), r + 26), slice(max(c - 25, 0), c + 26))
        du = (cols[box] - c) * math.cos(phi) + (rows[box] - r) * math.sin(phi)
        dv = -(cols[box] - c) * math.sin(phi) + (rows[box] - r) * math.cos(phi)
        # some cuts are crisp rectangles, others irregular patches
        rough = rng.uniform(0.0, 0.5)
        m = np.zeros(shape, dtype=bool)
        m[box] = (np.abs(du) / a) ** 4 + (np.abs(dv) / b) ** 4 < 1 + rough * edge_noise[box]
        veg = m & (regrow < rng.uniform(0.1, 0.5))
        paint.paint(m & ~veg, _soil(rng), 0.08)
        clearcut |= m & ~veg
        paint.paint(veg, _jitter(rng, SHRUB), 0.08)
    return clearcut


def _paint_river_and_roads(
    rng: np.random.Generator, paint: _Painter, ground: _Ground, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A braided river (gravel bars around a meandering water thread) and roads through random
    waypoints. Returns the river bed, the water thread and the roads, (g, g) bool each."""
    shape = ground.z.shape
    g = shape[0]
    bed_half = rng.uniform(2.0, 5.0) * (size / 512.0) ** 0.5 + 1.0
    bed = ground.d_river < bed_half * (1 + 0.3 * fractal_noise(rng, shape, 2.0))
    river = ground.river
    thread = _polyline_distance(river + rng.normal(0, 1.0, size=river.shape), shape) < rng.uniform(0.8, 1.8)
    paint.paint(bed, _jitter(rng, GRAVEL), 0.07)
    paint.paint(thread & bed, _jitter(rng, WATER, 0.05), 0.03)
    roads = np.zeros(shape, dtype=bool)
    for _ in range(rng.integers(2, 5)):
        pts = rng.uniform(0, g, size=(rng.integers(3, 6), 2))
        road = _polyline_distance(pts, shape) < rng.uniform(0.6, 1.1)
        paint.paint(road, _jitter(rng, ROAD), 0.05)
        roads |= road
    return bed, thread, roads


@dataclass
class _Landslides:
    label: np.ndarray  # (g, g) bool
    dz_post: np.ndarray  # (g, g) the landslides' change of the terrain
    dz_dem: np.ndarray  # (g, g) the part of it the (older) DEM shows
    placed: int


def _place_landslides(
    rng: np.random.Generator,
    paint: _Painter,
    ground: _Ground,
    taken: np.ndarray,
    regrow: np.ndarray,
    margin: int,
    area_km2: float,
    landslides_per_km2: float,
) -> _Landslides:
    """Landslides where the slope is steep, away from man-made and water cover, each with its
    scarp and deposit in the terrain, fresh ones partly missing from the DEM, older ones partly
    revegetated."""
    shape = ground.z.shape
    g = shape[0]
    boundary = fractal_noise(rng, shape, 2.2)
    inner = np.zeros(shape, dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    steep = np.clip((ground.smooth_slope - 12.0) / 20.0, 0, 1) ** 1.5
    weight = steep * inner * ~ndimage.binary_dilation(taken, iterations=3)
    slides = _Landslides(np.zeros(shape, dtype=bool), np.zeros(shape), np.zeros(shape), 0)
    target = rng.poisson(landslides_per_km2 * area_km2)
    cdf = np.cumsum(weight.ravel())
    tries = 0
    while cdf[-1] > 0 and slides.placed < target and tries < 20 * target:
        tries += 1
        r, c = divmod(int(np.searchsorted(cdf, rng.uniform(0, cdf[-1]), side="right")), g)
        made = _landslide(rng, (r, c), float(ground.smooth_aspect[r, c]), shape, boundary)
        if made is None:
            continue
        box, m, dz = made
        if (slides.label[box] & ndimage.binary_dilation(m, iterations=2)).any() or (taken[box] & m).any():
            continue
        slides.placed += 1
        full = np.zeros(shape, dtype=bool)
        full[box] = m
        slides.label |= full
        slides.dz_post[box] += dz
        fresh = rng.uniform() < 0.5
        if not fresh or rng.uniform() < 0.3:  # the DEM predates most fresh landslides
            slides.dz_dem[box] += dz
        bare = _soil(rng) * (1 - (f := rng.uniform(0, 0.5))) + _jitter(rng, ROCK) * f
        r_veg = rng.uniform(0.0, 0.15) if fresh else rng.uniform(0.3, 0.75)
        veg = full & (regrow < r_veg)
        paint.paint(full & ~veg, bare, 0.11)
        paint.paint(veg, _jitter(rng, SHRUB if rng.uniform() < 0.5 else GRASS), 0.08)
    return slides


def _observe(
    rng: np.random.Generator, paint: _Painter, z_post: np.ndarray, pixel_size: float, crop: tuple[slice, slice]
) -> tuple[np.ndarray, tuple[float, float]]:
    """The image: shading under the acquisition sun, atmosphere, sensor blur and noise; (4, S, S)
    uint16 reflectance × 10000 of the cropped area, and the sun (azimuth, altitude)."""
    sun_az, sun_alt = rng.uniform(130, 170), rng.uniform(35, 55)
    illum = hillshade(z_post, pixel_size, pixel_size, sun_az, sun_alt) / math.sin(math.radians(sun_alt))
    refl = paint.render() * (0.3 + 0.7 * np.clip(illum, 0, 1.6))[None]
    refl = refl * rng.uniform(0.9, 1.1) + (HAZE * rng.uniform(0.3, 1.5))[:, None, None]
    refl = ndimage.gaussian_filter(refl, (0, 0.6, 0.6))
    refl += rng.normal(0, 0.004, size=refl.shape)
    dn = np.clip(np.round(refl[:, crop[0], crop[1]] * REFLECTANCE_SCALE), 1, 65535).astype(np.uint16)
    return dn, (sun_az, sun_alt)


def generate_scene(
    index: int,
    size: int = 512,
    seed: int = 0,
    pixel_size: float = 10.0,
    dem_resolution: float = 25.0,
    landslides_per_km2: float = 1.5,
    nodata_strip: bool = False,
    dem_void: bool = False,
) -> dict[str, Any]:
    """One scene in memory.

    Returns a dict: ``image`` (4, S, S) uint16 reflectance x 10000, ``label`` (S, S) uint8,
    ``dem`` (Hd, Wd) float32 metres on ``dem_grid``, ``image_grid``, ``terrain`` (S, S) the true
    post-event elevation on the image grid, ``lookalikes`` {name: (S, S) bool} masks of the
    landslide look-alikes (bare_field, road, river_gravel, clearcut, rock), ``n_landslides``,
    ``sun`` (azimuth, altitude) of the acquisition. Every random draw comes from one generator
    seeded by (seed, index), in a fixed order.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), SCENE_SALT]))
    margin = int(0.14 * size) + 8
    g = size + 2 * margin
    shape = (g, g)
    x0 = 400_000.0 + 12_000.0 * index
    y0 = 5_110_000.0 - 9_000.0 * (index % 3)
    image_transform = Affine(pixel_size, 0, x0, 0, -pixel_size, y0)
    fine_transform = Affine(pixel_size, 0, x0 - margin * pixel_size, 0, -pixel_size, y0 + margin * pixel_size)

    ground = _terrain(rng, g, size, pixel_size)
    paint = _Painter(rng, shape)
    # natural cover: forest and meadows
    cover = fractal_noise(rng, shape, beta=3.0)
    forest = cover > -0.4 + 2.5 * np.clip(ground.znorm - 0.55, 0, None)
    paint.paint(forest, _jitter(rng, FOREST, 0.05), 0.14)
    paint.paint(~forest, _jitter(rng, GRASS, 0.05), 0.06)
    flat, bare_field = _paint_parcels(rng, paint, ground)
    # bare rock and scree on high steep ground
    high = (ground.znorm > rng.uniform(0.6, 0.75)) & (ground.smooth_slope > 30)
    rock = high & (fractal_noise(rng, shape, 2.6) > 0.3)
    paint.paint(rock, _jitter(rng, ROCK, 0.08), 0.10)
    regrow = _rank_uniform(fractal_noise(rng, shape, 1.6))
    clearcut = _paint_clearcuts(rng, paint, ground, forest, flat, regrow, size)
    bed, thread, roads = _paint_river_and_roads(rng, paint, ground, size)
    taken = flat | bed | roads  # man-made and water cover: no landslides there
    slides = _place_landslides(
        rng, paint, ground, taken, regrow, margin, (size * pixel_size / 1000.0) ** 2, landslides_per_km2
    )

    z_post = ground.z + slides.dz_post
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    dn, sun = _observe(rng, paint, z_post, pixel_size, crop)
    if nodata_strip:
        rr, cc = np.mgrid[0:size, 0:size]
        edge = 0.14 * size + 0.1 * rr + 4 * np.sin(rr / 17.0)
        dn[:, cc < edge] = IMAGE_NODATA

    image_grid = RasterGrid(CRS.from_user_input(IMAGE_CRS), image_transform, size, size)
    dem_grid = _dem_grid(image_grid, DEM_CRS[index % 2], dem_resolution, margin_fraction=0.06)
    dem = _sample_dem(ground.z + slides.dz_dem, fine_transform, IMAGE_CRS, dem_grid, pixel_size, dem_resolution)
    dem += 1.5 * fractal_noise(rng, dem.shape, 2.4) + rng.normal(0, 0.5, size=dem.shape)
    dem = dem.astype(np.float32)
    if dem_void:
        vr, vc = dem_grid.height // 2, dem_grid.width // 3
        dem[vr - 3 : vr + 4, vc - 4 : vc + 5] = DEM_NODATA
    label = slides.label
    lookalikes = {
        "bare_field": bare_field & ~bed & ~roads,
        "road": roads,
        "river_gravel": bed & ~thread,
        "clearcut": clearcut & ~roads & ~label,
        "rock": rock & ~label & ~roads & ~clearcut,
    }
    return {
        "image": dn,
        "label": label[crop].astype(np.uint8),
        "lookalikes": {k: v[crop] for k, v in lookalikes.items()},
        "terrain": z_post[crop],
        "dem": dem,
        "image_grid": image_grid,
        "dem_grid": dem_grid,
        "n_landslides": slides.placed,
        "sun": sun,
    }


def generate_scenes(
    out: str | Path,
    n_scenes: int = 4,
    size: int = 512,
    seed: int = 0,
    pixel_size: float = 10.0,
    dem_resolution: float = 25.0,
    landslides_per_km2: float = 1.5,
) -> dict[str, Any]:
    """Write ``n_scenes`` scenes under ``out/scenes/`` and the index ``out/scenes.json``.

    Files per scene: ``scene_XX_image.tif`` (4 bands uint16), ``scene_XX_dem.tif`` (float32,
    other CRS, coarser, larger), ``scene_XX_label.tif`` (uint8 0/1 on the image grid). Writes
    into ``out`` directly (the CLI wraps it in an atomic folder). Returns the index.
    """
    if n_scenes < 1 or size < 32:
        raise ValueError(f"need n_scenes >= 1 and size >= 32, got {n_scenes}, {size}")
    out = Path(out)
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n_scenes):
        sid = f"scene_{i:02d}"
        sc = generate_scene(
            i,
            size,
            seed,
            pixel_size,
            dem_resolution,
            landslides_per_km2,
            nodata_strip=(i == 1 % n_scenes),
            dem_void=(n_scenes > 2 and i == 2),
        )
        files = {k: f"scenes/{sid}_{k}.tif" for k in ("image", "dem", "label")}
        write_geotiff(
            out / files["image"],
            sc["image"],
            sc["image_grid"],
            nodata=IMAGE_NODATA,
            descriptions=BAND_NAMES,
            tags={"scale_factor": 1 / REFLECTANCE_SCALE, "units": "reflectance x 10000"},
        )
        write_geotiff(
            out / files["dem"],
            sc["dem"],
            sc["dem_grid"],
            nodata=DEM_NODATA,
            descriptions=["elevation"],
            tags={"units": "metre"},
        )
        write_geotiff(
            out / files["label"],
            sc["label"],
            sc["image_grid"],
            descriptions=["landslide"],
            tags={"classes": "0 background, 1 landslide"},
        )
        entries.append(
            {
                "id": sid,
                **files,
                "image_crs": IMAGE_CRS,
                "dem_crs": DEM_CRS[i % 2],
                "n_landslides": sc["n_landslides"],
                "landslide_fraction": float(sc["label"].mean()),
                "nodata_strip": i == 1 % n_scenes,
                "dem_void": n_scenes > 2 and i == 2,
            }
        )
        log.info(
            "%s: %d landslides (%.1f%% of pixels)",
            sid,
            sc["n_landslides"],
            100 * sc["label"].mean(),
        )
    index = {
        "kind": "rs-demo",
        "seed": seed,
        "size": size,
        "pixel_size": pixel_size,
        "dem_resolution": dem_resolution,
        "bands": list(BAND_NAMES),
        "image_nodata": IMAGE_NODATA,
        "dem_nodata": DEM_NODATA,
        "classes": ["background", "landslide"],
        "scenes": entries,
    }
    write_json(out / "scenes.json", index)
    return index


def run_demo_data(cfg: RSDemoDataConfig) -> None:
    with atomic_dir(cfg.out) as tmp:
        generate_scenes(
            tmp, cfg.n_scenes, cfg.size, cfg.seed, cfg.pixel_size, cfg.dem_resolution, cfg.landslides_per_km2
        )
        write_yaml(tmp / "config.yaml", to_record(cfg))
    log.info("wrote %d scenes to %s", cfg.n_scenes, cfg.out)
