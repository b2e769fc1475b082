"""Time one optimisation step of each MRI pretraining strategy against a supervised step of the
same U-Net and batch size, side by side in one run, and print the ratios.

    python bench/pretrain_step.py [--batch 16] [--size 64] [--channels 8,16,32,64,64] [--reps 20]
        [--threads 1] [--device cpu|cuda]

The contrastive steps run the real LightningModule ``training_step`` (views, encoder, heads,
masks, loss) plus backward and the optimiser; "per forward pass" divides by the number of
network passes a step makes (2 views), which is the fair comparison with supervised training.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from _machine import machine_description

from segcore.heads import GlobalProjectionHead, LocalProjectionHead
from segcore.losses import GlobalContrastiveLoss, LocalContrastiveLoss, SoftDiceCELoss
from segcore.networks.unet import UNet2D
from segcore.tasks import GlobalContrastiveTask, LocalContrastiveTask

warnings.filterwarnings("ignore")


def batch(b: int, size: int, volumes: int, partitions: int, device: torch.device) -> dict:
    per = b // (volumes * partitions)
    groups = [f"v{v}" for v in range(volumes) for _ in range(partitions) for _ in range(per)]
    parts = [p for _ in range(volumes) for p in range(partitions) for _ in range(per)]
    return {
        "image": torch.rand(b, 1, size, size, device=device),
        "label": torch.randint(0, 4, (b, size, size), device=device),
        "meta": {"group": groups, "partition": parts, "sample": list(range(b))},
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step, params, reps: int, device: torch.device) -> float:
    opt = torch.optim.Adam(params, lr=1e-4)
    for _ in range(3):  # warm-up
        opt.zero_grad(set_to_none=True)
        step().backward()
        opt.step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        opt.zero_grad(set_to_none=True)
        step().backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", default="8,16,32,64,64")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    channels = tuple(int(c) for c in args.channels.split(","))
    data = batch(args.batch, args.size, volumes=4, partitions=4, device=dev)
    print(
        f"machine: {machine_description(args.threads)}"
        + (f"; device {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "")
    )
    print(
        f"batch {args.batch}×1×{args.size}², U-Net {channels}; target: contrastive ≤ 1.15× supervised per forward pass"
    )

    net = UNet2D(1, 4, channels).to(dev)
    seg_loss = SoftDiceCELoss(4)
    t_sup = time_step(lambda: seg_loss(net(data["image"]), data["label"]), net.parameters(), args.reps, dev)
    rows = [("supervised (Dice+CE)", t_sup, 1)]
    c, h, w = net.bottleneck_shape((args.size, args.size))
    for strategy in ("GR", "GD-", "GD"):
        net = UNet2D(1, 4, channels)
        head = GlobalProjectionHead(c * h * w)
        task = GlobalContrastiveTask(net, head, GlobalContrastiveLoss(strategy)).to(dev)
        t = time_step(
            lambda task=task: task.training_step(data, 0),
            list(net.encoder.parameters()) + list(head.parameters()),
            args.reps,
            dev,
        )
        rows.append((f"global {strategy} (encoder + g1)", t, 2))
    for strategy in ("LR", "LD"):
        net = UNet2D(1, 4, channels)
        n_blocks = max(1, len(channels) - 3)
        width = channels[::-1][n_blocks]
        head, loss = LocalProjectionHead(width), LocalContrastiveLoss(width, strategy=strategy, negatives="all")
        task = LocalContrastiveTask(net, n_blocks, head, loss).to(dev)
        params = (
            [p for blk in list(net.decoder)[:n_blocks] for p in blk.parameters()]
            + list(head.parameters())
            + list(loss.parameters())
        )
        t = time_step(lambda task=task: task.training_step(data, 0), params, args.reps, dev)
        rows.append((f"local {strategy} (frozen encoder)", t, 2))
    print(f"{'step':34s} {'s/step':>8s} {'passes':>6s} {'ratio/step':>10s} {'ratio/pass':>10s}")
    for name, t, passes in rows:
        print(f"{name:34s} {t:8.4f} {passes:6d} {t / t_sup:10.2f} {t / passes / t_sup:10.2f}")


if __name__ == "__main__":
    main()
