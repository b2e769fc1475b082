"""Reading and writing GeoTIFFs with errors that name the file.

Every reader raises :class:`segcore.errors.InputError` (file + problem) for the failures a user
can cause: a missing or corrupt file, a raster without a CRS, an unexpected band count. A
:class:`RasterGrid` is the geometry a scene is aligned to (CRS, affine transform, shape); DEMs
and labels are reprojected onto it (see :mod:`rs.align`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from segcore.errors import InputError
from segcore.outputs import atomic_file


@dataclass(frozen=True)
class RasterGrid:
    """The pixel grid of a raster: CRS, affine transform (pixel corner → CRS coordinates), shape."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return _bounds(self.transform, self.height, self.width)

    def is_north_up(self) -> bool:
        """True for an unrotated grid whose rows run north to south."""
        t = self.transform
        return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0


def as_grid(grid_or_profile: RasterGrid | dict[str, Any]) -> RasterGrid:
    """A :class:`RasterGrid` from itself or from a rasterio profile (crs, transform, height, width)."""
    if isinstance(grid_or_profile, RasterGrid):
        return grid_or_profile
    p = grid_or_profile
    crs = p["crs"] if isinstance(p["crs"], CRS) or p["crs"] is None else CRS.from_user_input(p["crs"])
    return RasterGrid(crs, p["transform"], int(p["height"]), int(p["width"]))


def _bounds(transform: Affine, height: int, width: int) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for r, c in ((0, 0), (0, width), (height, 0), (height, width)):
        x, y = transform @ (c, r)
        xs.append(x)
        ys.append(y)
    return (min(xs), min(ys), max(xs), max(ys))


@dataclass
class Raster:
    """A raster read into memory: ``data`` (C, H, W) in its stored dtype plus its metadata."""

    path: Path
    data: np.ndarray
    grid: RasterGrid
    nodata: float | None
    descriptions: tuple[str | None, ...]
    profile: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    def valid_mask(self) -> np.ndarray:
        """(H, W) bool: True where no band equals ``nodata`` and every band is finite."""
        valid = np.ones(self.data.shape[1:], dtype=bool)
        if np.issubdtype(self.data.dtype, np.floating):
            valid &= np.isfinite(self.data).all(axis=0)
        if self.nodata is not None and not np.isnan(self.nodata) and _representable(self.nodata, self.data.dtype):
            valid &= ~(self.data == np.asarray(self.nodata).astype(self.data.dtype)).any(axis=0)
        return valid


def _representable(value: float, dtype: np.dtype) -> bool:
    """True if ``value`` is exactly a value of ``dtype`` (a nodata of -9999 in uint16 is not)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def _open_error(path: Path, err: Exception) -> InputError:
    if not path.exists():
        return InputError(path, "file does not exist")
    if path.is_dir():
        return InputError(path, "is a folder, expected a GeoTIFF file")
    return InputError(path, f"cannot be read as a raster (corrupt or not a GeoTIFF: {err})")


def read_raster(
    path: str | Path,
    expected_bands: int | None = None,
    require_crs: bool = True,
    what: str = "raster",
    read_data: bool = True,
) -> Raster:
    """Read all bands of ``path`` (only the metadata when ``read_data`` is False: ``data`` is
    then an empty (C, 0, 0) array).

    Raises InputError naming ``path`` if it is missing or unreadable, has no CRS (when
    ``require_crs``), has no geotransform, or does not have ``expected_bands`` bands. ``what``
    ("image", "DEM", "label") makes the message say which input is wrong.
    """
    path = Path(path)
    try:
        with rasterio.open(path) as src:
            if src.crs is None and require_crs:
                raise InputError(
                    path,
                    f"{what} has no coordinate reference system (CRS); georeference it first (e.g. "
                    "gdal_edit.py -a_srs)",
                )
            if src.transform == Affine.identity() and require_crs:
                raise InputError(path, f"{what} has no geotransform (pixel grid is not georeferenced)")
            if expected_bands is not None and src.count != expected_bands:
                raise InputError(path, f"{what} has {src.count} band(s), expected {expected_bands}")
            data = src.read() if read_data else np.empty((src.count, 0, 0), dtype=src.dtypes[0])
            grid = RasterGrid(src.crs, src.transform, src.height, src.width)
            profile = dict(src.profile)
            return Raster(path, data, grid, src.nodata, tuple(src.descriptions), profile)
    except InputError:
        raise
    except (RasterioError, OSError, ValueError) as err:
        raise _open_error(path, err) from err


def read_grid(path: str | Path, what: str = "raster") -> tuple[RasterGrid, int, float | None, dict[str, Any]]:
    """Metadata only: (grid, band count, nodata, profile); same errors as :func:`read_raster`."""
    path = Path(path)
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(
                    path,
                    f"{what} has no coordinate reference system (CRS); georeference it first (e.g. "
                    "gdal_edit.py -a_srs)",
                )
            return (
                RasterGrid(src.crs, src.transform, src.height, src.width),
                src.count,
                src.nodata,
                dict(src.profile),
            )
    except InputError:
        raise
    except (RasterioError, OSError, ValueError) as err:
        raise _open_error(path, err) from err


def write_geotiff(
    path: str | Path,
    data: np.ndarray,
    grid: RasterGrid,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> None:
    """Write ``data`` (C, H, W) or (H, W) on ``grid`` as a deflate-compressed GeoTIFF, atomically."""
    arr = data[None] if data.ndim == 2 else data
    if arr.shape[1:] != grid.shape:
        raise ValueError(f"data shape {arr.shape[1:]} does not match the grid {grid.shape}")
    profile = {
        "driver": "GTiff",
        "height": grid.height,
        "width": grid.width,
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "deflate",
    }
    if grid.height >= 16 and grid.width >= 16:
        profile.update(tiled=True, blockxsize=_block(grid.width), blockysize=_block(grid.height))
    with atomic_file(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            if descriptions is not None:
                for i, name in enumerate(descriptions, start=1):
                    dst.set_band_description(i, name)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})


def _block(n: int) -> int:
    # GeoTIFF tiles must be multiples of 16; use 256 where the raster allows it
    return 256 if n >= 256 else 16 * max(1, n // 16)


def transform_to_list(transform: Affine) -> list[float]:
    """The six GDAL-order coefficients (a, b, c, d, e, f) of an affine transform."""
    return [transform.a, transform.b, transform.c, transform.d, transform.e, transform.f]


def transform_from_list(values: Sequence[float]) -> Affine:
    a, b, c, d, e, f = (float(v) for v in values)
    return Affine(a, b, c, d, e, f)


def pixel_size_metres(grid: RasterGrid) -> tuple[float, float]:
    """(xres, yres): ground size of a pixel in metres along columns (east) and rows (south).

    For a geographic CRS (degrees), the size is converted at the grid's central latitude, which
    is accurate to well under 1% across a scene of a few tens of kilometres.
    """
    xres, yres = abs(grid.transform.a), abs(grid.transform.e)
    if grid.crs is not None and grid.crs.is_geographic:
        left, bottom, right, top = grid.bounds
        lat = np.deg2rad(0.5 * (bottom + top))
        metres_per_degree = 111_320.0
        return xres * metres_per_degree * float(np.cos(lat)), yres * metres_per_degree
    try:
        factor = float(grid.crs.linear_units_factor[1]) if grid.crs is not None else 1.0
    except Exception:  # CRS without defined linear units: assume metres
        factor = 1.0
    return xres * factor, yres * factor
