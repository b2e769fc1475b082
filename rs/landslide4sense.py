"""The Landslide4Sense layout (iarai/Landslide4Sense-2022): HDF5 patches without georeference.

::

    <folder>/img/image_N.h5    dataset "img"  (128, 128, 14) float: 12 Sentinel-2 bands B1..B12,
                                                slope, DEM (in this order)
    <folder>/mask/mask_N.h5    dataset "mask" (128, 128) 0/1   (absent for unlabeled patches)

The release (iarai/Landslide4Sense-2022) holds three such folders, ``TrainData`` (3,799 patches),
``ValidData`` (245) and ``TestData`` (800) (:data:`RELEASE_FOLDERS`); the validation and test
masks were published later (Zenodo record 10463239), so a copy may lack them.
:func:`release_patches` reads the release by folder (the official splits,
:mod:`rs.landslide4sense_protocol`); :func:`find_patches` reads a plain folder (or every
subfolder with an ``img/``). Patches are independent (no CRS, no geotransform), so each one is its
own "scene" with an identity transform and ``georeferenced: false`` in the manifest. Channels are
kept as delivered (no derived aspect or hillshade: the layout has no pixel size to derive them
with).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from segcore.errors import InputError

L4S_CHANNELS = tuple(f"B{i}" for i in range(1, 13)) + ("slope", "elevation")
L4S_SPECTRAL = list(range(12))
L4S_TERRAIN = [12, 13]
L4S_SIZE = 128
# the release's folders and the official split each one is
RELEASE_FOLDERS = {"TrainData": "train", "ValidData": "val", "TestData": "test"}
VALID_TEST_MASKS = "Zenodo record 10463239"  # where the later validation and test masks are
_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class L4SPatch:
    """One patch: its id (``<subfolder>/image_N`` or ``image_N``), image and optional mask file."""

    id: str
    image: Path
    mask: Path | None


def _img_dirs(folder: Path) -> list[Path]:
    if (folder / "img").is_dir():
        return [folder / "img"]
    return sorted(p / "img" for p in folder.iterdir() if p.is_dir() and (p / "img").is_dir())


def is_landslide4sense(folder: str | Path) -> bool:
    """True if ``folder`` (or one of its subfolders) has an ``img/`` folder with ``image_*.h5``."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return any(any(d.glob("image_*.h5")) for d in _img_dirs(folder))


def _patches_in(img_dir: Path, prefix: str) -> list[L4SPatch]:
    """The patches of one ``img/`` folder in patch-number order, ids ``<prefix>image_N``."""
    files = []
    for f in img_dir.glob("image_*.h5"):
        m = _NUMBER.search(f.stem)
        if m is None:
            raise InputError(f, "Landslide4Sense image name must be image_<number>.h5")
        files.append((int(m.group(1)), f))
    patches = []
    for num, f in sorted(files):
        mask = img_dir.parent / "mask" / f"mask_{num}.h5"
        patches.append(L4SPatch(f"{prefix}image_{num}", f, mask if mask.is_file() else None))
    return patches


def find_patches(folder: str | Path) -> list[L4SPatch]:
    """All patches under ``folder``, ordered by subfolder then patch number."""
    folder = Path(folder)
    patches: list[L4SPatch] = []
    for img_dir in _img_dirs(folder):
        prefix = "" if img_dir.parent == folder else f"{img_dir.parent.name}/"
        patches += _patches_in(img_dir, prefix)
    if not patches:
        raise InputError(folder, "no Landslide4Sense patches found (expected img/image_N.h5)")
    return patches


def is_release(folder: str | Path) -> bool:
    """True if ``folder`` is laid out as the release: no ``img/`` of its own and at least one of
    :data:`RELEASE_FOLDERS` with an ``img/`` folder."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / "img").is_dir():
        return False
    return any((folder / name / "img").is_dir() for name in RELEASE_FOLDERS)


def release_patches(folder: str | Path) -> dict[str, list[L4SPatch]]:
    """The patches of each release folder present, ``{"TrainData": [...], ...}`` in the order of
    :data:`RELEASE_FOLDERS`, ids ``<folder>/image_N``. ``TrainData`` must hold patches (it is the
    training split); ``ValidData`` and ``TestData`` may be absent (then missing from the result)."""
    folder = Path(folder)
    found = {
        name: _patches_in(folder / name / "img", f"{name}/")
        for name in RELEASE_FOLDERS
        if (folder / name / "img").is_dir()
    }
    if not found.get("TrainData"):
        raise InputError(
            folder / "TrainData",
            "the Landslide4Sense release needs TrainData/img/image_N.h5 (the training split)",
        )
    return found


def _read_dataset(path: Path, key: str) -> np.ndarray:
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise InputError(path, f"HDF5 file has no dataset '{key}' (has {sorted(f.keys())})")
            return np.asarray(f[key][()])
    except InputError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        if not path.exists():
            raise InputError(path, "file does not exist") from err
        raise InputError(path, f"cannot be read as HDF5 (corrupt or truncated: {err})") from err


def read_image(path: str | Path, size: int = L4S_SIZE) -> np.ndarray:
    """The 14 channels of a patch as (14, H, W) float32 (stored as (H, W, 14))."""
    path = Path(path)
    img = _read_dataset(path, "img")
    if img.ndim != 3 or img.shape[-1] != len(L4S_CHANNELS):
        raise InputError(path, f"dataset 'img' must be (H, W, {len(L4S_CHANNELS)}), got {img.shape}")
    if img.shape[0] != size or img.shape[1] != size:
        raise InputError(path, f"patch is {img.shape[0]}x{img.shape[1]}, expected {size}x{size}")
    return np.ascontiguousarray(np.moveaxis(img.astype(np.float32), -1, 0))  # (14, H, W)


def read_mask(path: str | Path, size: int = L4S_SIZE) -> np.ndarray:
    """A patch's labels as (H, W) uint8 0/1."""
    path = Path(path)
    mask = _read_dataset(path, "mask")
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != (size, size):
        raise InputError(path, f"dataset 'mask' is {mask.shape}, its image is {size}x{size}: they must match")
    values = np.unique(mask)
    if not np.isin(values, [0, 1]).all():
        raise InputError(path, f"mask values must be 0 or 1, found {values[:5].tolist()}")
    return mask.astype(np.uint8)


def patch_size(patches: list[L4SPatch]) -> int:
    """Height (= width) of the first patch: all patches must share it."""
    img = _read_dataset(patches[0].image, "img")
    if img.ndim != 3 or img.shape[0] != img.shape[1]:
        raise InputError(patches[0].image, f"dataset 'img' must be square (H, W, 14), got {img.shape}")
    return int(img.shape[0])
