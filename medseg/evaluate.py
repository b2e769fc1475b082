"""MRI scoring for ``medseg evaluate``: predict held-out subjects, map back to native space,
score in 3D.

Dice and HD95 are computed per foreground class on the whole volume in the source file's own
voxel grid (the prediction is resampled back from the prepared grid), against the source
label file, then averaged over classes and subjects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medseg.config import MRIEvaluateConfig
from medseg.native import save_native_label, to_native
from segcore.errors import InputError
from segcore.metrics import score_volume, summarise_mri
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_group_probs(net: torch.nn.Module, data: PreparedData, group: str, batch_size: int) -> np.ndarray:
    """Softmax probabilities of one subject in prepared space: (K, S, H, W), slices in order."""
    idx = data.sample_indices([group])
    idx = idx[np.argsort(data.index[idx])]
    device = next(net.parameters()).device
    probs = []
    for start in range(0, len(idx), batch_size):
        x = torch.from_numpy(np.stack([data.image(int(i)) for i in idx[start : start + batch_size]]))
        if device.type == "cuda":
            x = x.pin_memory().to(device, non_blocking=True)  # the copy overlaps the previous batch's work
        probs.append(torch.softmax(net(x), dim=1).float().cpu())  # (b, K, H, W)
    return torch.cat(probs).permute(1, 0, 2, 3).numpy()  # (K, S, H, W)


def score_subjects(net: torch.nn.Module, data: PreparedData, cfg: MRIEvaluateConfig, tmp: Path) -> dict[str, Any]:
    """Dice and HD95 of every subject of ``cfg.split`` in its source file's voxel grid; native-space
    NIfTI predictions (``predictions/``) and ``overlay.npz`` written into ``tmp``. Returns the
    metrics.json entries: ``classes`` (foreground), ``summary``, ``per_subject``, ..."""
    classes = list(data.manifest["classes"])
    groups = data.split_groups(cfg.split)
    scores: dict[str, Any] = {}
    overlay: dict[str, list[np.ndarray]] = {"image": [], "truth": [], "pred": [], "subject": []}
    for group in groups:
        rec = data.manifest["groups"][group]
        if not rec.get("label"):
            raise InputError(cfg.data, f"subject {group} in split '{cfg.split}' has no label file")
        probs = predict_group_probs(net, data, group, cfg.batch_size)
        if len(overlay["subject"]) < cfg.overlay_subjects:
            _add_overlay(overlay, data, group, probs.argmax(0))
        pred = to_native(probs, rec, order=1).argmax(0).astype(np.uint8)  # native voxel grid
        truth_img = nib.load(rec["label"])
        truth = np.rint(np.asarray(truth_img.dataobj)).astype(np.int64)
        if truth.shape != pred.shape:
            raise InputError(
                rec["label"], f"label shape {truth.shape} differs from the mapped-back prediction {pred.shape}"
            )
        spacing = tuple(float(z) for z in truth_img.header.get_zooms()[:3])
        scores[group] = score_volume(pred, truth, len(classes), spacing, class_names=classes)
        if cfg.save_predictions:
            save_native_label(pred, rec, tmp / "predictions" / f"{group}.nii.gz")
    if overlay["subject"]:
        np.savez_compressed(tmp / "overlay.npz", **{k: np.stack(v) for k, v in overlay.items()})
    summary = summarise_mri(scores)
    log.info("Dice %s over %d subjects", summary["summary"]["dice_mean"], len(scores))
    return {"classes": classes[1:], **summary}


def _add_overlay(overlay: dict[str, list[np.ndarray]], data: PreparedData, group: str, pred: np.ndarray) -> None:
    """Base, mid and apical slices (prepared space) of one subject: image, truth, prediction."""
    idx = data.sample_indices([group])
    idx = idx[np.argsort(data.index[idx])]
    picks = np.linspace(0, len(idx) - 1, 3).round().astype(int)
    overlay["image"].append(np.stack([data.image(int(idx[p]))[0] for p in picks]))  # (3, H, W)
    overlay["truth"].append(np.stack([np.asarray(data.labels[int(idx[p])]) for p in picks]).astype(np.uint8))
    overlay["pred"].append(pred[picks].astype(np.uint8))
    overlay["subject"].append(np.array(group))
