"""Remote-sensing scoring for ``rs evaluate``: IoU per class, mIoU, landslide precision / recall /
F1 and overall accuracy (nodata excluded), over whole scenes or pooled tiles; for data prepared
under the Landslide4Sense protocol also per split, val and test (``per_split``,
:mod:`rs.landslide4sense_protocol`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs.config import RSEvaluateConfig
from rs.landslide4sense_protocol import split_scores
from segcore.metrics import confusion_matrix, summarise_segmentation
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``: through pinned memory and without waiting for the copy on a GPU."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


@torch.no_grad()
def tile_confusion(net: torch.nn.Module, data: PreparedData, indices: np.ndarray, batch_size: int) -> np.ndarray:
    """Confusion matrix (K, K) over the given tiles; label 255 (nodata, unknown) excluded."""
    k = data.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    device = next(net.parameters()).device
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        x = to_device(torch.from_numpy(np.stack([data.image(int(i)) for i in chunk])), device)
        pred = net(x).argmax(1).cpu().numpy()  # (b, H, W)
        target = np.asarray(data.labels[chunk], dtype=np.int64)
        cm += confusion_matrix(pred, target, k, ignore_index=data.ignore_index)
    return cm


def scene_predictor(net: torch.nn.Module):
    """``predict_fn`` for :func:`rs.scene_prediction.predict_scene`: tiles → softmax probabilities."""
    device = next(net.parameters()).device

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(to_device(x, device)), dim=1).float().cpu()

    return predict


def scene_confusion(
    net: torch.nn.Module, data: PreparedData, split: str, batch_size: int
) -> tuple[np.ndarray, list[str]]:
    """Confusion matrix over the ``split`` area of every georeferenced, labeled scene, predicted
    whole-scene by sliding window with blended overlaps (each pixel counted once)."""
    from rs.align import align_label_to_image
    from rs.scene_prediction import predict_scene_detailed, split_mask

    k = data.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    used = []
    for name, rec in data.manifest.get("scenes", {}).items():
        if not rec.get("georeferenced") or not rec.get("label"):
            continue
        area = split_mask(data.manifest, name, split)
        if not area.any():
            continue
        # only the windows touching the scored area: exact there, and a quarter of the work on the demo
        pred = predict_scene_detailed(
            rec["image"], rec["dem"], scene_predictor(net), data.manifest, batch_size=batch_size, region=area
        )
        truth = align_label_to_image(rec["label"], pred.profile).astype(np.int64)
        truth = np.where(area & pred.valid, truth, data.ignore_index)
        cm += confusion_matrix(pred.labels().astype(np.int64), truth, k, ignore_index=data.ignore_index)
        used.append(name)
    return cm, used


def overlay_tiles(net: torch.nn.Module, data: PreparedData, indices: np.ndarray, n: int = 3) -> dict[str, np.ndarray]:
    """The ``n`` test tiles with the most landslide pixels: RGB composite, hillshade, truth, prediction."""
    labels = np.asarray(data.labels[indices])
    order = np.argsort(-(labels == 1).reshape(len(indices), -1).sum(1), kind="stable")[:n]
    chosen = indices[order]
    names = data.manifest["channels"]
    rgb_idx = [names.index(c) for c in ("R", "G", "B")] if all(c in names for c in ("R", "G", "B")) else [0, 0, 0]
    raw = np.asarray(data.images[chosen], dtype=np.float32)  # (n, C, H, W), unnormalised
    rgb = raw[:, rgb_idx].transpose(0, 2, 3, 1)
    lo, hi = np.percentile(rgb, [2, 98])
    hs = raw[:, names.index("hillshade")] if "hillshade" in names else raw[:, -1]
    device = next(net.parameters()).device
    with torch.no_grad():
        x = to_device(torch.from_numpy(np.stack([data.image(int(i)) for i in chosen])), device)
        pred = net(x).argmax(1).cpu().numpy()
    return {
        "rgb": np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1),
        "hillshade": hs,
        "truth": labels[order].astype(np.uint8),
        "pred": pred.astype(np.uint8),
        "tile": np.array([str(data.group[i]) for i in chosen]),
    }


def score_tiles_and_scenes(
    net: torch.nn.Module, data: PreparedData, cfg: RSEvaluateConfig, tmp: Path
) -> dict[str, Any]:
    """Scores of ``net`` on ``cfg.split``: whole scenes (the headline: the held-out area scored once
    per pixel) where the data has georeferenced labeled scenes, else pooled tiles; tile-level
    numbers kept beside; under the Landslide4Sense protocol every scored split's numbers too.
    Writes ``overlay.npz`` into ``tmp``; returns the metrics.json entries."""
    groups = data.split_groups(cfg.split)
    indices = data.sample_indices(groups)
    names = data.manifest["classes"]
    cm_tiles = tile_confusion(net, data, indices, cfg.batch_size)
    tiles = summarise_segmentation(cm_tiles, class_names=names, positive_class=1)
    # Landslide4Sense release: every scored split's numbers too (val and test; docs/landslide4sense.md)
    protocol = split_scores(data, {cfg.split: cm_tiles}, lambda idx: tile_confusion(net, data, idx, cfg.batch_size))
    # tile-level pooling counts overlapping pixels twice and is kept as a secondary number
    cm_scene, scenes = scene_confusion(net, data, cfg.split, cfg.batch_size) if cfg.whole_scene else (None, [])
    scores = summarise_segmentation(cm_scene, class_names=names, positive_class=1) if scenes else tiles
    np.savez_compressed(tmp / "overlay.npz", **overlay_tiles(net, data, indices))
    log.info("mIoU %s, landslide F1 %s on %d tiles", scores["summary"]["miou"], scores["summary"]["f1"], len(groups))
    return {
        "n_tiles": len(groups),
        "scope": "scenes" if scenes else "tiles",
        "scenes": scenes,
        **scores,
        "tiles": tiles,
        **protocol,
    }
