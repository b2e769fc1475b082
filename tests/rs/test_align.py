"""DEM and label alignment onto the image grid (reprojection across CRSs, overlap checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.warp import Resampling, reproject

from rs.align import align_dem_to_image, align_label_to_image
from rs.config import RSPreprocessConfig
from rs.geotiff import RasterGrid, read_raster
from rs.preprocess import run_preprocess
from rs.tiling import window_from_list
from segcore.config import parse_config
from segcore.prepared import PreparedData
from tests.data.rs import make


def pixel_centres(grid: RasterGrid) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    return grid.transform @ (cols + 0.5, rows + 0.5)


@pytest.mark.parametrize("dem_crs", ["EPSG:4326", "EPSG:3035", "EPSG:32633"])
def test_dem_is_reprojected_onto_the_image_grid(tmp_path: Path, dem_crs: str) -> None:
    paths = make.tiny_scene(tmp_path, dem_crs=dem_crs, dem_res_m=25.0)
    grid = paths["grid"]
    dem, valid = align_dem_to_image(paths["dem"], grid)
    assert dem.shape == grid.shape and dem.dtype == np.float32
    assert valid.all()  # the DEM extent is larger than the image
    # bilinear resampling of a smooth surface: close to the analytic elevation at each image pixel
    east, north = pixel_centres(grid)
    assert np.abs(dem - make.elevation_at(east, north)).max() < 0.3


def test_dem_partly_outside_is_marked_invalid(tmp_path: Path) -> None:
    paths = make.tiny_scene(tmp_path, width=52)
    # an image grid shifted east so that its right part lies beyond the DEM
    g = paths["grid"]
    shifted = RasterGrid(g.crs, g.transform @ Affine.translation(40, 0), g.height, g.width)
    dem, valid = align_dem_to_image(paths["dem"], shifted)
    assert valid[:, :5].all() and not valid[:, -5:].any()
    assert np.isnan(dem[~valid]).all()


def test_dem_channel_of_a_tile_equals_an_independent_reprojection(tmp_path: Path) -> None:
    raw = make.scene_folder(tmp_path / "raw", n=2, nodata_cols=(0, 9))
    out = tmp_path / "prep"
    run_preprocess(
        parse_config(
            RSPreprocessConfig,
            [
                "--input",
                str(raw),
                "--out",
                str(out),
                "--tile",
                "16",
                "--overlap",
                "4",
                "--block-tiles",
                "2",
            ],
        )
    )
    data = PreparedData(out)
    valid_all = data.extra("valid")
    elev = data.manifest["channels"].index("elevation")
    checked = 0
    for i in range(len(data)):
        scene = data.manifest["samples"]["scene"][i]
        rec = data.manifest["scenes"][scene]
        tile_t = Affine(*data.manifest["tiles"]["transform"][i])
        dem = read_raster(rec["dem"])
        expected = np.full((16, 16), np.nan, dtype=np.float32)
        reproject(
            dem.data[0].astype(np.float32),
            expected,
            src_transform=dem.grid.transform,
            src_crs=dem.grid.crs,
            src_nodata=dem.nodata,
            dst_transform=tile_t,
            dst_crs=rec["crs"],
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
            tolerance=0.0,
        )
        valid = valid_all[i].astype(bool)
        np.testing.assert_allclose(data.images[i, elev][valid], expected[valid], rtol=0, atol=1e-3)
        # the window and the transform agree with each other
        win = window_from_list(data.manifest["tiles"]["window"][i])
        scene_t = Affine(*rec["transform"])
        assert tile_t @ (0, 0) == pytest.approx(scene_t @ (win.col_off, win.row_off))
        checked += 1
    assert checked == len(data) > 5


def test_label_on_another_grid_is_resampled_nearest(tmp_path: Path) -> None:
    paths = make.tiny_scene(tmp_path, label=False)
    grid = paths["grid"]
    make.label_on_other_grid(tmp_path / "lab.tif", grid, crs="EPSG:3035", res_m=7.0)
    lab = align_label_to_image(tmp_path / "lab.tif", grid)
    assert lab.shape == grid.shape and lab.dtype == np.uint8
    assert set(np.unique(lab)) <= {0, 1}
    east, north = pixel_centres(grid)
    truth = make.label_value_at(east, north)
    # nearest neighbour on a 7 m grid can only err within a label-pixel diagonal of the boundary
    dist = np.hypot(east - (make.ORIGIN[0] + 260.0), north - (make.ORIGIN[1] - 200.0))
    far = np.abs(dist - 150.0) > 7.0 * np.sqrt(2)
    np.testing.assert_array_equal(lab[far], truth[far])
    assert truth.sum() > 50


def test_label_on_the_image_grid_is_taken_as_is(tmp_path: Path) -> None:
    paths = make.tiny_scene(tmp_path)
    lab = align_label_to_image(paths["label"], paths["grid"])
    np.testing.assert_array_equal(lab, read_raster(paths["label"]).data[0])


def test_a_rasterio_profile_works_as_the_grid(tmp_path: Path) -> None:
    paths = make.tiny_scene(tmp_path)
    profile = read_raster(paths["image"]).profile
    a, _ = align_dem_to_image(paths["dem"], profile)
    b, _ = align_dem_to_image(paths["dem"], paths["grid"])
    np.testing.assert_array_equal(a, b)


def test_a_label_raster_smaller_than_the_image_is_named_in_a_warning(tmp_path: Path, caplog) -> None:
    import logging

    from rs.geotiff import write_geotiff

    paths = make.tiny_scene(tmp_path, label=False)
    grid = paths["grid"]
    half = RasterGrid(grid.crs, grid.transform, grid.height // 2, grid.width)  # the upper half of the image
    write_geotiff(tmp_path / "half.tif", np.zeros(half.shape, dtype=np.uint8), half)
    with caplog.at_level(logging.WARNING, logger="rs.align"):
        lab = align_label_to_image(tmp_path / "half.tif", grid)
    assert (lab[: grid.height // 2] == 0).all() and (lab[grid.height // 2 :] == 255).all()
    message = " ".join(r.getMessage() for r in caplog.records)
    assert str(tmp_path / "half.tif") in message and "covers 50.0% of the image" in message
    caplog.clear()
    make.label_on_other_grid(tmp_path / "lab.tif", grid, crs="EPSG:3035", res_m=7.0)  # covers it all
    with caplog.at_level(logging.WARNING, logger="rs.align"):
        align_label_to_image(tmp_path / "lab.tif", grid)
    assert not caplog.records
