"""Synthetic landslide scenes: files, geometry (other CRS, coarser, larger DEM), nodata,
determinism, and the properties that make them a fair test (look-alikes, partial terrain cue)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rasterio.warp import transform_bounds
from scipy import ndimage

from rs.align import align_dem_to_image
from rs.config import RSDemoDataConfig
from rs.geotiff import pixel_size_metres, read_raster
from rs.synthetic import generate_scene, run_demo_data
from rs.terrain import slope_aspect
from segcore.config import add_options, from_namespace


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "raw"
    p = argparse.ArgumentParser()
    add_options(p, RSDemoDataConfig)
    args = p.parse_args(["--out", str(out), "--n-scenes", "3", "--size", "160", "--seed", "5"])
    run_demo_data(from_namespace(RSDemoDataConfig, args))
    return out


def test_files_and_index(demo: Path) -> None:
    index = json.loads((demo / "scenes.json").read_text())
    assert [s["id"] for s in index["scenes"]] == ["scene_00", "scene_01", "scene_02"]
    for s in index["scenes"]:
        for key in ("image", "dem", "label"):
            assert (demo / s[key]).is_file()
        assert s[key].startswith("scenes/")
    cfg = yaml.safe_load((demo / "config.yaml").read_text())
    assert cfg["n_scenes"] == 3 and cfg["seed"] == 5
    assert not list(demo.parent.glob(".raw.tmp-*"))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_geometry_of_image_dem_and_label(demo: Path, k: int) -> None:
    s = json.loads((demo / "scenes.json").read_text())["scenes"][k]
    img = read_raster(demo / s["image"])
    dem = read_raster(demo / s["dem"])
    lab = read_raster(demo / s["label"])
    assert img.count == 4 and img.descriptions == ("B", "G", "R", "NIR") and img.data.dtype == np.uint16
    assert img.grid.crs.to_epsg() == 32633 and img.nodata == 0
    assert dem.grid.crs.to_epsg() == (4326, 3035)[k % 2] and dem.grid.crs != img.grid.crs
    assert dem.data.dtype == np.float32 and dem.nodata == -9999.0
    # coarser: at least twice the image pixel size in metres
    assert min(pixel_size_metres(dem.grid)) > 2 * max(pixel_size_metres(img.grid))
    # larger: the DEM footprint contains the image footprint with a margin
    left, bottom, right, top = transform_bounds(dem.grid.crs, img.grid.crs, *dem.grid.bounds)
    il, ib, ir, it = img.grid.bounds
    assert left < il - 50 and bottom < ib - 50 and right > ir + 50 and top > it + 50
    assert lab.grid == img.grid and lab.data.dtype == np.uint8 and set(np.unique(lab.data)) <= {0, 1}
    assert 0.003 < lab.data.mean() < 0.08


def test_nodata_strip_and_dem_void(demo: Path) -> None:
    scenes = json.loads((demo / "scenes.json").read_text())["scenes"]
    strip = read_raster(demo / scenes[1]["image"])
    invalid = ~strip.valid_mask()
    assert invalid[:, :20].all() and not invalid[:, -20:].any()  # a slanted strip on the left
    assert read_raster(demo / scenes[0]["image"]).valid_mask().all()
    dem = read_raster(demo / scenes[2]["dem"])
    assert (dem.data == -9999.0).sum() > 10


def test_seeded() -> None:
    a = generate_scene(1, 96, seed=3)
    b = generate_scene(1, 96, seed=3)
    c = generate_scene(1, 96, seed=4)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["dem"], b["dem"])
    np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(a["image"], c["image"])


def test_dem_matches_the_terrain_after_alignment(demo: Path) -> None:
    """The DEM, reprojected back onto the image grid, follows the true (post-event) terrain up
    to the DEM's resolution, noise and the missing fresh landslides (a few metres)."""
    sc = generate_scene(0, 160, seed=5)
    s = json.loads((demo / "scenes.json").read_text())["scenes"][0]
    grid = read_raster(demo / s["image"]).grid
    dem, valid = align_dem_to_image(demo / s["dem"], grid)
    truth = ndimage.gaussian_filter(sc["terrain"], 1.2)
    err = np.abs(dem - truth)[valid]
    assert np.median(err) < 3.0 and valid.all()


def test_lookalikes_share_the_spectra_and_terrain_is_a_partial_cue() -> None:
    sc = generate_scene(0, 384, seed=1)
    refl = sc["image"].astype(float) / 1e4
    ndvi = (refl[3] - refl[2]) / (refl[3] + refl[2])
    slope, _ = slope_aspect(ndimage.gaussian_filter(sc["terrain"], 1.0), 10, 10)
    lab = sc["label"].astype(bool)
    look = sc["lookalikes"]
    flat_bare = look["bare_field"] | look["river_gravel"]
    assert lab.sum() > 500 and flat_bare.sum() > 500
    # spectrally alike: bare ground, far from vegetation
    veg = ~lab & ~np.logical_or.reduce(list(look.values()))
    assert abs(np.median(ndvi[lab]) - np.median(ndvi[flat_bare])) < 0.15
    assert np.median(ndvi[veg]) > np.median(ndvi[lab]) + 0.25
    # the terrain separates flat look-alikes from landslides...
    assert np.median(slope[lab]) > np.median(slope[flat_bare]) + 10
    # ...but not perfectly: some landslides on moderate slopes, some look-alikes on slopes
    assert (slope[lab] < 20).mean() > 0.05
    slope_lookalikes = look["clearcut"] | look["rock"] | look["road"]
    assert (slope[slope_lookalikes] > 20).mean() > 0.2


def test_default_scene_is_fast() -> None:
    import time

    t = time.perf_counter()
    generate_scene(0, 512, seed=0)
    assert time.perf_counter() - t < 10.0  # ~1 s alone; generous for a shared CI machine
