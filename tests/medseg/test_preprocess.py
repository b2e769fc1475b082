"""preprocess.py: manifest, partitions, splits, memory-mapped arrays, normalisation, native round trip."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medseg.config import MRIPreprocessConfig
from medseg.native import save_native_label, to_native
from medseg.phantoms import generate_dataset
from medseg.preprocess import preprocess, run_preprocess
from medseg.splits import split_subjects
from segcore.config import add_options, parse_config
from segcore.errors import InputError
from segcore.prepared import PreparedData

from .conftest import leftovers

N_SUBJECTS, N_SLICES, SIZE = 8, 8, 48


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """8 phantoms at exactly 1.5 mm in-plane, stored in every orientation variant."""
    out = tmp_path_factory.mktemp("raw") / "phantoms"
    generate_dataset(out, n_subjects=N_SUBJECTS, seed=1, n_slices=N_SLICES, size=SIZE, spacing_inplane=(1.5, 1.5))
    return out


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    """No resampling (target = source spacing) and padding only (64 >= 48): exactly invertible."""
    out = tmp_path_factory.mktemp("prep") / "prepared"
    preprocess(
        raw, out, target_spacing=(1.5, 1.5), image_size=(64, 64), partitions=4, n_test=2, n_val=1, n_labeled=2, seed=0
    )
    return PreparedData(out)


def test_manifest_content(prepared, raw):
    m = prepared.manifest
    assert m["domain"] == "mri" and m["channels"] == ["MRI"]
    assert m["classes"] == ["background", "RV", "MYO", "LV"]
    assert m["dataset"] == "CardiacPhantoms" and m["layout"] == "nnunet"
    assert m["image_size"] == [64, 64] and m["partitions"] == 4 and m["target_spacing"] == [1.5, 1.5]
    assert len(prepared) == N_SUBJECTS * N_SLICES
    assert sorted(m["groups"]) == [f"case_{i:03d}" for i in range(N_SUBJECTS)]
    g = m["groups"]["case_003"]
    assert g["image"] == str(raw / "imagesTr" / "case_003_0000.nii.gz")
    assert g["label"] == str(raw / "labelsTr" / "case_003.nii.gz")
    src = nib.load(raw / "imagesTr" / "case_003_0000.nii.gz")
    np.testing.assert_array_equal(np.array(g["affine"]), src.affine)
    assert g["shape"] == list(src.shape) and g["shape"][0] == N_SLICES  # stored slice-first
    np.testing.assert_allclose(g["spacing"], src.header.get_zooms(), rtol=1e-6)
    assert g["n_slices"] == N_SLICES and g["permutation"][0] == g["slice_axis"] == 2
    for key in ("orientation", "resampled_shape", "crop_offset", "inplane_shape", "first_sample"):
        assert key in g
    assert g["crop_offset"] == [-8, -8] and g["foreground_cropped"] == 0.0  # 48 px padded to 64
    for name in m["groups"]:
        idx = prepared.sample_indices([name])
        assert idx.tolist() == list(
            range(m["groups"][name]["first_sample"], m["groups"][name]["first_sample"] + N_SLICES)
        )
        assert prepared.index[idx].tolist() == list(range(N_SLICES))


def test_partitions_follow_slice_position(prepared):
    for name in prepared.manifest["groups"]:
        idx = prepared.sample_indices([name])
        assert prepared.partition[idx].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # floor(s * 4 / 8)


def test_splits_deterministic_disjoint_and_labels_withheld(prepared):
    splits = prepared.manifest["splits"]
    assert {k: len(v) for k, v in splits.items()} == {"test": 2, "val": 1, "labeled": 2, "unlabeled": 3}
    members = sum(splits.values(), [])
    assert sorted(members) == sorted(prepared.manifest["groups"])
    labels = np.asarray(prepared.labels)
    for split, names in splits.items():
        for name in names:
            idx = prepared.sample_indices([name])
            assert prepared.manifest["groups"][name]["split"] == split
            if split == "unlabeled":
                assert (labels[idx] == 255).all() and not prepared.labeled[idx].any()
            else:
                assert set(np.unique(labels[idx]).tolist()) <= {0, 1, 2, 3} and prepared.labeled[idx].all()
    ids = [f"s{i}" for i in range(20)]
    a = split_subjects(ids, ["u1"], 3, 2, 4, seed=5)
    assert a == split_subjects(list(reversed(ids)), ["u1"], 3, 2, 4, seed=5)
    assert any(split_subjects(ids, [], 3, 2, 4, seed=s)["test"] != a["test"] for s in range(6, 9))
    assert "u1" in a["unlabeled"] and len(a["unlabeled"]) == 20 - 9 + 1
    # "all": every remaining labeled subject; the test set does not depend on the pool size
    b = split_subjects(ids, [], 3, 2, None, seed=5)
    assert (
        b["test"] == a["test"]
        and b["val"] == a["val"]
        and len(b["labeled"]) == 15
        and set(a["labeled"]) <= set(b["labeled"])
    )


def test_arrays_are_memmaps_and_normalised(prepared):
    images = np.load(prepared.folder / "images.npy", mmap_mode="r")
    assert isinstance(images, np.memmap) and images.dtype == np.float32 and images.shape == (64, 1, 64, 64)
    assert prepared.labels.dtype == np.uint8 and prepared.labels.shape == (64, 64, 64)
    for name in prepared.manifest["groups"]:
        vol = np.asarray(images[prepared.sample_indices([name])])
        assert vol.min() == 0.0 and vol.max() == 1.0


def test_normalisation_hand_checked(tmp_path, mri_make):
    """Identity geometry: prepared = clip((x - p0.5) / (p99.5 - p0.5), 0, 1) in canonical order."""
    (tmp_path / "raw").mkdir()
    data = np.arange(20 * 18 * 5, dtype=np.float32).reshape(20, 18, 5)
    mri_make.save(data, mri_make.tiny_affine(), tmp_path / "raw" / "ramp.nii.gz")
    preprocess(tmp_path / "raw", tmp_path / "out", image_size=(20, 18), n_test=0, n_val=0, n_labeled="all")
    p = PreparedData(tmp_path / "out")
    lo, hi = np.percentile(data, [0.5, 99.5])
    expected = np.clip((data - lo) / (hi - lo), 0, 1).transpose(2, 0, 1)  # (S, X, Y)
    np.testing.assert_allclose(np.asarray(p.images)[:, 0], expected, rtol=1e-6, atol=1e-6)
    assert p.manifest["groups"]["ramp"]["intensity_range"] == pytest.approx([lo, hi])
    assert (np.asarray(p.labels) == 255).all()


def test_native_round_trip_exact_for_every_orientation(prepared, tmp_path):
    variants = json.loads((Path(prepared.manifest["source"]) / "dataset.json").read_text())["storage_variants"]
    assert len(set(variants.values())) == 4
    labels = np.asarray(prepared.labels)
    for name, group in prepared.manifest["groups"].items():
        if group["split"] == "unlabeled":
            continue
        back = to_native(labels[prepared.sample_indices([name])], group, order=0)
        source = nib.load(group["label"])
        np.testing.assert_array_equal(back, np.asarray(source.dataobj))
        save_native_label(back, group, tmp_path / f"{name}.nii.gz")
        written = nib.load(tmp_path / f"{name}.nii.gz")
        assert written.shape == source.shape
        np.testing.assert_allclose(written.affine, source.affine, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(source.dataobj))
    stored_variants = {variants[n] for n, g in prepared.manifest["groups"].items() if g["split"] != "unlabeled"}
    assert len(stored_variants) >= 2


def test_native_round_trip_with_resampling(raw, tmp_path):
    preprocess(raw, tmp_path / "p", target_spacing=(2.0, 2.0), image_size=(48, 48), n_test=0, n_val=0, n_labeled="all")
    p = PreparedData(tmp_path / "p")
    assert p.manifest["groups"]["case_000"]["resampled_shape"] == [N_SLICES, 36, 36]  # 48 * 1.5 / 2
    labels = np.asarray(p.labels)
    for name, group in p.manifest["groups"].items():
        prep = labels[p.sample_indices([name])]
        source = np.asarray(nib.load(group["label"]).dataobj)
        hard = to_native(prep, group, order=0)
        probs = to_native(np.stack([prep == k for k in range(4)]).astype(np.float32), group, order=1).argmax(0)
        for back in (hard, probs):
            fg_b, fg_s = back > 0, source > 0
            assert 2 * (fg_b & fg_s & (back == source)).sum() / (fg_b.sum() + fg_s.sum()) >= 0.95


def test_real_nifti_plain_unlabeled(tmp_path, nibabel_data):
    (tmp_path / "raw").mkdir()
    shutil.copy(nibabel_data / "anatomical.nii", tmp_path / "raw" / "anatomical.nii")
    preprocess(
        tmp_path / "raw",
        tmp_path / "out",
        target_spacing=(2.0, 2.0),
        image_size=(48, 48),
        n_test=0,
        n_val=0,
        n_labeled="all",
    )
    p = PreparedData(tmp_path / "out")
    g = p.manifest["groups"]["anatomical"]
    assert g["shape"] == [33, 41, 25] and g["slice_axis"] == 2 and len(p) == 25  # isotropic: last axis
    assert p.manifest["splits"]["unlabeled"] == ["anatomical"] and p.manifest["splits"]["labeled"] == []
    assert (np.asarray(p.labels) == 255).all() and not p.labeled.any()
    images = np.asarray(p.images)
    assert 0.0 <= images.min() and images.max() <= 1.0
    # a prediction on the prepared grid maps back onto the 33 x 41 x 25 file grid
    pred = (images[:, 0] > 0.5).astype(np.uint8)
    native = to_native(pred, g, order=0)
    assert native.shape == (33, 41, 25)
    src = nib.load(tmp_path / "raw" / "anatomical.nii").get_fdata()
    assert native.sum() > 0 and src[native == 1].mean() > src[native == 0].mean()


def test_acdc_split_keeps_patients_together(tmp_path, mri_make):
    mri_make.make_acdc(tmp_path / "acdc", n_patients=3)
    preprocess(tmp_path / "acdc", tmp_path / "out", image_size=(32, 32), n_test=1, n_val=1, n_labeled=1)
    groups = PreparedData(tmp_path / "out").manifest["groups"]
    for p in ("patient001", "patient002", "patient003"):
        assert groups[f"{p}_frame01"]["split"] == groups[f"{p}_frame12"]["split"]
        assert groups[f"{p}_frame01"]["subject"] == p


def test_msd_multimodal_channel(tmp_path, mri_make):
    mri_make.make_msd(tmp_path / "msd", modalities=2)
    preprocess(tmp_path / "msd", tmp_path / "out", image_size=(32, 32), n_test=1, n_val=0, n_labeled=1, channel=1)
    p = PreparedData(tmp_path / "out")
    assert p.manifest["channels"] == ["MR1"] and p.manifest["layout"] == "msd"
    assert sorted(p.manifest["splits"]["unlabeled"]) == ["la_005"]


def test_too_few_labeled_subjects(raw, tmp_path):
    with pytest.raises(
        InputError, match=r"too few labeled subjects: 8 left to draw from.*\(8 labeled subjects found\)"
    ) as err:
        preprocess(raw, tmp_path / "out", n_test=5, n_val=2, n_labeled=2)
    assert err.value.path == str(raw)
    assert leftovers(tmp_path / "out") == []


def test_stage_options_config_and_slice_axis(raw, tmp_path):
    parser = argparse.ArgumentParser()
    add_options(parser, MRIPreprocessConfig)
    assert all(a.help for a in parser._actions if a.dest != "help")
    args = parse_config(
        MRIPreprocessConfig,
        [
            "--input",
            str(raw),
            "--out",
            str(tmp_path / "out"),
            "--image-size",
            "32",
            "48",
            "--n-test",
            "1",
            "--n-val",
            "1",
            "--n-labeled",
            "all",
            "--slice-axis",
            "0",
            "--seed",
            "3",
        ],
    )
    run_preprocess(args)
    p = PreparedData(tmp_path / "out")
    config = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert config["image_size"] == [32, 48] and config["n_labeled"] == "all" and config["seed"] == 3
    g = p.manifest["groups"]["case_000"]
    assert g["slice_axis"] == 0 and g["n_slices"] == SIZE and len(p) == N_SUBJECTS * SIZE
    assert len(p.manifest["splits"]["labeled"]) == N_SUBJECTS - 2
