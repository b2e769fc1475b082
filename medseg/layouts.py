"""Raw MRI dataset layouts: detection and listing of cases.

Supported layouts (``layout=`` names):

* ``nnunet``: ``dataset.json`` + ``imagesTr/<case>_0000.nii.gz`` + ``labelsTr/<case>.nii.gz``;
  ``imagesTs/`` cases are listed without labels. Channel ``c`` is the file ``<case>_000c``.
* ``msd`` (Medical Segmentation Decathlon): ``dataset.json`` with ``training`` (image/label
  pairs, paths relative to the folder) and ``test`` lists; image files have no ``_0000``; a
  multi-modal image is one 4D file whose last axis is the channel.
* ``acdc``: ``patientXXX/patientXXX_frameYY.nii.gz`` with ``..._gt.nii.gz`` labels (also under
  ``training/`` and ``testing/``); each frame is one case, ``patientXXX_4d.nii.gz`` is ignored.
* ``plain``: a folder (or ``images/`` inside it, or a single file) of ``*.nii``/``*.nii.gz``;
  labels in ``labels/`` beside the images (same file name) or as ``<name>_seg``/``_label``/
  ``_gt`` files next to them; class names from an optional ``classes.json`` or the label values.

Hidden files (``.*``, e.g. the ``._x.nii.gz`` macOS forks shipped in Decathlon archives) are
ignored everywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.nifti import load_label
from segcore.errors import InputError

LAYOUTS = ("nnunet", "msd", "acdc", "plain")
ACDC_CLASSES = {0: "background", 1: "RV", 2: "MYO", 3: "LV"}
NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIXES = ("_seg", "_label", "_gt")
_LOOKED_FOR = (
    "nnunet (dataset.json + imagesTr/<case>_0000.nii.gz + labelsTr/), "
    "msd (dataset.json with a 'training' list + imagesTr/ + labelsTr/), "
    "acdc (patientXXX/patientXXX_frameYY[_gt].nii.gz), "
    "plain (*.nii / *.nii.gz files, optionally in images/)"
)


@dataclass(frozen=True)
class Case:
    """One volume of a raw dataset.

    ``subject`` is the volume's id (the group id in prepared data); ``patient`` names the
    person it belongs to (equal to ``subject`` except for ACDC, where the ED and ES frames of
    one patient are two cases): splits never separate the volumes of one patient.
    """

    subject: str
    image: Path
    label: Path | None
    patient: str = ""

    def __post_init__(self) -> None:
        if not self.patient:
            object.__setattr__(self, "patient", self.subject)


def _visible(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if not p.name.startswith("."))


def _nifti_stem(path: Path) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in _visible(list(folder.iterdir())) if p.is_file() and _nifti_stem(p) is not None]


def _is_label_name(path: Path) -> bool:
    stem = _nifti_stem(path) or ""
    return any(stem.endswith(s) for s in LABEL_SUFFIXES)


def _read_dataset_json(folder: Path) -> dict[str, Any]:
    path = folder / "dataset.json"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise InputError(path, "dataset.json must be a JSON object")
    return data


def _patient_dirs(folder: Path) -> list[Path]:
    dirs: list[Path] = []
    for parent in (folder, folder / "training", folder / "testing"):
        if parent.is_dir():
            dirs += [p for p in _visible(list(parent.iterdir())) if p.is_dir() and re.fullmatch(r"patient\d+", p.name)]
    return dirs


def _plain_image_dir(folder: Path) -> Path | None:
    if any(not _is_label_name(p) for p in _nifti_files(folder)):
        return folder
    if any(not _is_label_name(p) for p in _nifti_files(folder / "images")):
        return folder / "images"
    return None


def detect_layout(folder: str | Path) -> str:
    """Name of the layout of ``folder`` (one of :data:`LAYOUTS`); InputError if none fits."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "input does not exist")
    if folder.is_file():
        if _nifti_stem(folder) is None:
            raise InputError(folder, "input file is not a NIfTI file (.nii or .nii.gz)")
        return "plain"
    if (folder / "dataset.json").is_file() and (folder / "imagesTr").is_dir():
        ending = str(_read_dataset_json(folder).get("file_ending", ".nii.gz"))
        names = [p.name for p in _visible(list((folder / "imagesTr").iterdir()))]
        numbered = [n for n in names if re.fullmatch(r".+_\d{4}" + re.escape(ending), n)]
        # nnU-Net v1 also has a 'training' list, so the file names on disk decide
        return "nnunet" if names and len(numbered) == len(names) else "msd"
    if _patient_dirs(folder):
        return "acdc"
    if _plain_image_dir(folder) is not None:
        return "plain"
    entries = _visible(list(folder.iterdir()))
    if not entries:
        raise InputError(folder, f"folder is empty; looked for the layouts {_LOOKED_FOR}")
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:8])
    raise InputError(folder, f"no recognised dataset layout (found: {shown}{', ...' if len(entries) > 8 else ''}); looked for {_LOOKED_FOR}")


def _classes_from_mapping(path: Path, labels: Any) -> dict[int, str]:
    """Class names by value from ``{"0": "background"}``, ``{"background": 0}`` or a list."""
    if isinstance(labels, list):
        return {i: str(n) for i, n in enumerate(labels)}
    if not isinstance(labels, dict) or not labels:
        raise InputError(path, "'labels' must be a non-empty mapping of class values and names")
    classes: dict[int, str] = {}
    if all(re.fullmatch(r"\d+", str(k)) for k in labels):
        classes = {int(k): str(v) for k, v in labels.items()}
    else:
        for name, value in labels.items():
            if isinstance(value, (list, tuple)):
                raise InputError(path, f"region-based label '{name}': {value} is not supported; give one value per class")
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(path, f"label '{name}' must map to an integer value, got {value!r}")
            classes[value] = str(name)
    bad = [v for v in classes if not 0 <= v < 255]
    if bad:
        raise InputError(path, f"class values {bad} outside 0..254 (255 is reserved for 'unlabeled')")
    return dict(sorted(classes.items()))


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(path, f"{what} does not exist")
    return path


def _list_nnunet(folder: Path, channel: int) -> tuple[list[Case], dict[str, Any]]:
    dj = _read_dataset_json(folder)
    ending = str(dj.get("file_ending", ".nii.gz"))
    if "labels" not in dj:
        raise InputError(folder / "dataset.json", "has no 'labels' mapping")
    classes = _classes_from_mapping(folder / "dataset.json", dj["labels"])
    names = dj.get("channel_names", dj.get("modality", {"0": "MRI"}))
    channels = [str(names[k]) for k in sorted(names, key=int)]
    if not 0 <= channel < len(channels):
        raise InputError(folder / "dataset.json", f"channel {channel} requested but the dataset has channels {channels}")
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(ending))
    cases: list[Case] = []
    for sub, labeled in (("imagesTr", True), ("imagesTs", False)):
        ids = sorted({m.group(1) for p in _visible(list((folder / sub).glob("*"))) if (m := pattern.fullmatch(p.name))})
        for cid in ids:
            image = _require(folder / sub / f"{cid}_{channel:04d}{ending}", f"channel {channel} image of case '{cid}'")
            label = _require(folder / "labelsTr" / f"{cid}{ending}", f"label of training case '{cid}'") if labeled else None
            cases.append(Case(cid, image, label))
    info = {"layout": "nnunet", "classes": classes, "channels": channels, "channel_in_file": False, "name": dj.get("name")}
    return cases, info


def _msd_path(folder: Path, entry: Any, key: str) -> Path:
    rel = entry.get(key) if isinstance(entry, dict) else entry
    if not isinstance(rel, str):
        raise InputError(folder / "dataset.json", f"entry {entry!r} has no '{key}' path")
    return _require(folder / rel, f"{key} listed in dataset.json")


def _list_msd(folder: Path, channel: int) -> tuple[list[Case], dict[str, Any]]:
    dj = _read_dataset_json(folder)
    if "labels" not in dj:
        raise InputError(folder / "dataset.json", "has no 'labels' mapping")
    classes = _classes_from_mapping(folder / "dataset.json", dj["labels"])
    names = dj.get("modality", dj.get("channel_names", {"0": "MRI"}))
    channels = [str(names[k]) for k in sorted(names, key=int)]
    if not 0 <= channel < len(channels):
        raise InputError(folder / "dataset.json", f"channel {channel} requested but the dataset has modalities {channels}")
    pairs: list[tuple[Path, Path | None]] = []
    if isinstance(dj.get("training"), list):
        pairs += [(_msd_path(folder, e, "image"), _msd_path(folder, e, "label")) for e in dj["training"]]
    else:  # no list: pair imagesTr/x with labelsTr/x
        pairs += [(p, _require(folder / "labelsTr" / p.name, "label")) for p in _nifti_files(folder / "imagesTr")]
    pairs += [(_msd_path(folder, e, "image"), None) for e in dj.get("test", []) or []]
    cases = [Case(str(_nifti_stem(img)), img, lab) for img, lab in pairs]
    info = {"layout": "msd", "classes": classes, "channels": channels, "channel_in_file": len(channels) > 1, "name": dj.get("name")}
    return cases, info


def _list_acdc(folder: Path) -> tuple[list[Case], dict[str, Any]]:
    cases: list[Case] = []
    for pdir in _patient_dirs(folder):
        for img in _nifti_files(pdir):
            stem = str(_nifti_stem(img))
            if not re.fullmatch(rf"{pdir.name}_frame\d+", stem):
                continue  # the 4D cine, _gt files, anything else
            gts = [pdir / f"{stem}_gt{s}" for s in NIFTI_SUFFIXES]
            label = next((g for g in gts if g.is_file()), None)
            cases.append(Case(stem, img, label, patient=pdir.name))
    if not cases:
        raise InputError(folder, "ACDC layout: no patientXXX_frameYY.nii.gz files in the patient folders")
    return cases, {"layout": "acdc", "classes": dict(ACDC_CLASSES), "channels": ["MRI"], "channel_in_file": False, "name": "ACDC"}


def _plain_label(image: Path, image_dir: Path) -> Path | None:
    stem = str(_nifti_stem(image))
    candidates = [image_dir / "labels" / image.name, image_dir.parent / "labels" / image.name]
    candidates += [image_dir / f"{stem}{tag}{s}" for tag in LABEL_SUFFIXES for s in NIFTI_SUFFIXES]
    candidates += [d / f"{stem}{s}" for d in (image_dir / "labels", image_dir.parent / "labels") for s in NIFTI_SUFFIXES]
    return next((c for c in candidates if c.is_file() and c != image), None)


def _list_plain(folder: Path) -> tuple[list[Case], dict[str, Any]]:
    if folder.is_file():
        image_dir, images = folder.parent, [folder]
    else:
        found = _plain_image_dir(folder)
        if found is None:
            raise InputError(folder, "plain layout: no *.nii or *.nii.gz images in the folder or in images/")
        image_dir = found
        images = [p for p in _nifti_files(image_dir) if not _is_label_name(p)]
    cases = [Case(str(_nifti_stem(p)), p, _plain_label(p, image_dir)) for p in images]
    classes_json = next((d / "classes.json" for d in (folder if folder.is_dir() else image_dir, image_dir) if (d / "classes.json").is_file()), None)
    if classes_json is not None:
        try:
            classes = _classes_from_mapping(classes_json, json.loads(classes_json.read_text()))
        except json.JSONDecodeError as err:
            raise InputError(classes_json, f"not valid JSON ({err})") from err
    else:
        # no names given: the values present in the labels (all of 0..254 allowed while scanning)
        values: set[int] = {0}
        for case in cases:
            if case.label is not None:
                values |= {int(v) for v in np.unique(load_label(case.label, range(255))[0])}
        classes = {v: ("background" if v == 0 else f"class_{v}") for v in sorted(values)}
    return cases, {"layout": "plain", "classes": classes, "channels": ["MRI"], "channel_in_file": False, "name": None}


def list_cases(folder: str | Path, layout: str = "auto", channel: int = 0) -> tuple[list[Case], dict[str, Any]]:
    """Cases of a raw dataset and its info.

    ``layout``: ``"auto"`` (:func:`detect_layout`) or one of :data:`LAYOUTS`. ``channel``: the
    input channel to read (nnU-Net: the ``_000c`` file; MSD: index on the 4D image's last axis).
    Returns ``(cases, info)`` with cases sorted by subject id and info
    ``{"layout", "classes": {value: name}, "channels": [names], "channel_in_file": bool, "name"}``.
    """
    folder = Path(folder)
    if layout == "auto":
        layout = detect_layout(folder)
    elif layout not in LAYOUTS:
        raise InputError(folder, f"unknown layout '{layout}' (choose from auto, {', '.join(LAYOUTS)})")
    elif not folder.exists():
        raise InputError(folder, "input does not exist")
    if layout in ("nnunet", "msd") and not (folder / "dataset.json").is_file():
        raise InputError(folder, f"{layout} layout needs a dataset.json in the folder")
    listers = {
        "nnunet": lambda: _list_nnunet(folder, channel),
        "msd": lambda: _list_msd(folder, channel),
        "acdc": lambda: _list_acdc(folder),
        "plain": lambda: _list_plain(folder),
    }
    cases, info = listers[layout]()
    if not cases:
        raise InputError(folder, f"{layout} layout: no cases found")
    ids = [c.subject for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(folder, f"case ids occur more than once: {dupes[:5]}")
    info["folder"] = str(folder)
    return sorted(cases, key=lambda c: c.subject), info
