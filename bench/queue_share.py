"""Share of an HPCL pretraining step spent on the queue: logits against K keys and enqueueing.

    python bench/queue_share.py [--K 65536] [--D 128] [--batch 16] [--size 64] [--reps 10]
        [--max-anchors 0] [--threads 1] [--device cpu|cuda]

Builds the demo network (dual fusion, tu-regnetx_002, decoder 32,16,16,8; 4 spectral + 5 terrain
channels), a HyperPixelPretrainTask with a FULL queue of K x D keys and a batch of tiles with
8x8-pixel superpixels (64 hyper-pixels per 64x64 tile, 1,024 per batch of 16), then, side by
side in one run:

* the whole training step (views, queries, EMA update, keys, loss, backward, optimiser step,
  enqueue), with the full queue and with an empty one (same everything else);
* timers around the queue parts of the real step: ``queue.keys()`` (the copy handed to the
  loss), the loss itself and ``queue.enqueue``; and, isolated with the same shapes, the queue
  logits q·queue^T with their logsumexp, forward and backward (the backward part of the loss
  is not separable inside the step).

Prints the machine, the times, and the ratios (queue parts / whole step).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from _machine import machine_description

import segcore.hyperpixel as hpx
from rs.networks import build_network
from segcore.hyperpixel import HyperPixelPretrainTask, build_projection_head

warnings.filterwarnings("ignore")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Timer:
    """Accumulates wall time of wrapped calls (synchronised on CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.total, self.calls = device, 0.0, 0

    def wrap(self, fn):
        def timed(*a, **kw):
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            sync(self.device)
            self.total += time.perf_counter() - t0
            self.calls += 1
            return out

        return timed


def make_task(K: int, D: int, device: torch.device, full: bool, max_anchors: int = 0) -> HyperPixelPretrainTask:
    torch.manual_seed(0)
    net = build_network(
        "dual",
        9,
        2,
        spectral_channels=range(4),
        terrain_channels=range(4, 9),
        encoder_name="tu-regnetx_002",
        encoder_depth=4,
        decoder_channels=(32, 16, 16, 8),
    )
    task = HyperPixelPretrainTask(
        net,
        build_projection_head(net, 256, D),
        K=K,
        crop_scale=(0.6, 1.0),
        jitter_channels=range(4),
        max_anchors=max_anchors,
    ).to(device)
    if full:
        with torch.no_grad():
            task.queue.queue.copy_(torch.nn.functional.normalize(torch.randn(K, D, device=device), dim=1))
            task.queue.filled.fill_(K)
    return task


def make_batch(b: int, size: int, device: torch.device) -> dict:
    rows = torch.arange(size)[:, None] // 8
    cols = torch.arange(size)[None, :] // 8
    sp = (rows * (size // 8) + cols)[None].repeat(b, 1, 1)  # (B, H, W) 8x8 blocks
    return {"image": torch.randn(b, 9, size, size, device=device), "superpixels": sp.to(device)}


def time_steps(
    task: HyperPixelPretrainTask, batch: dict, reps: int, device: torch.device, timers: dict[str, Timer] | None = None
) -> float:
    """Seconds per training step (+ backward + optimiser step); the queue keeps its fill."""
    filled = int(task.queue.filled)
    opt = task.configure_optimizers()
    real_keys, real_enqueue, real_loss = task.queue.keys, task.queue.enqueue, hpx.moco_info_nce
    if timers:
        task.queue.keys = timers["keys"].wrap(real_keys)
        task.queue.enqueue = timers["enqueue"].wrap(real_enqueue)
        anchors = timers["loss"].anchors = []

        def counted(q: torch.Tensor, *a, **kw):
            anchors.append(q.shape[0])  # hyper-pixels present in both views of this step
            return real_loss(q, *a, **kw)

        hpx.moco_info_nce = timers["loss"].wrap(counted)
    try:
        for i in range(reps + 2):
            if i == 2:  # two warm-up steps, then reset the timers
                for t in (timers or {}).values():
                    t.total, t.calls = 0.0, 0
                sync(device)
                t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            task.training_step(batch, i).backward()
            opt.step()
            task.queue.filled.fill_(filled)  # the full queue stays full, the empty one empty
        sync(device)
        return (time.perf_counter() - t0) / reps
    finally:
        task.queue.keys, task.queue.enqueue, hpx.moco_info_nce = real_keys, real_enqueue, real_loss


def time_queue_logits(n: int, K: int, D: int, reps: int, device: torch.device, T: float = 0.1) -> float:
    """Forward + backward of the queue logits q·queue^T / T and their logsumexp, isolated."""
    q = torch.nn.functional.normalize(torch.randn(n, D, device=device), dim=1).requires_grad_(True)
    queue = torch.nn.functional.normalize(torch.randn(K, D, device=device), dim=1)
    for i in range(reps + 2):
        if i == 2:
            sync(device)
            t0 = time.perf_counter()
        logits = torch.einsum("nd,kd->nk", q, queue) / T  # (n, K)
        torch.logsumexp(logits, dim=1).sum().backward()
    sync(device)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, default=65536)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument(
        "--max-anchors",
        type=int,
        default=0,
        help="hyper-pixels per step in the loss (0: all), as rs pretrain --max-anchors",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = f"; {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"machine: {machine_description(args.threads)}{gpu}")
    batch = make_batch(args.batch, args.size, device)
    n = args.batch * (args.size // 8) ** 2
    print(
        f"queue K={args.K} x D={args.D}; batch {args.batch} x 9 x {args.size} x {args.size}; ~{n} "
        "hyper-pixels per step (before cropping)"
    )

    timers = {k: Timer(device) for k in ("keys", "loss", "enqueue")}
    full = time_steps(make_task(args.K, args.D, device, True, args.max_anchors), batch, args.reps, device, timers)
    empty = time_steps(make_task(args.K, args.D, device, False, args.max_anchors), batch, args.reps, device)
    n_step = round(sum(timers["loss"].anchors) / len(timers["loss"].anchors))  # after cropping
    logits = time_queue_logits(n_step, args.K, args.D, args.reps, device)
    per = {k: t.total / max(t.calls, 1) for k, t in timers.items()}
    queue_parts = per["keys"] + logits + per["enqueue"]
    print(f"whole step, full queue      {full * 1e3:9.1f} ms")
    print(
        f"whole step, empty queue     {empty * 1e3:9.1f} ms   -> queue overhead {(full - empty) * 1e3:.1f} ms "
        f"= {(full - empty) / full:.1%} of the step"
    )
    print(f"  queue.keys() copy         {per['keys'] * 1e3:9.2f} ms")
    print(f"  loss (fwd, in the step)   {per['loss'] * 1e3:9.2f} ms")
    print(
        f"  queue logits fwd+bwd      {logits * 1e3:9.2f} ms   (isolated, {n_step} x {args.K} x {args.D}: the "
        "step's mean anchor count)"
    )
    print(f"  enqueue                   {per['enqueue'] * 1e3:9.2f} ms")
    print(
        f"share of the step on queue logits + enqueueing (+ keys copy): {queue_parts / full:.3f} "
        f"(logits {logits / full:.3f}, enqueue {per['enqueue'] / full:.4f}, copy {per['keys'] / full:.4f})"
    )


if __name__ == "__main__":
    main()
