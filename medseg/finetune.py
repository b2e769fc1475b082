"""``medseg finetune``: a 2D U-Net on the volumes of N labeled subjects chosen from (N, seed)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medseg.models import build_network, network_spec, parse_channels
from segcore.augment import BatchSpatialAugment
from segcore.budget import FixedCombinations, draw_labeled, label_seed
from segcore.checkpoints import load_pretrained, read_checkpoint
from segcore.errors import InputError
from segcore.prepared import PreparedData, PreparedDataset
from segcore.training import (
    add_device_options,
    add_seed_out_options,
    configure_runtime,
    fit_segmentation,
    run_per_seed,
)

log = logging.getLogger(__name__)


def add_training_options(p: argparse.ArgumentParser, steps: int, batch_size: int, lr: float, several: bool = False) -> None:
    """Options shared by the MRI training stages (finetune, pretrain)."""
    p.add_argument("--data", type=Path, required=True, help="prepared data folder (from `medseg preprocess`)")
    add_seed_out_options(p, "labeled volumes", several)
    p.add_argument("--label-seed", type=int, default=None, help="seed of the labeled-volume draw alone (default: --seed); repeats of one labeled set with other training seeds")
    p.add_argument("--steps", type=int, default=steps, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=batch_size, help="slices per batch")
    p.add_argument("--lr", type=float, default=lr, help="learning rate (AdamW)")
    p.add_argument("--channels", default="16,32,64,128,128", help="U-Net encoder widths, comma-separated (ignored with --init: taken from the checkpoint)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    add_device_options(p)  # --accelerator --devices --num-nodes --dist-strategy --precision --workers --checkpoint-every ...


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    add_training_options(p, steps=300, batch_size=8, lr=1e-3, several=True)
    p.add_argument("--budget", default="all", help="labeled subjects (all volumes of each): an integer or 'all' (the whole labeled pool)")
    p.add_argument("--labeled-subjects", nargs="+", action=FixedCombinations, default=None, metavar="SUBJECT", help="fixed labeled subjects instead of the draw (names or numbers; repeat the option for several combinations, picked by the label seed); docs/mri_data.md")
    p.add_argument("--init", type=Path, default=None, help="checkpoint to start from (pretrained or fine-tuned); none = random init")
    p.add_argument("--method", default=None, help="name of the pretraining method, recorded for the report (default: from --init, or 'none')")
    p.add_argument("--val-every", type=int, default=50, help="validate (whole-volume Dice) every N steps; best weights kept")
    p.add_argument("--pretrained-lr-scale", type=float, default=1.0, help="learning rate of the weights loaded by --init, as a multiple of --lr (e.g. 0.1: the pretrained backbone moves slower than the new head)")
    p.add_argument("--weight-ema", type=float, default=0.0, help="validate and keep an exponential moving average of the weights with this momentum (e.g. 0.99; warm-up min(m, (1+t)/(10+t))) instead of the raw weights (0: off)")
    p.add_argument("--val-batch-size", type=int, default=32, help="slices per validation batch")


def run_finetune(args: argparse.Namespace) -> None:
    """Fine-tune once per ``--seed`` (each into its ``--out``), one after the other."""
    run_per_seed(args, finetune_one)


def finetune_one(args: argparse.Namespace) -> None:
    configure_runtime(args.threads, args.seed)
    data = PreparedData(args.data)
    if data.manifest.get("domain") != "mri":
        raise InputError(args.data, f"expected MRI prepared data, found domain {data.manifest.get('domain')!r}")
    try:  # the budget counts subjects (all volumes of a person); fixed lists win over the draw
        subjects, chosen = draw_labeled(data.split_subjects("labeled"), args.budget, label_seed(args), getattr(args, "labeled_subjects", None), data.subject_split())
    except ValueError as err:
        raise InputError(args.data, str(err)) from err
    val_groups = data.split_groups("val")
    if not val_groups:
        raise InputError(args.data, "no validation subjects in the prepared data (preprocess with --n-val >= 1)")

    method = args.method
    pretrained: list[str] = []
    if args.init is not None:
        init = read_checkpoint(args.init)
        spec = init["network"]
        if spec.get("in_channels") != data.in_channels or spec.get("num_classes") != data.num_classes:
            raise InputError(args.init, f"checkpoint is for {spec.get('in_channels')} channels / {spec.get('num_classes')} classes, data has {data.in_channels} / {data.num_classes}")
        net = build_network(spec)
        pretrained = load_pretrained(net, init, args.init)
        method = method or init.get("method", "pretrained")
    else:
        spec = network_spec(data.in_channels, data.num_classes, parse_channels(args.channels))
        net = build_network(spec)
        method = method or "none"

    train_ds = PreparedDataset(data, data.sample_indices(chosen))
    val_ds = PreparedDataset(data, data.sample_indices(val_groups))
    run = {"method": method, "budget": str(args.budget), "seed": int(args.seed), "label_seed": label_seed(args), "labeled": chosen, "labeled_subjects": subjects,
           "init": None if args.init is None else str(args.init), "initialised_tensors": len(pretrained)}
    fit_segmentation(out=args.out, net=net, network=spec, data=data, train_ds=train_ds, val_ds=val_ds, val_metric="dice", run=run, args=args, pretrained=pretrained,
                     augment=BatchSpatialAugment(rotate_deg=15, scale=0.1, flip_axes=(0, 1), elastic_prob=0.3, ignore_index=data.ignore_index))


