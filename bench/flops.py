"""Achieved model FLOP/s of a training step, as a fraction of the machine's matmul FLOP/s.

    .venv/bin/python bench/flops.py [--threads 1] [--reps 10] [--profile]

The networks and batches are the demo config's (``workflows/config/config.yaml``): the MRI
U-Net (:class:`segcore.networks.unet.UNet2D`, demo channels, fine-tuning batch of 1×64×64 slices) and the
remote-sensing early- and dual-fusion networks (:func:`rs.networks.build_network`, demo
encoder, 9×64×64 tiles). FLOPs of forward + loss + backward are counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products: the
"model FLOPs"; normalisation, activations and the optimiser count zero). The step
(forward, loss, backward, AdamW step) is timed on the same thread count as a large float32
``torch.matmul``, whose FLOP/s is the reference: ratio = achieved / matmul FLOP/s.

``--profile`` adds torch.profiler's operators by self CPU time for each network: where a step's
time goes when the ratio is low.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # torch.profiler's start/stop lines on stderr

import torch
from _demo_data import demo_config
from _machine import machine_description
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rs.networks import build_network
from segcore.losses import SoftDiceCELoss
from segcore.networks.unet import UNet2D

warnings.filterwarnings("ignore")

RS_CHANNELS = 9  # B, G, R, NIR + elevation, slope, aspect sin/cos, hillshade (rs preprocess)
RS_SPECTRAL, RS_TERRAIN = list(range(4)), list(range(4, 9))


def matmul_flops_per_second(n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n×n float32 matmul (2n³ FLOPs), best of ``reps``: the machine's reference."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def step_flops(net: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Model FLOPs of one forward + loss + backward."""
    with FlopCounterMode(display=False) as counter:
        loss_fn(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def step_seconds(
    net: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int
) -> tuple[float, float]:
    """(fastest, median) seconds of a training step: forward, loss, backward, AdamW step. The
    fastest is the one least disturbed by other processes (as the best-of-n matmul is)."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def profile_step(net: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: int = 12) -> str:
    """torch.profiler's table of operators by self CPU time over 3 steps."""
    from torch.profiler import ProfilerActivity, profile

    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def demo_networks() -> list[tuple[str, Callable[[], nn.Module], int, tuple[int, int, int], int]]:
    """(name, network builder, batch size, (C, H, W), classes) of each demo network."""
    cfg = demo_config()
    mri, rs = cfg["mri"], cfg["rs"]
    size = tuple(mri["preprocess"]["image_size"])
    tile = rs["preprocess"]["tile"]
    net = rs["network"]
    rs_kwargs = {
        "spectral_channels": RS_SPECTRAL,
        "terrain_channels": RS_TERRAIN,
        "encoder_name": net["encoder"],
        "encoder_depth": net["encoder_depth"],
        "decoder_channels": net["decoder_channels"],
    }
    return [
        (
            "MRI U-Net",
            lambda: UNet2D(1, 4, tuple(mri["network"]["channels"])),
            mri["finetune"]["batch_size"],
            (1, *size),
            4,
        ),
        (
            "RS early fusion",
            lambda: build_network("early", RS_CHANNELS, 2, **rs_kwargs),
            rs["finetune"]["batch_size"],
            (RS_CHANNELS, tile, tile),
            2,
        ),
        (
            "RS dual fusion",
            lambda: build_network("dual", RS_CHANNELS, 2, **rs_kwargs),
            rs["finetune"]["batch_size"],
            (RS_CHANNELS, tile, tile),
            2,
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--threads", type=int, default=demo_config()["threads"], help="torch intra-op threads (the DAG's jobs use 1)"
    )
    ap.add_argument("--reps", type=int, default=10, help="timed steps per network")
    ap.add_argument("--matmul-size", type=int, default=2048, help="n of the reference n×n matmul")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per network")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = matmul_flops_per_second(args.matmul_size)
    rows = []
    profiles = []
    for name, build, batch, shape, classes in demo_networks():
        net = build()
        x = torch.randn(batch, *shape)  # (B, C, H, W)
        y = torch.randint(0, classes, (batch, *shape[1:]))  # (B, H, W)
        loss_fn = SoftDiceCELoss(classes)
        flops = step_flops(net, loss_fn, x, y)
        seconds, median = step_seconds(net, loss_fn, x, y, args.reps)
        params = sum(p.numel() for p in net.parameters())
        rows.append((name, batch, shape, params, flops, seconds, median))
        if args.profile:
            profiles.append((name, profile_step(net, loss_fn, x, y)))
    reference_after = matmul_flops_per_second(args.matmul_size)  # the load may change during the run
    print(f"machine: {machine_description(args.threads)}")
    print(
        f"reference: float32 matmul {args.matmul_size}² {reference / 1e9:.1f} GFLOP/s before, "
        f"{reference_after / 1e9:.1f} after the networks; ratios use the larger"
    )
    peak = max(reference, reference_after)
    print(
        f"{'network':18s} {'batch':>11s} {'params M':>8s} {'GFLOP/step':>10s} {'s/step':>7s} {'median':>7s} "
        f"{'GFLOP/s':>8s} {'ratio':>6s}   (s/step: fastest of {args.reps}; GFLOP/s from it)"
    )
    for name, batch, shape, params, flops, seconds, median in rows:
        achieved = flops / seconds
        print(
            f"{name:18s} {batch:3d}×{shape[0]}×{shape[1]}² {params / 1e6:8.2f} {flops / 1e9:10.2f} "
            f"{seconds:7.3f} {median:7.3f} "
            f"{achieved / 1e9:8.2f} {achieved / peak:6.3f}"
        )
    for name, table in profiles:
        print(f"\n{name}: operators by self CPU time (3 steps)\n{table}")


if __name__ == "__main__":
    main()
