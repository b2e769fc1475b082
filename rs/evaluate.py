"""``rs evaluate``: IoU per class, mIoU, landslide precision / recall / F1 and overall accuracy
on the test tiles (nodata excluded), pooled over all test pixels."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs.models import build_from_spec
from segcore.checkpoints import read_checkpoint
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.metrics import confusion_matrix, summarise_segmentation
from segcore.outputs import atomic_dir, write_json, write_yaml
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="prepared tiles folder")
    p.add_argument("--model", type=Path, required=True, help="fine-tuned model checkpoint (model.pt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (metrics.json)")
    p.add_argument("--split", default="test", help="which tiles to score: test or val")
    p.add_argument("--batch-size", type=int, default=32, help="tiles per inference batch")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")


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


def run_evaluate(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data = PreparedData(args.data)
    net, ckpt = load_model(args.model)
    if ckpt["network"]["in_channels"] != data.in_channels:
        raise InputError(args.model, f"model takes {ckpt['network']['in_channels']} channels, data has {data.in_channels}")
    groups = data.split_groups(args.split)
    if not groups:
        raise InputError(args.data, f"split '{args.split}' is empty")
    cm = tile_confusion(net, data, data.sample_indices(groups), args.batch_size)
    scores = summarise_segmentation(cm, class_names=data.manifest["classes"], positive_class=1)
    run = ckpt.get("run", {})
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "metrics.json", {
            "domain": "rs", "dataset": data.manifest.get("dataset", Path(args.data).name), "split": args.split,
            "method": run.get("method", "none"), "variant": run.get("variant", ckpt["network"]["name"]),
            "budget": run.get("budget"), "seed": run.get("seed"), "n_tiles": len(groups), **scores,
        })
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("mIoU %s, landslide F1 %s on %d tiles", scores["summary"]["miou"], scores["summary"]["f1"], len(groups))
