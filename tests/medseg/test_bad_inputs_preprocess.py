"""Every bad input of ``medseg preprocess`` is an InputError naming the file, and leaves no output."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.nifti import load_label, load_volume
from medseg.preprocess import preprocess
from segcore.errors import InputError

from .conftest import leftovers

IMAGE = Path("imagesTr") / "heart_001_0000.nii.gz"
LABEL = Path("labelsTr") / "heart_001.nii.gz"


def _rewrite(folder: Path, rel: Path, mri_make, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path = folder / rel
    mri_make.save(data, mri_make.tiny_affine() if affine is None else affine, path)
    return path


def _truncate(folder: Path, rel: Path, mri_make) -> Path:
    path = folder / rel
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _truncated_image(folder, mri_make):
    return _truncate(folder, IMAGE, mri_make)


def _truncated_label(folder, mri_make):
    return _truncate(folder, LABEL, mri_make)


def _truncated_uncompressed_image(folder, mri_make):
    # a .nii (no gzip) cut short: the header reads, the voxels do not
    path = folder / "imagesTr" / "heart_001_0000.nii"
    dj = folder / "dataset.json"
    dj.write_text(dj.read_text().replace('".nii.gz"', '".nii"'))
    for p in list(folder.rglob("*.nii.gz")):
        with gzip.open(p) as f:
            p.with_name(p.name[:-3]).write_bytes(f.read())
        p.unlink()
    path.write_bytes(path.read_bytes()[:-500])
    return path


def _corrupt_image(folder, mri_make):
    path = folder / IMAGE
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


def _image_4d(folder, mri_make):
    image, _ = mri_make.tiny_case(1)
    return _rewrite(folder, IMAGE, mri_make, np.stack([image, image], axis=-1))


def _shape_mismatch(folder, mri_make):
    _, labels = mri_make.tiny_case(1)
    return _rewrite(folder, LABEL, mri_make, labels[:-2])


def _affine_mismatch(folder, mri_make):
    _, labels = mri_make.tiny_case(1)
    affine = mri_make.tiny_affine()
    affine[0, 3] += 0.5  # half a millimetre off
    return _rewrite(folder, LABEL, mri_make, labels, affine)


def _label_outside_classes(folder, mri_make):
    _, labels = mri_make.tiny_case(1)
    labels[0, 0, 0] = 7
    labels[1, 0, 0] = 9
    return _rewrite(folder, LABEL, mri_make, labels)


def _nan_voxel(folder, mri_make):
    image, _ = mri_make.tiny_case(1)
    image[3, 4, 2] = np.nan
    return _rewrite(folder, IMAGE, mri_make, image)


def _inf_voxel(folder, mri_make):
    image, _ = mri_make.tiny_case(1)
    image[0, 0, 0] = np.inf
    return _rewrite(folder, IMAGE, mri_make, image)


def _non_integer_label(folder, mri_make):
    _, labels = mri_make.tiny_case(1)
    values = labels.astype(np.float32)
    values[5, 5, 1] = 0.5
    return _rewrite(folder, LABEL, mri_make, values)


def _missing_label(folder, mri_make):
    path = folder / LABEL
    path.unlink()
    return path


def _zero_spacing(folder, mri_make):
    # nibabel reads a zero pixdim as 1 mm (a warning naming no file): the header must be rejected
    path = folder / IMAGE
    img = nib.load(path)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    offset = 76 + 4 * 2  # pixdim[2], float32, in the 348-byte NIfTI-1 header
    raw[offset : offset + 4] = np.float32(0).tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))
    assert img.header.get_zooms()[1] > 0  # it was a valid file
    return path


BAD_INPUTS: dict[str, tuple[Callable, str]] = {
    "zero voxel spacing": (_zero_spacing, r"voxel spacing \[.*0\.0.*\] \(header pixdim\) is zero"),
    "truncated image": (_truncated_image, "truncated or corrupt|cannot read"),
    "truncated label": (_truncated_label, "truncated or corrupt|cannot read"),
    "truncated .nii": (_truncated_uncompressed_image, "truncated or corrupt|cannot read"),
    "corrupt image": (_corrupt_image, "cannot read"),
    "4D image": (_image_4d, "4D image of shape"),
    "mismatched shapes": (_shape_mismatch, "label shape .* differs from image shape"),
    "mismatched affines": (_affine_mismatch, "label affine differs"),
    "label values outside classes": (_label_outside_classes, r"label values \[7, 9\] are not among"),
    "NaN voxel": (_nan_voxel, "NaN/Inf voxel"),
    "Inf voxel": (_inf_voxel, "NaN/Inf voxel"),
    "non-integer label": (_non_integer_label, "non-integer"),
    "missing label": (_missing_label, "does not exist"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_names_file_and_leaves_nothing(tmp_path, mri_make, name):
    make_bad, problem = BAD_INPUTS[name]
    mri_make.make_nnunet(tmp_path / "raw", n_train=3, n_test=1)
    bad = make_bad(tmp_path / "raw", mri_make)
    out = tmp_path / "prepared"
    with pytest.raises(InputError, match=problem) as err:
        preprocess(tmp_path / "raw", out, image_size=(32, 32), n_test=1, n_val=0, n_labeled=1)
    assert err.value.path == str(bad), err.value
    assert str(bad) in str(err.value)
    assert leftovers(out) == []


def test_real_4d_file_rejected(tmp_path, nibabel_data):
    (tmp_path / "raw").mkdir()
    shutil.copy(nibabel_data / "example4d.nii.gz", tmp_path / "raw" / "example4d.nii.gz")
    out = tmp_path / "prepared"
    with pytest.raises(InputError, match=r"4D image of shape \(128, 96, 24, 2\)") as err:
        preprocess(tmp_path / "raw", out, n_test=0, n_val=0, n_labeled="all")
    assert err.value.path == str(tmp_path / "raw" / "example4d.nii.gz")
    assert leftovers(out) == []


@pytest.mark.parametrize("kind", ["empty", "unrecognised", "missing"])
def test_bad_folders(tmp_path, kind):
    folder = tmp_path / "raw"
    if kind != "missing":
        folder.mkdir()
    if kind == "unrecognised":
        (folder / "readme.txt").write_text("no images here")
    out = tmp_path / "prepared"
    with pytest.raises(InputError) as err:
        preprocess(folder, out, n_test=0, n_val=0, n_labeled="all")
    assert err.value.path == str(folder)
    assert leftovers(out) == []


def test_bad_option_values(tmp_path, mri_make):
    mri_make.make_nnunet(tmp_path / "raw")
    kwargs = {"n_test": 0, "n_val": 0, "n_labeled": "all"}
    for bad in (
        {"percentiles": (99, 1)},
        {"image_size": (0, 32)},
        {"target_spacing": (-1, 1)},
        {"partitions": 0},
        {"n_labeled": "some"},
    ):
        with pytest.raises(InputError):
            preprocess(tmp_path / "raw", tmp_path / "out", **{**kwargs, **bad})
    assert leftovers(tmp_path / "out") == []


def test_tolerated_inputs(tmp_path, mri_make):
    """Singleton 4th dimension, integral float labels and sub-tolerance affine noise are fine."""
    mri_make.make_nnunet(tmp_path / "raw")
    image, labels = mri_make.tiny_case(1)
    _rewrite(tmp_path / "raw", IMAGE, mri_make, image[..., None])  # (X, Y, Z, 1)
    affine = mri_make.tiny_affine()
    affine[0, 3] += 2e-4
    _rewrite(tmp_path / "raw", LABEL, mri_make, labels.astype(np.float32), affine)
    preprocess(tmp_path / "raw", tmp_path / "out", image_size=(32, 32), n_test=0, n_val=0, n_labeled="all")
    assert (tmp_path / "out" / "manifest.json").is_file()
    data, _, zooms = load_volume(tmp_path / "raw" / IMAGE)
    assert data.shape == image.shape and data.dtype == np.float32 and zooms == (1.5, 1.5, 8.0)
    lab, _, _ = load_label(tmp_path / "raw" / LABEL, [0, 1, 2, 3])
    assert lab.dtype == np.uint8 and np.array_equal(lab, labels)


def test_label_outside_classes_in_unlabeled_pool_is_still_an_error(tmp_path, mri_make):
    mri_make.make_nnunet(tmp_path / "raw", n_train=3, n_test=0)
    bad = _label_outside_classes(tmp_path / "raw", mri_make)
    with pytest.raises(InputError) as err:
        preprocess(tmp_path / "raw", tmp_path / "out", image_size=(32, 32), n_test=0, n_val=0, n_labeled=0)
    assert err.value.path == str(bad)


def test_msd_channel_beyond_4d_image(tmp_path, mri_make):
    mri_make.make_msd(tmp_path / "raw", modalities=2)
    # dataset.json claims 3 modalities, the files hold 2
    dj = tmp_path / "raw" / "dataset.json"
    dj.write_text(dj.read_text().replace('"1": "MR1"', '"1": "MR1", "2": "MR2"'))
    with pytest.raises(InputError, match="channel 2 requested but the image has 2") as err:
        preprocess(tmp_path / "raw", tmp_path / "out", n_test=0, n_val=0, n_labeled="all", channel=2)
    assert err.value.path.endswith("la_003.nii.gz")
    assert nib.load(tmp_path / "raw" / "imagesTr" / "la_003.nii.gz").shape[-1] == 2


def test_extra_nifti_files_beside_a_layout_are_named_in_a_warning(tmp_path, mri_make, caplog):
    import logging

    mri_make.make_nnunet(tmp_path / "raw", n_train=3, n_test=1)
    stray = tmp_path / "raw" / "scratch_copy.nii.gz"  # beside the layout's folders
    shutil.copy(tmp_path / "raw" / IMAGE, stray)
    with caplog.at_level(logging.WARNING, logger="medseg.layouts"):
        preprocess(tmp_path / "raw", tmp_path / "out", image_size=(32, 32), n_test=1, n_val=0, n_labeled=1)
    messages = [r.getMessage() for r in caplog.records if "not part of the" in r.getMessage()]
    assert len(messages) == 1 and "1 NIfTI file(s)" in messages[0] and str(stray) in messages[0]
