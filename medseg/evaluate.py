"""``medseg evaluate``: predict held-out subjects, map back to native space, score in 3D.

Dice and HD95 are computed per foreground class on the whole volume in the source file's own
voxel grid (the prediction is resampled back from the prepared grid), against the source
label file, then averaged over classes and subjects.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medseg.models import build_network
from medseg.native import save_native_label, to_native
from segcore.checkpoints import per_model_args, read_checkpoint
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.metrics import score_volume, summarise_mri
from segcore.outputs import atomic_dir, write_json, write_yaml
from segcore.prepared import PreparedData

log = logging.getLogger(__name__)


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="prepared data folder")
    p.add_argument("--model", type=Path, nargs="+", required=True, help="fine-tuned model checkpoint(s) (model.pt); several are scored in one process (one --out each)")
    p.add_argument("--out", type=Path, nargs="+", required=True, help="output folder (metrics.json, predictions/); one per --model, in the same order")
    p.add_argument("--split", default="test", help="which subjects to score: test or val")
    p.add_argument("--save-predictions", action=argparse.BooleanOptionalAction, default=True, help="write native-space NIfTI predictions")
    p.add_argument("--batch-size", type=int, default=32, help="slices per inference batch")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    p.add_argument("--overlay-subjects", type=int, default=3, help="subjects whose slices go into overlay.npz for the report")


@torch.no_grad()
def predict_group_probs(net: torch.nn.Module, data: PreparedData, group: str, batch_size: int) -> np.ndarray:
    """Softmax probabilities of one subject in prepared space: (K, S, H, W), slices in order."""
    idx = data.sample_indices([group])
    idx = idx[np.argsort(data.index[idx])]
    device = next(net.parameters()).device
    probs = []
    for start in range(0, len(idx), batch_size):
        x = torch.from_numpy(np.stack([data.image(int(i)) for i in idx[start : start + batch_size]])).to(device)
        probs.append(torch.softmax(net(x), dim=1).float().cpu())  # (b, K, H, W)
    return torch.cat(probs).permute(1, 0, 2, 3).numpy()  # (K, S, H, W)


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    ckpt = read_checkpoint(path)
    net = build_network(ckpt["network"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt


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
    if ckpt["network"]["num_classes"] != data.num_classes:
        raise InputError(args.model, f"model predicts {ckpt['network']['num_classes']} classes, data has {data.num_classes}")
    classes = list(data.manifest["classes"])
    groups = data.split_groups(args.split)
    if not groups:
        raise InputError(args.data, f"split '{args.split}' is empty")
    scores: dict[str, Any] = {}
    overlay: dict[str, list[np.ndarray]] = {"image": [], "truth": [], "pred": [], "subject": []}
    with atomic_dir(args.out) as tmp:
        for group in groups:
            rec = data.manifest["groups"][group]
            if not rec.get("label"):
                raise InputError(args.data, f"subject {group} in split '{args.split}' has no label file")
            probs = predict_group_probs(net, data, group, args.batch_size)
            if len(overlay["subject"]) < args.overlay_subjects:
                _add_overlay(overlay, data, group, probs.argmax(0))
            pred = to_native(probs, rec, order=1).argmax(0).astype(np.uint8)  # native voxel grid
            truth_img = nib.load(rec["label"])
            truth = np.rint(np.asarray(truth_img.dataobj)).astype(np.int64)
            if truth.shape != pred.shape:
                raise InputError(rec["label"], f"label shape {truth.shape} differs from the mapped-back prediction {pred.shape}")
            spacing = tuple(float(z) for z in truth_img.header.get_zooms()[:3])
            scores[group] = score_volume(pred, truth, len(classes), spacing, class_names=classes)
            if args.save_predictions:
                save_native_label(pred, rec, tmp / "predictions" / f"{group}.nii.gz")
        if overlay["subject"]:
            np.savez_compressed(tmp / "overlay.npz", **{k: np.stack(v) for k, v in overlay.items()})
        summary = summarise_mri(scores)
        run = ckpt.get("run", {})
        write_json(tmp / "metrics.json", {
            "domain": "mri", "dataset": data.manifest.get("dataset", Path(args.data).name), "split": args.split,
            "method": run.get("method", ckpt.get("method", "none")), "budget": run.get("budget"), "seed": run.get("seed"),
            "label_seed": run.get("label_seed"),  # the labeled set: repeats of one set share it (docs/report.md)
            "classes": classes[1:], **summary,
        })
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("Dice %s over %d subjects", summary["summary"]["dice_mean"], len(scores))


def _add_overlay(overlay: dict[str, list[np.ndarray]], data: PreparedData, group: str, pred: np.ndarray) -> None:
    """Base, mid and apical slices (prepared space) of one subject: image, truth, prediction."""
    idx = data.sample_indices([group])
    idx = idx[np.argsort(data.index[idx])]
    picks = np.linspace(0, len(idx) - 1, 3).round().astype(int)
    overlay["image"].append(np.stack([data.image(int(idx[p]))[0] for p in picks]))  # (3, H, W)
    overlay["truth"].append(np.stack([np.asarray(data.labels[int(idx[p])]) for p in picks]).astype(np.uint8))
    overlay["pred"].append(pred[picks].astype(np.uint8))
    overlay["subject"].append(np.array(group))
