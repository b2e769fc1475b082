"""A GeoTIFF scene read in row strips, as the channels :func:`rs.scene_channels.load_scene_channels`
builds, for whole-scene prediction in memory bounded by the strip, not the scene.

For rows ``[r0, r1)`` of the image grid, :meth:`SceneStrips.read` reads those image rows (a
window), reprojects the DEM onto those rows plus one halo row above and below (bilinear, exact
coordinate transformation: the pixels equal those of the whole-scene reprojection), derives the
terrain channels on that and drops the halo. The derivatives are central differences, so one
halo row makes them equal the whole-scene ones; at the scene's top and bottom there is no halo,
and both use the same one-sided differences. The result equals the same rows of
``load_scene_channels`` (tests).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from rs.align import check_overlap, resampling_scale
from rs.geotiff import Raster, RasterGrid, pixel_size_metres, read_raster
from rs.terrain import HILLSHADE_ALTITUDE, HILLSHADE_AZIMUTH, terrain_channels
from segcore.errors import InputError


class SceneStrips:
    """An image and its DEM, opened for reading row strips. Use as a context manager.

    ``grid``, ``profile``: the image's; ``channels``: image bands + 5 terrain channels.
    InputError naming the file for a missing/corrupt file, no CRS, a band count other than
    ``expected_bands``, a rotated image grid, or a DEM that does not overlap the image.
    """

    def __init__(
        self,
        image_path: str | Path,
        dem_path: str | Path,
        expected_bands: int | None = None,
        azimuth: float = HILLSHADE_AZIMUTH,
        altitude: float = HILLSHADE_ALTITUDE,
    ) -> None:
        self.image_path, self.dem_path = Path(image_path), Path(dem_path)
        image = read_raster(image_path, expected_bands=expected_bands, what="image", read_data=False)
        if not image.grid.is_north_up():
            raise InputError(image_path, "image grid is rotated or not north-up; warp it to a north-up grid first")
        dem = read_raster(dem_path, what="DEM", read_data=False)
        if dem.count < 1:
            raise InputError(dem_path, "DEM has no band")
        check_overlap(image.grid, dem, "DEM")
        self.image, self.dem = image, dem
        self.grid: RasterGrid = image.grid
        self.profile: dict[str, Any] = image.profile
        self.bands = image.count
        self.channels = image.count + 5
        self.xres, self.yres = pixel_size_metres(image.grid)  # the whole scene's, as load_scene_channels
        self.azimuth, self.altitude = azimuth, altitude
        nodata = dem.nodata
        self._dem_nodata = np.nan if nodata is None or np.isnan(nodata) else nodata
        self._scale = resampling_scale(dem.grid, image.grid)  # the whole scene's, for every strip
        self.any_valid_dem = False  # becomes True once a strip has a valid DEM pixel
        try:
            self._image_ds = rasterio.open(self.image_path)
            self._dem_ds = rasterio.open(self.dem_path)
        except (RasterioError, OSError) as err:
            raise InputError(image_path, f"cannot be opened for reading ({err})") from err

    def __enter__(self) -> SceneStrips:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._image_ds.close()
        self._dem_ds.close()

    def _rows_grid(self, r0: int, r1: int) -> RasterGrid:
        return RasterGrid(self.grid.crs, self.grid.transform @ Affine.translation(0, r0), r1 - r0, self.grid.width)

    def _dem_rows(self, r0: int, r1: int) -> np.ndarray:
        """The DEM reprojected onto rows ``[r0, r1)``: (r1 - r0, W) float32, NaN outside it."""
        grid = self._rows_grid(r0, r1)
        out = np.full(grid.shape, np.nan, dtype=np.float32)
        reproject(
            rasterio.band(self._dem_ds, 1),
            out,
            src_nodata=self._dem_nodata,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
            tolerance=0.0,
            XSCALE=self._scale[0],
            YSCALE=self._scale[1],
        )
        return out

    def read(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[r0, r1)``: channels (C, r1 - r0, W) float32 (any value where invalid) and
        valid (r1 - r0, W) bool, equal to those rows of ``load_scene_channels``."""
        h = self.grid.height
        if not 0 <= r0 < r1 <= h:
            raise ValueError(f"rows [{r0}, {r1}) outside the scene's {h}")
        data = self._image_ds.read(window=Window(0, r0, self.grid.width, r1 - r0))  # (B, n, W)
        rows = Raster(self.image_path, data, self._rows_grid(r0, r1), self.image.nodata, (), {})
        valid = rows.valid_mask()
        h0, h1 = max(0, r0 - 1), min(h, r1 + 1)  # one halo row for the central differences
        dem = self._dem_rows(h0, h1)
        terrain = terrain_channels(dem, self.xres, self.yres, self.azimuth, self.altitude)[:, r0 - h0 : r1 - h0]
        dem_valid = np.isfinite(dem[r0 - h0 : r1 - h0])
        self.any_valid_dem |= bool(dem_valid.any())
        valid &= dem_valid & np.isfinite(terrain).all(axis=0)
        return np.concatenate([data.astype(np.float32), terrain]), valid

    def check_dem_coverage(self) -> None:
        """After the last strip: InputError when the DEM had no valid pixel anywhere in the image."""
        if not self.any_valid_dem:
            raise InputError(self.dem_path, "DEM has no valid elevation inside the image footprint (all nodata there)")
