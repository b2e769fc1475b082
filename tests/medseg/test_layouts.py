"""layouts.py: detection and listing of each raw layout, overrides, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.layouts import ACDC_CLASSES, detect_layout, list_cases
from segcore.errors import InputError


@pytest.mark.parametrize("layout", ["nnunet", "msd", "acdc", "plain"])
def test_each_layout_is_detected_and_listed(tmp_path, mri_make, layout):
    ids = mri_make.MAKERS[layout](tmp_path / layout)
    assert detect_layout(tmp_path / layout) == layout
    cases, info = list_cases(tmp_path / layout)
    assert [c.name for c in cases] == sorted(ids)
    assert info["layout"] == layout
    for case in cases:
        assert case.image.is_file()
        assert case.label is None or case.label.is_file()


def test_nnunet_cases(tmp_path, mri_make):
    mri_make.make_nnunet(tmp_path, n_train=3, n_test=1)
    cases, info = list_cases(tmp_path)
    assert info["classes"] == {0: "background", 1: "RV", 2: "MYO", 3: "LV"}
    assert info["channels"] == ["MRI"]
    by_id = {c.name: c for c in cases}
    assert by_id["heart_000"].image == tmp_path / "imagesTr" / "heart_000_0000.nii.gz"
    assert by_id["heart_000"].label == tmp_path / "labelsTr" / "heart_000.nii.gz"
    assert by_id["heart_003"].label is None  # imagesTs: unlabeled
    assert by_id["heart_003"].image.parent.name == "imagesTs"


def test_nnunet_missing_label_names_the_file(tmp_path, mri_make):
    mri_make.make_nnunet(tmp_path)
    (tmp_path / "labelsTr" / "heart_001.nii.gz").unlink()
    with pytest.raises(InputError) as err:
        list_cases(tmp_path)
    assert err.value.path == str(tmp_path / "labelsTr" / "heart_001.nii.gz")


def test_nnunet_v1_and_region_labels(tmp_path, mri_make):
    mri_make.make_nnunet(tmp_path)
    dj = json.loads((tmp_path / "dataset.json").read_text())
    dj["labels"] = {"0": "background", "1": "RV", "2": "MYO", "3": "LV"}
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    assert list_cases(tmp_path)[1]["classes"] == ACDC_CLASSES
    dj["labels"] = {"background": 0, "heart": [1, 2, 3]}
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    with pytest.raises(InputError, match="region-based") as err:
        list_cases(tmp_path)
    assert err.value.path == str(tmp_path / "dataset.json")


def test_msd_pairs_test_list_and_hidden_files(tmp_path, mri_make):
    mri_make.make_msd(tmp_path, n_train=2, n_test=1)
    assert (tmp_path / "imagesTr" / "._la_003.nii.gz").exists()
    cases, info = list_cases(tmp_path)
    assert [(c.name, c.label is not None) for c in cases] == [("la_003", True), ("la_004", True), ("la_005", False)]
    assert cases[0].label == tmp_path / "labelsTr" / "la_003.nii.gz"
    assert info["classes"] == ACDC_CLASSES and info["channel_in_file"] is False


def test_msd_multimodal_channel(tmp_path, mri_make):
    mri_make.make_msd(tmp_path, modalities=2)
    _, info = list_cases(tmp_path, channel=1)
    assert info["channels"] == ["MR0", "MR1"] and info["channel_in_file"] is True
    with pytest.raises(InputError, match="channel 2"):
        list_cases(tmp_path, channel=2)


def test_acdc_frames_are_cases_of_one_patient(tmp_path, mri_make):
    mri_make.make_acdc(tmp_path, n_patients=2)
    cases, info = list_cases(tmp_path)
    assert [(c.name, c.subject) for c in cases] == [
        ("patient001_frame01", "patient001"),
        ("patient001_frame12", "patient001"),
        ("patient002_frame01", "patient002"),
        ("patient002_frame12", "patient002"),
    ]
    assert all(c.label is not None and c.label.name == f"{c.name}_gt.nii.gz" for c in cases)
    assert not any("4d" in c.image.name for c in cases)
    assert info["classes"] == ACDC_CLASSES


def test_plain_labels_beside_or_in_labels_folder(tmp_path, mri_make):
    mri_make.make_plain(tmp_path)
    cases, info = list_cases(tmp_path)
    by_id = {c.name: c for c in cases}
    assert by_id["a"].label == tmp_path / "labels" / "a.nii.gz"
    assert by_id["b"].image == tmp_path / "b.nii" and by_id["b"].label == tmp_path / "b_seg.nii.gz"
    assert by_id["c"].label is None
    # no classes.json: names from the label values found
    assert info["classes"] == {0: "background", 1: "class_1", 2: "class_2", 3: "class_3"}


def test_plain_classes_json_and_images_subfolder(tmp_path, mri_make):
    mri_make.make_plain(tmp_path / "ds" / "images", classes_json=False)
    (tmp_path / "ds" / "images" / "labels").rename(tmp_path / "ds" / "labels")  # sibling labels/
    (tmp_path / "ds" / "classes.json").write_text(json.dumps(["background", "RV", "MYO", "LV"]))
    cases, info = list_cases(tmp_path / "ds")
    assert info["classes"] == ACDC_CLASSES
    assert {c.name: c.label for c in cases}["a"] == tmp_path / "ds" / "labels" / "a.nii.gz"


def test_plain_single_file(tmp_path, nibabel_data):
    cases, info = list_cases(nibabel_data / "anatomical.nii")
    assert [(c.name, c.label) for c in cases] == [("anatomical", None)]
    assert info["classes"] == {0: "background"}


def test_layout_override(tmp_path, mri_make):
    # plain images beside an ACDC patient folder: auto picks acdc, the override reads the files
    mri_make.make_acdc(tmp_path, n_patients=1)
    (tmp_path / "training" / "patient001").rename(tmp_path / "patient001")
    mri_make.make_plain(tmp_path)
    assert detect_layout(tmp_path) == "acdc"
    assert [c.name for c in list_cases(tmp_path)[0]] == ["patient001_frame01", "patient001_frame12"]
    assert [c.name for c in list_cases(tmp_path, layout="plain")[0]] == ["a", "b", "c"]
    with pytest.raises(InputError, match="unknown layout 'bids'"):
        list_cases(tmp_path, layout="bids")
    with pytest.raises(InputError, match="needs a dataset.json") as err:
        list_cases(tmp_path, layout="msd")
    assert err.value.path == str(tmp_path)


def test_empty_folder_names_folder_and_layouts(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(InputError) as err:
        list_cases(tmp_path / "raw")
    assert err.value.path == str(tmp_path / "raw")
    assert "empty" in err.value.problem
    for name in ("nnunet", "msd", "acdc", "plain"):
        assert name in err.value.problem


def test_unrecognised_folder_names_folder_and_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "scans").mkdir()
    np.save(tmp_path / "volume.npy", np.zeros(3))
    with pytest.raises(InputError) as err:
        detect_layout(tmp_path)
    assert err.value.path == str(tmp_path)
    assert "no recognised dataset layout" in err.value.problem and "notes.txt" in err.value.problem
    assert all(name in err.value.problem for name in ("nnunet", "msd", "acdc", "plain"))


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="does not exist") as err:
        list_cases(tmp_path / "nowhere")
    assert err.value.path == str(tmp_path / "nowhere")
    with pytest.raises(InputError, match="does not exist"):
        list_cases(Path(tmp_path / "nowhere"), layout="plain")
