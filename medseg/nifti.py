"""Reading and validating NIfTI volumes: every problem becomes an :class:`InputError` naming the file.

nibabel loads lazily: a truncated ``.nii.gz`` often opens fine and only fails when its voxels
are read, so every loader here forces the data read inside its ``try``.

Conventions:

* A volume is 3D. A 4D file is accepted when its 4th dimension is 1 (squeezed), or when the
  caller asks for one ``channel`` of a multi-modal 4D image (Medical Segmentation Decathlon).
* Image and label of one case must agree on shape and on the affine (to 1e-3 mm).
* Labels are integer-valued (a float file holding whole numbers is accepted) and take only the
  dataset's class values.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from segcore.errors import InputError

AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class VolumeHeader:
    """Geometry of a NIfTI file, read from its header only (no voxel data).

    ``shape`` is the 3D spatial shape (voxels); ``zooms`` the voxel sizes in mm of those three
    axes; ``affine`` the 4x4 voxel-to-world (mm) matrix; ``n_channels`` the 4th dimension (1
    for a 3D file).
    """

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    zooms: tuple[float, float, float]
    n_channels: int


def _open(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise InputError(path, "file does not exist")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for a corrupt header
        raise InputError(
            path, f"cannot read as NIfTI; the file is corrupt, truncated or not NIfTI ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"not a NIfTI image (nibabel read it as {type(img).__name__})")
    _check_spacing(path, img)
    return img


def _check_spacing(path: Path, img: nib.Nifti1Image) -> None:
    """The voxel spacing as the file stores it: nibabel silently reads a zero spacing as 1 mm
    (with a warning that names no file), which would resample the volume wrongly."""
    with ImageOpener(str(path)) as f:  # a single-file NIfTI: the header is at its start
        raw = type(img.header).from_fileobj(f, check=False)
    n = min(3, int(raw["dim"][0]))
    spacing = np.asarray(raw["pixdim"][1 : 1 + n], dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing == 0):
        raise InputError(
            path, f"voxel spacing {spacing.tolist()} (header pixdim) is zero or not finite; set the true spacing in mm"
        )


def _spatial(path: Path, shape: tuple[int, ...], channel: int | None) -> int:
    """Validate the dimensions of ``shape``; return the number of channels (4th dim)."""
    if len(shape) < 3:
        raise InputError(path, f"{len(shape)}D image of shape {shape} where a 3D volume is expected")
    extra = shape[3:]
    if len(extra) > 1 and any(d != 1 for d in extra[1:]):
        raise InputError(path, f"{len(shape)}D image of shape {shape} where a 3D volume is expected")
    n_channels = int(extra[0]) if extra else 1
    if n_channels > 1 and channel is None:
        raise InputError(
            path,
            f"4D image of shape {shape} where a 3D volume is expected "
            "(a multi-modal Decathlon image needs the msd layout and a channel choice)",
        )
    if channel is not None and not 0 <= channel < n_channels:
        raise InputError(path, f"channel {channel} requested but the image has {n_channels} channel(s) (shape {shape})")
    return n_channels


def read_header(path: str | Path, channel: int | None = None) -> VolumeHeader:
    """Geometry of ``path`` from its header; checks that it is 3D (or 4D with ``channel``)."""
    path = Path(path)
    img = _open(path)
    shape = tuple(int(d) for d in img.shape)
    n_channels = _spatial(path, shape, channel)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, f"affine is singular or not finite:\n{affine}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return VolumeHeader(path, shape[:3], affine, zooms, n_channels)  # type: ignore[arg-type]


def _read_data(path: Path, img: nib.Nifti1Image, channel: int | None, n_channels: int) -> np.ndarray:
    try:
        if n_channels > 1 or len(img.shape) > 3:
            index = (slice(None),) * 3 + (0 if channel is None else channel,) + (0,) * (len(img.shape) - 4)
            data = np.asanyarray(img.dataobj[index])
        else:
            data = np.asanyarray(img.dataobj)
        data = np.array(data, copy=True)  # detach from any memory map of the file
    except Exception as err:  # truncated gzip: EOFError, zlib.error, ValueError, OSError...
        raise InputError(
            path, f"cannot read the voxel data; the file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    if data.ndim != 3:
        raise InputError(path, f"voxel data has shape {data.shape} where a 3D volume is expected")
    return data


def load_volume(
    path: str | Path, channel: int | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read an image volume.

    Returns ``(data, affine, zooms)``: data (X, Y, Z) float32 in the file's voxel order, the
    4x4 affine (mm), the voxel sizes (mm). Rejects unreadable files, 4D without ``channel`` and
    NaN/Inf voxels.
    """
    path = Path(path)
    header = read_header(path, channel)
    data = _read_data(path, _open(path), channel, header.n_channels).astype(np.float32, copy=False)
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(
            path,
            f"image has {int(bad.sum())} NaN/Inf voxel(s) "
            f"(first at voxel {tuple(int(i) for i in np.argwhere(bad)[0])})",
        )
    return data, header.affine, header.zooms


def load_label(path: str | Path, classes: Collection[int]) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read a label volume whose values must lie in ``classes``.

    Returns ``(labels, affine, zooms)`` with labels (X, Y, Z) uint8. A float file is accepted
    when every voxel is a whole number; fractional values, NaN, and values outside ``classes``
    are errors that name the offending values.
    """
    path = Path(path)
    header = read_header(path)
    raw = _read_data(path, _open(path), None, header.n_channels)
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.bool_)):
        if not np.issubdtype(raw.dtype, np.floating):
            raise InputError(path, f"label file has non-numeric data type {raw.dtype}")
        finite = np.isfinite(raw)
        if not finite.all():
            raise InputError(path, f"label file is non-integer: {int((~finite).sum())} NaN/Inf voxel(s)")
        fractional = raw != np.round(raw)
        if fractional.any():
            examples = np.unique(raw[fractional])[:5].tolist()
            raise InputError(
                path, f"label file is non-integer (data type {raw.dtype}, fractional values such as {examples})"
            )
    values = np.unique(raw)
    allowed = {int(c) for c in classes}
    outside = [v for v in values.tolist() if int(v) not in allowed]
    if outside:
        shown = [int(v) for v in outside[:10]]
        raise InputError(path, f"label values {shown} are not among the dataset's classes {sorted(allowed)}")
    return raw.astype(np.uint8), header.affine, header.zooms


def check_pair(image: VolumeHeader, label: VolumeHeader) -> None:
    """Image and label of one case must share the 3D shape and the affine (to 1e-3 mm)."""
    if image.shape != label.shape:
        raise InputError(
            label.path, f"label shape {label.shape} differs from image shape {image.shape} of {image.path}"
        )
    if not np.allclose(image.affine, label.affine, rtol=0.0, atol=AFFINE_TOLERANCE_MM):
        diff = float(np.max(np.abs(image.affine - label.affine)))
        raise InputError(
            label.path,
            f"label affine differs from the affine of image {image.path} by up to {diff:.4g} mm "
            f"(tolerance {AFFINE_TOLERANCE_MM} mm)",
        )
