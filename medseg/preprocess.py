"""``medseg preprocess``: raw NIfTI dataset -> prepared 2D slices (segcore.prepared format).

Per volume: canonical reorientation, the slice axis (largest spacing) made the sample axis,
in-plane resampling to ``target_spacing`` (images linear with anti-aliasing when shrinking,
labels nearest; the through-plane sampling is kept), intensity clipping to per-volume
percentiles scaled to [0, 1], centre crop / zero pad to ``image_size``. Every step is recorded
in the manifest group so that :func:`medseg.native.to_native` maps predictions back exactly.

Two passes: headers first (validation, geometry, slice counts, splits), then voxel data volume
by volume into memory-mapped arrays, so the dataset never sits in RAM. Output is written
atomically: on any error no output folder is left behind.

Splits are drawn per subject (one person; several volumes, e.g. ACDC's ED and ES frames,
share one: :func:`medseg.layouts.assign_subjects`) from ``seed``, or fixed by lists or a split
file (:mod:`medseg.splits`): ``test`` (n_test), ``val`` (n_val), ``labeled`` (n_labeled, or all
remaining labeled subjects), ``unlabeled`` (the rest of the labeled subjects, whose labels are
NOT stored, plus every subject without labels). Labels of unlabeled cases are 255 in
``labels.npy``. Volumes without a label file are unlabeled pretraining data only: a subject in
test, val or the labeled pool keeps only its labeled volumes (the others are listed under
``excluded`` in the manifest), so no split ever holds two volumes of one subject that another
split also holds. docs/mri_data.md describes layouts, subject keys and splits.

``n4`` runs N4 bias-field correction (:mod:`medseg.n4`) on each volume before the percentile
normalisation.

``image_size`` not divisible by 16 only logs a warning: the U-Net's depth decides what it
needs (2**(levels-1)), and the training stage checks it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import MRIPreprocessConfig
from medseg.intensity import percentile_scale
from medseg.layouts import Case, list_cases
from medseg.n4 import n4_correct
from medseg.native import (
    crop_or_pad,
    plan_geometry,
    resize_inplane,
    to_canonical_stack,
    to_prepared,
)
from medseg.nifti import VolumeHeader, check_pair, load_label, load_volume, read_header
from medseg.splits import offer_split_files, resolve_subjects, split_subjects, splits_from_file
from segcore.config import to_record
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml
from segcore.prepared import IGNORE_INDEX, create_arrays, write_manifest
from segcore.runtime.pool import ordered_map

log = logging.getLogger(__name__)


def parse_n_labeled(value: str | int) -> int | None:
    """``"all"`` -> None, else a count >= 0."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError) as err:
        raise InputError(None, f"--n-labeled must be 'all' or a whole number, got {value!r}") from err
    if n < 0:
        raise InputError(None, f"--n-labeled must be >= 0, got {n}")
    return n


def _plan_splits(
    input: Path,
    cases: list[Case],
    n_test: int,
    n_val: int,
    n_pool: int | None,
    seed: int,
    test_subjects: Sequence[str] | None,
    val_subjects: Sequence[str] | None,
    splits_from: str | Path | None,
    splits_fold: int,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Subject splits and a record of where each came from (for the manifest)."""
    labeled = sorted({c.subject for c in cases if c.label is not None})
    unlabeled = sorted({c.subject for c in cases} - set(labeled))
    test = resolve_subjects(test_subjects, cases, "--test-subjects", input)
    val = resolve_subjects(val_subjects, cases, "--val-subjects", input)
    source: dict[str, Any] = {
        "seed": seed,
        "test": "fixed list" if test is not None else "drawn",
        "val": "fixed list" if val is not None else "drawn",
    }
    if splits_from is not None:
        if test is not None:
            raise InputError(
                Path(splits_from), "--splits-from and --test-subjects both fix the test split; give one of them"
            )
        test, source["test"] = splits_from_file(splits_from, splits_fold, cases)
    else:
        for path in offer_split_files(input, cases):
            log.info("%s could fix the test split: add --splits-from %s (see docs/mri_data.md)", path, path)
    both = sorted(set(test or []) & set(val or []))
    if both:
        raise InputError(input, f"subject '{both[0]}' is both a test and a validation subject")
    try:
        split = split_subjects(labeled, unlabeled, n_test, n_val, n_pool, seed, test=test, val=val)
    except ValueError as err:
        raise InputError(input, f"{err} ({len(labeled)} labeled subjects found)") from err
    return split, source


def _validate_options(
    target_spacing: Sequence[float],
    image_size: Sequence[int],
    partitions: int,
    percentiles: Sequence[float],
    n_test: int,
    n_val: int,
) -> None:
    if len(target_spacing) != 2 or min(target_spacing) <= 0:
        raise InputError(None, f"--target-spacing needs two positive values in mm, got {list(target_spacing)}")
    if len(image_size) != 2 or min(image_size) < 1:
        raise InputError(None, f"--image-size needs two positive pixel counts, got {list(image_size)}")
    if any(s % 16 for s in image_size):
        log.warning("image size %s is not divisible by 16; a U-Net with 5 levels needs that", list(image_size))
    if partitions < 1:
        raise InputError(None, f"--partitions must be >= 1, got {partitions}")
    if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise InputError(None, f"--percentiles needs 0 <= low < high <= 100, got {list(percentiles)}")
    if n_test < 0 or n_val < 0:
        raise InputError(None, f"--n-test and --n-val must be >= 0, got {n_test} and {n_val}")


def preprocess(
    input: str | Path,
    out: str | Path,
    layout: str = "auto",
    target_spacing: Sequence[float] = (1.5, 1.5),
    image_size: Sequence[int] = (64, 64),
    partitions: int = 4,
    n_test: int = 10,
    n_val: int = 5,
    n_labeled: str | int = 10,
    seed: int = 0,
    percentiles: Sequence[float] = (0.5, 99.5),
    slice_axis: str | int = "auto",
    channel: int = 0,
    subject_pattern: str | None = None,
    subject_csv: str | Path | None = None,
    test_subjects: Sequence[str] | None = None,
    val_subjects: Sequence[str] | None = None,
    splits_from: str | Path | None = None,
    splits_fold: int = 0,
    n4: bool = False,
    config: dict[str, Any] | None = None,
    workers: int = 1,
) -> Path:
    """Prepare the raw dataset at ``input`` into ``out``; returns ``out``.

    ``target_spacing`` (H, W) mm in-plane; ``image_size`` (H, W) px; ``partitions``: slice
    blocks per volume for the global contrastive loss; ``n_test``/``n_val``/``n_labeled``:
    subjects per split (``n_labeled`` ``"all"`` = every remaining labeled subject);
    ``percentiles``: intensity clip range per volume; ``slice_axis``: ``"auto"`` or a canonical
    axis; ``channel``: input channel (nnU-Net file index or 4D MSD channel).
    ``subject_pattern`` / ``subject_csv``: the subject key (default: ACDC's ``patientNNN``);
    ``test_subjects`` / ``val_subjects``: fixed lists (names, numbers or files of names) that
    replace the draw of that split; ``splits_from`` / ``splits_fold``: a split file whose test
    subjects are taken (:func:`medseg.splits.splits_from_file`); ``n4``: bias-field correction.
    ``config`` is written as ``config.yaml`` (default: these arguments).
    """
    input, out = Path(input), Path(out)
    target_spacing = [float(s) for s in target_spacing]
    image_size = [int(s) for s in image_size]
    percentiles = [float(p) for p in percentiles]
    _validate_options(target_spacing, image_size, partitions, percentiles, n_test, n_val)
    n_pool = parse_n_labeled(n_labeled)
    if config is None:
        config = {
            "input": str(input),
            "out": str(out),
            "layout": layout,
            "target_spacing": target_spacing,
            "image_size": image_size,
            "partitions": partitions,
            "n_test": n_test,
            "n_val": n_val,
            "n_labeled": n_labeled,
            "seed": seed,
            "percentiles": percentiles,
            "slice_axis": slice_axis,
            "channel": channel,
            "subject_pattern": subject_pattern,
            "subject_csv": None if subject_csv is None else str(subject_csv),
            "test_subjects": test_subjects,
            "val_subjects": val_subjects,
            "splits_from": None if splits_from is None else str(splits_from),
            "splits_fold": splits_fold,
            "n4": n4,
            "workers": workers,
        }

    cases, info = list_cases(input, layout, channel=channel, subject_pattern=subject_pattern, subject_csv=subject_csv)
    class_values = sorted(info["classes"])
    n_classes = max(class_values) + 1
    class_names = [info["classes"].get(v, f"class_{v}") for v in range(n_classes)]
    file_channel = channel if info["channel_in_file"] else None

    # pass 1: headers only
    headers = {case.name: _checked_header(case, file_channel) for case in cases}
    geometries = {name: plan_geometry(h, target_spacing, image_size, slice_axis) for name, h in headers.items()}
    subject_split, split_source = _plan_splits(
        input, cases, n_test, n_val, n_pool, seed, test_subjects, val_subjects, splits_from, splits_fold
    )
    split_of = {subject: name for name, members in subject_split.items() for subject in members}
    cases, excluded, unlabeled_only = _set_aside_unlabeled(input, cases, split_of)
    n_total = sum(geometries[c.name]["n_slices"] for c in cases)
    log.info(
        "%s layout: %d volumes of %d subjects (subject key: %s), %d slices; splits (subjects): %s",
        info["layout"],
        len(cases),
        len({c.subject for c in cases}),
        info["subject_key"],
        n_total,
        {k: len(v) for k, v in subject_split.items()},
    )

    # pass 2: voxel data, volume by volume into the memory maps
    with atomic_dir(out) as tmp:
        arrays = create_arrays(tmp, n_total, 1, image_size[0], image_size[1])
        for arr in arrays.values():
            arr.flush()
        del arrays  # reopened per volume (in this process or a worker): written pages are released after each
        plan = CasePlan(tmp, percentiles, class_values, partitions, file_channel, n4)
        jobs, samples, splits = _case_jobs(plan, cases, headers, geometries, split_of)
        groups: dict[str, dict[str, Any]] = {}
        # volumes are independent and each writes its own rows: any number of workers, the same arrays
        for job, record in zip(jobs, ordered_map(write_case_job, jobs, workers), strict=True):
            record.update({"split": split_of[job.case.subject], "first_sample": job.start})
            groups[job.case.name] = record
        _warn_foreground_cut(groups, image_size)
        write_manifest(
            tmp,
            {
                "domain": "mri",
                "channels": [info["channels"][channel] if channel < len(info["channels"]) else "MRI"],
                "classes": class_names,
                "image_size": image_size,
                "partitions": partitions,
                "target_spacing": target_spacing,
                "percentiles": percentiles,
                "layout": info["layout"],
                "dataset": info.get("name") or input.name,
                "source": str(input),
                "seed": seed,
                "n4": bool(n4),
                "slice_axis": slice_axis,
                "channel": channel,
                "samples": samples,
                "groups": groups,
                "splits": splits,
                "subject_key": info["subject_key"],
                "subjects": _subject_records(cases, split_of),
                "subject_splits": subject_split,
                "split_source": split_source,
                "unlabeled_only": {
                    "cases": [c.name for c in unlabeled_only],
                    "note": "no label file: used only as unlabeled pretraining data, never in labeled, val or test",
                },
                "excluded": excluded,
            },
        )
        write_yaml(tmp / "config.yaml", config)
    log.info("wrote %d slices of %d volumes to %s", n_total, len(cases), out)
    return out


def _checked_header(case: Case, file_channel: int | None) -> VolumeHeader:
    """The image header of ``case``, its label's checked against it (same grid)."""
    header = read_header(case.image, file_channel)
    if case.label is not None:
        check_pair(header, read_header(case.label))
    return header


def _set_aside_unlabeled(
    input: Path, cases: list[Case], split_of: dict[str, str]
) -> tuple[list[Case], dict[str, str], list[Case]]:
    """A volume without labels is pretraining data only: it stays out of test, val and the pool.
    Returns the cases kept, the excluded ones (name → why) and the unlabeled-only ones."""
    excluded = {
        c.name: f"no label file, and its subject {c.subject} is in the {split_of[c.subject]} split"
        for c in cases
        if c.label is None and split_of[c.subject] != "unlabeled"
    }
    unlabeled_only = [c for c in cases if c.label is None and c.name not in excluded]
    if excluded:
        log.warning(
            "%d volumes without labels belong to test/val/labeled-pool subjects and are left out (e.g. %s)",
            len(excluded),
            next(iter(excluded)),
        )
    if unlabeled_only:
        root = input if input.is_dir() else input.parent
        folders = sorted(
            {
                str(c.image.parent.relative_to(root)) if c.image.parent.is_relative_to(root) else str(c.image.parent)
                for c in unlabeled_only
            }
        )
        log.info(
            "%d volumes without labels (in %s) are used only as unlabeled pretraining data",
            len(unlabeled_only),
            ", ".join(folders),
        )
    return [c for c in cases if c.name not in excluded], excluded, unlabeled_only


@dataclass(frozen=True)
class CasePlan:
    """What every volume of pass 2 shares: the output folder and the preprocessing settings."""

    tmp: Path
    percentiles: Sequence[float]
    class_values: Sequence[int]
    partitions: int
    file_channel: int | None
    n4: bool


def _case_jobs(
    plan: CasePlan,
    cases: list[Case],
    headers: dict[str, VolumeHeader],
    geometries: dict[str, dict[str, Any]],
    split_of: dict[str, str],
) -> tuple[list[CaseJob], dict[str, list[Any]], dict[str, list[str]]]:
    """Pass 2's jobs, one per volume, each with its first row in the arrays; the per-slice sample
    table (volume, slice, partition, labeled) and the case names per split."""
    samples: dict[str, list[Any]] = {"group": [], "index": [], "partition": [], "labeled": []}
    splits: dict[str, list[str]] = {name: [] for name in ("unlabeled", "labeled", "val", "test")}
    jobs: list[CaseJob] = []
    start = 0
    for case in cases:
        geometry = geometries[case.name]
        split = split_of[case.subject]
        store_label = case.label is not None and split != "unlabeled"
        n = geometry["n_slices"]
        jobs.append(
            CaseJob(
                plan.tmp,
                case,
                headers[case.name],
                geometry,
                start,
                plan.percentiles,
                plan.class_values,
                store_label,
                plan.file_channel,
                plan.n4,
            )
        )
        splits[split].append(case.name)
        samples["group"] += [case.name] * n
        samples["index"] += list(range(n))
        samples["partition"] += [int(s * plan.partitions // n) for s in range(n)]
        samples["labeled"] += [store_label] * n
        start += n
    return jobs, samples, splits


def _warn_foreground_cut(groups: dict[str, dict[str, Any]], image_size: Sequence[int]) -> None:
    cut = {name: g["foreground_cropped"] for name, g in groups.items() if g["foreground_cropped"] > 0}
    if cut:
        worst = max(cut, key=cut.__getitem__)
        log.warning(
            "the crop to %s cut away foreground in %d of %d labeled volumes (up to %.1f%%, %s); "
            "use a larger --image-size or a coarser --target-spacing",
            image_size,
            len(cut),
            sum(g["labeled"] for g in groups.values()),
            100 * cut[worst],
            worst,
        )


def _subject_records(cases: list[Case], split_of: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        subject: {"split": split_of[subject], "cases": sorted(c.name for c in cases if c.subject == subject)}
        for subject in sorted({c.subject for c in cases})
    }


@dataclass(frozen=True)
class CaseJob:
    """One volume of pass 2: what :func:`write_case_job` needs to write it into the arrays of
    the prepared folder ``folder`` at rows ``start:start + n_slices``."""

    folder: Path
    case: Case
    header: VolumeHeader
    geometry: dict[str, Any]
    start: int
    percentiles: Sequence[float]
    class_values: Sequence[int]
    store_label: bool
    file_channel: int | None
    n4: bool


def write_case_job(job: CaseJob) -> dict[str, Any]:
    """Write one volume (in this process or a worker): the arrays are opened memory-mapped for
    this volume alone, so that the pages it wrote leave the process's memory with it."""
    arrays = {name: np.load(job.folder / f"{name}.npy", mmap_mode="r+") for name in ("images", "labels")}
    try:
        return _write_case(
            job.case,
            job.header,
            job.geometry,
            arrays,
            job.start,
            job.percentiles,
            job.class_values,
            job.store_label,
            job.file_channel,
            job.n4,
        )
    finally:
        for arr in arrays.values():
            arr.flush()
        del arrays


def _write_case(
    case: Case,
    header: VolumeHeader,
    geometry: dict[str, Any],
    arrays: dict[str, np.memmap],
    start: int,
    percentiles: Sequence[float],
    class_values: Sequence[int],
    store_label: bool,
    file_channel: int | None,
    n4: bool = False,
) -> dict[str, Any]:
    """Read, validate and write one volume into ``arrays[start:start + n_slices]``; return its group record."""
    n = geometry["n_slices"]
    cropped = 0.0  # fraction of the stored foreground that the crop cut away
    data, _, _ = load_volume(case.image, file_channel)
    if n4:
        data = n4_correct(data, header.zooms)  # before the percentiles: they assume one tissue, one intensity
    stack, lo, hi = percentile_scale(to_canonical_stack(data, geometry), percentiles)  # (S, H0, W0)
    if hi <= lo:
        log.warning("%s: constant intensity within the percentiles; the image is all zeros", case.image)
    arrays["images"][start : start + n, 0] = to_prepared(stack, geometry, order=1)
    if case.label is not None:
        labels, _, _ = load_label(case.label, class_values)  # validated even when not stored
        if store_label:
            resampled = resize_inplane(to_canonical_stack(labels, geometry), geometry["resampled_shape"][1:], order=0)
            prepared = crop_or_pad(resampled, geometry["crop_offset"], geometry["image_size"], 0)
            arrays["labels"][start : start + n] = prepared
            n_foreground = np.count_nonzero(resampled)
            cropped = (n_foreground - np.count_nonzero(prepared)) / max(n_foreground, 1)
        else:
            arrays["labels"][start : start + n] = IGNORE_INDEX
    else:
        arrays["labels"][start : start + n] = IGNORE_INDEX
    return {
        "subject": case.subject,
        **({"info": dict(case.meta)} if case.meta else {}),
        "image": str(case.image),
        "label": None if case.label is None else str(case.label),
        "labeled": store_label,
        "affine": header.affine.tolist(),
        "shape": list(header.shape),
        "spacing": list(header.zooms),
        "intensity_range": [lo, hi],
        "foreground_cropped": cropped,
        **geometry,
    }


def run_preprocess(cfg: MRIPreprocessConfig) -> None:
    """Run ``medseg preprocess`` with its typed options."""
    preprocess(
        cfg.input,
        cfg.out,
        layout=cfg.layout,
        target_spacing=list(cfg.target_spacing),
        image_size=list(cfg.image_size),
        partitions=cfg.partitions,
        n_test=cfg.n_test,
        n_val=cfg.n_val,
        n_labeled=cfg.n_labeled,
        seed=cfg.seed,
        percentiles=list(cfg.percentiles),
        slice_axis=cfg.slice_axis if cfg.slice_axis == "auto" else int(cfg.slice_axis),
        channel=cfg.channel,
        subject_pattern=cfg.subject_pattern,
        subject_csv=cfg.subject_csv,
        test_subjects=cfg.test_subjects,
        val_subjects=cfg.val_subjects,
        splits_from=cfg.splits_from,
        splits_fold=cfg.splits_fold,
        n4=cfg.n4,
        config=to_record(cfg),
        workers=cfg.workers,
    )
