"""Prepared data: memory-mapped arrays plus a JSON manifest, shared by both domains.

Layout of a prepared folder::

    images.npy      (N, C, H, W) float32, memory-mapped on read
    labels.npy      (N, H, W) uint8; ``ignore_index`` (255) where unknown (nodata, unlabeled)
    <extra>.npy     optional per-sample arrays, e.g. ``superpixels.npy`` (N, H, W) int32
    manifest.json   see :class:`PreparedData`

The manifest holds:

* ``domain``: ``"mri"`` or ``"rs"``; ``channels``: channel names; ``classes``: class names
  indexed by label value; ``ignore_index``; ``image_size``: [H, W].
* ``samples``: column lists of length N: ``group`` (subject or scene id), ``index`` (slice or
  tile index inside its group), ``partition`` (slice partition for the global loss; -1 where
  not defined), ``labeled`` (bool).
* ``groups``: per subject/scene record (source files, native geometry needed to map a
  prediction back, ``split``).
* ``splits``: ``{"unlabeled": [...], "labeled": [...], "val": [...], "test": [...]}`` group ids.
* ``subjects`` (MRI): ``{subject: {"split", "cases": [group ids]}}``: the person each volume
  belongs to; splits and label budgets count subjects (:meth:`PreparedData.split_subjects`).
  Without it (remote sensing, older prepared data) every group is its own subject.
* ``normalization`` (optional): ``{"mean": [...], "std": [...]}`` per channel, applied on read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segcore.errors import InputError
from segcore.labels import IGNORE_INDEX
from segcore.outputs import write_json

SPLITS = ("unlabeled", "labeled", "val", "test")


def create_arrays(
    folder: Path, n: int, channels: int, height: int, width: int, extras: dict[str, np.dtype] | None = None
) -> dict[str, np.memmap]:
    """Create the memory-mapped arrays of a prepared folder (usually a temporary one)."""
    arrays = {
        "images": np.lib.format.open_memmap(
            folder / "images.npy", mode="w+", dtype=np.float32, shape=(n, channels, height, width)
        ),
        "labels": np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, height, width)),
    }
    for name, dtype in (extras or {}).items():
        arrays[name] = np.lib.format.open_memmap(
            folder / f"{name}.npy", mode="w+", dtype=dtype, shape=(n, height, width)
        )
    return arrays


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    required = {"domain", "channels", "classes", "image_size", "samples", "groups", "splits"}
    missing = required - manifest.keys()
    if missing:
        raise ValueError(f"manifest lacks {sorted(missing)}")
    manifest.setdefault("ignore_index", IGNORE_INDEX)
    manifest.setdefault("format_version", 1)
    write_json(folder / "manifest.json", manifest)


class PreparedData:
    """Read access to a prepared folder; arrays are opened memory-mapped, read-only."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        mpath = self.folder / "manifest.json"
        if not mpath.is_file():
            raise InputError(
                self.folder, "not a prepared data folder (no manifest.json); run the preprocess stage first"
            )
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        except json.JSONDecodeError as err:
            raise InputError(mpath, f"manifest is not valid JSON ({err})") from err
        self.images = np.load(self.folder / "images.npy", mmap_mode="r")
        self.labels = np.load(self.folder / "labels.npy", mmap_mode="r")
        s = self.manifest["samples"]
        self.group = np.asarray(s["group"])
        self.index = np.asarray(s["index"], dtype=np.int64)
        self.partition = np.asarray(s["partition"], dtype=np.int64)
        self.labeled = np.asarray(s["labeled"], dtype=bool)
        if len(self.group) != len(self.images) or len(self.labels) != len(self.images):
            raise InputError(self.folder, "manifest and arrays disagree on the number of samples")
        norm = self.manifest.get("normalization")
        self.mean = None if norm is None else np.asarray(norm["mean"], dtype=np.float32)[:, None, None]
        self.std = None if norm is None else np.asarray(norm["std"], dtype=np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def spectral_channels(self) -> list[int]:
        """Indices of the spectral bands among the channels (all channels when the manifest does
        not say): the channels the photometric views of hyper-pixel learning jitter by default."""
        return list(self.manifest.get("spectral_channels") or range(self.in_channels))

    @property
    def ignore_index(self) -> int:
        return int(self.manifest.get("ignore_index", IGNORE_INDEX))

    def extra(self, name: str) -> np.ndarray:
        path = self.folder / f"{name}.npy"
        if not path.is_file():
            raise InputError(self.folder, f"prepared data has no '{name}' array; re-run preprocess with it enabled")
        return np.load(path, mmap_mode="r")

    def split_groups(self, split: str) -> list[str]:
        if split not in self.manifest["splits"]:
            raise InputError(self.folder, f"unknown split '{split}' (have {sorted(self.manifest['splits'])})")
        return list(self.manifest["splits"][split])

    def split_subjects(self, split: str) -> dict[str, list[str]]:
        """``{subject: [group ids]}`` of one split, groups in stored order; a group without a
        ``subject`` record is its own subject."""
        subjects: dict[str, list[str]] = {}
        for group in self.split_groups(split):
            subjects.setdefault(str(self.manifest["groups"][group].get("subject", group)), []).append(group)
        return subjects

    def subject_split(self) -> dict[str, str]:
        """``{subject: split}`` over every split (for messages naming where a subject is)."""
        return {subject: split for split in self.manifest["splits"] for subject in self.split_subjects(split)}

    def sample_indices(self, groups: Iterable[str]) -> np.ndarray:
        """Indices of all samples of the given groups, in stored order."""
        wanted = set(groups)
        return np.flatnonzero(np.isin(self.group, list(wanted)))

    def image(self, i: int) -> np.ndarray:
        x = np.array(self.images[i], dtype=np.float32)  # (C, H, W), copied out of the memmap
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def meta(self, i: int) -> dict[str, Any]:
        return {
            "group": str(self.group[i]),
            "index": int(self.index[i]),
            "partition": int(self.partition[i]),
            "sample": int(i),
        }


class PreparedDataset(Dataset):
    """Samples as dicts ``{"image": (C,H,W) float, "label": (H,W) long, "meta": {...}}``.

    ``label`` is absent when ``with_label`` is False. ``transform`` is applied to the dict
    (MONAI dictionary transforms work on it).
    """

    def __init__(
        self,
        data: PreparedData,
        indices: Sequence[int],
        with_label: bool = True,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        extras: Sequence[str] = (),
    ) -> None:
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.with_label = with_label
        self.transform = transform
        self.extras = {name: data.extra(name) for name in extras}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i = int(self.indices[k])
        sample: dict[str, Any] = {"image": torch.from_numpy(self.data.image(i)), "meta": self.data.meta(i)}
        if self.with_label:
            sample["label"] = torch.from_numpy(np.asarray(self.data.labels[i], dtype=np.int64))
        for name, arr in self.extras.items():
            sample[name] = torch.from_numpy(np.asarray(arr[i]).astype(np.int64))
        if self.transform is not None:
            sample = self.transform(sample)
        return sample


def open_prepared(folder: str | Path, domain: str, title: str) -> PreparedData:
    """The prepared data in ``folder``, checked to be of ``domain`` (``title`` names it in errors)."""
    data = PreparedData(folder)
    found = data.manifest.get("domain")
    if found != domain:
        raise InputError(folder, f"expected {title} prepared data, found domain {found!r}")
    return data
