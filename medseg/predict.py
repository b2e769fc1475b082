"""MRI prediction for ``medseg predict``: segment NIfTI volumes with a fine-tuned model.

Each input goes through the chain of ``medseg preprocess`` with the settings the model was
trained with (its checkpoint's preprocessing record, :func:`medseg.domain.preprocessing_record`:
canonical orientation, slice axis, N4 when training had it, in-plane resampling to the training
spacing, percentile normalisation) but without the crop to the training image size: the network
sees the whole resampled slice (smaller slices are padded as in training). A slice larger than
the training size is predicted by sliding windows of the training size
(:class:`monai.inferers.SlidingWindowInferer`, ``--overlap``, Gaussian blending of the softmax
probabilities), so nothing outside the training crop is lost. The probabilities are mapped back
to the input's own voxel grid before the argmax; the output NIfTI has the input's affine and shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import MRIPredictConfig
from medseg.intensity import DEFAULT_PERCENTILES, percentile_scale
from medseg.n4 import n4_correct
from medseg.native import plan_geometry, save_native_label, to_canonical_stack, to_native, to_prepared
from medseg.nifti import load_volume, read_header
from segcore.errors import InputError

log = logging.getLogger(__name__)

# window blending of the sliding-window inference: Gaussian weights (1 at a window's centre)
# favour the pixels with the most context, as nnU-Net does
BLEND_MODE = "gaussian"


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


def whole_slice_geometry(geometry: dict[str, Any]) -> dict[str, Any]:
    """The geometry record of prediction: ``geometry`` (:func:`medseg.native.plan_geometry`)
    without its crop. Along an axis where the resampled slice is larger than the training image
    size, the slice is kept whole (offset 0); where it is smaller, it is padded exactly as
    preprocessing pads it. :func:`medseg.native.to_native` inverts it like any group record."""
    resampled = geometry["resampled_shape"][1:]
    size = [max(int(r), int(s)) for r, s in zip(resampled, geometry["image_size"], strict=True)]
    offset = [min(int(o), 0) for o in geometry["crop_offset"]]
    return {**geometry, "image_size": size, "crop_offset": offset}


@torch.no_grad()
def sliding_window_probabilities(
    net: torch.nn.Module, x: torch.Tensor, roi: Sequence[int], overlap: float, batch_size: int
) -> torch.Tensor:
    """Softmax probabilities (S, K, H, W) float32 on the CPU of slices ``x`` (S, C, H, W) float32
    (H, W >= ``roi``), by windows of ``roi`` (the training image size) sliding with ``overlap``
    (a fraction of the window), ``batch_size`` windows per network call, on the network's device."""
    from monai.inferers import SlidingWindowInferer

    device = next(net.parameters()).device
    inferer = SlidingWindowInferer(
        roi_size=[int(r) for r in roi],
        sw_batch_size=int(batch_size),
        overlap=float(overlap),
        mode=BLEND_MODE,
        padding_mode="constant",
        cval=0.0,
        sw_device=device,
        device=torch.device("cpu"),
    )

    def probabilities(window: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(window), dim=1).float()

    if device.type == "cuda":
        x = x.pin_memory()  # the windows then go to the GPU without a staging copy
    return inferer(x, probabilities).float()


def load_input(path: Path, preprocessing: dict[str, Any]) -> tuple[np.ndarray, Any]:
    """The voxels (X, Y, Z) float32 of ``path`` and its header, with N4 when training had it;
    a 4D file gives the training's ``channel``."""
    try:
        header = read_header(path)
        channel = None
    except InputError:
        channel = int(preprocessing.get("channel", 0))
        header = read_header(path, channel)  # a 4D (multi-channel) file: the training channel
    data, _, _ = load_volume(path, channel)
    if preprocessing.get("n4"):
        data = n4_correct(data, header.zooms)
    return data, header


def predict_volume(
    net: torch.nn.Module,
    path: Path,
    preprocessing: dict[str, Any],
    slice_axis: str | int | None = None,
    batch_size: int = 32,
    overlap: float = 0.25,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Label map (X, Y, Z) uint8 of ``path`` in its own voxel grid, and the geometry record used.

    ``preprocessing``: the model's record (``target_spacing``, ``image_size``, ``percentiles``,
    ``slice_axis``, ``n4``, ``channel``); ``slice_axis`` overrides the record's."""
    for key in ("target_spacing", "image_size"):
        if key not in preprocessing:
            raise InputError(None, f"the model's preprocessing record lacks '{key}'")
    data, header = load_input(path, preprocessing)
    axis = slice_axis if slice_axis is not None else preprocessing.get("slice_axis", "auto")
    axis = axis if str(axis) == "auto" else int(axis)
    geometry = plan_geometry(header, preprocessing["target_spacing"], preprocessing["image_size"], axis)
    geometry.update({"affine": header.affine.tolist(), "shape": list(header.shape)})
    whole = whole_slice_geometry(geometry)
    percentiles = preprocessing.get("percentiles", DEFAULT_PERCENTILES)
    stack, _, _ = percentile_scale(to_canonical_stack(data, geometry), percentiles)  # (S, H0, W0)
    x = torch.from_numpy(to_prepared(stack, whole, order=1)[:, None].astype(np.float32))  # (S, 1, H, W)
    probs = sliding_window_probabilities(net, x, preprocessing["image_size"], overlap, batch_size)  # (S, K, H, W)
    native = to_native(probs.permute(1, 0, 2, 3).numpy(), whole, order=1)  # (K, X, Y, Z)
    return native.argmax(0).astype(np.uint8), geometry


def predict_files(net: torch.nn.Module, preprocessing: dict[str, Any], cfg: MRIPredictConfig, tmp: Path) -> None:
    """Label maps of every NIfTI file of ``cfg.input`` into ``tmp`` (``<name>.nii.gz``), each
    processed as the model's training data were (``preprocessing``)."""
    if not 0.0 <= cfg.overlap < 1.0:
        raise InputError(None, f"--overlap must lie in [0, 1), got {cfg.overlap}")
    if cfg.batch_size < 1:
        raise InputError(None, f"--batch-size must be >= 1, got {cfg.batch_size}")
    files = _inputs(cfg.input)
    for path in files:
        labels, geometry = predict_volume(net, path, preprocessing, cfg.slice_axis, cfg.batch_size, cfg.overlap)
        save_native_label(labels, geometry, tmp / f"{_stem(path)}.nii.gz")
        log.info(
            "%s -> %s (classes present: %s)",
            path,
            cfg.out / f"{_stem(path)}.nii.gz",
            sorted(np.unique(labels).tolist()),
        )
