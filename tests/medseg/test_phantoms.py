"""phantoms.py: determinism, anatomy from base to apex, NIfTI geometry and dataset.json."""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from medseg.config import MRIDemoDataConfig
from medseg.phantoms import generate_dataset, phantom_volume, run_demo_data
from segcore.config import add_options, from_namespace


def _volumes(rng_seed: int, n: int, n_slices: int = 12, size: int = 96):
    return [phantom_volume(np.random.default_rng([rng_seed, i]), n_slices, size) for i in range(n)]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms") / "raw"
    generate_dataset(out, n_subjects=6, seed=3, n_slices=10, size=64)
    return out


def test_same_seed_identical_other_seed_different(tmp_path, small_dataset):
    generate_dataset(tmp_path / "again", n_subjects=6, seed=3, n_slices=10, size=64)
    generate_dataset(tmp_path / "other", n_subjects=6, seed=4, n_slices=10, size=64)
    for sub, name in (("imagesTr", "case_004_0000.nii.gz"), ("labelsTr", "case_004.nii.gz")):
        a = nib.load(small_dataset / sub / name)
        b = nib.load(tmp_path / "again" / sub / name)
        c = nib.load(tmp_path / "other" / sub / name)
        assert np.asarray(a.dataobj).tobytes() == np.asarray(b.dataobj).tobytes()
        np.testing.assert_array_equal(a.affine, b.affine)
        assert not np.array_equal(np.asarray(a.dataobj), np.asarray(c.dataobj))


def test_labels_dtypes_and_classes(small_dataset):
    for i in range(6):
        img = nib.load(small_dataset / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        lab = nib.load(small_dataset / "labelsTr" / f"case_{i:03d}.nii.gz")
        assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(lab.dataobj)).tolist()) == {0, 1, 2, 3}
        assert img.shape == lab.shape
        np.testing.assert_array_equal(img.affine, lab.affine)
        assert np.isfinite(np.asarray(img.dataobj)).all()


def test_anatomy_changes_from_base_to_apex():
    n_slices = 12
    for image, labels in _volumes(0, 20, n_slices):
        assert image.shape == labels.shape == (96, 96, n_slices)
        lv = (labels == 3).sum(axis=(0, 1))  # per slice, base (0) to apex
        rv = (labels == 1).sum(axis=(0, 1))
        myo = (labels == 2).sum(axis=(0, 1))
        assert np.all(np.diff(lv) <= 2), lv  # shrinking (2 px slack for the pixel grid)
        assert lv[0] > 2 * lv[n_slices // 2 + 2] and lv[-1] == 0
        closed = int((lv == 0).sum())  # cavity closes in the last 5-20% of slices
        assert 1 <= closed <= 3, lv
        assert myo[-1] > 0  # a solid myocardial cap remains at the apex
        assert rv[0] > 0 and rv[-1] == 0
        gone = int(np.argmax(rv == 0))  # first slice without RV: 55-80% of the stack
        assert 0.45 <= gone / n_slices <= 0.85 and not rv[gone:].any(), rv
        assert rv[0] > rv[gone - 1]  # the RV shrinks before it vanishes


def test_subjects_differ_in_pose_size_and_intensity():
    vols = _volumes(1, 8)
    centres = np.array([np.argwhere(lab[..., 0] == 3).mean(0) for _, lab in vols])
    assert np.ptp(centres, axis=0).min() > 3  # centres spread
    lv_area = [int((lab[..., 0] == 3).sum()) for _, lab in vols]
    assert max(lv_area) > 1.3 * min(lv_area)
    blood = [float(np.median(img[..., 0][lab[..., 0] == 3])) for img, lab in vols]
    assert max(blood) > 1.2 * min(blood)  # global intensity scale varies


def test_affines_oblique_anisotropic_and_storage_variants(small_dataset):
    codes, slice_axes = set(), set()
    for i in range(6):
        img = nib.load(small_dataset / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        a = img.affine
        zooms = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
        inplane = np.sort(zooms)[:2]
        assert np.allclose(inplane[0], inplane[1], atol=1e-4) and 1.4 <= inplane[0] <= 1.6
        assert 8.0 <= zooms.max() <= 10.0
        rotation = a[:3, :3] / zooms
        off_diagonal = np.abs(rotation[np.abs(rotation) < 0.9])
        assert off_diagonal.max() > 0.05  # oblique, not axis-aligned
        assert np.abs(a[:3, 3]).max() > 1.0  # non-zero origin
        codes.add(nib.aff2axcodes(a))
        slice_axes.add(int(np.argmax(zooms)))
        assert img.shape[int(np.argmax(zooms))] == 10  # the slice axis has the slice count
    assert len(codes) >= 3  # permuted / flipped storage for some subjects
    assert slice_axes == {0, 2}


def test_canonical_reorientation_aligns_base_to_apex(small_dataset):
    for i in range(6):
        lab = nib.as_closest_canonical(nib.load(small_dataset / "labelsTr" / f"case_{i:03d}.nii.gz"))
        lv = (np.asarray(lab.dataobj) == 3).sum(axis=(0, 1))  # canonical S axis is the slice axis
        assert lv[0] > 0 and lv[-1] == 0, (i, lv)


def test_dataset_json(small_dataset):
    dj = json.loads((small_dataset / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "MRI"}
    assert dj["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert dj["numTraining"] == 6 and dj["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (small_dataset / "imagesTr").iterdir()) == [
        f"case_{i:03d}_0000.nii.gz" for i in range(6)
    ]
    assert sorted(p.name for p in (small_dataset / "labelsTr").iterdir()) == [f"case_{i:03d}.nii.gz" for i in range(6)]


def test_stage_options_and_run(tmp_path):
    parser = argparse.ArgumentParser()
    add_options(parser, MRIDemoDataConfig)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, action.dest
    args = parser.parse_args(
        ["--out", str(tmp_path / "demo"), "--n-subjects", "2", "--n-slices", "6", "--size", "48", "--seed", "7"]
    )
    run_demo_data(from_namespace(MRIDemoDataConfig, args))
    config = yaml.safe_load((tmp_path / "demo" / "config.yaml").read_text())
    assert config["n_subjects"] == 2 and config["seed"] == 7 and config["out"] == str(tmp_path / "demo")
    assert json.loads((tmp_path / "demo" / "dataset.json").read_text())["numTraining"] == 2
    assert not list(tmp_path.glob(".demo.tmp-*"))
