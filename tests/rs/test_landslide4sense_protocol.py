"""The official Landslide4Sense protocol: the release folders are the splits, patches as delivered,
standardisation from TrainData only, folders without masks as unlabeled data, bad inputs through
the CLI, and the scores per split of ``rs evaluate``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import rs.networks  # noqa: F401  (registers the rs networks)
from rs.cli import main as rs
from rs.landslide4sense_protocol import empty_split_reason, split_scores
from segcore.budget import select_percent
from segcore.checkpoints import read_checkpoint
from segcore.metrics import confusion_matrix
from segcore.networks import build_network as build_from_spec
from segcore.prepared import PreparedData, create_arrays, write_manifest
from segcore.report.domains import HEADLINE
from segcore.report.tables import domain_headlines
from segcore.report.tidy import read_run
from tests.data.l4s import make

FOLDERS = {"TrainData": "train", "ValidData": "val", "TestData": "test"}
COUNTS = {"TrainData": 6, "ValidData": 3, "TestData": 3}
NET = [
    "--fusion",
    "early",
    "--encoder",
    "tu-regnetx_002",
    "--encoder-depth",
    "3",
    "--decoder-channels",
    "16,8,8",
    "--threads",
    "1",
]


def leftovers(out: Path) -> list[Path]:
    """The output itself and any temporary sibling an atomic write could leave."""
    found = [out] if out.exists() else []
    return found + sorted(out.parent.glob(f".{out.name}.tmp-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))


def ids(folder: str) -> list[str]:
    return [f"{folder}/image_{i}/t0000" for i in range(1, COUNTS[folder] + 1)]


def stored_images(raw: Path, folder: str) -> np.ndarray:
    """(n, 128, 128, 14) float64 straight from the HDF5 files of one release folder."""
    files = [raw / folder / "img" / f"image_{i}.h5" for i in range(1, COUNTS[folder] + 1)]
    out = []
    for f in files:
        with h5py.File(f) as h:
            out.append(np.asarray(h["img"][()], dtype=np.float64))
    return np.stack(out)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreparedData]:
    root = tmp_path_factory.mktemp("l4s_release")
    raw = make.release(root / "raw", *COUNTS.values(), seed=4)
    assert rs(["preprocess", "--input", str(raw), "--out", str(root / "prep")]) == 0
    return raw, PreparedData(root / "prep")


@pytest.fixture(scope="module")
def release_without_masks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreparedData]:
    root = tmp_path_factory.mktemp("l4s_no_masks")
    raw = make.release(root / "raw", *COUNTS.values(), eval_masks=False, seed=4)
    assert (
        rs(
            [
                "preprocess",
                "--input",
                str(raw),
                "--out",
                str(root / "prep"),
                "--tile",
                "128",
                "--overlap",
                "0",
            ]
        )
        == 0
    )
    return raw, PreparedData(root / "prep")


def test_fixture_has_the_release_layout_and_shapes(release: tuple[Path, PreparedData]) -> None:
    raw, _ = release
    for folder, n in COUNTS.items():
        assert sorted(p.name for p in (raw / folder / "img").iterdir()) == sorted(
            f"image_{i}.h5" for i in range(1, n + 1)
        )
        with (
            h5py.File(raw / folder / "img" / "image_1.h5") as f,
            h5py.File(raw / folder / "mask" / "mask_1.h5") as g,
        ):
            assert list(f) == ["img"] and f["img"].shape == (128, 128, 14)
            assert list(g) == ["mask"] and g["mask"].shape == (128, 128) and set(np.unique(g["mask"][()])) <= {0, 1}
    # landslides only on steep ground, and bare: slope and spectra both carry the signal
    img = stored_images(raw, "TrainData")
    masks = np.stack([h5py.File(raw / "TrainData" / "mask" / f"mask_{i}.h5")["mask"][()] for i in range(1, 7)]).astype(
        bool
    )
    assert masks.any() and img[..., 12][masks].min() > make.SCAR_MIN_SLOPE
    ndvi = (img[..., 7] - img[..., 3]) / (img[..., 7] + img[..., 3])
    assert ndvi[masks].mean() < ndvi[~masks].mean() - 0.2


def test_the_release_folders_are_the_splits(release: tuple[Path, PreparedData]) -> None:
    raw, data = release
    m = data.manifest
    assert m["protocol"] == "landslide4sense" and m["dataset"] == "landslide4sense" and m["source"] == "landslide4sense"
    assert m["split"] == {"by": "folders", "folders": FOLDERS}
    assert (m["tile"], m["overlap"], m["image_size"]) == (128, 0, [128, 128]) and len(data) == 12
    assert m["splits"] == {
        "unlabeled": ids("TrainData"),
        "labeled": ids("TrainData"),
        "val": ids("ValidData"),
        "test": ids("TestData"),
    }
    for tile_id, g in m["groups"].items():
        assert g["split"] == FOLDERS[tile_id.split("/")[0]] and g["window"] == [0, 0, 128, 128]
    assert m["notes"] == []
    assert {k: (v["patches"], v["labeled"]) for k, v in m["official_splits"].items()} == {
        k: (n, n) for k, n in COUNTS.items()
    }
    # patches as delivered: raw values and masks unchanged, one tile per patch
    i = m["samples"]["group"].index("ValidData/image_2/t0000")
    np.testing.assert_array_equal(
        data.images[i], np.moveaxis(stored_images(raw, "ValidData")[1], -1, 0).astype(np.float32)
    )
    with h5py.File(raw / "ValidData" / "mask" / "mask_2.h5") as f:
        np.testing.assert_array_equal(data.labels[i], f["mask"][()])


def test_standardisation_from_train_data_only(release: tuple[Path, PreparedData]) -> None:
    raw, data = release
    train = stored_images(raw, "TrainData").reshape(-1, 14)  # every pixel of every TrainData patch
    norm = data.manifest["normalization"]
    np.testing.assert_allclose(norm["mean"], train.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm["std"], train.std(axis=0), rtol=1e-5, atol=1e-6)
    everything = np.concatenate([stored_images(raw, f).reshape(-1, 14) for f in COUNTS])
    assert not np.allclose(norm["mean"], everything.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_label_budget_is_a_percentage_of_train_data_patches(
    release: tuple[Path, PreparedData],
) -> None:
    _, data = release
    pool = data.split_groups("labeled")
    for pct, n in ((1, 1), (50, 3), (100, 6)):
        chosen = select_percent(pool, pct, seed=2)
        assert len(chosen) == n == max(1, math.ceil(COUNTS["TrainData"] * pct / 100)) and set(chosen) <= set(
            ids("TrainData")
        )


def test_folders_without_masks_are_unlabeled_data_and_the_manifest_says_so(
    release_without_masks: tuple[Path, PreparedData],
) -> None:
    raw, data = release_without_masks
    m = data.manifest
    assert m["splits"]["val"] == [] and m["splits"]["test"] == []
    assert m["splits"]["labeled"] == ids("TrainData")
    assert m["splits"]["unlabeled"] == ids("TrainData") + ids("ValidData") + ids("TestData")
    assert {k: v["labeled"] for k, v in m["official_splits"].items()} == {
        "TrainData": 6,
        "ValidData": 0,
        "TestData": 0,
    }
    for folder, split in (("ValidData", "val"), ("TestData", "test")):
        entry = m["official_splits"][folder]
        assert entry["used_as"] == "unlabeled: self-supervised pretraining only"
        assert entry["note"] in m["notes"] and folder in entry["note"] and "no masks" in entry["note"]
        assert f"the {split} split is empty" in empty_split_reason(m, split)
        for tile_id in ids(folder):
            j = m["samples"]["group"].index(tile_id)
            assert (
                not data.labeled[j]
                and (np.asarray(data.labels[j]) == 255).all()
                and m["groups"][tile_id]["split"] == split
            )
    assert len(m["notes"]) == 2 and empty_split_reason(m, "train") == ""
    # the statistics still come from TrainData alone
    train = stored_images(raw, "TrainData").reshape(-1, 14)
    np.testing.assert_allclose(m["normalization"]["mean"], train.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["normalization"]["std"], train.std(axis=0), rtol=1e-5, atol=1e-6)


def test_fine_tuning_without_validation_masks_says_why(
    release_without_masks: tuple[Path, PreparedData],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, data = release_without_masks
    out = tmp_path / "ft"
    assert rs(["finetune", "--data", str(data.folder), "--out", str(out), "--steps", "1", *NET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no validation tiles" in err[0] and "ValidData has no masks" in err[0]
    assert leftovers(out) == []


# --------------------------------------------------------------------------- bad input, through the CLI


def _bad_image_size(raw: Path) -> Path:
    return make.write_image(raw / "ValidData" / "img" / "image_1.h5", np.zeros((64, 64, 14), dtype=np.float32))


def _bad_band_count(raw: Path) -> Path:
    return make.write_image(raw / "TrainData" / "img" / "image_2.h5", np.zeros((128, 128, 13), dtype=np.float32))


def _bad_mask_values(raw: Path) -> Path:
    return make.write_mask(raw / "TestData" / "mask" / "mask_1.h5", np.full((128, 128), 2, dtype=np.uint8))


def _mask_of_another_shape(raw: Path) -> Path:
    return make.write_mask(raw / "TrainData" / "mask" / "mask_1.h5", np.zeros((64, 64), dtype=np.uint8))


def _image_without_img_key(raw: Path) -> Path:
    return make.write_image(
        raw / "ValidData" / "img" / "image_1.h5",
        np.zeros((128, 128, 14), dtype=np.float32),
        key="image",
    )


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_bad_image_size, "patch is 64x64, expected 128x128"),
        (_bad_band_count, r"dataset 'img' must be \(H, W, 14\), got \(128, 128, 13\)"),
        (_bad_mask_values, r"mask values must be 0 or 1, found \[2\]"),
        (_mask_of_another_shape, r"dataset 'mask' is \(64, 64\), its image is 128x128"),
        (_image_without_img_key, r"HDF5 file has no dataset 'img' \(has \['image'\]\)"),
    ],
)
def test_bad_release_files_fail_in_one_line_naming_the_file(
    spoil, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = make.release(tmp_path / "raw", 2, 1, 1)
    bad = spoil(raw)
    before = bad.read_bytes()
    out = tmp_path / "out"
    assert rs(["preprocess", "--input", str(raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ")
    assert re.search(problem, err[0]), err[0]
    assert leftovers(out) == [] and bad.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "shown"),
    [(["--tile", "64"], "--tile 64 --overlap 0"), (["--overlap", "16"], "--tile 128 --overlap 16")],
)
def test_re_tiling_the_release_is_an_error(
    args: list[str], shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = make.release(tmp_path / "raw", 1, 1, 1)
    out = tmp_path / "out"
    assert rs(["preprocess", "--input", str(raw), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith(f"error: {raw}: ") and "no re-tiling" in err[0] and err[0].endswith(shown)
    )
    assert leftovers(out) == []


def test_release_without_train_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make.release(tmp_path / "raw", 0, 1, 1)
    assert rs(["preprocess", "--input", str(raw), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {raw / 'TrainData'}: ") and leftovers(tmp_path / "out") == []


# --------------------------------------------------------------------------- scores per split


def tiny_prepared(folder: Path, labels: np.ndarray, splits: list[str]) -> PreparedData:
    """A prepared folder of len(splits) 1x4 tiles under the protocol (images unused)."""
    n = len(splits)
    folder.mkdir()
    arrays = create_arrays(folder, n, 1, 1, 4)
    arrays["labels"][:] = labels
    for a in arrays.values():
        a.flush()
    groups = [f"p{i}" for i in range(n)]
    write_manifest(
        folder,
        {
            "domain": "rs",
            "protocol": "landslide4sense",
            "channels": ["x"],
            "classes": ["background", "landslide"],
            "image_size": [1, 4],
            "samples": {
                "group": groups,
                "index": [0] * n,
                "partition": [-1] * n,
                "labeled": [True] * n,
            },
            "groups": {g: {"split": s} for g, s in zip(groups, splits, strict=True)},
            "splits": {
                "unlabeled": [],
                "labeled": [],
                **{s: [g for g, t in zip(groups, splits, strict=True) if t == s] for s in ("val", "test")},
            },
        },
    )
    return PreparedData(folder)


def test_scores_per_split_on_a_hand_computed_example(tmp_path: Path) -> None:
    # val: tiles 0, 1; test: tiles 2, 3. Pixels pooled over the split's tiles.
    truth = np.array([[[1, 1, 0, 0]], [[1, 0, 0, 0]], [[1, 1, 1, 1]], [[0, 0, 0, 0]]], dtype=np.uint8)
    pred = np.array([[[1, 0, 1, 0]], [[1, 1, 0, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=np.int64)
    data = tiny_prepared(tmp_path / "p", truth, ["val", "val", "test", "test"])
    calls = []

    def confusion(idx: np.ndarray) -> np.ndarray:
        calls.append(idx.tolist())
        return confusion_matrix(pred[idx], np.asarray(data.labels[idx]), 2)

    known_test = confusion(np.array([2, 3]))
    out = split_scores(data, {"test": known_test}, confusion)
    assert calls == [[2, 3], [0, 1]]  # the known test matrix is not recomputed
    assert out["protocol"] == "landslide4sense" and set(out["per_split"]) == {"val", "test"}
    # val: TP 2, FP 2, FN 1, TN 3 -> P 1/2, R 2/3, F1 4/7; IoU landslide 2/5, background 3/6
    val = out["per_split"]["val"]
    assert val["n_tiles"] == 2 and val["n_pixels"] == 8 and val["confusion_matrix"] == [[3, 2], [1, 2]]
    s = val["summary"]
    assert (
        s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(4 / 7)
    )
    assert (
        s["iou_landslide"] == pytest.approx(0.4)
        and s["iou_background"] == pytest.approx(0.5)
        and s["miou"] == pytest.approx(0.45)
    )
    # test: TP 2, FP 0, FN 2, TN 4 -> P 1, R 1/2, F1 2/3
    t = out["per_split"]["test"]["summary"]
    assert (t["precision"], t["recall"]) == (1.0, 0.5) and t["f1"] == pytest.approx(2 / 3)
    # not the protocol: nothing added
    data.manifest.pop("protocol")
    assert split_scores(data, {}, confusion) == {}


def test_rs_evaluate_writes_val_and_test_scores(release: tuple[Path, PreparedData], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _, data = release
    ft, ev = tmp_path / "ft", tmp_path / "ev"
    assert (
        rs(
            [
                "finetune",
                "--data",
                str(data.folder),
                "--out",
                str(ft),
                "--percent",
                "50",
                "--steps",
                "2",
                "--val-every",
                "2",
                "--batch-size",
                "2",
                "--checkpoint-every",
                "0",
                *NET,
            ]
        )
        == 0
    )
    assert (
        rs(
            [
                "evaluate",
                "--data",
                str(data.folder),
                "--model",
                str(ft / "model.pt"),
                "--out",
                str(ev),
            ]
        )
        == 0
    )
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["protocol"] == "landslide4sense" and metrics["split"] == "test" and metrics["scope"] == "tiles"
    assert metrics["dataset"] == "landslide4sense" and metrics["scenes"] == []
    assert set(metrics["per_split"]) == {"val", "test"}
    assert metrics["per_split"]["test"]["summary"] == metrics["summary"]  # the main numbers are the test split's
    # recomputed here: the model's predictions on each split, every pixel pooled
    ckpt = read_checkpoint(ft / "model.pt")
    net = build_from_spec(ckpt["network"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    for split in ("val", "test"):
        idx = data.sample_indices(data.split_groups(split))
        with torch.no_grad():
            pred = net(torch.from_numpy(np.stack([data.image(int(i)) for i in idx]))).argmax(1).numpy()
        truth = np.asarray(data.labels[idx])
        tp, fp, fn = (
            ((pred == 1) & (truth == 1)).sum(),
            ((pred == 1) & (truth == 0)).sum(),
            ((pred == 0) & (truth == 1)).sum(),
        )
        got = metrics["per_split"][split]
        assert (
            got["n_tiles"] == COUNTS["ValidData" if split == "val" else "TestData"]
            and got["n_pixels"] == len(idx) * 128 * 128
        )
        assert (
            got["confusion_matrix"][1][1] == tp
            and got["confusion_matrix"][0][1] == fp
            and got["confusion_matrix"][1][0] == fn
        )
        expect_f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
        assert got["summary"]["f1"] == (pytest.approx(expect_f1) if expect_f1 is not None else None)
    # the report reads the test split's numbers as the run's
    _, rows = read_run(ev / "metrics.json")
    values = {(r["metric"], r["class"]): r["value"] for r in rows if r["split"] == "test"}
    for key, cls, name in (
        ("precision", "", "precision"),
        ("recall", "", "recall"),
        ("f1", "", "f1"),
        ("miou", "", "miou"),
        ("iou", "landslide", "iou_landslide"),
    ):
        expected = metrics["summary"][name]
        assert values.get((key, cls)) == (None if expected is None else pytest.approx(expected))


def test_report_headlines_add_precision_and_recall_for_landslide4sense_runs() -> None:
    stats = pd.DataFrame({"domain": ["rs", "mri"], "dataset": ["prepared", "landslide4sense"]})
    assert domain_headlines("rs", stats) == HEADLINE["rs"]  # the demo's tables are unchanged
    assert domain_headlines("mri", stats) == HEADLINE["mri"]
    stats.loc[len(stats)] = ["rs", "landslide4sense"]
    labels = [h.label for h in domain_headlines("rs", stats)]
    assert labels == ["mIoU", "landslide IoU", "landslide F1", "landslide precision", "landslide recall"]
