"""Raw MRI dataset layouts: detection and listing of cases.

Supported layouts (``layout=`` names):

* ``nnunet``: ``dataset.json`` + ``imagesTr/<case>_0000.nii.gz`` + ``labelsTr/<case>.nii.gz``;
  ``imagesTs/`` cases are listed without labels. Channel ``c`` is the file ``<case>_000c``.
* ``msd`` (Medical Segmentation Decathlon): ``dataset.json`` with ``training`` (image/label
  pairs, paths relative to the folder) and ``test`` lists; image files have no ``_0000``; a
  multi-modal image is one 4D file whose last axis is the channel.
* ``acdc``: ``patientXXX/`` folders (also under ``training/`` and ``testing/``) with ``Info.cfg``
  (``ED: n``, ``ES: n``, ...) naming the end-diastolic and end-systolic frames
  ``patientXXX_frameYY.nii.gz``, each with its ``..._gt.nii.gz`` labels; the ED and ES frames
  are two cases of one subject, ``patientXXX_4d.nii.gz`` is ignored. A missing ``Info.cfg``,
  frame or ``_gt`` file is an error naming that file (every patient of ACDC's current release
  has all of them).
* ``plain``: a folder (or ``images/`` inside it, or a single file) of ``*.nii``/``*.nii.gz``;
  labels in ``labels/`` beside the images (same file name) or as ``<name>_seg``/``_label``/
  ``_gt`` files next to them; class names from an optional ``classes.json`` or the label values.

Hidden files (``.*``, e.g. the ``._x.nii.gz`` macOS forks shipped in Decathlon archives) are
ignored everywhere.

Subjects: every case (one volume) belongs to a subject (one person); splits and label budgets
count subjects, so the volumes of one person never end up in two splits. The subject key
(:func:`assign_subjects`) is, by default, the ACDC patient folder for ``acdc`` and the
ACDC-style ``patientNNN`` prefix of the case name in every other layout (nnU-Net's ACDC
conversion names its cases ``patientNNN_frameYY``), else the case name itself; a regular
expression (its first group) or a CSV file (columns ``case,subject``) replaces the default.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import Layout
from medseg.nifti import load_label
from segcore.errors import InputError
from segcore.labels import IGNORE_INDEX

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = typing.get_args(Layout)
# ACDC's patient names at the start of a case name: patient001_frame01 -> patient001
ACDC_SUBJECT = re.compile(r"(patient\d+)(?:_|$)")
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

    ``name`` is the volume's id (the group id in prepared data); ``subject`` names the person
    it belongs to (see :func:`assign_subjects`; the name itself until a key is applied):
    splits never separate the volumes of one subject. ``meta`` holds what the layout knows
    about the volume beyond its files (ACDC: phase, frame and the patient's ``Info.cfg``).
    """

    name: str
    image: Path
    label: Path | None
    subject: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.subject:
            object.__setattr__(self, "subject", self.name)


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
    raise InputError(
        folder,
        f"no recognised dataset layout (found: {shown}{', ...' if len(entries) > 8 else ''}); looked for {_LOOKED_FOR}",
    )


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
                raise InputError(
                    path, f"region-based label '{name}': {value} is not supported; give one value per class"
                )
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(path, f"label '{name}' must map to an integer value, got {value!r}")
            classes[value] = str(name)
    bad = [v for v in classes if not 0 <= v < IGNORE_INDEX]
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
        raise InputError(
            folder / "dataset.json", f"channel {channel} requested but the dataset has channels {channels}"
        )
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(ending))
    cases: list[Case] = []
    for sub, labeled in (("imagesTr", True), ("imagesTs", False)):
        ids = sorted({m.group(1) for p in _visible(list((folder / sub).glob("*"))) if (m := pattern.fullmatch(p.name))})
        for cid in ids:
            image = _require(folder / sub / f"{cid}_{channel:04d}{ending}", f"channel {channel} image of case '{cid}'")
            label = (
                _require(folder / "labelsTr" / f"{cid}{ending}", f"label of training case '{cid}'") if labeled else None
            )
            cases.append(Case(cid, image, label))
    info = {
        "layout": "nnunet",
        "classes": classes,
        "channels": channels,
        "channel_in_file": False,
        "name": dj.get("name"),
    }
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
        raise InputError(
            folder / "dataset.json", f"channel {channel} requested but the dataset has modalities {channels}"
        )
    pairs: list[tuple[Path, Path | None]] = []
    if isinstance(dj.get("training"), list):
        pairs += [(_msd_path(folder, e, "image"), _msd_path(folder, e, "label")) for e in dj["training"]]
    else:  # no list: pair imagesTr/x with labelsTr/x
        pairs += [(p, _require(folder / "labelsTr" / p.name, "label")) for p in _nifti_files(folder / "imagesTr")]
    # the Decathlon's test list holds image paths without labels; an entry with a label
    # (some datasets give their test cases' labels) is a labeled case
    pairs += [
        (
            _msd_path(folder, e, "image"),
            _msd_path(folder, e, "label") if isinstance(e, dict) and e.get("label") else None,
        )
        for e in dj.get("test", []) or []
    ]
    cases = [Case(str(_nifti_stem(img)), img, lab) for img, lab in pairs]
    info = {
        "layout": "msd",
        "classes": classes,
        "channels": channels,
        "channel_in_file": len(channels) > 1,
        "name": dj.get("name"),
    }
    return cases, info


def read_info_cfg(path: Path) -> dict[str, Any]:
    """ACDC ``Info.cfg`` (``Key: value`` lines) as ``{"ED": int, "ES": int, ...}``; other keys
    (Group, Height, NbFrame, Weight) are kept, numbers as numbers."""
    if not path.is_file():
        raise InputError(
            path, "Info.cfg does not exist; every ACDC patient folder needs one (its ED and ES frame numbers)"
        )
    values: dict[str, Any] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(path, f"line {number} is not 'Key: value': {line.strip()!r}")
        value = value.strip()
        try:
            values[key.strip()] = int(value) if re.fullmatch(r"[+-]?\d+", value) else float(value)
        except ValueError:
            values[key.strip()] = value
    for key in ("ED", "ES"):
        if not isinstance(values.get(key), int) or values[key] < 1:
            raise InputError(path, f"needs '{key}: <frame number >= 1>', found {values.get(key)!r}")
    return values


def _frame_file(pdir: Path, stem: str, what: str) -> Path:
    found = next((pdir / f"{stem}{s}" for s in NIFTI_SUFFIXES if (pdir / f"{stem}{s}").is_file()), None)
    if found is None:
        raise InputError(pdir / f"{stem}.nii.gz", f"{what} does not exist (named by {pdir / 'Info.cfg'})")
    return found


def _list_acdc(folder: Path) -> tuple[list[Case], dict[str, Any]]:
    cases: list[Case] = []
    for pdir in _patient_dirs(folder):
        info = read_info_cfg(pdir / "Info.cfg")
        phases = {info["ED"]: "ED", info["ES"]: "ES"}  # ED == ES (not in ACDC) gives one case
        for frame, phase in sorted(phases.items()):
            stem = f"{pdir.name}_frame{frame:02d}"
            image = _frame_file(pdir, stem, f"{phase} frame {frame}")
            label = _frame_file(pdir, f"{stem}_gt", f"ground truth of the {phase} frame {frame}")
            meta = {"phase": phase, "frame": frame, **{k: v for k, v in info.items() if k not in ("ED", "ES")}}
            cases.append(Case(stem, image, label, subject=pdir.name, meta=meta))
    if not cases:
        raise InputError(folder, "ACDC layout: no patientXXX_frameYY.nii.gz files in the patient folders")
    return cases, {
        "layout": "acdc",
        "classes": dict(ACDC_CLASSES),
        "channels": ["MRI"],
        "channel_in_file": False,
        "name": "ACDC",
    }


def _plain_label(image: Path, image_dir: Path) -> Path | None:
    stem = str(_nifti_stem(image))
    candidates = [image_dir / "labels" / image.name, image_dir.parent / "labels" / image.name]
    candidates += [image_dir / f"{stem}{tag}{s}" for tag in LABEL_SUFFIXES for s in NIFTI_SUFFIXES]
    candidates += [
        d / f"{stem}{s}" for d in (image_dir / "labels", image_dir.parent / "labels") for s in NIFTI_SUFFIXES
    ]
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
    classes_json = next(
        (
            d / "classes.json"
            for d in (folder if folder.is_dir() else image_dir, image_dir)
            if (d / "classes.json").is_file()
        ),
        None,
    )
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


def read_subject_csv(path: Path) -> dict[str, str]:
    """``{case: subject}`` from a CSV file with the columns ``case`` and ``subject``."""
    if not path.is_file():
        raise InputError(path, "subject CSV does not exist")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "case" not in columns or "subject" not in columns:
            raise InputError(path, f"subject CSV needs the columns 'case' and 'subject', found {reader.fieldnames}")
        table: dict[str, str] = {}
        for row in reader:
            case, subject = (str(row.get(columns[k]) or "").strip() for k in ("case", "subject"))
            if not case and not subject:
                continue
            if not case or not subject:
                raise InputError(path, f"line {reader.line_num}: empty case or subject ({case!r}, {subject!r})")
            if table.get(case, subject) != subject:
                raise InputError(path, f"case '{case}' is given two subjects: '{table[case]}' and '{subject}'")
            table[case] = subject
    return table


def assign_subjects(
    cases: list[Case], layout: str, pattern: str | None = None, subject_csv: str | Path | None = None
) -> tuple[list[Case], str]:
    """Set each case's subject; returns ``(cases, how)``, ``how`` a sentence for the manifest.

    ``pattern``: a regular expression searched in every case name (``re.search``); its first
    group is the subject, and a case it does not match is an error naming the pattern and that
    case's file. ``subject_csv``: columns ``case,subject``; every case needs a row. Default:
    ACDC's patient folders for ``acdc``, else the ``patientNNN`` prefix where a case name
    starts with one (:data:`ACDC_SUBJECT`), else the case name.
    """
    if pattern is not None and subject_csv is not None:
        raise InputError(Path(subject_csv), "give --subject-pattern or --subject-csv, not both")
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise InputError(None, f"--subject-pattern '{pattern}' is not a valid regular expression ({err})") from err
        if regex.groups < 1:
            raise InputError(
                None,
                f"--subject-pattern '{pattern}' has no group; put the subject part in parentheses, e.g. "
                "'(patient\\d+)'",
            )
        keyed = [(c, m.group(1) if (m := regex.search(c.name)) else None) for c in cases]
        misses = [c for c, key in keyed if not key]
        if misses:
            scope = "matches none" if len(misses) == len(cases) else f"misses {len(misses)}"
            raise InputError(
                misses[0].image,
                f"--subject-pattern '{pattern}' does not match the case name '{misses[0].name}' of this file "
                f"(it {scope} of the {len(cases)} cases; the first group must match a non-empty subject)",
            )
        return [
            replace(c, subject=str(key)) for c, key in keyed
        ], f"pattern '{pattern}' (first group) on the case names"
    if subject_csv is not None:
        path = Path(subject_csv)
        table = read_subject_csv(path)
        missing = [c for c in cases if c.name not in table]
        if missing:
            raise InputError(
                path,
                f"no subject for case '{missing[0].name}' ({missing[0].image}); {len(missing)} of "
                f"{len(cases)} cases have no row",
            )
        extra = sorted(set(table) - {c.name for c in cases})
        if extra:
            log.warning("%s: %d rows name no case of the dataset (e.g. %s)", path, len(extra), extra[0])
        return [replace(c, subject=table[c.name]) for c in cases], f"CSV {path} (columns case,subject)"
    if layout == "acdc":
        return cases, "ACDC patient folder"
    keyed = [(c, m.group(1) if (m := ACDC_SUBJECT.match(c.name)) else c.name) for c in cases]
    n_prefixed = sum(m is not None for m in (ACDC_SUBJECT.match(c.name) for c in cases))
    how = (
        f"patientNNN prefix of the case name ({n_prefixed} of {len(cases)} cases), else the case name"
        if n_prefixed
        else "case name (one volume per subject)"
    )
    return [replace(c, subject=key) for c, key in keyed], how


def list_cases(
    folder: str | Path,
    layout: str = "auto",
    channel: int = 0,
    subject_pattern: str | None = None,
    subject_csv: str | Path | None = None,
) -> tuple[list[Case], dict[str, Any]]:
    """Cases of a raw dataset and its info.

    ``layout``: ``"auto"`` (:func:`detect_layout`) or one of :data:`LAYOUTS`. ``channel``: the
    input channel to read (nnU-Net: the ``_000c`` file; MSD: index on the 4D image's last axis).
    ``subject_pattern`` / ``subject_csv``: the subject key (:func:`assign_subjects`).
    Returns ``(cases, info)`` with cases sorted by name and info ``{"layout", "classes":
    {value: name}, "channels": [names], "channel_in_file": bool, "name", "folder", "subject_key"}``.
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
    ids = [c.name for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(folder, f"case ids occur more than once: {dupes[:5]}")
    cases, info["subject_key"] = assign_subjects(cases, layout, subject_pattern, subject_csv)
    info["folder"] = str(folder)
    info["ignored_files"] = [str(p) for p in unused_nifti_files(folder, cases)]
    if info["ignored_files"]:
        log.warning(
            "%s: %d NIfTI file(s) are not part of the %s layout and are ignored, e.g. %s",
            folder,
            len(info["ignored_files"]),
            layout,
            info["ignored_files"][0],
        )
    return sorted(cases, key=lambda c: c.name), info


def unused_nifti_files(folder: Path, cases: Sequence[Case]) -> list[Path]:
    """NIfTI files under ``folder`` that belong to no case: neither a case's image or label nor
    named after a case or subject (other input channels ``<case>_0001``, ACDC's ``<patient>_4d``)."""
    if not folder.is_dir():
        return []
    used = {c.image.resolve() for c in cases} | {c.label.resolve() for c in cases if c.label is not None}
    prefixes = tuple({c.name for c in cases} | {c.subject for c in cases if c.subject})
    unused = []
    for path in sorted(folder.rglob("*")):
        if not path.name.endswith((".nii", ".nii.gz")) or path.name.startswith(".") or path.resolve() in used:
            continue
        if not path.name.startswith(prefixes):
            unused.append(path)
    return unused
