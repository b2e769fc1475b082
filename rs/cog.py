"""Cloud-optimised GeoTIFFs written in row blocks, for scene predictions of any size.

:class:`BlockGeoTIFF` takes rows in order (any number at a time) and writes whole blocks of
``block`` rows into a tiled, compressed scratch GeoTIFF beside the output, so memory holds one
block row, never the raster. :meth:`BlockGeoTIFF.close` then converts it with GDAL's COG driver
(internal tiles, deflate, overviews down to one block computed with ``overview_resampling``, the
colour table, band descriptions and tags kept) into the output, atomically, and removes the
scratch file. Run it inside :func:`gdal_env` (GDAL's block cache bounded to
:data:`GDAL_CACHE_MB`), so that the peak memory of a prediction stays flat in the scene size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from rs.geotiff import RasterGrid
from segcore.outputs import atomic_file

GDAL_CACHE_MB = 64  # GDAL's raster block cache (default: 5 % of RAM) while reading and writing scenes
BLOCK = 512  # tile side of the written GeoTIFFs (and rows per scratch write)


def gdal_env() -> rasterio.Env:
    """The GDAL settings of streamed scene I/O: a bounded block cache."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


class BlockGeoTIFF:
    """A (count, H, W) raster of ``dtype`` on ``grid`` written row block by row block, then made
    a cloud-optimised GeoTIFF at ``path``. Use as a context manager: on an error nothing is left.

    ``colormap`` (band 1, uint8 only): {value: (r, g, b, a)}; ``overview_resampling``: GDAL's
    name (``NEAREST`` for classes, ``AVERAGE`` for probabilities); ``predictor``: 2 (integers)
    or 3 (floats) for better deflate ratios.
    """

    def __init__(
        self,
        path: str | Path,
        grid: RasterGrid,
        count: int,
        dtype: str,
        nodata: float | None = None,
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
        overview_resampling: str = "NEAREST",
        predictor: int | None = None,
        block: int = BLOCK,
    ) -> None:
        if block % 16:
            raise ValueError(f"GeoTIFF blocks must be multiples of 16, got {block}")
        self.path, self.grid, self.count, self.dtype = Path(path), grid, int(count), np.dtype(dtype)
        self.block, self.overview_resampling, self.predictor = int(block), overview_resampling, predictor
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = self.path.with_name(f".{self.path.name}.rows.tif")
        profile = {
            "driver": "GTiff",
            "height": grid.height,
            "width": grid.width,
            "count": self.count,
            "dtype": self.dtype.name,
            "crs": grid.crs,
            "transform": grid.transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": self.block,
            "blockysize": self.block,
            "compress": "deflate",
            "zlevel": 1,  # scratch: fast; the COG conversion compresses properly
            "bigtiff": "IF_SAFER",
        }
        self._dst = rasterio.open(self.scratch, "w", **profile)
        if descriptions is not None:
            for i, name in enumerate(descriptions, start=1):
                self._dst.set_band_description(i, name)
        if tags:
            self._dst.update_tags(**{k: str(v) for k, v in tags.items()})
        if colormap is not None:
            self._dst.write_colormap(1, dict(colormap))
        self._buffer = np.empty((self.count, self.block, grid.width), dtype=self.dtype)
        self._filled = 0  # rows in the buffer
        self._row = 0  # first row of the buffer in the raster

    def write_rows(self, rows: np.ndarray) -> None:
        """Append rows (count, n, W) (or (n, W) for one band) below the rows written so far."""
        rows = rows[None] if rows.ndim == 2 else rows
        if rows.shape[0] != self.count or rows.shape[2] != self.grid.width:
            raise ValueError(f"rows {rows.shape} do not fit a ({self.count}, n, {self.grid.width}) raster")
        if self._row + self._filled + rows.shape[1] > self.grid.height:
            raise ValueError(f"more rows than the raster's {self.grid.height}")
        start = 0
        while start < rows.shape[1]:
            take = min(self.block - self._filled, rows.shape[1] - start)
            self._buffer[:, self._filled : self._filled + take] = rows[:, start : start + take]
            self._filled += take
            start += take
            if self._filled == self.block:
                self._flush()

    def _flush(self) -> None:
        if self._filled:
            window = Window(0, self._row, self.grid.width, self._filled)
            self._dst.write(self._buffer[:, : self._filled], window=window)
            self._row += self._filled
            self._filled = 0

    def close(self) -> None:
        """Write the last rows, convert to a cloud-optimised GeoTIFF at ``path``, remove the scratch."""
        try:
            self._flush()
            if self._row != self.grid.height:
                raise ValueError(f"{self._row} of {self.grid.height} rows were written")
            self._dst.close()
            options: dict[str, Any] = {
                "compress": "DEFLATE",
                "blocksize": self.block,
                "overview_resampling": self.overview_resampling,
                "bigtiff": "IF_SAFER",
            }
            if self.predictor:
                options["predictor"] = str(self.predictor)
            with atomic_file(self.path) as tmp:
                rasterio.shutil.copy(self.scratch, tmp, driver="COG", **options)
        finally:
            self._discard()

    def _discard(self) -> None:
        if not self._dst.closed:
            self._dst.close()
        self.scratch.unlink(missing_ok=True)

    def __enter__(self) -> BlockGeoTIFF:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._discard()
