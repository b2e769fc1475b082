"""``rs preprocess --workers``: scenes' superpixels and tiles written in parallel, the same
prepared data as one worker (the Landslide4Sense release and GeoTIFF scenes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rs.cli import main as rs
from tests.data.l4s import make as l4s_make
from tests.data.rs import make as rs_make

ARRAYS = ("images.npy", "labels.npy", "valid.npy", "superpixels.npy", "manifest.json")


def _same(a: Path, b: Path) -> None:
    for name in ARRAYS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_release_workers_write_the_same_tiles(tmp_path: Path) -> None:
    raw = l4s_make.release(tmp_path / "raw", 9, 3, 3, seed=1, size=128)
    for workers in ("1", "2"):
        assert (
            rs(["preprocess", "--input", str(raw), "--out", str(tmp_path / f"w{workers}"), "--workers", workers]) == 0
        )
    _same(tmp_path / "w1", tmp_path / "w2")
    assert np.load(tmp_path / "w2" / "superpixels.npy").shape == (15, 128, 128)


def test_scene_workers_write_the_same_tiles(tmp_path: Path) -> None:
    raw = rs_make.scene_folder(tmp_path / "raw", n=3, nodata_cols=(0, 7))
    common = ["--tile", "16", "--overlap", "4", "--block-tiles", "2"]
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert rs(["preprocess", "--input", str(raw), "--out", str(out), *common, "--workers", workers]) == 0
    _same(tmp_path / "w1", tmp_path / "w2")


def test_a_bad_patch_in_a_worker_is_an_input_error(tmp_path: Path, capsys) -> None:
    raw = l4s_make.release(tmp_path / "raw", 6, 0, 0, seed=1, size=128)
    (raw / "TrainData" / "img" / "image_4.h5").write_bytes(b"not hdf5")
    assert rs(["preprocess", "--input", str(raw), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "image_4.h5" in err and "HDF5" in err and not (tmp_path / "out").exists()
