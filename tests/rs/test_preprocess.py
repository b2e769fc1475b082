"""``rs preprocess`` on GeoTIFF scenes: manifest, splits, normalisation, nodata, superpixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from rs.config import RSPreprocessConfig
from rs.preprocess import (
    ChannelStatistics,
    load_scene_channels,
    run_preprocess,
)
from rs.tiling import split_cross_overlaps, window_from_list
from segcore.budget import select_percent
from segcore.config import parse_config
from segcore.prepared import PreparedData
from tests.data.rs import make

ARGS = ["--tile", "16", "--overlap", "4", "--block-tiles", "2"]
CHANNELS = ["B", "G", "R", "NIR", "elevation", "slope", "aspect_sin", "aspect_cos", "hillshade"]


def preprocess(args: list[str]) -> None:
    run_preprocess(parse_config(RSPreprocessConfig, args))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreparedData]:
    root = tmp_path_factory.mktemp("prep")
    raw = make.scene_folder(root / "raw", n=3, nodata_cols=(0, 20, 0))
    preprocess(["--input", str(raw), "--out", str(root / "out"), *ARGS])
    return raw, PreparedData(root / "out")


def train_union_values(data: PreparedData) -> np.ndarray:
    """Independent recomputation: valid raw values of the union of each scene's training tiles."""
    m = data.manifest
    values = []
    for sid, rec in m["scenes"].items():
        scene, _, _ = load_scene_channels(rec["image"], rec["dem"])
        cover = np.zeros(scene.valid.shape, dtype=bool)
        for g in m["groups"].values():
            if g["scene"] == sid and g["split"] == "train":
                cover[window_from_list(g["window"]).toslices()] = True
        values.append(scene.channels[:, cover & scene.valid])
    return np.concatenate(values, axis=1)


def test_manifest_structure(prepared: tuple[Path, PreparedData]) -> None:
    _, data = prepared
    m = data.manifest
    assert m["domain"] == "rs" and m["channels"] == CHANNELS
    assert m["spectral_channels"] == [0, 1, 2, 3] and m["terrain_channels"] == [4, 5, 6, 7, 8]
    assert m["classes"] == ["background", "landslide"] and m["image_size"] == [16, 16]
    n = len(data)
    assert data.images.shape == (n, 9, 16, 16) and data.labels.shape == (n, 16, 16)
    for col in ("group", "index", "partition", "labeled", "scene"):
        assert len(m["samples"][col]) == n
    assert set(m["samples"]["partition"]) == {-1}
    assert len(m["tiles"]["window"]) == len(m["tiles"]["transform"]) == n
    assert m["samples"]["group"][0] == f"{m['samples']['scene'][0]}/t{m['samples']['index'][0]:04d}"
    assert set(m["groups"]) == set(m["samples"]["group"])
    rec = m["scenes"]["s1"]
    assert rec["crs"].startswith(("PROJCS", "PROJCRS")) and len(rec["transform"]) == 6
    assert (rec["width"], rec["height"], rec["nodata"]) == (52, 40, 0)
    assert (prepared[1].folder / "config.yaml").is_file()
    cfg = yaml.safe_load((prepared[1].folder / "config.yaml").read_text())
    assert cfg["tile"] == 16 and cfg["resolved"]["n_segments"] == 4


def test_splits_are_tiles_without_cross_overlap(prepared: tuple[Path, PreparedData]) -> None:
    _, data = prepared
    m = data.manifest
    s = m["splits"]
    assert set(s["labeled"]) <= set(s["unlabeled"])
    assert not set(s["unlabeled"]) & set(s["val"]) and not set(s["unlabeled"]) & set(s["test"])
    assert not set(s["val"]) & set(s["test"])
    assert all(len(s[k]) > 0 for k in ("labeled", "val", "test"))
    for sid in m["scenes"]:
        ids = [g for g in m["groups"] if m["groups"][g]["scene"] == sid]
        wins = [window_from_list(m["groups"][g]["window"]) for g in ids]
        assert split_cross_overlaps(wins, [m["groups"][g]["split"] for g in ids]) == []
    # a label budget in percent of labeled tiles is drawn from the labeled pool
    chosen = select_percent(data.split_groups("labeled"), 50, seed=0)
    assert set(chosen) <= set(s["labeled"]) and len(data.sample_indices(chosen)) == len(chosen)


def test_normalisation_from_training_tiles_only(prepared: tuple[Path, PreparedData]) -> None:
    _, data = prepared
    values = train_union_values(data).astype(np.float64)
    np.testing.assert_allclose(data.manifest["normalization"]["mean"], values.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(data.manifest["normalization"]["std"], values.std(axis=1), rtol=1e-4)


def test_nodata_reads_as_zero_and_label_255(prepared: tuple[Path, PreparedData]) -> None:
    _, data = prepared
    valid = data.extra("valid")
    invalid_tiles = [i for i in range(len(data)) if not valid[i].all()]
    assert invalid_tiles and data.manifest["skipped_nodata_tiles"] >= 1
    for i in invalid_tiles:
        bad = ~valid[i].astype(bool)
        np.testing.assert_allclose(data.image(i)[:, bad], 0.0, atol=1e-5)
        assert (np.asarray(data.labels[i])[bad] == 255).all()
    # valid pixels keep their raw value and their 0/1 label
    i = invalid_tiles[0]
    good = valid[i].astype(bool)
    assert set(np.unique(np.asarray(data.labels[i])[good])) <= {0, 1}


def test_superpixels(prepared: tuple[Path, PreparedData]) -> None:
    _, data = prepared
    sp = data.extra("superpixels")
    assert sp.dtype == np.int32 and sp.shape == (len(data), 16, 16)
    for i in range(len(data)):
        ids = np.unique(sp[i])
        assert ids[0] == 0 and (ids == np.arange(len(ids))).all()  # from 0, contiguous
        assert 1 <= len(ids) <= 16


def test_changing_a_test_tile_leaves_the_statistics_unchanged(tmp_path: Path) -> None:
    raw = make.scene_folder(tmp_path / "raw", n=2)
    preprocess(["--input", str(raw), "--out", str(tmp_path / "a"), *ARGS])
    before = PreparedData(tmp_path / "a").manifest

    def overwrite(split: str, out: str) -> dict:
        g = next(g for g in before["groups"].values() if g["split"] == split)
        path = Path(before["scenes"][g["scene"]]["image"])
        with rasterio.open(path, "r+") as ds:
            arr = ds.read()
            arr[
                :,
                window_from_list(g["window"]).toslices()[0],
                window_from_list(g["window"]).toslices()[1],
            ] = 60000
            ds.write(arr)
        preprocess(["--input", str(raw), "--out", str(tmp_path / out), *ARGS])
        return PreparedData(tmp_path / out).manifest

    after_test = overwrite("test", "b")
    assert after_test["normalization"] == before["normalization"]
    assert after_test["splits"] == before["splits"]
    # the same change in a training tile does move the statistics
    after_train = overwrite("train", "c")
    assert after_train["normalization"]["mean"][0] > before["normalization"]["mean"][0] + 10


def test_explicit_scenes_and_an_unlabeled_one(tmp_path: Path) -> None:
    a = make.tiny_scene(tmp_path, "a", seed=1)
    b = make.tiny_scene(tmp_path, "b", seed=2, origin=(510_000.0, 5_100_000.0), label=False)
    out = tmp_path / "out"
    preprocess(
        [
            "--image",
            f"{a['image']},{b['image']}",
            "--dem",
            str(a["dem"]),
            "--dem",
            str(b["dem"]),
            "--label",
            f"{a['label']},none",
            "--out",
            str(out),
            *ARGS,
        ]
    )
    data = PreparedData(out)
    m = data.manifest
    assert set(m["scenes"]) == {"a_image", "b_image"}
    b_tiles = [g for g in m["groups"] if m["groups"][g]["scene"] == "b_image"]
    assert b_tiles and set(b_tiles) <= set(m["splits"]["unlabeled"])
    assert not set(b_tiles) & (set(m["splits"]["labeled"]) | set(m["splits"]["val"]) | set(m["splits"]["test"]))
    assert all((np.asarray(data.labels[i]) == 255).all() for i in data.sample_indices(b_tiles))


def test_split_by_scene(tmp_path: Path) -> None:
    raw = make.scene_folder(tmp_path / "raw", n=4)
    preprocess(["--input", str(raw), "--out", str(tmp_path / "out"), *ARGS, "--split-by", "scene"])
    m = PreparedData(tmp_path / "out").manifest
    per_scene = {}
    for g in m["groups"].values():
        per_scene.setdefault(g["scene"], set()).add(g["split"])
    assert all(len(v) == 1 for v in per_scene.values())
    assert {next(iter(v)) for v in per_scene.values()} == {"train", "val", "test"}
    assert m["buffer_tiles"] == 0
    assert {s["split"] for s in m["scenes"].values()} == {"train", "val", "test"}


def test_channel_statistics_merge_equals_direct() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(3, 1000))
    stats = ChannelStatistics(3)
    for part in np.array_split(x, [10, 500, 501], axis=1):
        stats.add(part)
    mean, std = stats.mean_std()
    np.testing.assert_allclose(mean, x.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=1), rtol=1e-6)
