"""Small, seeded ACDC-like datasets in the real ACDC layout and in nnU-Net's conversion of it.

ACDC (Bernard et al., IEEE TMI 2018) ships one folder per patient::

    training/patient001/Info.cfg                     ED: 1, ES: 12, Group: DCM, Height, NbFrame, Weight
    training/patient001/patient001_4d.nii.gz         the cine, (X, Y, Z, NbFrame)
    training/patient001/patient001_frame01.nii.gz    the end-diastolic (ED) frame
    training/patient001/patient001_frame01_gt.nii.gz labels 0 background, 1 RV, 2 MYO, 3 LV
    training/patient001/patient001_frame12.nii.gz    the end-systolic (ES) frame (+ _gt)
    testing/patient101/...                           the same for the 50 test patients

nnU-Net's ``Dataset027_ACDC`` conversion copies every frame of a training patient to
``imagesTr/patientNNN_frameYY_0000.nii.gz`` with its label in ``labelsTr/patientNNN_frameYY.nii.gz``,
the test patients' frames to ``imagesTs/`` (no labels), writes a ``dataset.json`` and a
``splits_final.json`` whose folds keep the frames of one patient together.

Everything here is generated: a short-axis heart (LV cavity, myocardial ring, RV crescent)
whose LV contracts over the cardiac cycle, int16 intensities with noise, 1.5 x 1.5 x 10 mm
voxels. Same arguments, same files. Run as a script to write both layouts under a folder:
``python make.py OUT``. ``shape``, ``spacing`` and ``scale`` (the heart's size in voxels, as a
multiple of the default) give volumes at ACDC's real size for benchmarks, e.g.
``make_acdc(out, 100, 0, shape=(216, 256, 10), spacing=(1.5625, 1.5625, 10.0), scale=4.0)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (24, 22, 6)  # (X, Y, Z) voxels: small enough for tests, room for the heart
SPACING = (1.5, 1.5, 10.0)  # mm, ACDC-like: fine in-plane, thick slices
GROUPS = ("NOR", "MINF", "DCM", "HCM", "RV")  # the five ACDC diagnostic groups
NNUNET_LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}  # as nnU-Net's conversion names them


def affine(
    origin: tuple[float, float, float] = (-18.0, 16.0, -25.0), spacing: tuple[float, float, float] = SPACING
) -> np.ndarray:
    """4x4 voxel-to-world matrix with ``spacing`` (default :data:`SPACING`) and a non-zero origin (mm)."""
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def heart(
    rng: np.random.Generator,
    contraction: float,
    centre: tuple[float, float],
    radius: float,
    shape: tuple[int, int, int] = SHAPE,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (image int16, labels uint8), both ``shape``.

    ``contraction`` in [0, 1] scales the LV cavity from ``radius`` (0, diastole) down to 60 %
    (1, systole) while the myocardium thickens; the heart narrows towards the apex (last axis).
    ``scale`` multiplies the myocardium's and the RV's sizes (in voxels).
    """
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    labels = np.zeros(shape, dtype=np.uint8)
    cavity = radius * (1.0 - 0.4 * contraction)
    outer = np.sqrt(cavity**2 + (radius + 2.0 * scale) ** 2 - radius**2)  # constant myocardial area
    for z in range(shape[2]):
        taper = 1.0 - z / (shape[2] + 2)
        r = np.hypot(x - centre[0], y - centre[1])
        rv_centre = np.hypot(x - centre[0] + outer * taper + 1.5 * scale, y - centre[1])
        rv = (rv_centre < 3.0 * scale * taper * (1 - 0.3 * contraction)) & (r >= outer * taper)
        labels[..., z][rv & (z < shape[2] - 1)] = 1
        labels[..., z][r < outer * taper] = 2
        labels[..., z][r < cavity * taper] = 3
    levels = np.array([120.0, 520.0, 260.0, 560.0])  # background, RV blood, myocardium, LV blood
    image = levels[labels] + 25.0 * rng.standard_normal(shape)
    return np.clip(image, 0, None).astype(np.int16), labels


def info_cfg(ed: int, es: int, group: str, height: float, n_frames: int, weight: float) -> str:
    """The text of an ACDC ``Info.cfg`` (keys in ACDC's order)."""
    return f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: {height:.1f}\nNbFrame: {n_frames}\nWeight: {weight:.1f}\n"


def save(data: np.ndarray, path: Path, dtype: type = np.int16, spacing: tuple[float, float, float] = SPACING) -> Path:
    """Write ``data`` as NIfTI with :func:`affine` (sform and qform set, mm units)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    a = affine(spacing=spacing)
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), a)
    img.set_qform(a, code=1)
    img.set_sform(a, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path


def write_patient(
    pdir: Path,
    seed: int,
    with_4d: bool = True,
    shape: tuple[int, int, int] = SHAPE,
    spacing: tuple[float, float, float] = SPACING,
    scale: float = 1.0,
) -> dict[str, object]:
    """One ACDC patient folder ``pdir`` (named ``patientNNN``); returns its Info.cfg values.

    The cine has ``NbFrame`` frames (8-12); ED is frame 1, ES the most contracted frame
    (between 40 and 60 % of the cycle). ``patientNNN_frameYY[_gt].nii.gz`` are the ED and ES
    frames of the cine, as in ACDC.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xACDC]))
    n_frames = int(rng.integers(8, 13))
    es = int(rng.integers(round(0.4 * n_frames), round(0.6 * n_frames) + 1)) + 1  # 1-based
    centre = (shape[0] / 2 + scale * rng.uniform(-1.5, 1.5), shape[1] / 2 + scale * rng.uniform(-1.5, 1.5))
    radius = float(rng.uniform(3.5, 5.0)) * scale
    frames, labels = [], []
    for t in range(1, n_frames + 1):
        # contraction follows the cycle: 0 at ED (t = 1), 1 at ES, back towards 0 at the end
        phase = (t - 1) / (es - 1) if t <= es else 1 - (t - es) / (n_frames - es + 1)
        image, lab = heart(rng, float(np.sin(np.pi / 2 * phase) ** 2), centre, radius, shape, scale)
        frames.append(image)
        labels.append(lab)
    name = pdir.name
    info = {
        "ED": 1,
        "ES": es,
        "Group": GROUPS[int(rng.integers(len(GROUPS)))],
        "Height": float(rng.uniform(150, 195)),
        "NbFrame": n_frames,
        "Weight": float(rng.uniform(50, 110)),
    }
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "Info.cfg").write_text(
        info_cfg(info["ED"], es, str(info["Group"]), float(info["Height"]), n_frames, float(info["Weight"]))
    )
    if with_4d:
        save(np.stack(frames, axis=-1), pdir / f"{name}_4d.nii.gz", spacing=spacing)
    for t in (1, es):
        save(frames[t - 1], pdir / f"{name}_frame{t:02d}.nii.gz", spacing=spacing)
        save(labels[t - 1], pdir / f"{name}_frame{t:02d}_gt.nii.gz", dtype=np.uint8, spacing=spacing)
    return info


def make_acdc(
    folder: str | Path,
    n_train: int = 4,
    n_test: int = 2,
    seed: int = 0,
    with_4d: bool = True,
    shape: tuple[int, int, int] = SHAPE,
    spacing: tuple[float, float, float] = SPACING,
    scale: float = 1.0,
) -> dict[str, list[str]]:
    """ACDC layout: ``training/patient001..`` and ``testing/patient101..``; returns
    ``{patient: [case ids (ED, ES)]}``. ``shape``, ``spacing``, ``scale``: see the module docstring."""
    folder = Path(folder)
    cases: dict[str, list[str]] = {}
    numbers = [("training", p) for p in range(1, n_train + 1)] + [("testing", 100 + p) for p in range(1, n_test + 1)]
    for part, number in numbers:
        name = f"patient{number:03d}"
        info = write_patient(folder / part / name, seed * 1000 + number, with_4d, shape, spacing, scale)
        cases[name] = [f"{name}_frame{t:02d}" for t in (info["ED"], info["ES"])]
    return cases


def nnunet_splits(patients: dict[str, list[str]], seed: int = 1234, folds: int = 5) -> list[dict[str, list[str]]]:
    """Folds as nnU-Net's ``create_ACDC_split`` builds them: shuffled patients, fold ``k``
    validates on patients ``k, k + folds, ...``; every frame of a patient on one side."""
    names = np.array(sorted(patients))
    np.random.RandomState(seed).shuffle(names)
    splits = []
    for k in range(min(folds, len(names))):
        val = set(names[k::folds].tolist())
        splits.append(
            {
                "train": [c for p in sorted(patients) if p not in val for c in patients[p]],
                "val": [c for p in sorted(patients) if p in val for c in patients[p]],
            }
        )
    return splits


def make_acdc_nnunet(
    folder: str | Path, n_train: int = 6, n_test: int = 2, seed: int = 0, splits_final: bool = True
) -> dict[str, list[str]]:
    """What nnU-Net's ``Dataset027_ACDC`` conversion makes of :func:`make_acdc`'s data:
    ``imagesTr/patientNNN_frameYY_0000.nii.gz``, ``labelsTr/patientNNN_frameYY.nii.gz``,
    ``imagesTs/`` (the test patients, unlabeled), ``dataset.json`` and, with ``splits_final``,
    ``splits_final.json`` beside them (nnU-Net writes it to its preprocessed folder; users copy
    it). Returns ``{patient: [case ids]}`` of all patients, test patients included."""
    folder = Path(folder)
    source = folder.parent / f".{folder.name}-acdc-source"
    patients = make_acdc(source, n_train, n_test, seed, with_4d=False)
    train: dict[str, list[str]] = {}
    for pdir in sorted(source.glob("*/patient*")):
        for case in patients[pdir.name]:
            image = nib.load(pdir / f"{case}.nii.gz")
            if pdir.parent.name == "training":
                nib.save(image, _mkparent(folder / "imagesTr" / f"{case}_0000.nii.gz"))
                nib.save(nib.load(pdir / f"{case}_gt.nii.gz"), _mkparent(folder / "labelsTr" / f"{case}.nii.gz"))
                train.setdefault(pdir.name, []).append(case)
            else:
                nib.save(image, _mkparent(folder / "imagesTs" / f"{case}_0000.nii.gz"))
    for path in sorted(source.rglob("*"), reverse=True):  # the ACDC copy was only the conversion's input
        path.unlink() if path.is_file() else path.rmdir()
    source.rmdir()
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "cineMRI"},
                "labels": NNUNET_LABELS,
                "numTraining": sum(len(c) for c in train.values()),
                "file_ending": ".nii.gz",
            },
            indent=4,
        )
    )
    if splits_final:
        (folder / "splits_final.json").write_text(json.dumps(nnunet_splits(train), indent=4))
    return patients


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "acdc_out")
    print("acdc", make_acdc(out / "acdc"))
    print("nnunet", make_acdc_nnunet(out / "Dataset027_ACDC"))
