"""Subject-level splits of a raw MRI dataset: seeded draws, fixed lists and split files.

Every split (test, val, labeled pool, unlabeled pool) is a set of subjects, never of single
volumes, so all volumes of one person land in one split. Only subjects with labeled volumes can
be test, val or labeled; cases without labels (nnU-Net's ``imagesTs``, the Decathlon's test
list, plain images without a label file) are unlabeled pretraining data only.

Sources of a split, in order of precedence: fixed lists (``--test-subjects``,
``--val-subjects``), a split file (``--splits-from``: nnU-Net's ``splits_final.json``, whose
fold's validation subjects become the test split, or a ``dataset.json`` whose ``test`` list
names labeled cases), and the seeded draw for whatever is left (:func:`split_subjects`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.layouts import NIFTI_SUFFIXES, Case
from segcore.budget import match_names
from segcore.errors import InputError
from segcore.salts import SPLIT_SALT

log = logging.getLogger(__name__)


def split_subjects(
    labeled: Sequence[str],
    unlabeled: Sequence[str],
    n_test: int,
    n_val: int,
    n_labeled: int | None,
    seed: int,
    test: Sequence[str] | None = None,
    val: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Deterministic subject-level split.

    ``labeled``: subjects with labeled volumes; ``unlabeled``: subjects with none. ``test`` /
    ``val``: fixed lists (labeled subjects) that replace the draw of that split (``n_test`` /
    ``n_val`` are then unused). The remaining labeled subjects, sorted and permuted by ``seed``,
    give test (``n_test``, unless fixed), then val (``n_val``, unless fixed), then the labeled
    pool (``n_labeled``; None = all the rest); what is left and every unlabeled subject form the
    unlabeled pool. Without fixed lists the result only depends on (sorted subjects, counts,
    seed). Lists are sorted. Raises ValueError when the counts ask for more subjects than exist.
    """
    fixed_test, fixed_val = sorted(test or []), sorted(val or [])
    rest = sorted(set(labeled) - set(fixed_test) - set(fixed_val))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_SALT]))
    perm = [rest[i] for i in rng.permutation(len(rest))]
    n_t = 0 if test is not None else n_test
    n_v = 0 if val is not None else n_val
    n_pool = max(len(perm) - n_t - n_v, 0) if n_labeled is None else n_labeled
    if n_t + n_v + n_pool > len(perm):
        raise ValueError(
            f"too few labeled subjects: {len(perm)} left to draw from, but n_test={n_t} + n_val={n_v} + "
            f"n_labeled={n_pool} need "
            f"{n_t + n_v + n_pool}; lower --n-test/--n-val/--n-labeled"
        )
    bounds = np.cumsum([n_t, n_v, n_pool])
    return {
        "test": sorted(fixed_test + perm[: bounds[0]]),
        "val": sorted(fixed_val + perm[bounds[0] : bounds[1]]),
        "labeled": sorted(perm[bounds[1] : bounds[2]]),
        "unlabeled": sorted(perm[bounds[2] :] + list(unlabeled)),
    }


def read_names(values: Iterable[str]) -> list[str]:
    """Names from option values: each value is a name, or a text file of names (separated by
    whitespace or commas; ``#`` starts a comment)."""
    names: list[str] = []
    for value in values:
        path = Path(str(value))
        if path.suffix in (".txt", ".csv", ".lst") or path.is_file():
            if not path.is_file():
                raise InputError(path, "list of subject names does not exist")
            text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
            names += [t for t in re.split(r"[\s,]+", text) if t]
        else:
            names.append(str(value))
    return names


def resolve_subjects(values: Iterable[str] | None, cases: list[Case], option: str, folder: Path) -> list[str] | None:
    """The subjects named by ``option``'s values (exact names or their number, see
    :func:`segcore.budget.match_names`); each must have labeled volumes. None for no values."""
    if values is None:
        return None
    try:
        subjects = match_names(read_names(values), {c.subject for c in cases}, "subject")
    except ValueError as err:
        raise InputError(folder, f"{option}: {err}") from err
    labeled = {c.subject for c in cases if c.label is not None}
    unlabeled = [s for s in subjects if s not in labeled]
    if unlabeled:
        raise InputError(
            folder, f"{option}: subject '{unlabeled[0]}' has no labeled volume; test and val subjects need labels"
        )
    return subjects


def _case_name(entry: Any, names: set[str], path: Path) -> str:
    """The case named by a split-file entry: a case name, or an image path (``./imagesTs/x.nii.gz``,
    with or without nnU-Net's ``_0000`` channel suffix), or ``{"image": path}``."""
    raw = entry.get("image") if isinstance(entry, dict) else entry
    if not isinstance(raw, str):
        raise InputError(path, f"entry {entry!r} is neither a case name nor an image path")
    stem = Path(raw).name
    for suffix in NIFTI_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    for candidate in (stem, re.sub(r"_\d{4}$", "", stem)):
        if candidate in names:
            return candidate
    raise InputError(path, f"names the case '{stem}', which is not in the dataset")


def _load_split_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(path, "split file does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from err


def splits_from_file(path: str | Path, fold: int, cases: list[Case]) -> tuple[list[str], str]:
    """The test subjects a split file names, and a sentence on where they come from.

    nnU-Net ``splits_final.json`` (a list of folds ``{"train": [...], "val": [...]}``): the
    subjects of fold ``fold``'s ``val`` cases; a subject with cases on both sides of the fold is
    an error. A ``dataset.json`` with a ``test`` list (case names or image paths): its labeled
    subjects; listed cases without labels stay unlabeled data (a warning), and a list of only
    those is an error.
    """
    path = Path(path)
    data = _load_split_json(path)
    by_name = {c.name: c for c in cases}
    if isinstance(data, list):
        if not data or not all(
            isinstance(f, dict) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list) for f in data
        ):
            raise InputError(path, 'an nnU-Net splits file is a list of folds {"train": [...], "val": [...]}')
        if not 0 <= fold < len(data):
            raise InputError(path, f"has folds 0-{len(data) - 1}; --splits-fold {fold} is not one of them")
        side = {
            name: [by_name[_case_name(e, set(by_name), path)].subject for e in data[fold][name]]
            for name in ("train", "val")
        }
        both = sorted(set(side["train"]) & set(side["val"]))
        if both:
            raise InputError(
                path,
                f"fold {fold} puts volumes of subject '{both[0]}' in both train and val ({len(both)} such subjects); "
                f"its folds split single volumes, not subjects",
            )
        listed = set(side["train"]) | set(side["val"])
        missing = sorted({c.subject for c in cases if c.label is not None} - listed)
        if missing:
            log.warning(
                "%s: fold %d does not name %d labeled subjects (e.g. %s); they are drawn like the rest",
                path,
                fold,
                len(missing),
                missing[0],
            )
        test = sorted(set(side["val"]))
        return test, f"{path} fold {fold}: its {len(test)} validation subjects are the test split"
    if isinstance(data, dict) and isinstance(data.get("test"), list) and data["test"]:
        listed = [by_name[_case_name(e, set(by_name), path)] for e in data["test"]]
        without = [c.name for c in listed if c.label is None]
        test = sorted({c.subject for c in listed if c.label is not None})
        if not test:
            raise InputError(
                path,
                f"its test list names only cases without labels ({len(without)}, e.g. {without[0]}); "
                f"those are unlabeled pretraining data, not a test set",
            )
        if without:
            log.warning(
                "%s: %d test-list cases have no labels (e.g. %s); they are unlabeled pretraining data only",
                path,
                len(without),
                without[0],
            )
        return test, f"{path} 'test' list: its {len(test)} labeled subjects are the test split"
    raise InputError(
        path,
        "is neither an nnU-Net splits_final.json (a list of folds) nor a dataset.json with a non-empty 'test' list",
    )


def offer_split_files(folder: Path, cases: list[Case]) -> list[Path]:
    """Split files in the input folder that ``--splits-from`` could use (logged as an offer):
    ``splits_final.json``, and ``dataset.json`` when its ``test`` list names labeled cases."""
    if not folder.is_dir():
        return []
    found = [folder / "splits_final.json"] if (folder / "splits_final.json").is_file() else []
    dj = folder / "dataset.json"
    if dj.is_file():
        try:
            data = json.loads(dj.read_text())
            entries = data.get("test") if isinstance(data, dict) else None
            by_name = {c.name: c for c in cases}
            if isinstance(entries, list) and any(
                by_name[_case_name(e, set(by_name), dj)].label is not None for e in entries
            ):
                found.append(dj)
        except (json.JSONDecodeError, InputError):
            pass  # not usable as a split file; listing the dataset already validated what it needs
    return found
