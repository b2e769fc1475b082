"""N4 bias-field correction: a known smooth multiplicative field is removed, measurably."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from medseg.n4 import n4_correct, shrink_factors
from medseg.preprocess import preprocess
from segcore.prepared import PreparedData

SPACING = (1.5, 1.5, 10.0)


def torso(shape: tuple[int, int, int] = (64, 64, 8)) -> np.ndarray:
    """Labels (X, Y, Z): 0 air, 1 body ellipse, 2 myocardial ring, 3 blood pool."""
    x, y, _ = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(x / 0.9) ** 2 + (y / 0.75) ** 2 < 1] = 1
    labels[(x - 0.1) ** 2 + y**2 < 0.16] = 2
    labels[(x - 0.1) ** 2 + y**2 < 0.06] = 3
    return labels


def bias_field(shape: tuple[int, int, int]) -> np.ndarray:
    """A smooth multiplicative field, 0.5x to 2x across the volume (coil shading)."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return np.exp(0.35 * x - 0.25 * y + 0.15 * z + 0.2 * x * y)


def tissue_cv(image: np.ndarray, labels: np.ndarray) -> float:
    """Mean coefficient of variation (std / mean) inside the three tissues: 0 for a perfectly
    flat tissue, so a multiplicative field shows up as a larger value."""
    return float(np.mean([image[labels == k].std() / image[labels == k].mean() for k in (1, 2, 3)]))


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, clean image, biased image): tissue levels + noise, times the field."""
    labels = torso()
    rng = np.random.default_rng(0)
    clean = np.array([0.0, 300.0, 150.0, 600.0])[labels] + 5.0 * rng.standard_normal(labels.shape)
    biased = np.clip(clean * bias_field(labels.shape), 0, None)
    return labels, np.clip(clean, 0, None).astype(np.float32), biased.astype(np.float32)


def test_n4_removes_a_known_bias_field(volume):
    labels, clean, biased = volume
    corrected = n4_correct(biased, SPACING)
    assert corrected.shape == biased.shape and corrected.dtype == np.float32
    before, after, floor = tissue_cv(biased, labels), tissue_cv(corrected, labels), tissue_cv(clean, labels)
    assert before > 0.12  # the field spreads each tissue's intensities by > 12 %
    assert after < 0.25 * before and after < 1.5 * floor  # N4 brings it back near the noise floor
    # the estimated field (biased / corrected) follows the true one up to a global scale
    inside = labels > 0
    estimate = np.log(biased[inside] / corrected[inside])
    truth = np.log(bias_field(labels.shape))[inside]
    assert np.corrcoef(estimate, truth)[0, 1] > 0.95


def test_n4_leaves_a_flat_volume_flat(volume):
    labels, clean, _ = volume
    assert tissue_cv(n4_correct(clean, SPACING), labels) < 1.1 * tissue_cv(clean, labels)
    zeros = np.zeros((20, 20, 4), dtype=np.float32)
    np.testing.assert_array_equal(n4_correct(zeros, SPACING), zeros)  # nothing to fit


def test_shrink_keeps_thick_slice_stacks():
    assert shrink_factors((256, 216, 10)) == [4, 4, 1]
    assert shrink_factors((40, 20, 8)) == [2, 1, 1]


def test_preprocess_n4_option(volume, tmp_path):
    """Through ``medseg preprocess``: with --n4 the prepared slices are flatter per tissue."""
    labels, _, biased = volume
    affine = np.diag([*SPACING, 1.0])
    (tmp_path / "raw" / "labels").mkdir(parents=True)
    nib.save(nib.Nifti1Image(biased, affine), tmp_path / "raw" / "torso.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "raw" / "labels" / "torso.nii.gz")
    cvs = {}
    for n4 in (False, True):
        out = preprocess(
            tmp_path / "raw",
            tmp_path / f"n4_{n4}",
            target_spacing=(1.5, 1.5),
            image_size=(64, 64),
            percentiles=(0.0, 100.0),
            n_test=1,
            n_val=0,
            n_labeled=0,
            n4=n4,
        )
        data = PreparedData(out)
        assert data.manifest["n4"] is n4
        cvs[n4] = tissue_cv(np.asarray(data.images)[:, 0] + 1e-6, np.asarray(data.labels))
    assert cvs[True] < 0.35 * cvs[False]


def test_n4_on_a_real_scan(tmp_path, nibabel_data):
    """nibabel's anatomical.nii (a real T1 volume): runs, finite, positive where the scan is."""
    img = nib.load(nibabel_data / "anatomical.nii")
    data = np.asarray(img.dataobj, dtype=np.float32)
    corrected = n4_correct(data, img.header.get_zooms()[:3])
    assert np.isfinite(corrected).all() and (corrected[data > 0] > 0).all()
    shutil.copy(nibabel_data / "anatomical.nii", tmp_path / "anatomical.nii")
    out = preprocess(
        tmp_path / "anatomical.nii",
        tmp_path / "p",
        target_spacing=(2.0, 2.0),
        image_size=(48, 48),
        n_test=0,
        n_val=0,
        n_labeled="all",
        n4=True,
    )
    assert PreparedData(out).manifest["n4"] is True


def test_n4_does_not_depend_on_the_thread_count(volume):
    """One ITK thread whatever the machine's default: the field's reductions add in one order."""
    import SimpleITK as sitk

    _, _, biased = volume
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    results = []
    try:
        for threads in (1, 2, 3):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            results.append(n4_correct(biased, SPACING, iterations=(20, 20)))
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads  # restored
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert all(np.array_equal(results[0], r) for r in results[1:])
