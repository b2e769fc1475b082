"""``rs pretrain --method hpcl``: self-supervised hyper-pixel contrastive pretraining on tiles.

Our definition of HPCL (METHODS §4; see :mod:`segcore.hyperpixel` and docs/hpcl.md): the
network that fine-tuning will use (``--fusion early|dual`` and the encoder options of ``rs
finetune``) + a projection head on hypercolumn superpixel embeddings (the SLIC superpixels
``rs preprocess`` stored in ``superpixels.npy``), a momentum (EMA) copy for the keys and a
queue of ``--queue-size`` keys as negatives. Two views per tile share their geometry (random
dihedral transform and crop of image and superpixel map alike) and differ in photometry (jitter
on the spectral channels only), so the positive of a hyper-pixel is the same superpixel of the
same tile in the other view.

Trains on the ``unlabeled`` split (every training tile; labels are not read). Writes
``model.pt`` (encoder + decoder marked as pretrained, method ``hpcl-ssl``; projection head,
momentum encoder and queue apart under ``heads``: ``rs finetune --init`` takes the backbone and
re-initialises the segmentation head), ``train.json``, ``config.yaml`` and ``logs/``.
"""

from __future__ import annotations

import argparse
import logging
import time

from rs.finetune import add_rs_training_options, parse_widths, spectral_channels
from rs.models import build_from_spec, network_spec
from segcore.checkpoints import save_checkpoint
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.hyperpixel import HyperPixelPretrainTask, build_projection_head
from segcore.outputs import write_json, write_yaml
from segcore.prepared import PreparedData, PreparedDataset
from segcore.training import (
    configure_runtime,
    fit_resumable,
    resumable_trainer,
    resume_step,
    runtime_settings,
    stage_outputs,
    step_loader,
)

log = logging.getLogger(__name__)

METHODS = ("hpcl",)


def add_pretrain_options(p: argparse.ArgumentParser) -> None:
    add_rs_training_options(p, steps=300, batch_size=16, lr=1e-3)
    p.add_argument("--method", choices=METHODS, default="hpcl", help="hpcl: hyper-pixel contrast with a momentum encoder and a queue (our definition, docs/hpcl.md)")
    p.add_argument("--queue-size", type=int, default=4096, help="K: keys in the queue of negatives")
    p.add_argument("--momentum", type=float, default=0.99, help="m: EMA momentum of the key encoder")
    p.add_argument("--temperature", type=float, default=0.1, help="T of the InfoNCE similarities")
    p.add_argument("--proj-dim", type=int, default=128, help="projection head output (queue) dimension D")
    p.add_argument("--proj-hidden", type=int, default=256, help="projection head hidden width")
    p.add_argument("--max-anchors", type=int, default=0, help="hyper-pixels per step in the loss (random subset; 0 = all)")
    p.add_argument("--batch-negatives", action=argparse.BooleanOptionalAction, default=False, help="the other hyper-pixels' keys of the same step are negatives too (besides the queue)")
    p.add_argument("--key-batchnorm", choices=["batch", "running"], default="running", help="BatchNorm of the key encoder: the running statistics copied from the online net (eval mode) or batch statistics (train mode; use with --batch-negatives)")
    p.add_argument("--crop-scale", type=float, nargs=2, default=(0.6, 1.0), metavar=("LO", "HI"), help="views: crop side as a fraction of the tile side (1 1: no crop)")
    p.add_argument("--dihedral", action=argparse.BooleanOptionalAction, default=True, help="views: random flips and quarter turns (image and superpixels alike)")
    p.add_argument("--jitter", choices=["spectral", "elevation", "all"], default="spectral", help="views: which channels get the photometric jitter; 'elevation': the spectral bands and the elevation channel (absolute height, which alone names a hyper-pixel) but not slope, aspect or hillshade; 'all' also shifts and scales every terrain channel, so that a hyper-pixel cannot find its positive by its (otherwise identical) terrain values alone")
    p.add_argument("--brightness", type=float, default=0.2, help="views: max shift per jittered channel (standardised units)")
    p.add_argument("--contrast", type=float, nargs=2, default=(0.8, 1.2), metavar=("LO", "HI"), help="views: gain range per jittered channel")
    p.add_argument("--noise-std", type=float, default=0.05, help="views: max std of Gaussian noise on the jittered channels")
    p.add_argument("--drop-terrain", type=float, default=0.0, help="views: probability, per view and tile, that every non-spectral (terrain) channel is set to 0, its standardised mean (modality dropout: the spectra must then find the hyper-pixel's positive; 0: off)")


def run_pretrain(args: argparse.Namespace) -> None:
    configure_runtime(args.threads, args.seed)
    data = PreparedData(args.data)
    if data.manifest.get("domain") != "rs":
        raise InputError(args.data, f"expected remote-sensing prepared data, found domain {data.manifest.get('domain')!r}")
    tiles = data.split_groups("unlabeled")
    if not tiles:
        raise InputError(args.data, "no training tiles in the 'unlabeled' split to pretrain on")
    superpixels = data.extra("superpixels")  # InputError when preprocessing did not write it
    if superpixels.shape != data.labels.shape:
        raise InputError(data.folder / "superpixels.npy", f"shape {superpixels.shape} differs from the tiles' {data.labels.shape}")
    if args.queue_size <= 0 or not 0.0 <= args.momentum <= 1.0 or args.temperature <= 0:
        raise InputError(None, "need --queue-size > 0, 0 <= --momentum <= 1 and --temperature > 0")
    names = list(data.manifest.get("channels") or [])
    jittered = list(range(data.in_channels)) if args.jitter == "all" else spectral_channels(data)
    if args.jitter == "elevation":
        if "elevation" not in names:
            raise InputError(args.data, f"--jitter elevation needs an 'elevation' channel; the data has {names}")
        jittered.append(names.index("elevation"))
    if not 0.0 <= args.drop_terrain <= 1.0:
        raise InputError(None, f"--drop-terrain must lie in [0, 1], got {args.drop_terrain}")
    terrain = [i for i in range(data.in_channels) if i not in set(spectral_channels(data))]
    if args.drop_terrain > 0 and not terrain:
        raise InputError(args.data, "--drop-terrain needs terrain channels besides the spectral bands; the data has none")
    t0 = time.perf_counter()
    spec = network_spec(data, args.fusion, args.encoder, args.encoder_depth, parse_widths(args.decoder_channels))
    net = build_from_spec(spec)
    head = build_projection_head(net, args.proj_hidden, args.proj_dim)
    crop = None if args.crop_scale[0] >= 1.0 else tuple(args.crop_scale)
    task = HyperPixelPretrainTask(
        net, head, K=args.queue_size, m=args.momentum, T=args.temperature, lr=args.lr, max_anchors=args.max_anchors,
        batch_negatives=args.batch_negatives, key_batchnorm=args.key_batchnorm, dihedral_transforms=args.dihedral, crop_scale=crop, jitter_channels=jittered, brightness=args.brightness,
        contrast=tuple(args.contrast), noise_std=args.noise_std, drop_channels=terrain, drop_prob=args.drop_terrain, seed=args.seed,
    )
    trainer = resumable_trainer(args.out, args, args.steps, find_unused_parameters=True)
    rt = runtime_settings(args)
    ds = PreparedDataset(data, data.sample_indices(tiles), with_label=False, extras=["superpixels"])
    loader = step_loader(ds, args.batch_size, args.steps, args.seed, rt["workers"], start_step=resume_step(args.out), pin_memory=rt["pin_memory"])
    fit_resumable(trainer, task, loader, None, args.out)
    if not trainer.is_global_zero:
        return
    method = "hpcl-ssl"
    heads = {
        "projection": task.head.state_dict(),
        "momentum_net": task.key_net.state_dict(),
        "momentum_projection": task.key_head.state_dict(),
        "queue": task.queue.state_dict(),
    }
    heads = {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in heads.items()}
    data_record = {k: data.manifest[k] for k in ("classes", "channels", "image_size", "normalization") if k in data.manifest}
    with stage_outputs(args.out) as tmp:
        save_checkpoint(tmp / "model.pt", net, spec, stage="pretrain", method=method, pretrained=["encoder.", "decoder."], heads=heads, data=data_record)
        write_json(tmp / "train.json", {
            "stage": "pretrain", "method": method, "variant": spec["name"], "steps": args.steps, "seed": args.seed,
            "batch_size": args.batch_size, "tiles": len(ds), "queue_size": args.queue_size, "momentum": args.momentum,
            "temperature": args.temperature, "jitter_channels": [names[i] for i in jittered] if names else jittered,
            "drop_terrain": args.drop_terrain, "dropped_channels": ([names[i] for i in terrain] if names else terrain) if args.drop_terrain > 0 else [],
            "loss_first": task.losses[0], "loss_last": task.losses[-1],
            "loss_history": task.losses, "wall_seconds": time.perf_counter() - t0, "processes": trainer.world_size,
        })
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("hpcl pretraining (%s): loss %.4f -> %.4f in %.1fs", spec["name"], task.losses[0], task.losses[-1], time.perf_counter() - t0)
