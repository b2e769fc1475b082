"""Every bad input named in the issue → InputError naming the file, nothing left at the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rs.config import RSPreprocessConfig
from rs.geotiff import read_raster, write_geotiff
from rs.preprocess import run_preprocess
from rs.scene_prediction import predict_scene_detailed, write_prediction_geotiff
from segcore.cli import run_cli
from segcore.config import parse_config
from segcore.errors import InputError
from segcore.prepared import PreparedData
from tests.data.rs import make

ARGS = ["--tile", "16", "--overlap", "4", "--block-tiles", "2"]


def leftovers(out: Path) -> list[Path]:
    """The output itself and any temporary sibling an atomic write could leave."""
    found = [out] if out.exists() else []
    return found + sorted(out.parent.glob(f".{out.name}.tmp-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))


def preprocess(args: list[str]) -> None:
    run_preprocess(parse_config(RSPreprocessConfig, args))


def fails(args: list[str], out: Path, bad_file: Path | str, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as err:
        preprocess([*args, "--out", str(out), *ARGS])
    assert err.value.path == str(bad_file)
    assert leftovers(out) == []
    return err.value


def test_geotiff_without_crs(tmp_path: Path) -> None:
    s = make.tiny_scene(tmp_path)
    bad = make.no_crs_geotiff(tmp_path / "no_crs.tif")
    fails(
        ["--image", str(bad), "--dem", str(s["dem"])],
        tmp_path / "out",
        bad,
        "no coordinate reference system",
    )
    # a DEM without CRS as well
    fails(
        ["--image", str(s["image"]), "--dem", str(bad)],
        tmp_path / "out",
        bad,
        "no coordinate reference system",
    )


def test_corrupt_geotiff(tmp_path: Path) -> None:
    s = make.tiny_scene(tmp_path)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + bytes(30))
    fails(["--image", str(bad), "--dem", str(s["dem"])], tmp_path / "out", bad, "cannot be read")
    missing = tmp_path / "missing_dem.tif"
    fails(
        ["--image", str(s["image"]), "--dem", str(missing)],
        tmp_path / "out",
        missing,
        "does not exist",
    )


def test_dem_that_does_not_overlap(tmp_path: Path) -> None:
    s = make.tiny_scene(tmp_path)
    dem = make.far_dem(tmp_path / "far_dem.tif")
    fails(["--image", str(s["image"]), "--dem", str(dem)], tmp_path / "out", dem, "does not overlap")


def test_label_on_another_grid_resampled_or_rejected(tmp_path: Path) -> None:
    s = make.tiny_scene(tmp_path, label=False)
    good = tmp_path / "label_3035.tif"
    make.label_on_other_grid(good, s["grid"], crs="EPSG:3035", res_m=7.0)
    preprocess(
        [
            "--image",
            str(s["image"]),
            "--dem",
            str(s["dem"]),
            "--label",
            str(good),
            "--out",
            str(tmp_path / "ok"),
            *ARGS,
        ]
    )
    data = PreparedData(tmp_path / "ok")
    assert data.labeled.any() and set(np.unique(np.asarray(data.labels))) <= {0, 1, 255}
    far = tmp_path / "label_far.tif"
    make.label_on_other_grid(far, s["grid"], far=True)
    fails(
        ["--image", str(s["image"]), "--dem", str(s["dem"]), "--label", str(far)],
        tmp_path / "out",
        far,
        "does not overlap",
    )
    bad_values = tmp_path / "label_values.tif"
    write_geotiff(bad_values, np.full(s["grid"].shape, 7, dtype=np.uint8), s["grid"])
    fails(
        ["--image", str(s["image"]), "--dem", str(s["dem"]), "--label", str(bad_values)],
        tmp_path / "out",
        bad_values,
        "0 .background. or 1",
    )


def test_all_nodata_tiles_are_skipped_and_counted(tmp_path: Path) -> None:
    raw = make.scene_folder(tmp_path / "raw", n=2, nodata_cols=(0, 30))
    preprocess(["--input", str(raw), "--out", str(tmp_path / "out"), *ARGS])
    m = PreparedData(tmp_path / "out").manifest
    # s1: columns 0-29 are nodata, so the tiles at column offsets 0 and 12 are empty
    kept_s1 = {g["window"][1] for g in m["groups"].values() if g["scene"] == "s1"}
    assert 0 not in kept_s1 and 12 not in kept_s1
    assert m["skipped_nodata_tiles"] == 6  # 3 tile rows x 2 tile columns


def test_a_scene_that_is_entirely_nodata(tmp_path: Path) -> None:
    s = make.tiny_scene(tmp_path, nodata_cols=52)
    fails(
        ["--image", str(s["image"]), "--dem", str(s["dem"])],
        tmp_path / "out",
        s["image"],
        "every tile is nodata",
    )


def test_corrupt_h5(tmp_path: Path) -> None:
    raw = make.landslide4sense(tmp_path / "l4s", n=3, size=32)
    bad = make.corrupt_h5(raw / "img" / "image_2.h5")
    fails(["--input", str(raw), "--tile", "32"], tmp_path / "out", bad, "HDF5")
    bad_mask = make.corrupt_h5(raw / "mask" / "mask_3.h5")
    (raw / "img" / "image_2.h5").unlink()
    fails(["--input", str(raw), "--tile", "32"], tmp_path / "out", bad_mask, "HDF5")


def test_scenes_with_different_band_counts(tmp_path: Path) -> None:
    a = make.tiny_scene(tmp_path, "a")
    b = make.tiny_scene(tmp_path, "b", bands=3)
    fails(
        ["--image", f"{a['image']},{b['image']}", "--dem", f"{a['dem']},{b['dem']}"],
        tmp_path / "out",
        b["image"],
        "3 bands",
    )


def test_band_count_at_predict_time(tmp_path: Path) -> None:
    raw = make.scene_folder(tmp_path / "raw", n=2)
    preprocess(["--input", str(raw), "--out", str(tmp_path / "prep"), *ARGS])
    other = make.tiny_scene(tmp_path, "five", bands=5)
    out = tmp_path / "prediction.tif"

    def predict_and_write() -> None:
        res = predict_scene_detailed(other["image"], other["dem"], lambda x: x[:, :2], tmp_path / "prep")
        write_prediction_geotiff(out, res.labels(), res.profile)

    with pytest.raises(InputError, match="5 band.* trained on 4") as err:
        predict_and_write()
    assert err.value.path == str(other["image"])
    assert leftovers(out) == []


def test_predict_with_a_non_overlapping_dem(tmp_path: Path) -> None:
    raw = make.scene_folder(tmp_path / "raw", n=2)
    preprocess(["--input", str(raw), "--out", str(tmp_path / "prep"), *ARGS])
    dem = make.far_dem(tmp_path / "far.tif")
    with pytest.raises(InputError, match="does not overlap") as err:
        predict_scene_detailed(raw / "scenes" / "s0_image.tif", dem, lambda x: x[:, :2], tmp_path / "prep")
    assert err.value.path == str(dem)


def test_input_folder_of_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    fails(["--input", str(tmp_path / "empty")], tmp_path / "out", tmp_path / "empty", "neither")


def test_cli_maps_input_error_to_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = make.tiny_scene(tmp_path)
    dem = make.far_dem(tmp_path / "far_dem.tif")
    stages = [
        (
            "preprocess",
            "prepare",
            "rs.config:RSPreprocessConfig",
            "rs.preprocess:run_preprocess",
        )
    ]
    out = tmp_path / "out"
    code = run_cli(
        "rs",
        "test",
        stages,
        ["preprocess", "--image", str(s["image"]), "--dem", str(dem), "--out", str(out)],
    )
    assert code == 2 and f"error: {dem}" in capsys.readouterr().err
    assert leftovers(out) == []
    assert read_raster(s["image"]).count == 4
