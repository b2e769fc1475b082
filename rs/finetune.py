"""``rs finetune``: early- or dual-fusion U-Net on a percentage of labeled tiles chosen from
(percentage, seed); cross-entropy + Dice with nodata ignored; best weights by validation mIoU."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rs.landslide4sense_protocol import empty_split_reason
from rs.models import build_from_spec, network_spec
from segcore.augment import BatchSpatialAugment
from segcore.budget import label_seed, select_percent
from segcore.checkpoints import load_pretrained, read_checkpoint
from segcore.errors import InputError
from segcore.hyperpixel import HyperPixelSegmentationTask
from segcore.prepared import PreparedData, PreparedDataset
from segcore.training import (
    add_device_options,
    add_seed_out_options,
    configure_runtime,
    fit_segmentation,
    run_per_seed,
)

log = logging.getLogger(__name__)


def add_rs_training_options(p: argparse.ArgumentParser, steps: int, batch_size: int, lr: float, several: bool = False) -> None:
    """Options shared by the remote-sensing training stages."""
    p.add_argument("--data", type=Path, required=True, help="prepared tiles folder (from `rs preprocess`)")
    add_seed_out_options(p, "labeled tiles", several)
    p.add_argument("--label-seed", type=int, default=None, help="seed of the labeled-tile draw alone (default: --seed); repeats of one labeled set with other training seeds")
    p.add_argument("--steps", type=int, default=steps, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=batch_size, help="tiles per batch")
    p.add_argument("--lr", type=float, default=lr, help="learning rate (AdamW)")
    p.add_argument("--fusion", choices=["early", "dual"], default="early", help="early: stacked channels, one encoder; dual: spectral + terrain encoders fused at every scale")
    p.add_argument("--encoder", default="resnet18", help="segmentation-models-pytorch encoder (no pretrained weights are downloaded)")
    p.add_argument("--encoder-depth", type=int, default=4, help="encoder stages")
    p.add_argument("--decoder-channels", default="64,32,16,8", help="decoder widths, one per encoder stage")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    add_device_options(p)  # --accelerator --devices --num-nodes --dist-strategy --precision --workers --checkpoint-every ...


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    add_rs_training_options(p, steps=300, batch_size=16, lr=1e-3, several=True)
    p.add_argument("--percent", type=float, default=100.0, help="labeled tiles, in percent of the labeled pool")
    p.add_argument("--init", type=Path, default=None, help="checkpoint to start from; none = random init")
    p.add_argument("--method", default=None, help="pretraining method name for the report (default: from --init, or 'none')")
    p.add_argument("--val-every", type=int, default=50, help="validate (mIoU) every N steps; best weights kept")
    p.add_argument("--pretrained-lr-scale", type=float, default=1.0, help="learning rate of the weights loaded by --init, as a multiple of --lr (e.g. 0.1: the pretrained backbone moves slower than the new head)")
    p.add_argument("--weight-ema", type=float, default=0.0, help="validate and keep an exponential moving average of the weights with this momentum (e.g. 0.99; warm-up min(m, (1+t)/(10+t))) instead of the raw weights (0: off)")
    p.add_argument("--val-batch-size", type=int, default=32, help="tiles per validation batch")
    # the class-aware hyper-pixel term (HPCL setting, docs/hpcl.md); off at weight 0
    p.add_argument("--hpcl-weight", type=float, default=0.0, help="weight of the class-aware hyper-pixel contrastive term (0: off)")
    p.add_argument("--hpcl-warmup", type=int, default=0, help="steps of linear warm-up of --hpcl-weight (0: none)")
    p.add_argument("--hpcl-queue", type=int, default=1024, help="keys per class queue (every class, background included)")
    p.add_argument("--hpcl-temperature", type=float, default=0.1, help="T of the hyper-pixel InfoNCE")
    p.add_argument("--hpcl-mochi", type=int, default=0, help="MoCHi synthetic hard negatives per anchor (0: none)")
    p.add_argument("--hpcl-momentum", type=float, default=0.99, help="EMA momentum of the key encoder")
    p.add_argument("--hpcl-anchors", type=int, default=256, help="labeled hyper-pixels per step in the term")
    p.add_argument("--hpcl-boundary-fraction", type=float, default=0.5, help="share of anchors drawn among hyper-pixels touching another class")
    p.add_argument("--hpcl-unlabeled", type=int, default=0, help="unlabeled tiles per step whose confidently pseudo-labeled hyper-pixels (momentum network) also fill the class queues (0: labeled tiles only)")
    p.add_argument("--hpcl-pseudo-threshold", type=float, default=0.9, help="min mean softmax probability of a pseudo-labeled hyper-pixel")
    p.add_argument("--hpcl-unlabeled-anchors", type=int, default=0, help="pseudo-labeled hyper-pixels of the --hpcl-unlabeled tiles per class and step that are anchors too, seen by the online network in a second view (dihedral, spectral jitter): the unlabeled pool then trains the network, not only fills the queues (0: labeled anchors only)")


def spectral_channels(data: PreparedData) -> list[int]:
    """Indices of the spectral bands among the prepared channels (all channels when the manifest
    does not say): the channels the views of HPCL jitter by default."""
    return list(data.manifest.get("spectral_channels") or range(data.in_channels))


def parse_widths(text: str | None) -> list[int] | None:
    if text in (None, "", "auto"):
        return None
    return [int(t) for t in str(text).split(",") if t]


def run_finetune(args: argparse.Namespace) -> None:
    """Fine-tune once per ``--seed`` (each into its ``--out``), one after the other."""
    run_per_seed(args, finetune_one)


def finetune_one(args: argparse.Namespace) -> None:
    configure_runtime(args.threads, args.seed)
    data = PreparedData(args.data)
    if data.manifest.get("domain") != "rs":
        raise InputError(args.data, f"expected remote-sensing prepared data, found domain {data.manifest.get('domain')!r}")
    pool = data.split_groups("labeled")
    if not pool:
        raise InputError(args.data, "no labeled training tiles in the prepared data")
    try:
        chosen = select_percent(pool, args.percent, label_seed(args))
    except ValueError as err:
        raise InputError(None, str(err)) from err
    val_groups = data.split_groups("val")
    if not val_groups:
        why = empty_split_reason(data.manifest, "val")  # e.g. ValidData released without masks
        raise InputError(args.data, f"no validation tiles in the prepared data{why}")
    method = args.method
    pretrained: list[str] = []
    if args.init is not None:
        init = read_checkpoint(args.init)
        spec = init["network"]
        if spec.get("in_channels") != data.in_channels:
            raise InputError(args.init, f"checkpoint expects {spec.get('in_channels')} channels, data has {data.in_channels}")
        net = build_from_spec(spec)
        pretrained = load_pretrained(net, init, args.init, skip_prefixes=("head.", "segmentation_head."))
        method = method or init.get("method", "pretrained")
    else:
        spec = network_spec(data, args.fusion, args.encoder, args.encoder_depth, parse_widths(args.decoder_channels))
        net = build_from_spec(spec)
        method = method or "none"
    hpcl = args.hpcl_weight > 0
    if hpcl and (args.hpcl_queue <= 0 or args.hpcl_temperature <= 0 or args.hpcl_anchors <= 0 or not 0 <= args.hpcl_boundary_fraction <= 1):
        raise InputError(None, "need --hpcl-queue, --hpcl-temperature, --hpcl-anchors > 0 and --hpcl-boundary-fraction in [0, 1]")
    train_ds = PreparedDataset(data, data.sample_indices(chosen), extras=["superpixels"] if hpcl else ())
    val_ds = PreparedDataset(data, data.sample_indices(val_groups))
    run = {"method": method, "variant": spec["name"], "budget": f"{args.percent:g}", "seed": int(args.seed), "label_seed": label_seed(args), "labeled": chosen,
           "init": None if args.init is None else str(args.init), "initialised_tensors": len(pretrained)}
    task: dict = {}
    if hpcl:
        keys = ("weight", "warmup", "queue", "temperature", "mochi", "momentum", "anchors", "boundary_fraction", "unlabeled", "pseudo_threshold",
                "unlabeled_anchors")
        run["hpcl"] = {k: getattr(args, f"hpcl_{k}") for k in keys}
        task = {"task_cls": HyperPixelSegmentationTask, "task_kwargs": {f"hpcl_{k}": v for k, v in run["hpcl"].items()}}
        if args.hpcl_unlabeled_anchors > 0 and args.hpcl_unlabeled <= 0:
            raise InputError(None, "--hpcl-unlabeled-anchors needs --hpcl-unlabeled > 0 (the unlabeled tiles per step they are drawn from)")
        # the second view of unlabeled tiles jitters the spectral bands only, as `rs pretrain` does by default
        task["task_kwargs"]["hpcl_jitter_channels"] = spectral_channels(data)
        if args.hpcl_unlabeled > 0:
            pool = data.sample_indices(data.split_groups("unlabeled"))
            if len(pool) == 0:
                raise InputError(args.data, "--hpcl-unlabeled needs tiles in the 'unlabeled' split")
            task["task_kwargs"]["hpcl_unlabeled_data"] = PreparedDataset(data, pool, with_label=False, extras=["superpixels"])
    fit_segmentation(out=args.out, net=net, network=spec, data=data, train_ds=train_ds, val_ds=val_ds, val_metric="miou", run=run, args=args, pretrained=pretrained,
                     augment=BatchSpatialAugment(rotate_deg=0, scale=0, flip_axes=(0, 1), elastic_prob=0, rot90=True, ignore_index=data.ignore_index), **task)
