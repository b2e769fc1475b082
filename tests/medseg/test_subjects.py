"""Subjects in every MRI layout: keys, subject-level splits, fixed lists, split files, unlabeled volumes."""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from medseg.cli import main as medseg
from medseg.layouts import list_cases
from medseg.preprocess import preprocess
from medseg.splits import read_names, split_subjects
from segcore.errors import InputError
from segcore.prepared import PreparedData

from .conftest import leftovers

SMALL = {"image_size": (32, 32)}


def splits_of_subjects(folder: Path) -> dict[str, set[str]]:
    """{subject: {splits of its volumes}} from a prepared folder's groups."""
    found: dict[str, set[str]] = defaultdict(set)
    for group in PreparedData(folder).manifest["groups"].values():
        found[group["subject"]].add(group["split"])
    return dict(found)


@pytest.fixture(scope="module")
def nnunet_acdc(tmp_path_factory, acdc_make) -> tuple[Path, dict[str, list[str]]]:
    """nnU-Net's ACDC conversion: 6 training patients x 2 frames, 2 test patients in imagesTs."""
    folder = tmp_path_factory.mktemp("nnunet") / "Dataset027_ACDC"
    return folder, acdc_make.make_acdc_nnunet(folder, n_train=6, n_test=2, seed=0)


def test_nnunet_acdc_conversion_groups_frames_by_patient(nnunet_acdc):
    folder, patients = nnunet_acdc
    cases, info = list_cases(folder)
    assert info["layout"] == "nnunet" and "patientNNN prefix" in info["subject_key"]
    assert {c.name: c.subject for c in cases} == {case: p for p, names in patients.items() for case in names}
    assert {c.subject for c in cases if c.label is None} == {"patient101", "patient102"}  # imagesTs
    assert all(c.image.parent.name == "imagesTs" for c in cases if c.label is None)


@pytest.mark.parametrize("seed", range(6))
def test_nnunet_acdc_no_subject_in_two_splits(nnunet_acdc, tmp_path, seed, caplog):
    folder, patients = nnunet_acdc
    with caplog.at_level(logging.INFO):
        preprocess(folder, tmp_path / "p", n_test=2, n_val=1, n_labeled=2, seed=seed, **SMALL)
    m = PreparedData(tmp_path / "p").manifest
    assert all(len(s) == 1 for s in splits_of_subjects(tmp_path / "p").values())
    assert {k: len(v) for k, v in m["subject_splits"].items()} == {"test": 2, "val": 1, "labeled": 2, "unlabeled": 3}
    # every split lists all frames of its subjects
    for split, subjects in m["subject_splits"].items():
        assert sorted(m["splits"][split]) == sorted(c for s in subjects for c in patients[s])
        assert all(m["subjects"][s]["split"] == split and m["subjects"][s]["cases"] == patients[s] for s in subjects)
    # imagesTs: unlabeled pretraining data only, and said so in the manifest and the log
    assert {"patient101", "patient102"} <= set(m["subject_splits"]["unlabeled"])
    assert m["unlabeled_only"]["cases"] == patients["patient101"] + patients["patient102"]
    assert "only as unlabeled pretraining data" in m["unlabeled_only"]["note"]
    assert "4 volumes without labels (in imagesTs) are used only as unlabeled pretraining data" in caplog.text
    assert "splits_final.json could fix the test split: add --splits-from" in caplog.text


def test_main_before_this_change_split_frames(nnunet_acdc, tmp_path, monkeypatch):
    """What main did: every frame its own subject. With that key the same folder splits a
    patient's frames across splits (the bug of issue 21); the pattern '(.*)' reproduces it."""
    folder, _ = nnunet_acdc
    preprocess(folder, tmp_path / "p", n_test=2, n_val=1, n_labeled=2, seed=0, subject_pattern="(.*)", **SMALL)
    by_patient: dict[str, set[str]] = defaultdict(set)
    for name, group in PreparedData(tmp_path / "p").manifest["groups"].items():
        by_patient[name[:10]].add(group["split"])
    assert any(len(s) > 1 for s in by_patient.values())


def test_unlabeled_volume_of_a_labeled_subject_is_left_out(nnunet_acdc, tmp_path, caplog):
    """A patient with one labeled and one unlabeled frame: in test, val or the pool only its
    labeled frame is kept (the other is 'excluded'); in the unlabeled pool both are."""
    src, patients = nnunet_acdc
    folder = tmp_path / "raw"
    shutil.copytree(src, folder)
    moved = patients["patient001"][1]
    (folder / "imagesTr" / f"{moved}_0000.nii.gz").rename(folder / "imagesTs" / f"{moved}_0000.nii.gz")
    (folder / "labelsTr" / f"{moved}.nii.gz").unlink()
    with caplog.at_level(logging.WARNING):
        preprocess(folder, tmp_path / "p", n_test=0, n_val=0, n_labeled=0, test_subjects=["patient001"], **SMALL)
    m = PreparedData(tmp_path / "p").manifest
    assert m["subject_splits"]["test"] == ["patient001"] and m["splits"]["test"] == [patients["patient001"][0]]
    assert list(m["excluded"]) == [moved] and "test split" in m["excluded"][moved] and moved not in m["groups"]
    assert "left out" in caplog.text
    preprocess(folder, tmp_path / "q", n_test=1, n_val=0, n_labeled=0, test_subjects=["patient002"], **SMALL)
    q = PreparedData(tmp_path / "q").manifest
    assert (
        q["subjects"]["patient001"] == {"split": "unlabeled", "cases": patients["patient001"]} and q["excluded"] == {}
    )


def test_msd_and_plain_recognise_patient_prefix(tmp_path, acdc_make):
    patients = acdc_make.make_acdc(tmp_path / "acdc", n_train=3, n_test=0, with_4d=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    for path in sorted((tmp_path / "acdc").rglob("*.nii.gz")):
        shutil.copy(path, plain / path.name)  # patientNNN_frameYY.nii.gz + ..._gt.nii.gz beside
    cases, info = list_cases(plain)
    assert info["layout"] == "plain" and {c.name: c.subject for c in cases} == {
        f: p for p, fs in patients.items() for f in fs
    }
    assert all(c.label is not None for c in cases)

    msd = tmp_path / "msd"
    training = []
    for path in sorted(plain.glob("*_frame??.nii.gz")):
        stem = path.name[: -len(".nii.gz")]
        shutil.copy(path, _mk(msd / "imagesTr") / path.name)
        shutil.copy(plain / f"{stem}_gt.nii.gz", _mk(msd / "labelsTr") / path.name)
        training.append({"image": f"./imagesTr/{path.name}", "label": f"./labelsTr/{path.name}"})
    (msd / "dataset.json").write_text(
        json.dumps(
            {
                "name": "ACDC",
                "modality": {"0": "MRI"},
                "labels": {"0": "background", "1": "RV", "2": "MYO", "3": "LV"},
                "training": training,
                "test": [],
            }
        )
    )
    cases, info = list_cases(msd)
    assert info["layout"] == "msd" and {c.subject for c in cases} == set(patients)
    preprocess(msd, tmp_path / "p", n_test=1, n_val=1, n_labeled=1, seed=3, **SMALL)
    assert splits_of_subjects(tmp_path / "p") == {
        p: {s} for p, s in PreparedData(tmp_path / "p").subject_split().items()
    }
    assert all(len(v) == 1 for v in splits_of_subjects(tmp_path / "p").values())


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_plain_folder_with_subject_csv(tmp_path, mri_make):
    mri_make.make_plain(tmp_path / "raw")  # a (labeled), b (labeled), c (no label)
    (tmp_path / "subjects.csv").write_text("case,subject\na,sub-01\nb,sub-01\nc,sub-02\nzz,sub-09\n")
    cases, info = list_cases(tmp_path / "raw", subject_csv=tmp_path / "subjects.csv")
    assert {c.name: c.subject for c in cases} == {"a": "sub-01", "b": "sub-01", "c": "sub-02"}
    assert info["subject_key"] == f"CSV {tmp_path / 'subjects.csv'} (columns case,subject)"
    preprocess(
        tmp_path / "raw", tmp_path / "p", n_test=1, n_val=0, n_labeled=0, subject_csv=tmp_path / "subjects.csv", **SMALL
    )
    m = PreparedData(tmp_path / "p").manifest
    assert m["subject_splits"] == {"test": ["sub-01"], "val": [], "labeled": [], "unlabeled": ["sub-02"]}
    assert m["splits"]["test"] == ["a", "b"] and m["groups"]["a"]["subject"] == m["groups"]["b"]["subject"] == "sub-01"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("case,subject\na,s1\nb,s1\n", "no subject for case 'c'"),
        ("name,person\na,s1\n", "needs the columns 'case' and 'subject'"),
        ("case,subject\na,s1\na,s2\nb,s1\nc,s3\n", "case 'a' is given two subjects"),
    ],
)
def test_subject_csv_errors(tmp_path, mri_make, text, problem):
    mri_make.make_plain(tmp_path / "raw")
    (tmp_path / "subjects.csv").write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        preprocess(
            tmp_path / "raw",
            tmp_path / "p",
            n_test=0,
            n_val=0,
            n_labeled="all",
            subject_csv=tmp_path / "subjects.csv",
            **SMALL,
        )
    assert err.value.path == str(tmp_path / "subjects.csv")
    assert leftovers(tmp_path / "p") == []


def test_subject_pattern_groups_cases(tmp_path, mri_make):
    mri_make.make_nnunet(tmp_path / "raw", n_train=3, n_test=1)  # heart_000 .. heart_003
    cases, info = list_cases(tmp_path / "raw", subject_pattern=r"heart_\d\d(\d)")
    assert {c.name: c.subject for c in cases} == {
        "heart_000": "0",
        "heart_001": "1",
        "heart_002": "2",
        "heart_003": "3",
    }
    assert info["subject_key"] == r"pattern 'heart_\d\d(\d)' (first group) on the case names"
    # a case the pattern misses, or matches without its first group, is an error naming its file
    for pattern in (r"heart_00([01])", r"(heart)_00[01]|(heart_\d+)"):
        with pytest.raises(
            InputError, match="does not match the case name 'heart_002'.*it misses 2 of the 4 cases"
        ) as err:
            list_cases(tmp_path / "raw", subject_pattern=pattern)
        assert err.value.path == str(tmp_path / "raw" / "imagesTr" / "heart_002_0000.nii.gz")


def test_subject_pattern_that_matches_nothing_is_a_clear_error(tmp_path, acdc_make, capsys):
    acdc_make.make_acdc_nnunet(tmp_path / "raw", n_train=2, n_test=1)
    out = tmp_path / "p"
    code = medseg(
        [
            "preprocess",
            "--input",
            str(tmp_path / "raw"),
            "--out",
            str(out),
            "--n-test",
            "0",
            "--n-val",
            "0",
            "--subject-pattern",
            r"sub-(\d+)",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and leftovers(out) == []
    first = tmp_path / "raw" / "imagesTr" / "patient001_frame01_0000.nii.gz"
    assert err == (
        f"error: {first}: --subject-pattern 'sub-(\\d+)' does not match the case name 'patient001_frame01' of "
        "this file "
        f"(it matches none of the 6 cases; the first group must match a non-empty subject)"
    )
    assert len(err.splitlines()) == 1
    for bad, problem in ((r"sub-\d+", "has no group"), ("patient(", "is not a valid regular expression")):
        with pytest.raises(InputError, match=problem):
            list_cases(tmp_path / "raw", subject_pattern=bad)


def test_fixed_test_and_val_subjects(tmp_path, acdc_make):
    acdc_make.make_acdc(tmp_path / "raw", n_train=8, n_test=0, with_4d=False)
    (tmp_path / "test.txt").write_text("# reference-style list\npatient007, patient008\n")
    preprocess(
        tmp_path / "raw",
        tmp_path / "p",
        n_test=5,
        n_val=5,
        n_labeled="all",
        test_subjects=[str(tmp_path / "test.txt"), "3"],
        val_subjects=["patient001"],
        **SMALL,
    )
    m = PreparedData(tmp_path / "p").manifest
    assert m["subject_splits"]["test"] == ["patient003", "patient007", "patient008"] and m["subject_splits"]["val"] == [
        "patient001"
    ]
    assert sorted(m["subject_splits"]["labeled"]) == ["patient002", "patient004", "patient005", "patient006"]
    assert m["split_source"] == {"seed": 0, "test": "fixed list", "val": "fixed list"}
    for values, problem in ((["patient042"], "unknown subject 'patient042'"), (["patient001", "1"], "named twice")):
        with pytest.raises(InputError, match=problem) as err:
            preprocess(tmp_path / "raw", tmp_path / "q", n_test=0, n_val=0, test_subjects=values, **SMALL)
        assert err.value.path == str(tmp_path / "raw") and "--test-subjects" in err.value.problem
    with pytest.raises(InputError, match="both a test and a validation subject"):
        preprocess(tmp_path / "raw", tmp_path / "q", test_subjects=["2"], val_subjects=["2"], **SMALL)
    assert leftovers(tmp_path / "q") == []


def test_fixed_subject_without_labels_is_an_error(nnunet_acdc, tmp_path):
    folder, _ = nnunet_acdc
    with pytest.raises(InputError, match="subject 'patient101' has no labeled volume"):
        preprocess(folder, tmp_path / "p", test_subjects=["patient101"], **SMALL)


def test_splits_from_nnunet_splits_final(nnunet_acdc, tmp_path):
    folder, patients = nnunet_acdc
    folds = json.loads((folder / "splits_final.json").read_text())
    for fold in (0, 2):
        preprocess(
            folder,
            tmp_path / f"f{fold}",
            n_test=3,
            n_val=1,
            n_labeled="all",
            splits_from=folder / "splits_final.json",
            splits_fold=fold,
            **SMALL,
        )
        m = PreparedData(tmp_path / f"f{fold}").manifest
        assert sorted(m["splits"]["test"]) == sorted(folds[fold]["val"])
        assert m["split_source"]["test"].endswith(
            f"fold {fold}: its {len(m['subject_splits']['test'])} validation subjects are the test split"
        )
        assert len(m["subject_splits"]["val"]) == 1 and len(m["subject_splits"]["labeled"]) == 6 - 1 - len(
            m["subject_splits"]["test"]
        )
    with pytest.raises(InputError, match="has folds 0-4; --splits-fold 5"):
        preprocess(folder, tmp_path / "x", splits_from=folder / "splits_final.json", splits_fold=5, **SMALL)
    # nnU-Net's default splits (random over cases) cut patients apart: refused
    bad = [{"train": folds[0]["train"][1:], "val": folds[0]["val"] + folds[0]["train"][:1]}]
    (tmp_path / "splits_final.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="puts volumes of subject 'patient00.' in both train and val") as err:
        preprocess(folder, tmp_path / "x", splits_from=tmp_path / "splits_final.json", **SMALL)
    assert err.value.path == str(tmp_path / "splits_final.json") and leftovers(tmp_path / "x") == []
    with pytest.raises(InputError, match="give one of them"):
        preprocess(folder, tmp_path / "x", splits_from=folder / "splits_final.json", test_subjects=["1"], **SMALL)


def test_splits_from_dataset_json_test_list(tmp_path, mri_make):
    mri_make.make_msd(
        tmp_path / "raw", n_train=3, n_test=1
    )  # la_003..la_005 + la_006: the Decathlon's test list, unlabeled
    with pytest.raises(InputError, match="names only cases without labels") as err:
        preprocess(tmp_path / "raw", tmp_path / "p", splits_from=tmp_path / "raw" / "dataset.json", **SMALL)
    assert err.value.path == str(tmp_path / "raw" / "dataset.json")
    dj = json.loads((tmp_path / "raw" / "dataset.json").read_text())
    # a test list whose entries carry labels: those cases are labeled, and --splits-from tests them
    dj["training"] = [e for e in dj["training"] if "la_004" not in e["image"]]
    dj["test"] = [{"image": "./imagesTr/la_004.nii.gz", "label": "./labelsTr/la_004.nii.gz"}, *dj["test"]]
    (tmp_path / "raw" / "dataset.json").write_text(json.dumps(dj))
    preprocess(
        tmp_path / "raw",
        tmp_path / "p",
        n_test=2,
        n_val=1,
        n_labeled=1,
        splits_from=tmp_path / "raw" / "dataset.json",
        **SMALL,
    )
    m = PreparedData(tmp_path / "p").manifest
    assert m["subject_splits"]["test"] == ["la_004"] and m["subject_splits"]["unlabeled"] == ["la_006"]


def test_split_subjects_fixed_lists_and_counts():
    ids = [f"s{i:02d}" for i in range(12)]
    drawn = split_subjects(ids, ["u"], 2, 1, 3, seed=4)
    assert drawn == split_subjects(list(reversed(ids)), ["u"], 2, 1, 3, seed=4)
    fixed = split_subjects(ids, ["u"], 99, 1, None, seed=4, test=["s00", "s05"])
    assert (
        fixed["test"] == ["s00", "s05"]
        and len(fixed["val"]) == 1
        and len(fixed["labeled"]) == 9
        and fixed["unlabeled"] == ["u"]
    )
    assert not set(fixed["val"]) & {"s00", "s05"}
    with pytest.raises(ValueError, match="too few labeled subjects: 10 left to draw from"):
        split_subjects(ids, [], 0, 5, 6, seed=0, test=["s00", "s01"])


def test_read_names_from_values_and_files(tmp_path):
    (tmp_path / "val.txt").write_text("patient011\n# a comment\npatient071  # the second\n")
    assert read_names(["patient007", str(tmp_path / "val.txt"), "9"]) == ["patient007", "patient011", "patient071", "9"]
    with pytest.raises(InputError, match="does not exist"):
        read_names([str(tmp_path / "missing.txt")])
