"""``rs evaluate``: IoU per class, mIoU, landslide precision / recall / F1 and overall accuracy
on the test tiles (nodata excluded), pooled over all test pixels; for data prepared under the
Landslide4Sense protocol also per split, val and test (``per_split``, :mod:`rs.landslide4sense_protocol`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs.landslide4sense_protocol import empty_split_reason, split_scores
from rs.models import build_from_spec
from segcore.checkpoints import per_model_args, read_checkpoint
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.metrics import confusion_matrix, summarise_segmentation
from segcore.outputs import atomic_dir, write_json, write_yaml
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="prepared tiles folder")
    p.add_argument("--model", type=Path, nargs="+", required=True, help="fine-tuned model checkpoint(s) (model.pt); several are scored in one process (one --out each)")
    p.add_argument("--out", type=Path, nargs="+", required=True, help="output folder (metrics.json); one per --model, in the same order")
    p.add_argument("--split", default="test", help="which tiles to score: test or val")
    p.add_argument("--batch-size", type=int, default=32, help="tiles per inference batch")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    p.add_argument("--whole-scene", action=argparse.BooleanOptionalAction, default=True, help="also predict whole scenes by sliding window and score the held-out area once per pixel (the headline numbers)")


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    ckpt = read_checkpoint(path)
    net = build_from_spec(ckpt["network"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt


@torch.no_grad()
def tile_confusion(net: torch.nn.Module, data: PreparedData, indices: np.ndarray, batch_size: int) -> np.ndarray:
    """Confusion matrix (K, K) over the given tiles; label 255 (nodata, unknown) excluded."""
    k = data.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        x = torch.from_numpy(np.stack([data.image(int(i)) for i in chunk]))
        pred = net(x).argmax(1).numpy()  # (b, H, W)
        target = np.asarray(data.labels[chunk], dtype=np.int64)
        cm += confusion_matrix(pred, target, k, ignore_index=data.ignore_index)
    return cm


def scene_predictor(net: torch.nn.Module):
    """``predict_fn`` for :func:`rs.scene_prediction.predict_scene`: tiles → softmax probabilities."""
    device = next(net.parameters()).device

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(x.to(device)), dim=1).float().cpu()

    return predict


def scene_confusion(net: torch.nn.Module, data: PreparedData, split: str, batch_size: int) -> tuple[np.ndarray, list[str]]:
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
        pred = predict_scene_detailed(rec["image"], rec["dem"], scene_predictor(net), data.manifest, batch_size=batch_size, region=area)
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
    with torch.no_grad():
        pred = net(torch.from_numpy(np.stack([data.image(int(i)) for i in chosen]))).argmax(1).numpy()
    return {
        "rgb": np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1), "hillshade": hs, "truth": labels[order].astype(np.uint8),
        "pred": pred.astype(np.uint8), "tile": np.array([str(data.group[i]) for i in chosen]),
    }


def run_evaluate(args: argparse.Namespace) -> None:
    """Score each ``--model`` into its ``--out`` (a workflow job scores every seed of a cell in one
    process: the imports cost more than scoring one model)."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    runs = per_model_args(args)
    data = PreparedData(args.data)
    for one in runs:
        evaluate_one(one, data)


def evaluate_one(args: argparse.Namespace, data: PreparedData) -> None:
    net, ckpt = load_model(args.model)
    if ckpt["network"]["in_channels"] != data.in_channels:
        raise InputError(args.model, f"model takes {ckpt['network']['in_channels']} channels, data has {data.in_channels}")
    groups = data.split_groups(args.split)
    if not groups:
        why = empty_split_reason(data.manifest, args.split)  # e.g. TestData released without masks
        raise InputError(args.data, f"split '{args.split}' is empty{why}")
    indices = data.sample_indices(groups)
    names = data.manifest["classes"]
    cm_tiles = tile_confusion(net, data, indices, args.batch_size)
    tiles = summarise_segmentation(cm_tiles, class_names=names, positive_class=1)
    # Landslide4Sense release: every scored split's numbers too (val and test; docs/landslide4sense.md)
    protocol = split_scores(data, {args.split: cm_tiles}, lambda idx: tile_confusion(net, data, idx, args.batch_size))
    # headline: whole-scene prediction scored once per pixel of the held-out area; tile-level
    # pooling counts overlapping pixels twice and is kept as a secondary number
    cm_scene, scenes = scene_confusion(net, data, args.split, args.batch_size) if args.whole_scene else (None, [])
    scores = summarise_segmentation(cm_scene, class_names=names, positive_class=1) if scenes else tiles
    run = ckpt.get("run", {})
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "metrics.json", {
            "domain": "rs", "dataset": data.manifest.get("dataset", Path(args.data).name), "split": args.split,
            "method": run.get("method", "none"), "variant": run.get("variant", ckpt["network"]["name"]),
            "budget": run.get("budget"), "seed": run.get("seed"), "n_tiles": len(groups),
            "scope": "scenes" if scenes else "tiles", "scenes": scenes, **scores, "tiles": tiles, **protocol,
        })
        np.savez_compressed(tmp / "overlay.npz", **overlay_tiles(net, data, indices))
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("mIoU %s, landslide F1 %s on %d tiles", scores["summary"]["miou"], scores["summary"]["f1"], len(groups))
