"""Sliding-window scene prediction with blending, and the prediction GeoTIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rs.config import RSPreprocessConfig
from rs.geotiff import read_raster
from rs.preprocess import load_scene_channels, run_preprocess
from rs.scene_prediction import (
    blend_weight,
    labels_from_probabilities,
    predict_scene,
    predict_scene_detailed,
    split_mask,
    write_prediction_geotiff,
)
from rs.tiling import window_from_list
from segcore.config import parse_config
from tests.data.rs import make


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pred")
    raw = make.scene_folder(root / "raw", n=2, nodata_cols=(0, 7))
    run_preprocess(
        parse_config(
            RSPreprocessConfig,
            [
                "--input",
                str(raw),
                "--out",
                str(root / "prep"),
                "--tile",
                "16",
                "--overlap",
                "4",
                "--block-tiles",
                "2",
            ],
        )
    )
    return raw, root / "prep"


def nir_threshold(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel fake model: P(landslide) = sigmoid(2 * standardised NIR + slope)."""
    p1 = torch.sigmoid(2 * x[:, 3] + x[:, 5])
    return torch.stack([1 - p1, p1], dim=1)  # (B, 2, H, W)


def direct(raw: Path, prep: Path, scene: str) -> tuple[np.ndarray, np.ndarray]:
    """The same per-pixel function on the whole standardised scene, without tiles."""
    import json

    m = json.loads((prep / "manifest.json").read_text())
    sc, _, _ = load_scene_channels(raw / "scenes" / f"{scene}_image.tif", raw / "scenes" / f"{scene}_dem.tif")
    mean = np.asarray(m["normalization"]["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(m["normalization"]["std"], dtype=np.float32)[:, None, None]
    x = np.where(sc.valid, (sc.channels - mean) / std, 0.0)
    return nir_threshold(torch.from_numpy(x[None].astype(np.float32)))[0].numpy(), sc.valid


@pytest.mark.parametrize("tile,overlap,batch", [(None, None, 16), (16, 8, 3), (32, 12, 1), (64, 0, 2)])
def test_blended_scene_equals_direct_per_pixel(
    trained: tuple[Path, Path], tile: int | None, overlap: int | None, batch: int
) -> None:
    raw, prep = trained
    probs = predict_scene(
        raw / "scenes" / "s1_image.tif",
        raw / "scenes" / "s1_dem.tif",
        nir_threshold,
        prep,
        tile,
        overlap,
        batch,
    )
    expected, valid = direct(raw, prep, "s1")
    assert probs.shape == (2, 40, 52) and probs.dtype == np.float32
    np.testing.assert_allclose(probs[:, valid], expected[:, valid], atol=1e-5)
    assert (probs[:, ~valid] == 0).all() and (~valid[:, :7]).all()


def test_blending_weights_tile_dependent_predictions(trained: tuple[Path, Path]) -> None:
    """A model whose output depends on the tile (a constant per tile) is averaged with the
    blending weights: the result lies between the tile values, is exact where one tile covers."""
    raw, prep = trained
    calls = []

    def per_tile_constant(x: torch.Tensor) -> np.ndarray:
        vals = np.arange(len(calls), len(calls) + x.shape[0], dtype=np.float32)
        calls.extend(vals)
        out = np.broadcast_to(vals[:, None, None, None], (x.shape[0], 1, x.shape[2], x.shape[3]))
        return np.ascontiguousarray(out)

    res = predict_scene_detailed(
        raw / "scenes" / "s0_image.tif",
        raw / "scenes" / "s0_dem.tif",
        per_tile_constant,
        prep,
        16,
        4,
        4,
    )
    p = res.probabilities[0]
    assert p[0, 0] == 0.0  # only the first tile covers the corner
    assert p.min() >= 0 and p.max() <= max(calls)
    assert len(np.unique(p)) > len(calls)  # blended seams, not a hard cut


def test_prediction_restricted_to_a_region_is_exact_there_and_runs_fewer_windows(trained: tuple[Path, Path]) -> None:
    """Evaluation predicts only the windows touching the scored area: inside it, bitwise the
    whole-scene result (a tile-dependent model, so blending matters)."""
    raw, prep = trained
    import json

    m = json.loads((prep / "manifest.json").read_text())
    area = split_mask(m, "s0", "test")
    assert area.any() and not area.all()
    counts: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        counts.append(x.shape[0])
        return nir_threshold(x) * (0.5 + 0.5 * torch.sigmoid(x.mean(dim=(1, 2, 3)))[:, None, None, None])

    args = (raw / "scenes" / "s0_image.tif", raw / "scenes" / "s0_dem.tif", model, prep, 16, 4, 4)
    whole = predict_scene_detailed(*args)
    n_whole = sum(counts)
    counts.clear()
    part = predict_scene_detailed(*args, region=area)
    assert 0 < sum(counts) < n_whole
    inside = area & whole.valid
    assert np.array_equal(part.probabilities[:, inside], whole.probabilities[:, inside])
    assert np.array_equal(part.labels()[inside], whole.labels()[inside]) and (part.valid <= whole.valid).all()
    assert not part.valid.all() and (part.labels()[~part.valid] == 255).all()
    with pytest.raises(ValueError, match="region"):
        predict_scene_detailed(*args, region=area[:-1])


def test_blend_weight() -> None:
    w = blend_weight(16, 4)
    assert w.shape == (16, 16) and w.min() > 0 and w.max() == 1.0
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[0, 0] == pytest.approx(1 / 16) and (w[4:12, 4:12] == 1).all()


def test_written_geotiff_has_the_input_crs_transform_and_shape(trained: tuple[Path, Path], tmp_path: Path) -> None:
    raw, prep = trained
    image = raw / "scenes" / "s1_image.tif"
    res = predict_scene_detailed(image, raw / "scenes" / "s1_dem.tif", nir_threshold, prep)
    labels = res.labels()
    out = tmp_path / "pred" / "s1_prediction.tif"
    write_prediction_geotiff(out, labels, res.profile)
    src = read_raster(image)
    with rasterio.open(out) as ds:
        assert ds.crs == src.grid.crs
        assert ds.transform == src.grid.transform
        assert (ds.height, ds.width) == src.grid.shape and ds.count == 1
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8"
        written = ds.read(1)
    np.testing.assert_array_equal(written, labels)
    assert (written[:, :7] == 255).all() and set(np.unique(written[:, 10:])) <= {0, 1}
    assert list(tmp_path.joinpath("pred").iterdir()) == [out]  # no temporary file left
    # a RasterGrid works as the profile as well
    write_prediction_geotiff(tmp_path / "g.tif", labels, res.grid)
    assert read_raster(tmp_path / "g.tif").grid == src.grid


def test_labels_from_probabilities() -> None:
    probs = np.array([[[0.9, 0.2], [0.5, 0.0]], [[0.1, 0.8], [0.5, 0.0]]], dtype=np.float32)
    valid = np.array([[True, True], [True, False]])
    np.testing.assert_array_equal(labels_from_probabilities(probs, valid), [[0, 1], [0, 255]])


def test_split_mask_covers_exactly_the_test_tiles(trained: tuple[Path, Path]) -> None:
    _, prep = trained
    import json

    m = json.loads((prep / "manifest.json").read_text())
    mask = split_mask(m, "s0", "test")
    expected = np.zeros((40, 52), dtype=bool)
    for g in m["groups"].values():
        if g["scene"] == "s0" and g["split"] == "test":
            expected[window_from_list(g["window"]).toslices()] = True
    assert mask.any()
    np.testing.assert_array_equal(mask, expected)
    assert not (mask & split_mask(m, "s0", "train")).any()


def test_scene_smaller_than_a_tile(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, prep = trained
    small = make.tiny_scene(tmp_path, "small", height=10, width=12)
    probs = predict_scene(small["image"], small["dem"], nir_threshold, prep, 16, 4)
    assert probs.shape == (2, 10, 12)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
