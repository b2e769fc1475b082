"""MRI prediction for ``medseg predict``: segment NIfTI volumes with a fine-tuned model.

Each input goes through the same chain as ``medseg preprocess`` (canonical orientation,
in-plane resampling, percentile normalisation, crop/pad; the settings are read from the
prepared data's manifest), the network predicts every slice, and the class probabilities are
mapped back to the input's own voxel grid before the argmax. The output NIfTI has the input's
affine and shape.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import MRIPredictConfig
from medseg.intensity import DEFAULT_PERCENTILES, percentile_scale
from medseg.native import (
    plan_geometry,
    save_native_label,
    to_canonical_stack,
    to_native,
    to_prepared,
)
from medseg.nifti import load_volume, read_header
from segcore.errors import InputError
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def _inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith("."))
        if files:
            return files
        raise InputError(path, "folder holds no .nii or .nii.gz files")
    raise InputError(path, "does not exist")


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


@torch.no_grad()
def predict_volume(
    net: torch.nn.Module, path: Path, manifest: dict, slice_axis: str, batch_size: int
) -> tuple[np.ndarray, dict]:
    """Label map of ``path`` in its own voxel grid, and the geometry record used."""
    header = read_header(path)
    geometry = plan_geometry(header, manifest["target_spacing"], manifest["image_size"], slice_axis)
    geometry.update({"affine": header.affine.tolist(), "shape": list(header.shape)})
    data, _, _ = load_volume(path)
    stack, _, _ = percentile_scale(to_canonical_stack(data, geometry), manifest.get("percentiles", DEFAULT_PERCENTILES))
    x = torch.from_numpy(to_prepared(stack, geometry, order=1)[:, None].astype(np.float32))  # (S, 1, H, W)
    probs = torch.cat(
        [torch.softmax(net(x[i : i + batch_size]), 1) for i in range(0, len(x), batch_size)]
    )  # (S, K, H, W)
    native = to_native(probs.permute(1, 0, 2, 3).numpy(), geometry, order=1)  # (K, X, Y, Z)
    return native.argmax(0).astype(np.uint8), geometry


def predict_files(net: torch.nn.Module, ckpt: dict[str, Any], cfg: MRIPredictConfig, tmp: Path) -> None:
    """Label maps of every NIfTI file of ``cfg.input`` into ``tmp`` (``<name>.nii.gz``), with the
    preprocessing of the prepared data the model was trained on."""
    files = _inputs(cfg.input)
    manifest = PreparedData(cfg.data).manifest
    if list(ckpt.get("data", {}).get("image_size", manifest["image_size"])) != list(manifest["image_size"]):
        raise InputError(
            cfg.data, "prepared data and model disagree on the image size; pass the data the model was trained on"
        )
    for path in files:
        labels, geometry = predict_volume(net, path, manifest, cfg.slice_axis, cfg.batch_size)
        save_native_label(labels, geometry, tmp / f"{_stem(path)}.nii.gz")
        log.info(
            "%s -> %s (classes present: %s)",
            path,
            cfg.out / f"{_stem(path)}.nii.gz",
            sorted(np.unique(labels).tolist()),
        )
