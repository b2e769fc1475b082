"""Native voxel grid <-> prepared slice stack, and writing predictions back as NIfTI.

The forward chain (used by ``medseg preprocess``), with the record each step leaves in the
manifest group so that :func:`to_native` can invert it exactly:

1. canonical reorientation: ``apply_orientation(data, orientation)`` with the nibabel
   orientation array of the source affine (``io_orientation``), as ``as_closest_canonical``;
2. axis permutation: canonical axes reordered to (S, H, W), the slice axis first;
3. in-plane resampling from the canonical in-plane shape to ``resampled_shape`` (pixel centres
   aligned, like ``scipy.ndimage.zoom(grid_mode=True)``; images linear, labels nearest); the
   slice axis is never resampled;
4. centre crop / zero pad to ``image_size``: output pixel ``i`` is resampled pixel
   ``i + crop_offset`` (a negative offset pads).

When the resampled shape equals the canonical in-plane shape, step 3 is the identity, so with
the source spacing as target and a large enough ``image_size`` the round trip is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from scipy.ndimage import affine_transform, gaussian_filter

from medseg.nifti import VolumeHeader
from segcore.errors import InputError
from segcore.outputs import atomic_file

_RAS = axcodes2ornt(("R", "A", "S"))


def plan_geometry(
    header: VolumeHeader,
    target_spacing: Sequence[float],
    image_size: Sequence[int],
    slice_axis: str | int = "auto",
) -> dict[str, Any]:
    """The per-volume geometry record (JSON-ready) of the forward chain above.

    ``target_spacing``: in-plane (H, W) spacing in mm; ``image_size``: (H, W) in pixels;
    ``slice_axis``: ``"auto"`` (the canonical axis with the largest spacing; ties within 0.1%
    go to the last axis) or a canonical axis index 0-2.
    """
    ornt = io_orientation(header.affine)
    canonical_affine = header.affine @ inv_ornt_aff(ornt, header.shape)
    spacing = np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0))  # mm per canonical axis
    canonical_shape = [0, 0, 0]
    for src_axis, (dst_axis, _) in enumerate(ornt):
        canonical_shape[int(dst_axis)] = int(header.shape[src_axis])
    if slice_axis == "auto":
        largest = spacing.max()
        axis = max(a for a in range(3) if spacing[a] >= largest * (1 - 1e-3))
    else:
        axis = int(slice_axis)
        if axis not in (0, 1, 2):
            raise InputError(header.path, f"slice axis must be auto, 0, 1 or 2, got {slice_axis!r}")
    permutation = [axis] + [a for a in range(3) if a != axis]
    inplane_shape = [canonical_shape[a] for a in permutation[1:]]
    inplane_spacing = [float(spacing[a]) for a in permutation[1:]]
    resampled_hw = [
        max(1, int(round(n * s / t))) for n, s, t in zip(inplane_shape, inplane_spacing, target_spacing, strict=True)
    ]
    offset = [(r - size) // 2 for r, size in zip(resampled_hw, image_size, strict=True)]
    return {
        "orientation": ornt.astype(int).tolist(),
        "canonical_shape": canonical_shape,
        "canonical_spacing": [float(s) for s in spacing],
        "slice_axis": axis,
        "permutation": permutation,
        "n_slices": canonical_shape[axis],
        "inplane_shape": inplane_shape,
        "inplane_spacing": inplane_spacing,
        "resampled_shape": [canonical_shape[axis], *resampled_hw],
        "resampled_spacing": [n * s / r for n, s, r in zip(inplane_shape, inplane_spacing, resampled_hw, strict=True)],
        "crop_offset": offset,
        "image_size": [int(s) for s in image_size],
    }


def resize_inplane(arr: np.ndarray, out_hw: Sequence[int], order: int, antialias: bool = False) -> np.ndarray:
    """Resample the last two axes of ``arr`` (..., h, w) to ``out_hw`` with pixel centres aligned.

    Output pixel ``o`` samples input coordinate ``(o + 0.5) * in / out - 0.5`` (edges clamp);
    ``order`` 0 = nearest (labels), 1 = linear. Equal shapes return an exact copy.
    ``antialias`` blurs before shrinking (sigma = (factor - 1) / 2, as scikit-image does).
    """
    in_hw = arr.shape[-2:]
    out_hw = tuple(int(n) for n in out_hw)
    if tuple(in_hw) == out_hw:
        return arr.copy()
    lead = arr.ndim - 2
    scale = np.array([1.0] * lead + [i / o for i, o in zip(in_hw, out_hw, strict=True)])
    if antialias and order > 0 and np.any(scale[lead:] > 1):
        sigma = [0.0] * lead + [max(0.0, (s - 1) / 2) for s in scale[lead:]]
        arr = gaussian_filter(arr, sigma, mode="nearest")
    offset = 0.5 * scale - 0.5
    offset[:lead] = 0.0
    return affine_transform(
        arr, scale, offset=offset, output_shape=arr.shape[:lead] + out_hw, order=order, mode="nearest"
    )


def crop_or_pad(
    arr: np.ndarray, offset: Sequence[int], out_hw: Sequence[int], fill: float | np.ndarray = 0
) -> np.ndarray:
    """Window of the last two axes: output pixel ``i`` = input pixel ``i + offset`` (else ``fill``).

    ``fill`` may be an array broadcast against the output (e.g. per-channel (K, 1, 1, 1)).
    The inverse of ``crop_or_pad(x, offset, out)`` is ``crop_or_pad(y, -offset, x.shape[-2:])``.
    """
    out = np.empty(arr.shape[:-2] + tuple(int(n) for n in out_hw), dtype=arr.dtype)
    out[...] = fill
    src, dst = [], []
    for o, n_in, n_out in zip(offset, arr.shape[-2:], out_hw, strict=True):
        start, stop = max(int(o), 0), min(int(o) + int(n_out), n_in)
        if stop <= start:
            return out
        src.append(slice(start, stop))
        dst.append(slice(start - int(o), stop - int(o)))
    out[(..., *dst)] = arr[(..., *src)]
    return out


def to_canonical_stack(volume: np.ndarray, geometry: dict[str, Any]) -> np.ndarray:
    """Steps 1-2: (X, Y, Z) in file voxel order -> (S, H0, W0) canonical slice stack."""
    canonical = apply_orientation(volume, np.asarray(geometry["orientation"], dtype=float))
    return np.ascontiguousarray(canonical.transpose(geometry["permutation"]))  # (S, H0, W0)


def to_prepared(stack: np.ndarray, geometry: dict[str, Any], order: int, fill: float = 0) -> np.ndarray:
    """Steps 3-4: (S, H0, W0) canonical stack -> (S, H, W) prepared slices."""
    resampled = resize_inplane(stack, geometry["resampled_shape"][1:], order, antialias=order > 0)
    return crop_or_pad(resampled, geometry["crop_offset"], geometry["image_size"], fill)


def to_native(volume: np.ndarray, group: dict[str, Any], order: int) -> np.ndarray:
    """Map a prepared-space array back onto the source file's voxel grid.

    ``volume``: (S, H, W) label map (use ``order=0``) or (K, S, H, W) class probabilities
    (``order=1``; the caller takes the argmax afterwards). ``group``: the manifest group of the
    volume. Returns (X, Y, Z) or (K, X, Y, Z) in the source voxel order (``group["shape"]``).
    Pixels that the crop cut away come back as background (label 0, probability 1 for class 0).
    """
    has_classes = volume.ndim == 4
    if volume.ndim not in (3, 4):
        raise ValueError(f"expected (S, H, W) or (K, S, H, W), got shape {volume.shape}")
    n_slices = int(group["n_slices"])
    if volume.shape[-3] != n_slices or list(volume.shape[-2:]) != list(group["image_size"]):
        raise ValueError(f"volume shape {volume.shape} does not match the group's ({n_slices}, {group['image_size']})")
    fill: float | np.ndarray = 0
    if has_classes:
        fill = np.zeros((volume.shape[0], 1, 1, 1), dtype=volume.dtype)
        fill[0] = 1
    resampled_hw = group["resampled_shape"][1:]
    uncropped = crop_or_pad(volume, [-o for o in group["crop_offset"]], resampled_hw, fill)
    stack = resize_inplane(uncropped, group["inplane_shape"], order)  # (..., S, H0, W0)
    inverse_perm = list(np.argsort(group["permutation"]))
    if has_classes:
        canonical = stack.transpose([0] + [1 + int(a) for a in inverse_perm])  # (K, X', Y', Z') canonical
        canonical = np.moveaxis(canonical, 0, -1)  # apply_orientation wants extra axes last
    else:
        canonical = stack.transpose(inverse_perm)
    back = ornt_transform(_RAS, np.asarray(group["orientation"], dtype=float))
    native = apply_orientation(canonical, back)
    if has_classes:
        native = np.moveaxis(native, -1, 0)
    native = np.ascontiguousarray(native)
    expected = tuple(group["shape"])
    if native.shape[-3:] != expected:
        raise ValueError(f"internal error: native shape {native.shape} differs from the source shape {expected}")
    return native


def save_native_label(labels_native: np.ndarray, group: dict[str, Any], path: str | Path) -> None:
    """Write an (X, Y, Z) label map as uint8 NIfTI with the source file's affine (atomically)."""
    expected = tuple(group["shape"])
    if labels_native.shape != expected:
        raise ValueError(f"label map shape {labels_native.shape} differs from the source shape {expected}")
    affine = np.asarray(group["affine"], dtype=np.float64)
    img = nib.Nifti1Image(np.asarray(labels_native, dtype=np.uint8), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(np.uint8)
    with atomic_file(path) as tmp:
        nib.save(img, tmp)
