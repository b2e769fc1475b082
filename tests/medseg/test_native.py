"""native.py: resampling, crop/pad and the exact inverse mapping back to the source voxel grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.native import (
    crop_or_pad,
    plan_geometry,
    resize_inplane,
    save_native_label,
    to_canonical_stack,
    to_native,
    to_prepared,
)
from medseg.nifti import VolumeHeader

# storage variants: (nibabel orientation applied to a RAS-stored volume)
VARIANTS = {
    "ras": [[0, 1], [1, 1], [2, 1]],
    "slice_flipped": [[0, 1], [1, 1], [2, -1]],
    "slice_first": [[1, 1], [2, 1], [0, 1]],
    "swapped_flipped": [[1, -1], [0, 1], [2, 1]],
}


def _header(shape, spacing, ornt) -> tuple[VolumeHeader, np.ndarray]:
    """A header whose file stores a RAS volume of ``shape`` in the orientation ``ornt``."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    img = nib.Nifti1Image(np.zeros(shape, np.uint8), affine).as_reoriented(np.array(ornt))
    zooms = tuple(float(z) for z in img.header.get_zooms())
    return VolumeHeader(Path("x.nii.gz"), tuple(img.shape), img.affine, zooms, 1), np.array(ornt)


def _group(header: VolumeHeader, geometry: dict) -> dict:
    return {**geometry, "affine": header.affine.tolist(), "shape": list(header.shape)}


def test_resize_hand_checked_values():
    x = np.array([[0.0, 1.0]], dtype=np.float32)  # (1, 2)
    up = resize_inplane(x, (1, 4), order=1)
    # output pixel centres sample input coords -0.25, 0.25, 0.75, 1.25 (edges clamp)
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])
    lab = np.array([[1, 2, 3, 4]], dtype=np.uint8)
    # coords 0.5 and 2.5; nearest rounds halves up, to indices 1 and 3
    np.testing.assert_array_equal(resize_inplane(lab, (1, 2), order=0), [[2, 4]])
    y = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(resize_inplane(y, (5, 7), order=1), y)


def test_crop_or_pad_hand_checked_and_inverse():
    x = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(crop_or_pad(x, (1, 1), (2, 2)), [[5, 6], [9, 10]])
    padded = crop_or_pad(x, (-1, 0), (6, 4), fill=-1)
    assert padded.shape == (6, 4)
    np.testing.assert_array_equal(padded[0], [-1] * 4)
    np.testing.assert_array_equal(padded[1:5], x)
    np.testing.assert_array_equal(crop_or_pad(padded, (1, 0), (4, 4)), x)  # inverse = negated offset


def test_plan_geometry_finds_slice_axis_through_permutation():
    header, _ = _header((30, 20, 6), (1.2, 1.3, 9.0), VARIANTS["slice_first"])
    assert header.shape == (6, 30, 20)
    g = plan_geometry(header, (2.4, 1.3), (16, 32))
    assert g["canonical_shape"] == [30, 20, 6]
    assert g["slice_axis"] == 2 and g["permutation"] == [2, 0, 1] and g["n_slices"] == 6
    assert g["resampled_shape"] == [6, 15, 20]  # 30 * 1.2 / 2.4 = 15; 20 * 1.3 / 1.3 = 20
    assert g["crop_offset"] == [(15 - 16) // 2, (20 - 32) // 2] == [-1, -6]
    # isotropic: ties go to the last canonical axis; explicit choice overrides
    iso, _ = _header((5, 6, 7), (2.0, 2.0, 2.0), VARIANTS["ras"])
    assert plan_geometry(iso, (2, 2), (8, 8))["slice_axis"] == 2
    assert plan_geometry(iso, (2, 2), (8, 8), slice_axis=0)["permutation"] == [0, 1, 2]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_labels_round_trip_exactly_without_resampling(variant):
    shape, spacing = (12, 10, 5), (1.5, 1.5, 8.0)
    rng = np.random.default_rng(1)
    ras_labels = rng.integers(0, 4, size=shape).astype(np.uint8)
    header, ornt = _header(shape, spacing, VARIANTS[variant])
    stored = nib.orientations.apply_orientation(ras_labels, ornt)  # what the file holds
    g = plan_geometry(header, (1.5, 1.5), (16, 16))
    stack = to_canonical_stack(stored, g)
    np.testing.assert_array_equal(stack, ras_labels.transpose(2, 0, 1))  # (S, X, Y) in RAS
    prepared = to_prepared(stack, g, order=0)
    assert prepared.shape == (5, 16, 16)
    np.testing.assert_array_equal(to_native(prepared, _group(header, g), order=0), stored)


def test_crop_cuts_come_back_as_background():
    header, _ = _header((20, 20, 3), (1.0, 1.0, 5.0), VARIANTS["ras"])
    labels = np.ones((20, 20, 3), np.uint8)
    g = plan_geometry(header, (1.0, 1.0), (16, 12))
    back = to_native(to_prepared(to_canonical_stack(labels, g), g, order=0), _group(header, g), order=0)
    assert back.shape == labels.shape
    assert back[2:18, 4:16].min() == 1 and back.sum() == 16 * 12 * 3


def test_probabilities_round_trip_with_resampling():
    header, ornt = _header((40, 36, 4), (1.0, 1.0, 10.0), VARIANTS["swapped_flipped"])
    x, y = np.meshgrid(np.arange(40), np.arange(36), indexing="ij")
    ras = np.repeat(((x - 20) ** 2 + (y - 18) ** 2 < 100).astype(np.uint8)[..., None], 4, axis=2)
    stored = nib.orientations.apply_orientation(ras, ornt)
    g = plan_geometry(header, (1.7, 1.7), (32, 32))
    prepared = to_prepared(to_canonical_stack(stored, g), g, order=0)  # (S, H, W)
    probs = np.stack([prepared == 0, prepared == 1]).astype(np.float32)  # (K, S, H, W)
    native_probs = to_native(probs, _group(header, g), order=1)
    assert native_probs.shape == (2, *stored.shape)
    back = native_probs.argmax(0)
    dice = 2 * np.sum((back == 1) & (stored == 1)) / (np.sum(back == 1) + np.sum(stored == 1))
    assert dice > 0.95
    np.testing.assert_allclose(native_probs.sum(0), 1.0, atol=1e-5)


def test_save_native_label_keeps_affine_and_shape(tmp_path):
    header, _ = _header((8, 9, 3), (1.5, 1.5, 8.0), VARIANTS["slice_first"])
    group = {"affine": header.affine.tolist(), "shape": list(header.shape)}
    labels = np.random.default_rng(2).integers(0, 4, header.shape).astype(np.uint8)
    save_native_label(labels, group, tmp_path / "pred.nii.gz")
    img = nib.load(tmp_path / "pred.nii.gz")
    np.testing.assert_array_equal(img.affine, header.affine)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    with pytest.raises(ValueError, match="differs from the source shape"):
        save_native_label(labels[:-1], group, tmp_path / "bad.nii.gz")
