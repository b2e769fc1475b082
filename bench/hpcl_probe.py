"""Linear probe of pretrained hypercolumns: does HPCL pretraining put landslide information into
the frozen features at all? (A diagnostic for docs/hpcl.md, not a stage.)

    python bench/hpcl_probe.py --data PREPARED --init a/model.pt b/model.pt ... [--percent 5]
        [--seeds 0 1 2] [--steps 300] [--random]

For every checkpoint (and with ``--random`` a randomly initialised network of the first
checkpoint's architecture, seeded like each run) the encoder and decoder are frozen (eval mode)
and a 1x1 convolution on the hypercolumn (all decoder outputs upsampled and concatenated: what
HPCL contrasts) is trained with cross-entropy on the same labeled tiles as ``rs finetune
--percent P --seed S``; printed: mIoU and landslide F1 over the test tiles (tile-level pooling).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _machine import machine_description

from rs.models import build_from_spec
from segcore.budget import select_percent
from segcore.checkpoints import load_pretrained, read_checkpoint
from segcore.hyperpixel import decoder_maps, hypercolumn_dim
from segcore.metrics import confusion_matrix, segmentation_scores
from segcore.prepared import PreparedData


def hypercolumn(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    feats = decoder_maps(net, x)
    h, w = x.shape[-2:]
    return torch.cat(
        [F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False) for f in feats], dim=1
    )  # (B, C, H, W)


@torch.no_grad()
def features(
    net: torch.nn.Module, data: PreparedData, idx: np.ndarray, batch: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for s in range(0, len(idx), batch):
        chunk = idx[s : s + batch]
        x = torch.from_numpy(np.stack([data.image(int(i)) for i in chunk]))
        xs.append(hypercolumn(net, x))
        ys.append(torch.from_numpy(np.asarray(data.labels[chunk], dtype=np.int64)))
    return torch.cat(xs), torch.cat(ys)


def probe(
    net: torch.nn.Module, data: PreparedData, train_idx: np.ndarray, test_idx: np.ndarray, steps: int, seed: int
) -> tuple[float, float]:
    net.eval()
    f_train, y_train = features(net, data, train_idx)
    f_test, y_test = features(net, data, test_idx)
    torch.manual_seed(seed)
    head = torch.nn.Conv2d(f_train.shape[1], data.num_classes, 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):  # full batch: the labeled tiles are few
        opt.zero_grad()
        F.cross_entropy(head(f_train), y_train, ignore_index=data.ignore_index).backward()
        opt.step()
    with torch.no_grad():
        pred = head(f_test).argmax(1)
    scores = segmentation_scores(
        confusion_matrix(pred.numpy(), y_test.numpy(), data.num_classes, ignore_index=data.ignore_index), 1
    )
    return float(scores["miou"]), float(scores["f1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--init", type=Path, nargs="+", required=True)
    ap.add_argument("--percent", type=float, default=5.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--random", action="store_true", help="also probe randomly initialised networks")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = PreparedData(args.data)
    test_idx = data.sample_indices(data.split_groups("test"))
    specs = [(str(p), read_checkpoint(p)) for p in args.init]
    if args.random:
        specs.insert(0, ("random init", None))
    print(f"machine: {machine_description(1)}")
    print(f"linear probe on frozen hypercolumns; {args.percent}% labeled, seeds {args.seeds}")
    print("| features | probe mIoU | probe landslide F1 |\n|---|---|---|")
    for name, ckpt in specs:
        mious, f1s = [], []
        for seed in args.seeds:
            train_idx = data.sample_indices(select_percent(data.split_groups("labeled"), args.percent, seed))
            torch.manual_seed(seed)
            net = build_from_spec((ckpt or specs[-1][1])["network"])
            if ckpt is not None:
                load_pretrained(net, ckpt, name, skip_prefixes=("head.",))
            m, f = probe(net, data, train_idx, test_idx, args.steps, seed)
            mious.append(m)
            f1s.append(f)
        print(
            f"| {name} (dim {hypercolumn_dim(net)}) | {np.mean(mious):.3f} ± {np.std(mious, ddof=1):.3f} | "
            f"{np.mean(f1s):.3f} ± {np.std(f1s, ddof=1):.3f} |",
            flush=True,
        )
    print(f"{time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
