"""The real ACDC layout (tests/data/acdc/make.py): Info.cfg, ED/ES frames, the reference split, bad inputs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli import main as medseg
from medseg.layouts import list_cases, read_info_cfg
from medseg.preprocess import preprocess
from segcore.errors import InputError
from segcore.prepared import PreparedData

from .conftest import leftovers


@pytest.fixture(scope="module")
def acdc(tmp_path_factory, acdc_make) -> tuple[Path, dict[str, list[str]]]:
    folder = tmp_path_factory.mktemp("acdc") / "database"
    return folder, acdc_make.make_acdc(folder, n_train=4, n_test=2, seed=0)


def test_generator_writes_the_acdc_layout(acdc, acdc_make):
    folder, patients = acdc
    assert sorted(p.name for p in (folder / "training").iterdir()) == [
        "patient001",
        "patient002",
        "patient003",
        "patient004",
    ]
    assert sorted(p.name for p in (folder / "testing").iterdir()) == ["patient101", "patient102"]
    pdir = folder / "training" / "patient002"
    info = read_info_cfg(pdir / "Info.cfg")
    assert list(info) == ["ED", "ES", "Group", "Height", "NbFrame", "Weight"] and info["Group"] in acdc_make.GROUPS
    assert info["ED"] == 1 and 1 < info["ES"] <= info["NbFrame"] and isinstance(info["Height"], float)
    assert patients["patient002"] == ["patient002_frame01", f"patient002_frame{info['ES']:02d}"]
    cine = nib.load(pdir / "patient002_4d.nii.gz")
    assert cine.shape == (*acdc_make.SHAPE, info["NbFrame"])
    for t in (info["ED"], info["ES"]):
        frame = nib.load(pdir / f"patient002_frame{t:02d}.nii.gz")
        gt = np.asarray(nib.load(pdir / f"patient002_frame{t:02d}_gt.nii.gz").dataobj)
        np.testing.assert_array_equal(
            np.asarray(frame.dataobj), np.asarray(cine.dataobj)[..., t - 1]
        )  # frames are the cine's
        np.testing.assert_allclose(frame.affine, acdc_make.affine())
        assert set(np.unique(gt).tolist()) == {0, 1, 2, 3}
    # the LV contracts from ED to ES
    lv = [
        int((np.asarray(nib.load(pdir / f"patient002_frame{t:02d}_gt.nii.gz").dataobj) == 3).sum())
        for t in (info["ED"], info["ES"])
    ]
    assert lv[1] < 0.8 * lv[0]
    # seeded: the same call writes the same voxels
    again = acdc_make.make_acdc(folder.parent / "again", n_train=2, n_test=0, seed=0)
    assert again == {k: patients[k] for k in ("patient001", "patient002")}
    for name in ("patient002_frame01_gt.nii.gz", "patient002_4d.nii.gz"):
        a = np.asarray(nib.load(pdir / name).dataobj)
        np.testing.assert_array_equal(
            a, np.asarray(nib.load(folder.parent / "again" / "training" / "patient002" / name).dataobj)
        )


def test_acdc_cases_come_from_info_cfg(acdc):
    folder, patients = acdc
    cases, info = list_cases(folder)
    assert info["layout"] == "acdc" and info["subject_key"] == "ACDC patient folder"
    assert [c.name for c in cases] == sorted(c for names in patients.values() for c in names)
    assert all(c.subject == c.name[:10] and c.label == c.image.with_name(f"{c.name}_gt.nii.gz") for c in cases)
    ed, es = (c for c in cases if c.subject == "patient003")
    assert ed.meta["phase"] == "ED" and es.meta["phase"] == "ES" and es.meta["frame"] == int(es.name[-2:])
    assert set(ed.meta) == {"phase", "frame", "Group", "Height", "NbFrame", "Weight"}


def test_acdc_preprocess_records_phase_and_keeps_patients_together(acdc, tmp_path):
    folder, patients = acdc
    preprocess(folder, tmp_path / "p", image_size=(32, 32), n_test=2, n_val=1, n_labeled="all", seed=1)
    m = PreparedData(tmp_path / "p").manifest
    assert {k: len(v) for k, v in m["subject_splits"].items()} == {"test": 2, "val": 1, "labeled": 3, "unlabeled": 0}
    for patient, names in patients.items():
        assert {m["groups"][n]["split"] for n in names} == {m["subjects"][patient]["split"]}
        assert [m["groups"][n]["info"]["phase"] for n in names] == ["ED", "ES"]


def test_acdc_reference_split_by_number(tmp_path, acdc_make):
    """The reference protocol names test and validation patients: 007-010 ... and 011, 071."""
    acdc_make.make_acdc(tmp_path / "raw", n_train=12, n_test=0, with_4d=False)
    preprocess(
        tmp_path / "raw",
        tmp_path / "p",
        image_size=(32, 32),
        n_labeled="all",
        test_subjects=["7", "8", "9", "10"],
        val_subjects=["011"],
    )
    m = PreparedData(tmp_path / "p").manifest
    assert m["subject_splits"]["test"] == ["patient007", "patient008", "patient009", "patient010"]
    assert m["subject_splits"]["val"] == ["patient011"] and len(m["subject_splits"]["labeled"]) == 7
    assert len(m["splits"]["test"]) == 8  # ED and ES of each


def _drop_info(folder: Path) -> Path:
    path = folder / "training" / "patient002" / "Info.cfg"
    path.unlink()
    return path


def _drop_gt(folder: Path) -> Path:
    path = next((folder / "training" / "patient003").glob("*_frame01_gt.nii.gz"))
    path.unlink()
    return path


def _drop_es_frame(folder: Path) -> Path:
    info = read_info_cfg(folder / "testing" / "patient101" / "Info.cfg")
    path = folder / "testing" / "patient101" / f"patient101_frame{info['ES']:02d}.nii.gz"
    path.unlink()
    return path


def _info_without_es(folder: Path) -> Path:
    path = folder / "training" / "patient001" / "Info.cfg"
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("ES")))
    return path


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (_drop_info, "Info.cfg does not exist; every ACDC patient folder needs one"),
        (_drop_gt, "ground truth of the ED frame 1 does not exist"),
        (_drop_es_frame, r"ES frame \d+ does not exist"),
        (_info_without_es, "needs 'ES: <frame number >= 1>', found None"),
    ],
)
def test_bad_acdc_patient_is_a_clear_error(tmp_path, acdc_make, capsys, break_it, problem):
    acdc_make.make_acdc(tmp_path / "raw", n_train=3, n_test=1, with_4d=False)
    bad = break_it(tmp_path / "raw")
    out = tmp_path / "prepared"
    code = medseg(
        [
            "preprocess",
            "--input",
            str(tmp_path / "raw"),
            "--out",
            str(out),
            "--n-test",
            "1",
            "--n-val",
            "0",
            "--image-size",
            "32",
            "32",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and leftovers(out) == []
    assert err.startswith(f"error: {bad}: ") and len(err.splitlines()) == 1, err
    with pytest.raises(InputError, match=problem) as caught:
        list_cases(tmp_path / "raw")
    assert caught.value.path == str(bad)
