"""The Landslide4Sense HDF5 layout: discovery, reading, errors, and preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from rs import landslide4sense as l4s
from rs.config import RSPreprocessConfig
from rs.preprocess import run_preprocess
from segcore.config import parse_config
from segcore.errors import InputError
from segcore.prepared import PreparedData
from tests.data.rs import make


def preprocess(args: list[str]) -> None:
    run_preprocess(parse_config(RSPreprocessConfig, args))


def test_find_patches_in_numeric_order_with_masks(tmp_path: Path) -> None:
    make.landslide4sense(tmp_path, n=11, masks=9)
    patches = l4s.find_patches(tmp_path)
    assert [p.id for p in patches] == [f"image_{i}" for i in range(1, 12)]  # 10 after 9, not after 1
    assert [p.mask is not None for p in patches] == [True] * 9 + [False] * 2
    assert l4s.is_landslide4sense(tmp_path)
    assert not l4s.is_landslide4sense(tmp_path / "img")


def test_release_subfolders_are_read(tmp_path: Path) -> None:
    make.landslide4sense(tmp_path / "TrainData", n=3)
    make.landslide4sense(tmp_path / "ValidData", n=2, masks=0)
    ids = [p.id for p in l4s.find_patches(tmp_path)]
    assert ids == [
        "TrainData/image_1",
        "TrainData/image_2",
        "TrainData/image_3",
        "ValidData/image_1",
        "ValidData/image_2",
    ]


def test_read_image_and_mask_round_trip(tmp_path: Path) -> None:
    make.landslide4sense(tmp_path, n=1, size=32)
    with h5py.File(tmp_path / "img" / "image_1.h5") as f:
        stored = f["img"][()]
    img = l4s.read_image(tmp_path / "img" / "image_1.h5", size=32)
    assert img.shape == (14, 32, 32) and img.dtype == np.float32
    np.testing.assert_allclose(img[5], stored[..., 5].astype(np.float32))
    np.testing.assert_allclose(img[13], stored[..., 13].astype(np.float32))
    mask = l4s.read_mask(tmp_path / "mask" / "mask_1.h5", size=32)
    np.testing.assert_array_equal(mask, (stored[..., 3] > 1.3).astype(np.uint8))


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    bad = make.corrupt_h5(tmp_path / "img" / "image_1.h5")
    with pytest.raises(InputError) as err:
        l4s.read_image(bad)
    assert err.value.path == str(bad) and "HDF5" in err.value.problem
    wrong_key = tmp_path / "k.h5"
    with h5py.File(wrong_key, "w") as f:
        f.create_dataset("image", data=np.zeros((128, 128, 14)))
    with pytest.raises(InputError, match="no dataset 'img'") as err:
        l4s.read_image(wrong_key)
    assert err.value.path == str(wrong_key)
    wrong_shape = tmp_path / "s.h5"
    with h5py.File(wrong_shape, "w") as f:
        f.create_dataset("img", data=np.zeros((128, 128, 13)))
    with pytest.raises(InputError, match="14"):
        l4s.read_image(wrong_shape)
    bad_mask = tmp_path / "m.h5"
    with h5py.File(bad_mask, "w") as f:
        f.create_dataset("mask", data=np.full((128, 128), 3, dtype=np.uint8))
    with pytest.raises(InputError, match="0 or 1"):
        l4s.read_mask(bad_mask)


def test_preprocess_landslide4sense(tmp_path: Path) -> None:
    raw = make.landslide4sense(tmp_path / "l4s", n=10, size=32, masks=8)
    out = tmp_path / "prep"
    preprocess(["--input", str(raw), "--out", str(out), "--tile", "32", "--seed", "3"])
    data = PreparedData(out)
    m = data.manifest
    assert m["channels"] == [f"B{i}" for i in range(1, 13)] + ["slope", "elevation"]
    assert m["spectral_channels"] == list(range(12)) and m["terrain_channels"] == [12, 13]
    assert m["source"] == "landslide4sense" and len(data) == 10
    assert all(not s["georeferenced"] and s["crs"] is None for s in m["scenes"].values())
    # stored raw values equal the HDF5 content; labels equal the masks
    i = m["samples"]["scene"].index("image_4")
    with h5py.File(raw / "img" / "image_4.h5") as f:
        stored = f["img"][()]
    np.testing.assert_allclose(data.images[i], np.moveaxis(stored, -1, 0).astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(data.labels[i], (stored[..., 3] > 1.3).astype(np.uint8))
    # patches without a mask are unlabeled: only in the self-supervised pool, never val/test
    no_mask = {f"image_{k}/t0000" for k in (9, 10)}
    assert no_mask <= set(m["splits"]["unlabeled"])
    assert not no_mask & (set(m["splits"]["labeled"]) | set(m["splits"]["val"]) | set(m["splits"]["test"]))
    for k in (9, 10):
        j = m["samples"]["scene"].index(f"image_{k}")
        assert (np.asarray(data.labels[j]) == 255).all() and not data.labeled[j]
    # the normalisation comes from training patches only
    train = [m["samples"]["group"].index(g) for g in m["splits"]["unlabeled"]]
    flat = np.concatenate([np.asarray(data.images[j]).reshape(14, -1) for j in train], axis=1)
    np.testing.assert_allclose(m["normalization"]["mean"], flat.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(m["normalization"]["std"], flat.std(axis=1), rtol=1e-4)
    assert json.loads((out / "manifest.json").read_text())["splits"]["test"]


def test_sub_tiles_of_patches(tmp_path: Path) -> None:
    raw = make.landslide4sense(tmp_path / "l4s", n=4, size=32)
    out = tmp_path / "prep"
    preprocess(["--input", str(raw), "--out", str(out), "--tile", "16"])
    data = PreparedData(out)
    assert len(data) == 16 and data.images.shape[2:] == (16, 16)
    # sub-tiles of one patch always share its split
    m = data.manifest
    for scene in m["scenes"]:
        splits = {g["split"] for g in m["groups"].values() if g["scene"] == scene}
        assert len(splits) == 1
