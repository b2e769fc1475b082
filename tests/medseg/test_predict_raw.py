"""MRI prediction from raw NIfTI files: the model's own preprocessing record (no --data), the
whole slice by sliding windows (nothing outside the training crop lost), batch-size invariance,
the device option, and evaluation that does not depend on the batch size."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from medseg.cli import main as medseg
from medseg.domain import preprocessing_record
from medseg.native import plan_geometry, to_canonical_stack, to_native, to_prepared
from medseg.nifti import read_header
from medseg.phantoms import generate_dataset
from medseg.predict import predict_volume, sliding_window_probabilities, whole_slice_geometry
from medseg.preprocess import preprocess
from segcore.checkpoints import read_checkpoint
from segcore.networks import build_network
from segcore.prepared import PreparedData

CHANNELS = "4,8,16,16"


def _run(*argv: str) -> None:
    assert medseg(list(argv)) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(raw dataset, prepared data, fine-tuned model.pt): 64 px phantoms at 1.5 mm resampled to
    3 mm (32 px) and cropped to 24 px, so every slice is larger than the training crop."""
    root = tmp_path_factory.mktemp("mri_predict")
    generate_dataset(root / "raw", n_subjects=8, seed=5, n_slices=6, size=64)
    prep = preprocess(
        root / "raw",
        root / "prep",
        target_spacing=(3.0, 3.0),
        image_size=(24, 24),
        partitions=2,
        n_test=2,
        n_val=1,
        n_labeled=2,
        seed=0,
    )
    ft = root / "ft"
    _run(
        "finetune",
        "--data",
        str(prep),
        "--out",
        str(ft),
        "--budget",
        "2",
        "--channels",
        CHANNELS,
        "--steps",
        "4",
        "--val-every",
        "4",
        "--batch-size",
        "4",
    )
    return root / "raw", prep, ft / "model.pt"


def _test_image(prep: Path) -> str:
    data = PreparedData(prep)
    return data.manifest["groups"][data.split_groups("test")[0]]["image"]


def test_finetuning_records_the_preprocessing_in_the_checkpoint(trained: tuple[Path, Path, Path]) -> None:
    _, prep, model = trained
    manifest = PreparedData(prep).manifest
    record = read_checkpoint(model)["data"]["preprocessing"]
    assert record == preprocessing_record(manifest)
    assert record["domain"] == "mri" and record["target_spacing"] == [3.0, 3.0] and record["image_size"] == [24, 24]
    assert record["percentiles"] == [0.5, 99.5] and record["slice_axis"] == "auto" and record["n4"] is False


def test_predict_without_data_equals_predict_with_data(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, prep, model = trained
    image = _test_image(prep)
    _run("predict", "--input", image, "--model", str(model), "--out", str(tmp_path / "a"))
    _run("predict", "--input", image, "--model", str(model), "--data", str(prep), "--out", str(tmp_path / "b"))
    a, b = (nib.load(next((tmp_path / n).glob("*.nii.gz"))) for n in "ab")
    assert a.shape == nib.load(image).shape and np.allclose(a.affine, nib.load(image).affine)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_an_old_checkpoint_needs_data(trained: tuple[Path, Path, Path], tmp_path: Path, capsys) -> None:
    _, prep, model = trained
    ckpt = read_checkpoint(model)
    del ckpt["data"]["preprocessing"]  # as fine-tuning wrote it before models carried the record
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    image = _test_image(prep)
    assert medseg(["predict", "--input", image, "--model", str(old), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "old.pt" in err and "no preprocessing record" in err and "--data" in err
    assert not (tmp_path / "x").exists()
    _run("predict", "--input", image, "--model", str(old), "--data", str(prep), "--out", str(tmp_path / "y"))
    _run("predict", "--input", image, "--model", str(model), "--out", str(tmp_path / "z"))
    y, z = (np.asarray(nib.load(next((tmp_path / n).glob("*.nii.gz"))).dataobj) for n in "yz")
    np.testing.assert_array_equal(y, z)


def test_data_prepared_otherwise_than_the_model_is_refused(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys
) -> None:
    raw, prep, model = trained
    other = preprocess(
        raw, tmp_path / "other", target_spacing=(3.0, 3.0), image_size=(32, 32), n_test=2, n_val=1, n_labeled=2
    )
    image = _test_image(prep)
    assert (
        medseg(["predict", "--input", image, "--model", str(model), "--data", str(other), "--out", str(tmp_path / "x")])
        == 2
    )
    err = capsys.readouterr().err
    assert "image_size" in err and "other" in err and not (tmp_path / "x").exists()


def test_device_option_is_honoured(trained: tuple[Path, Path, Path], tmp_path: Path, capsys) -> None:
    _, prep, model = trained
    image = _test_image(prep)
    _run("predict", "--input", image, "--model", str(model), "--device", "cpu", "--out", str(tmp_path / "cpu"))
    _run("predict", "--input", image, "--model", str(model), "--accelerator", "cpu", "--out", str(tmp_path / "alias"))
    cpu, alias = (np.asarray(nib.load(next((tmp_path / n).glob("*.nii.gz"))).dataobj) for n in ("cpu", "alias"))
    np.testing.assert_array_equal(cpu, alias)
    missing = f"cuda:{torch.cuda.device_count() + 3}"
    assert (
        medseg(["predict", "--input", image, "--model", str(model), "--device", missing, "--out", str(tmp_path / "g")])
        == 2
    )
    assert "no such CUDA device" in capsys.readouterr().err and not (tmp_path / "g").exists()
    assert (
        medseg(
            ["evaluate", "--data", str(prep), "--model", str(model), "--device", "tpu", "--out", str(tmp_path / "e")]
        )
        == 2
    )
    assert "--device must be" in capsys.readouterr().err


def test_prediction_and_evaluation_do_not_depend_on_the_batch_size(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, prep, model = trained
    image = _test_image(prep)
    for b in (1, 7):
        _run(
            "predict", "--input", image, "--model", str(model), "--batch-size", str(b), "--out", str(tmp_path / f"p{b}")
        )
        _run(
            "evaluate", "--data", str(prep), "--model", str(model), "--batch-size", str(b), "--device", "cpu",
            "--out", str(tmp_path / f"e{b}"),
        )  # fmt: skip
    p1, p7 = (np.asarray(nib.load(next((tmp_path / f"p{b}").glob("*.nii.gz"))).dataobj) for b in (1, 7))
    np.testing.assert_array_equal(p1, p7)
    m1, m7 = (json.loads((tmp_path / f"e{b}" / "metrics.json").read_text()) for b in (1, 7))
    assert m1 == m7


def _threshold_net() -> nn.Module:
    """A per-pixel model: logit of class 1 = 20 (x - 0.5), of class 0 = 0."""
    net = nn.Conv2d(1, 2, kernel_size=1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[[[0.0]]], [[[20.0]]]]))
        net.bias.copy_(torch.tensor([0.0, -10.0]))
    return net.eval()


def _volume(path: Path, shape: tuple[int, int, int], blobs: list[tuple[slice, slice]]) -> np.ndarray:
    """A NIfTI at 1 x 1 x 5 mm: 0 with bright (1) boxes in every slice; returns the truth mask."""
    truth = np.zeros(shape, dtype=np.uint8)
    for sx, sy in blobs:
        truth[sx, sy, :] = 1
    img = nib.Nifti1Image(truth.astype(np.float32) * 300.0 + 100.0, np.diag([1.0, 1.0, 5.0, 1.0]))
    nib.save(img, path)
    return truth


RECORD = {"target_spacing": [1.0, 1.0], "image_size": [32, 32], "percentiles": [0.0, 100.0], "slice_axis": "auto"}


def test_a_structure_outside_the_training_crop_is_predicted(tmp_path: Path) -> None:
    """An 80 x 60 slice at the training spacing: the training crop (32 x 32, centred) leaves the
    corner box out; the sliding windows cover the whole slice and find both boxes."""
    path = tmp_path / "wide.nii.gz"
    corner, centre = (slice(2, 10), slice(3, 9)), (slice(36, 44), slice(26, 34))
    truth = _volume(path, (80, 60, 4), [corner, centre])
    geometry = plan_geometry(read_header(path), RECORD["target_spacing"], RECORD["image_size"], "auto")
    (ox, oy), (sx, sy) = geometry["crop_offset"], RECORD["image_size"]
    # the crop holds the centre box, not the corner one
    assert 10 <= ox <= 36 and 44 <= ox + sx and 9 <= oy <= 26 and 34 <= oy + sy
    labels, _ = predict_volume(_threshold_net(), path, RECORD, batch_size=3, overlap=0.25)
    np.testing.assert_array_equal(labels, truth)


def test_whole_slice_geometry_round_trips_exactly(tmp_path: Path) -> None:
    path = tmp_path / "v.nii.gz"
    _volume(path, (80, 20, 3), [(slice(0, 5), slice(0, 5))])
    header = read_header(path)
    geometry = plan_geometry(header, [1.0, 1.0], [32, 32], "auto")
    geometry.update({"affine": header.affine.tolist(), "shape": list(header.shape)})
    whole = whole_slice_geometry(geometry)
    assert (
        whole["image_size"] == [80, 32]
        and whole["crop_offset"] == [0, geometry["crop_offset"][1]]
        and whole["crop_offset"][1] < 0
    )
    volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    prepared = to_prepared(to_canonical_stack(volume, geometry), whole, order=0)  # (S, 80, 32): padded, not cropped
    np.testing.assert_array_equal(to_native(prepared, whole, order=0), volume)


def test_sliding_window_blends_to_the_per_pixel_function_and_ignores_the_batch_size() -> None:
    x = torch.rand(3, 1, 70, 45, generator=torch.Generator().manual_seed(0))
    direct = torch.softmax(_threshold_net()(x), dim=1)
    p1 = sliding_window_probabilities(_threshold_net(), x, (32, 32), 0.5, 1)
    p5 = sliding_window_probabilities(_threshold_net(), x, (32, 32), 0.5, 5)
    assert p1.shape == (3, 2, 70, 45) and p1.dtype == torch.float32
    torch.testing.assert_close(p1, direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(p5, p1, atol=1e-6, rtol=0)
    unet = build_network({"name": "unet2d", "in_channels": 1, "num_classes": 3, "channels": [4, 8, 16]}).eval()
    q1 = sliding_window_probabilities(unet, x, (32, 32), 0.25, 1)
    q4 = sliding_window_probabilities(unet, x, (32, 32), 0.25, 4)
    torch.testing.assert_close(q1, q4, atol=1e-6, rtol=0)
    assert torch.equal(q1.argmax(1), q4.argmax(1))
