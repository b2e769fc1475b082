"""The demo datasets of ``workflows/config/config.yaml``, generated and prepared for a benchmark.

The commands are the ones the workflow's rules run (``medseg demo-data`` → ``medseg
preprocess``, ``rs demo-data`` → ``rs preprocess``) with the demo config's settings, so a
benchmark times the data the default DAG trains on. ``scale`` multiplies the number of MRI
subjects or remote-sensing scenes (the split sizes of the MRI config stay: the extra subjects
join the unlabeled pool, as a larger real dataset would).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "workflows" / "config" / "config.yaml"
BIN = Path(sys.executable).parent  # the venv's bin/: medseg, rs, snakemake


def demo_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def mri_network_args() -> list[str]:
    """The demo MRI network's options (--channels) as the rules pass them."""
    return ["--channels", ",".join(str(c) for c in demo_config()["mri"]["network"]["channels"])]


def rs_network_args(fusion: str) -> list[str]:
    """The demo scene network's options with ``fusion`` (early, dual ...) as the rules pass them."""
    net = demo_config()["rs"]["network"]
    return [
        "--fusion",
        fusion,
        "--encoder",
        net["encoder"],
        "--encoder-depth",
        str(net["encoder_depth"]),
        "--decoder-channels",
        ",".join(str(c) for c in net["decoder_channels"]),
    ]


def _words(values: list[Any]) -> list[str]:
    return [str(v) for v in values]


def demo_commands(domain: str, root: Path, scale: int = 1) -> dict[str, list[str]]:
    """``{"demo-data": argv, "preprocess": argv}`` of ``domain`` (``mri`` or ``rs``) writing
    ``root/raw`` and ``root/prepared``."""
    cfg = demo_config()[domain]
    raw, prepared = str(root / "raw"), str(root / "prepared")
    if domain == "mri":
        d, p = cfg["demo"], cfg["preprocess"]
        return {
            "demo-data": [
                str(BIN / "medseg"),
                "demo-data",
                "--out",
                raw,
                "--n-subjects",
                str(d["n_subjects"] * scale),
                "--n-slices",
                str(d["n_slices"]),
                "--size",
                str(d["size"]),
                "--seed",
                str(d["seed"]),
            ],
            "preprocess": [
                str(BIN / "medseg"),
                "preprocess",
                "--input",
                raw,
                "--out",
                prepared,
                "--target-spacing",
                *_words(p["target_spacing"]),
                "--image-size",
                *_words(p["image_size"]),
                "--partitions",
                str(p["partitions"]),
                "--n-test",
                str(p["n_test"]),
                "--n-val",
                str(p["n_val"]),
                "--n-labeled",
                str(p["n_labeled"]),
                "--seed",
                str(p["seed"]),
            ],
        }
    if domain == "rs":
        d, p = cfg["demo"], cfg["preprocess"]
        return {
            "demo-data": [
                str(BIN / "rs"),
                "demo-data",
                "--out",
                raw,
                "--n-scenes",
                str(d["n_scenes"] * scale),
                "--size",
                str(d["size"]),
                "--seed",
                str(d["seed"]),
            ],
            "preprocess": [
                str(BIN / "rs"),
                "preprocess",
                "--input",
                raw,
                "--out",
                prepared,
                "--tile",
                str(p["tile"]),
                "--overlap",
                str(p["overlap"]),
                "--block-tiles",
                str(p["block_tiles"]),
                "--val-fraction",
                str(p["val_fraction"]),
                "--test-fraction",
                str(p["test_fraction"]),
                "--seed",
                str(p["seed"]),
            ],
        }
    raise ValueError(f"unknown domain {domain!r} (mri or rs)")


def training_commands(
    mri_data: Path, rs_data: Path, out: Path, steps: int, global_init: Path | None = None
) -> dict[str, list[str]]:
    """argv of every training loop of the demo DAG with the demo config's options (as the rules
    pass them), ``steps`` steps each, outputs under ``out``: MRI fine-tuning (the largest
    budget), MRI global (G^D) and local (L^R, from ``global_init``, default
    ``out/mri_global/model.pt``) pretraining, RS fine-tuning for each fusion."""
    cfg = demo_config()
    mri, rs = cfg["mri"], cfg["rs"]
    ft, r = mri["finetune"], rs["finetune"]
    common = ["--threads", str(cfg["threads"]), "--steps", str(steps), "--seed", "0"]
    global_init = global_init or out / "mri_global" / "model.pt"
    commands = {
        "MRI finetune": [
            str(BIN / "medseg"),
            "finetune",
            "--data",
            str(mri_data),
            "--out",
            str(out / "mri_finetune"),
            "--budget",
            str(ft["budgets"][-1]),
            *mri_network_args(),
            "--batch-size",
            str(ft["batch_size"]),
            "--lr",
            str(ft["lr"]),
            "--val-every",
            str(min(ft["val_every"], steps)),
            *common,
        ],
        **mri_pretrain_commands(
            mri_data, out / "mri_global", out / "mri_local", threads=cfg["threads"], steps=steps, init=global_init
        ),
    }
    for fusion in rs["fusions"]:
        commands[f"RS finetune {fusion}"] = [
            str(BIN / "rs"),
            "finetune",
            "--data",
            str(rs_data),
            "--out",
            str(out / f"rs_finetune_{fusion}"),
            "--percent",
            str(r["budgets"][0]),
            *rs_network_args(fusion),
            "--batch-size",
            str(r["batch_size"]),
            "--lr",
            str(r["lr"]),
            "--val-every",
            str(min(r["val_every"], steps)),
            *common,
        ]
    return commands


def mri_pretrain_commands(
    data: Path, out_global: Path, out_local: Path, threads: int, steps: int | None = None, init: Path | None = None
) -> dict[str, list[str]]:
    """argv of the demo's MRI pretraining as the rules pass it: ``MRI pretrain global GD`` (G^D into
    ``out_global``) and ``MRI pretrain local LR`` (L^R into ``out_local`` from ``init``, default
    ``out_global/model.pt``); the config's steps and seed unless ``steps`` is given."""
    cfg = demo_config()["mri"]
    p = cfg["pretrain"]
    g, loc = p["global"], p["local"]
    common = ["--threads", str(threads), "--seed", str(p["seed"])]
    init = init or out_global / "model.pt"
    return {
        "MRI pretrain global GD": [
            str(BIN / "medseg"),
            "pretrain",
            "--stage",
            "global",
            "--strategy",
            "GD",
            "--data",
            str(data),
            "--out",
            str(out_global),
            *mri_network_args(),
            "--volumes-per-batch",
            str(g["volumes_per_batch"]),
            "--lr",
            str(g["lr"]),
            "--temperature",
            str(g["temperature"]),
            "--steps",
            str(steps or g["steps"]),
            *common,
        ],
        "MRI pretrain local LR": [
            str(BIN / "medseg"),
            "pretrain",
            "--stage",
            "local",
            "--strategy",
            "LR",
            "--data",
            str(data),
            "--out",
            str(out_local),
            "--init",
            str(init),
            "--volumes-per-batch",
            str(loc["volumes_per_batch"]),
            "--lr",
            str(loc["lr"]),
            "--temperature",
            str(loc["temperature"]),
            "--local-negatives",
            loc["negatives"],
            "--noise-std",
            str(loc["noise_std"]),
            "--steps",
            str(steps or loc["steps"]),
            *common,
        ],
    }


def rs_hpcl_pretrain_command(data: Path, out: Path, network: list[str], threads: int) -> list[str]:
    """argv of the demo's remote-sensing hpcl pretraining (hpcl-ssl) with the network options
    ``network`` (--fusion, --encoder ...), the config's steps and seed."""
    p = demo_config()["rs"]["pretrain"]
    return [
        str(BIN / "rs"),
        "pretrain",
        "--method",
        "hpcl",
        "--data",
        str(data),
        "--out",
        str(out),
        *network,
        "--steps",
        str(p["steps"]),
        "--batch-size",
        str(p["batch_size"]),
        "--lr",
        str(p["lr"]),
        "--queue-size",
        str(p["queue_size"]),
        "--momentum",
        str(p["momentum"]),
        "--temperature",
        str(p["temperature"]),
        "--crop-scale",
        *[str(c) for c in p["crop_scale"]],
        "--seed",
        str(p["seed"]),
        "--threads",
        str(threads),
    ]


def prepare_demo(domain: str, root: Path, scale: int = 1) -> Path:
    """Generate and preprocess the demo data of ``domain`` under ``root``; returns the prepared
    folder (reused when it is already there)."""
    prepared = root / "prepared"
    if (prepared / "manifest.json").is_file():
        return prepared
    for argv in demo_commands(domain, root, scale).values():
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return prepared
