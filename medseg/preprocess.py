"""``medseg preprocess``: raw NIfTI dataset -> prepared 2D slices (segcore.prepared format).

Per volume: canonical reorientation, the slice axis (largest spacing) made the sample axis,
in-plane resampling to ``target_spacing`` (images linear with anti-aliasing when shrinking,
labels nearest; the through-plane sampling is kept), intensity clipping to per-volume
percentiles scaled to [0, 1], centre crop / zero pad to ``image_size``. Every step is recorded
in the manifest group so that :func:`medseg.native.to_native` maps predictions back exactly.

Two passes: headers first (validation, geometry, slice counts, splits), then voxel data volume
by volume into memory-mapped arrays, so the dataset never sits in RAM. Output is written
atomically: on any error no output folder is left behind.

Splits are drawn per patient from ``seed``: ``test`` (n_test), ``val`` (n_val), ``labeled``
(n_labeled, or all remaining labeled patients), ``unlabeled`` (the rest of the labeled
patients, whose labels are NOT stored, plus every case without a label). Labels of unlabeled
cases are 255 in ``labels.npy``.

``image_size`` not divisible by 16 only logs a warning: the U-Net's depth decides what it
needs (2**(levels-1)), and the training stage checks it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.intensity import percentile_scale
from medseg.layouts import LAYOUTS, Case, list_cases
from medseg.native import (
    crop_or_pad,
    plan_geometry,
    resize_inplane,
    to_canonical_stack,
    to_prepared,
)
from medseg.nifti import VolumeHeader, check_pair, load_label, load_volume, read_header
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml
from segcore.prepared import IGNORE_INDEX, create_arrays, write_manifest

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


def split_patients(labeled: Sequence[str], unlabeled: Sequence[str], n_test: int, n_val: int, n_labeled: int | None, seed: int) -> dict[str, list[str]]:
    """Deterministic patient-level split: a seeded permutation of the sorted labeled patients
    gives test, then val, then the labeled pool; the rest and all unlabeled patients form the
    unlabeled pool. Lists are sorted."""
    ordered = sorted(labeled)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B17]))
    perm = [ordered[i] for i in rng.permutation(len(ordered))]
    n_pool = len(perm) - n_test - n_val if n_labeled is None else n_labeled
    bounds = np.cumsum([n_test, n_val, n_pool])
    return {
        "test": sorted(perm[: bounds[0]]),
        "val": sorted(perm[bounds[0] : bounds[1]]),
        "labeled": sorted(perm[bounds[1] : bounds[2]]),
        "unlabeled": sorted(perm[bounds[2] :] + list(unlabeled)),
    }


def _validate_options(target_spacing: Sequence[float], image_size: Sequence[int], partitions: int, percentiles: Sequence[float], n_test: int, n_val: int) -> None:
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
    config: dict[str, Any] | None = None,
) -> Path:
    """Prepare the raw dataset at ``input`` into ``out``; returns ``out``.

    ``target_spacing`` (H, W) mm in-plane; ``image_size`` (H, W) px; ``partitions``: slice
    blocks per volume for the global contrastive loss; ``n_test``/``n_val``/``n_labeled``:
    patients per split (``n_labeled`` ``"all"`` = every remaining labeled patient);
    ``percentiles``: intensity clip range per volume; ``slice_axis``: ``"auto"`` or a canonical
    axis; ``channel``: input channel (nnU-Net file index or 4D MSD channel). ``config`` is
    written as ``config.yaml`` (default: these arguments).
    """
    input, out = Path(input), Path(out)
    target_spacing = [float(s) for s in target_spacing]
    image_size = [int(s) for s in image_size]
    percentiles = [float(p) for p in percentiles]
    _validate_options(target_spacing, image_size, partitions, percentiles, n_test, n_val)
    n_pool = parse_n_labeled(n_labeled)
    if config is None:
        config = {
            "input": str(input), "out": str(out), "layout": layout, "target_spacing": target_spacing,
            "image_size": image_size, "partitions": partitions, "n_test": n_test, "n_val": n_val,
            "n_labeled": n_labeled, "seed": seed, "percentiles": percentiles, "slice_axis": slice_axis, "channel": channel,
        }

    cases, info = list_cases(input, layout, channel=channel)
    class_values = sorted(info["classes"])
    n_classes = max(class_values) + 1
    class_names = [info["classes"].get(v, f"class_{v}") for v in range(n_classes)]
    file_channel = channel if info["channel_in_file"] else None

    # ---- pass 1: headers only ------------------------------------------------------------
    geometries: dict[str, dict[str, Any]] = {}
    headers: dict[str, VolumeHeader] = {}
    for case in cases:
        header = read_header(case.image, file_channel)
        if case.label is not None:
            check_pair(header, read_header(case.label))
        headers[case.subject] = header
        geometries[case.subject] = plan_geometry(header, target_spacing, image_size, slice_axis)

    labeled_patients = sorted({c.patient for c in cases if c.label is not None})
    unlabeled_patients = sorted({c.patient for c in cases} - set(labeled_patients))
    wanted = n_test + n_val + (n_pool or 0)
    if wanted > len(labeled_patients):
        raise InputError(
            input,
            f"too few labeled subjects: {len(labeled_patients)} found, but n_test={n_test} + n_val={n_val}"
            f" + n_labeled={n_labeled} need {wanted}; lower --n-test/--n-val/--n-labeled",
        )
    patient_split = split_patients(labeled_patients, unlabeled_patients, n_test, n_val, n_pool, seed)
    split_of = {p: name for name, members in patient_split.items() for p in members}
    n_total = sum(g["n_slices"] for g in geometries.values())
    log.info("%s layout: %d volumes, %d slices; splits (patients): %s", info["layout"], len(cases), n_total,
             {k: len(v) for k, v in patient_split.items()})

    # ---- pass 2: voxel data, volume by volume into the memory maps ------------------------
    with atomic_dir(out) as tmp:
        arrays = create_arrays(tmp, n_total, 1, image_size[0], image_size[1])
        samples: dict[str, list[Any]] = {"group": [], "index": [], "partition": [], "labeled": []}
        groups: dict[str, dict[str, Any]] = {}
        splits: dict[str, list[str]] = {name: [] for name in ("unlabeled", "labeled", "val", "test")}
        start = 0
        for case in cases:
            geometry = geometries[case.subject]
            split = split_of[case.patient]
            store_label = case.label is not None and split != "unlabeled"
            n = geometry["n_slices"]
            groups[case.subject] = _write_case(case, headers[case.subject], geometry, arrays, start, percentiles, class_values, store_label, file_channel)
            groups[case.subject].update({"split": split, "first_sample": start})
            splits[split].append(case.subject)
            samples["group"] += [case.subject] * n
            samples["index"] += list(range(n))
            samples["partition"] += [int(s * partitions // n) for s in range(n)]
            samples["labeled"] += [store_label] * n
            start += n
        cut = {name: g["foreground_cropped"] for name, g in groups.items() if g["foreground_cropped"] > 0}
        if cut:
            worst = max(cut, key=cut.__getitem__)
            log.warning(
                "the crop to %s cut away foreground in %d of %d labeled volumes (up to %.1f%%, %s); "
                "use a larger --image-size or a coarser --target-spacing", image_size, len(cut),
                sum(g["labeled"] for g in groups.values()), 100 * cut[worst], worst,
            )
        for arr in arrays.values():
            arr.flush()
        del arrays
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
                "samples": samples,
                "groups": groups,
                "splits": splits,
            },
        )
        write_yaml(tmp / "config.yaml", config)
    log.info("wrote %d slices of %d volumes to %s", n_total, len(cases), out)
    return out


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
) -> dict[str, Any]:
    """Read, validate and write one volume into ``arrays[start:start + n_slices]``; return its group record."""
    n = geometry["n_slices"]
    cropped = 0.0  # fraction of the stored foreground that the crop cut away
    data, _, _ = load_volume(case.image, file_channel)
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
        "subject": case.patient,
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


def add_preprocess_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``medseg preprocess``."""
    parser.add_argument("--input", type=Path, default=Path("data/mri_phantoms"), help="raw dataset folder (or one NIfTI file)")
    parser.add_argument("--out", type=Path, default=Path("data/mri_prepared"), help="prepared data folder to write")
    parser.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS), help="dataset layout (auto: detect)")
    parser.add_argument("--target-spacing", type=float, nargs=2, default=[1.5, 1.5], metavar=("H_MM", "W_MM"), help="in-plane spacing after resampling, mm")
    parser.add_argument("--image-size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"), help="slice size after centre crop/pad, pixels")
    parser.add_argument("--partitions", type=int, default=4, help="slice partitions per volume for the global contrastive loss")
    parser.add_argument("--n-test", type=int, default=10, help="labeled subjects held out for the test set")
    parser.add_argument("--n-val", type=int, default=5, help="labeled subjects for validation (model selection)")
    parser.add_argument("--n-labeled", default="10", help="labeled pool size in subjects, or 'all' (the rest go to the unlabeled pool)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subject-level split")
    parser.add_argument("--percentiles", type=float, nargs=2, default=[0.5, 99.5], metavar=("LOW", "HIGH"), help="per-volume intensity clip percentiles, scaled to [0, 1]")
    parser.add_argument("--slice-axis", default="auto", choices=("auto", "0", "1", "2"), help="canonical (RAS) axis to slice along; auto = largest spacing")
    parser.add_argument("--channel", type=int, default=0, help="input channel: nnU-Net _000C file or channel of a 4D Decathlon image")


def run_preprocess(args: argparse.Namespace) -> None:
    """Run ``medseg preprocess`` with parsed arguments."""
    slice_axis = str(args.slice_axis)
    preprocess(
        args.input,
        args.out,
        layout=args.layout,
        target_spacing=[float(s) for s in args.target_spacing],
        image_size=[int(s) for s in args.image_size],
        partitions=int(args.partitions),
        n_test=int(args.n_test),
        n_val=int(args.n_val),
        n_labeled=str(args.n_labeled),
        seed=int(args.seed),
        percentiles=[float(p) for p in args.percentiles],
        slice_axis=slice_axis if slice_axis == "auto" else int(slice_axis),
        channel=int(args.channel),
        config=resolved_args(args),
    )
