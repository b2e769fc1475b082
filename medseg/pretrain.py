"""``medseg pretrain``: global (encoder) and local (decoder) contrastive stages on MRI slices.

``--stage global`` trains encoder + g1 with ``--strategy`` GR, GD- or GD on partition-aware
batches (m volumes × S partitions). ``--stage local`` loads a global checkpoint (``--init``),
freezes the encoder and trains the first l decoder blocks + g2 with LR or LD. The checkpoint
records in ``pretrained`` which modules were trained, and keeps g1/g2 apart under ``heads`` so
that ``medseg finetune --init`` drops them.

``--method hpcl`` instead trains encoder + decoder with our hyper-pixel contrastive learning
(METHODS §4, docs/hpcl.md; :class:`segcore.hyperpixel.HyperPixelPretrainTask`): SLIC
superpixels of every pretraining slice are computed once at the start of the run (in memory),
two views per slice share their geometry (dihedral transform, crop) and differ in intensity,
the positive of a hyper-pixel is the same superpixel in the other view (momentum-encoder key)
and the negatives a queue of ``--queue-size`` keys.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from medseg.finetune import add_training_options
from medseg.models import build_network, network_spec, parse_channels
from medseg.sampling import PartitionBatchSampler
from segcore.checkpoints import read_checkpoint, save_checkpoint
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.heads import GlobalProjectionHead, LocalProjectionHead
from segcore.hyperpixel import (
    HyperPixelPretrainTask,
    SuperpixelDataset,
    build_projection_head,
    slic_superpixels,
)
from segcore.losses import GlobalContrastiveLoss, LocalContrastiveLoss
from segcore.outputs import write_json, write_yaml
from segcore.prepared import PreparedData, PreparedDataset
from segcore.tasks import GlobalContrastiveTask, LocalContrastiveTask
from segcore.training import (
    ShardedBatchSampler,
    batch_loader,
    configure_runtime,
    fit_resumable,
    resumable_trainer,
    resume_step,
    runtime_settings,
    stage_outputs,
    step_loader,
)

log = logging.getLogger(__name__)


def add_pretrain_options(p: argparse.ArgumentParser) -> None:
    add_training_options(p, steps=300, batch_size=0, lr=1e-3)
    p.add_argument("--stage", choices=["global", "local"], default="global", help="global: encoder + g1; local: decoder blocks + g2 (needs --init)")
    p.add_argument("--strategy", default=None, help="global: GR, GD- or GD (default GD); local: LR or LD (default LR)")
    p.add_argument("--init", default=None, help="checkpoint to start from (the local stage needs the global stage's)")
    p.add_argument("--volumes-per-batch", type=int, default=4, help="m: volumes per batch (batch = m × S partitions slices)")
    p.add_argument("--temperature", type=float, default=0.1, help="T of the InfoNCE similarities")
    p.add_argument("--crop-scale", type=float, nargs=2, default=(0.5, 0.75), help="global views: crop side as a fraction of the image side (min max)")
    p.add_argument("--local-blocks", type=int, default=None, help="l: decoder blocks trained by the local stage (default: those up to the H/4 map)")
    p.add_argument("--local-negatives", choices=["neighbours", "all", "batch"], default="all", help="local negatives: the reference's 5 neighbouring regions, all other regions of the image, or every other region of the batch")
    p.add_argument("--noise-std", type=float, default=0.05, help="local and hpcl views: max std of added Gaussian noise")
    p.add_argument("--method", choices=["stages", "hpcl"], default="stages", help="stages: the global/local stage chosen by --stage; hpcl: hyper-pixel contrastive pretraining of encoder + decoder (ignores --stage)")
    p.add_argument("--queue-size", type=int, default=4096, help="hpcl: K, keys in the queue of negatives")
    p.add_argument("--momentum", type=float, default=0.99, help="hpcl: m, EMA momentum of the key encoder")
    p.add_argument("--n-segments", type=int, default=None, help="hpcl: SLIC superpixels per slice (default: one per 8x8 pixels)")
    p.add_argument("--compactness", type=float, default=0.5, help="hpcl: SLIC compactness on the standardised slice")
    p.add_argument("--max-anchors", type=int, default=0, help="hpcl: hyper-pixels per step in the loss (random subset; 0 = all)")


def _pretrain_groups(data: PreparedData) -> list[str]:
    groups = data.split_groups("unlabeled") + data.split_groups("labeled")
    if not groups:
        raise InputError(data.folder, "no unlabeled or labeled-pool subjects to pretrain on")
    return groups


def run_pretrain(args: argparse.Namespace) -> None:
    configure_runtime(args.threads, args.seed)
    data = PreparedData(args.data)
    groups = _pretrain_groups(data)
    if args.method == "hpcl":
        run_hpcl_pretrain(args, data, groups)
        return
    t0 = time.perf_counter()
    if args.stage == "global":
        strategy = args.strategy or "GD"
        spec = network_spec(data.in_channels, data.num_classes, parse_channels(args.channels))
        net = build_network(spec)
        c, h, w = net.bottleneck_shape(data.manifest["image_size"])
        head = GlobalProjectionHead(c * h * w)
        loss = GlobalContrastiveLoss(strategy, temperature=args.temperature)
        task = GlobalContrastiveTask(net, head, loss, lr=args.lr, crop_scale=tuple(args.crop_scale), seed=args.seed)
        pretrained = ["encoder."]
        method = strategy
        heads = {"g1": head}
    else:
        if not args.init:
            raise InputError(None, "--stage local needs --init (the global stage's checkpoint)")
        strategy = args.strategy or "LR"
        init = read_checkpoint(args.init)
        spec = init["network"]
        net = build_network(spec)
        net.load_state_dict(init["state_dict"])
        n_blocks = args.local_blocks or max(1, len(spec["channels"]) - 3)
        if not 1 <= n_blocks <= len(net.decoder):
            raise InputError(None, f"--local-blocks must be in 1..{len(net.decoder)}")
        width = spec["channels"][::-1][n_blocks]
        head = LocalProjectionHead(width)
        loss = LocalContrastiveLoss(in_channels=width, strategy=strategy, temperature=args.temperature, negatives=args.local_negatives)
        task = LocalContrastiveTask(net, n_blocks, head, loss, lr=args.lr, noise_std=args.noise_std, seed=args.seed)
        pretrained = sorted(set(init.get("pretrained", [])) | {f"decoder.{i}." for i in range(n_blocks)})
        method = f"{init.get('method', 'pretrained')}+{strategy}"
        heads = {**init.get("heads", {}), "g2": head, "g2_region": loss}
    # the global batch of all processes: m volumes per process, each process takes its m
    trainer = resumable_trainer(args.out, args, args.steps, find_unused_parameters=True)
    sampler = PartitionBatchSampler(data, groups, args.volumes_per_batch * trainer.world_size, args.steps, args.seed)
    rt = runtime_settings(args)
    loader = batch_loader(PreparedDataset(data, list(range(len(data))), with_label=False), ShardedBatchSampler(sampler, args.steps, resume_step(args.out)), rt["workers"], rt["pin_memory"])
    fit_resumable(trainer, task, loader, None, args.out)
    if not trainer.is_global_zero:
        return
    with stage_outputs(args.out) as tmp:
        heads = {k: {n: t.detach().cpu() for n, t in (v.state_dict() if hasattr(v, "state_dict") else v).items()} for k, v in heads.items()}
        save_checkpoint(
            tmp / "model.pt", net, spec, stage=f"pretrain-{args.stage}", method=method, pretrained=pretrained, heads=heads,
            data={"classes": data.manifest["classes"], "channels": data.manifest["channels"], "image_size": data.manifest["image_size"]},
        )
        write_json(tmp / "train.json", {
            "stage": args.stage, "method": method, "strategy": strategy, "steps": args.steps, "seed": args.seed,
            "batch": args.volumes_per_batch * len(sampler.partitions), "loss_first": task.losses[0], "loss_last": task.losses[-1],
            "loss_history": task.losses, "wall_seconds": time.perf_counter() - t0,
        })
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("%s stage %s: loss %.4f -> %.4f in %.1fs", args.stage, method, task.losses[0], task.losses[-1], time.perf_counter() - t0)


def run_hpcl_pretrain(args: argparse.Namespace, data: PreparedData, groups: list[str]) -> None:
    """``--method hpcl``: hyper-pixel contrastive pretraining of encoder + decoder on slices."""
    if args.queue_size <= 0 or not 0.0 <= args.momentum <= 1.0 or args.temperature <= 0:
        raise InputError(None, "need --queue-size > 0, 0 <= --momentum <= 1 and --temperature > 0")
    t0 = time.perf_counter()
    indices = data.sample_indices(groups)
    h, w = data.manifest["image_size"]
    n_segments = args.n_segments or max(1, (h // 8) * (w // 8))
    # once per run, before training: SLIC costs milliseconds per slice, too much inside the loop
    superpixels = np.full((len(data), h, w), -1, dtype=np.int32)
    superpixels[indices] = slic_superpixels(data.images, n_segments, args.compactness, indices)
    log.info("SLIC superpixels of %d slices in %.1fs", len(indices), time.perf_counter() - t0)
    spec = network_spec(data.in_channels, data.num_classes, parse_channels(args.channels))
    net = build_network(spec)
    head = build_projection_head(net)
    task = HyperPixelPretrainTask(
        net, head, K=args.queue_size, m=args.momentum, T=args.temperature, lr=args.lr, max_anchors=args.max_anchors,
        crop_scale=tuple(args.crop_scale), brightness=0.2, contrast=(0.8, 1.2), noise_std=args.noise_std, seed=args.seed,
    )
    batch_size = args.batch_size if args.batch_size > 0 else 16
    trainer = resumable_trainer(args.out, args, args.steps, find_unused_parameters=True)
    rt = runtime_settings(args)
    ds = SuperpixelDataset(data, indices, superpixels)
    loader = step_loader(ds, batch_size, args.steps, args.seed, rt["workers"], start_step=resume_step(args.out), pin_memory=rt["pin_memory"])
    fit_resumable(trainer, task, loader, None, args.out)
    if not trainer.is_global_zero:
        return
    heads = {"projection": task.head.state_dict(), "momentum_net": task.key_net.state_dict(),
             "momentum_projection": task.key_head.state_dict(), "queue": task.queue.state_dict()}
    heads = {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in heads.items()}
    with stage_outputs(args.out) as tmp:
        save_checkpoint(
            tmp / "model.pt", net, spec, stage="pretrain-hpcl", method="hpcl", pretrained=["encoder.", "decoder."], heads=heads,
            data={"classes": data.manifest["classes"], "channels": data.manifest["channels"], "image_size": data.manifest["image_size"]},
        )
        write_json(tmp / "train.json", {
            "stage": "hpcl", "method": "hpcl", "steps": args.steps, "seed": args.seed, "batch": batch_size, "slices": len(ds),
            "n_segments": n_segments, "queue_size": args.queue_size, "momentum": args.momentum, "temperature": args.temperature,
            "loss_first": task.losses[0], "loss_last": task.losses[-1], "loss_history": task.losses,
            "wall_seconds": time.perf_counter() - t0,
        })
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("hpcl pretraining: loss %.4f -> %.4f in %.1fs", task.losses[0], task.losses[-1], time.perf_counter() - t0)
