"""Whole-scene prediction streamed in row strips: the strips equal the whole-scene channels, each
input row is read once and memory spans one strip, the outputs are cloud-optimised GeoTIFFs
(tiles, deflate, overviews, colour table, optional probabilities) equal to the in-memory result,
batch-size invariance, and ``rs predict`` / ``rs evaluate`` with the model's own preprocessing
record and ``--device``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rs.cli import main as rs
from rs.config import RSPreprocessConfig
from rs.domain import preprocessing_record
from rs.preprocess import load_scene_channels, run_preprocess
from rs.scene_prediction import predict_scene_detailed, predict_scene_to_geotiff, write_prediction_geotiff
from rs.scene_strips import SceneStrips
from segcore.checkpoints import read_checkpoint
from segcore.config import parse_config
from tests.data.rs import make

pytestmark = pytest.mark.filterwarnings("ignore")
NET = ["--encoder", "resnet18", "--encoder-depth", "3", "--decoder-channels", "16,8,8", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(raw scenes, prepared data, fine-tuned early-fusion model.pt) on three 40 x 52 scenes."""
    root = tmp_path_factory.mktemp("rs_stream")
    raw = make.scene_folder(root / "raw", n=3, nodata_cols=(0, 7))
    argv = ["--input", str(raw), "--out", str(root / "prep"), "--tile", "16", "--overlap", "4", "--block-tiles", "2"]
    run_preprocess(parse_config(RSPreprocessConfig, argv))
    ft = root / "ft"
    argv = ["finetune", "--data", str(root / "prep"), "--out", str(ft), "--steps", "2", "--val-every", "2", *NET]
    assert rs([*argv, "--batch-size", "4"]) == 0
    return raw, root / "prep", ft / "model.pt"


def scene(raw: Path, name: str = "s1") -> tuple[Path, Path]:
    return raw / "scenes" / f"{name}_image.tif", raw / "scenes" / f"{name}_dem.tif"


def nir_threshold(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel fake model: P(landslide) = sigmoid(2 * standardised NIR + slope)."""
    p1 = torch.sigmoid(2 * x[:, 3] + x[:, 5])
    return torch.stack([1 - p1, p1], dim=1)


@pytest.mark.parametrize("name", ["s0", "s1", "s2"])
def test_strips_equal_the_whole_scene_channels(trained: tuple[Path, Path, Path], name: str) -> None:
    raw, _, _ = trained
    whole, _, _ = load_scene_channels(*scene(raw, name))
    with SceneStrips(*scene(raw, name)) as strips:
        parts = [strips.read(r0, r1) for r0, r1 in ((0, 1), (1, 13), (13, 14), (14, 39), (39, 40))]
    channels = np.concatenate([c for c, _ in parts], axis=1)
    valid = np.concatenate([v for _, v in parts])
    np.testing.assert_array_equal(valid, whole.valid)
    np.testing.assert_array_equal(channels[:, valid], whole.channels[:, whole.valid])


def test_each_row_is_read_once_in_strips_of_at_most_a_tile(
    trained: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, prep, _ = trained
    reads: list[tuple[int, int]] = []
    original = SceneStrips.read

    def recording(self: SceneStrips, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        reads.append((r0, r1))
        return original(self, r0, r1)

    monkeypatch.setattr(SceneStrips, "read", recording)
    predict_scene_detailed(*scene(raw), nir_threshold, prep, 16, 4)
    assert reads[0][0] == 0 and reads[-1][1] == 40
    assert all(a[1] == b[0] for a, b in zip(reads, reads[1:], strict=False))  # consecutive, no row twice
    assert max(r1 - r0 for r0, r1 in reads) <= 16


def test_geotiff_outputs_are_cloud_optimised_and_equal_the_in_memory_result(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    raw, prep, _ = trained
    manifest = json.loads((prep / "manifest.json").read_text())
    expected = predict_scene_detailed(*scene(raw), nir_threshold, manifest)
    labels, probs = tmp_path / "out" / "s1_prediction.tif", tmp_path / "out" / "s1_probabilities.tif"
    summary = predict_scene_to_geotiff(*scene(raw), nir_threshold, manifest, labels, probs, block=16)
    with rasterio.open(labels) as ds:
        assert ds.crs == expected.grid.crs and ds.transform == expected.grid.transform and ds.shape == (40, 52)
        assert ds.dtypes == ("uint8",) and ds.nodata == 255 and ds.is_tiled and ds.block_shapes == [(16, 16)]
        assert ds.compression.name == "deflate" and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2, 4] and ds.colormap(1)[1] == (230, 25, 25, 255) and ds.colormap(1)[255][3] == 0
        np.testing.assert_array_equal(ds.read(1), expected.labels())
    with rasterio.open(probs) as ds:
        assert ds.count == 2 and ds.dtypes == ("float32", "float32") and ds.overviews(1) == [2, 4]
        p = ds.read()
    np.testing.assert_array_equal(p[:, expected.valid], expected.probabilities[:, expected.valid])
    assert np.isnan(p[:, ~expected.valid]).all() and (~expected.valid).any()
    assert summary["valid_pixels"] == int(expected.valid.sum())
    assert summary["class_pixels"] == [int((expected.labels() == k).sum()) for k in (0, 1)]
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["s1_prediction.tif", "s1_probabilities.tif"]
    # the in-memory labels written the same way
    write_prediction_geotiff(tmp_path / "again.tif", expected.labels(), expected.grid, block=16)
    with rasterio.open(tmp_path / "again.tif") as a, rasterio.open(labels) as b:
        assert np.array_equal(a.read(), b.read()) and a.overviews(1) == b.overviews(1)


def test_a_failed_prediction_leaves_no_file(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    raw, prep, _ = trained

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        predict_scene_to_geotiff(*scene(raw), broken, prep, tmp_path / "a.tif", tmp_path / "b.tif")
    assert list(tmp_path.iterdir()) == []


def test_finetuning_records_the_preprocessing(trained: tuple[Path, Path, Path]) -> None:
    _, prep, model = trained
    manifest = json.loads((prep / "manifest.json").read_text())
    record = read_checkpoint(model)["data"]["preprocessing"]
    assert record == json.loads(json.dumps(preprocessing_record(manifest)))
    assert record["source"] == "geotiff" and record["tile"] == 16 and record["overlap"] == 4
    assert record["normalization"]["mean"] == manifest["normalization"]["mean"] and "terrain" in record


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_rs_predict_without_data_batch_sizes_and_device(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, prep, model = trained
    image, dem = scene(raw)
    common = ["predict", "--model", str(model), "--image", str(image), "--dem", str(dem), "--threads", "1"]
    assert rs([*common, "--out", str(tmp_path / "a"), "--batch-size", "1", "--probabilities"]) == 0
    assert rs([*common, "--out", str(tmp_path / "b"), "--batch-size", "5", "--data", str(prep), "--device", "cpu"]) == 0
    a, b = _read(tmp_path / "a" / "s1_image_prediction.tif"), _read(tmp_path / "b" / "s1_image_prediction.tif")
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "a" / "s1_image_probabilities.tif").is_file()
    assert not (tmp_path / "b" / "s1_image_probabilities.tif").exists()
    ckpt = read_checkpoint(model)
    del ckpt["data"]["preprocessing"]
    torch.save(ckpt, tmp_path / "old.pt")
    old = ["predict", "--model", str(tmp_path / "old.pt"), "--image", str(image), "--dem", str(dem)]
    assert rs([*old, "--out", str(tmp_path / "c")]) == 2
    assert "no preprocessing record" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert rs([*old, "--data", str(prep), "--out", str(tmp_path / "d")]) == 0
    np.testing.assert_array_equal(_read(tmp_path / "d" / "s1_image_prediction.tif"), a)
    assert rs([*common, "--out", str(tmp_path / "e"), "--device", "cuda:99"]) == 2
    assert "no such CUDA device" in capsys.readouterr().err


def test_rs_evaluate_does_not_depend_on_the_batch_size(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, prep, model = trained
    for b in (1, 6):
        argv = ["evaluate", "--data", str(prep), "--model", str(model), "--out", str(tmp_path / f"e{b}")]
        assert rs([*argv, "--batch-size", str(b), "--accelerator", "cpu"]) == 0
    m1, m6 = (json.loads((tmp_path / f"e{b}" / "metrics.json").read_text()) for b in (1, 6))
    assert m1 == m6 and m1["scope"] == "scenes"
