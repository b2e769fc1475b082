"""The HPCL stages end to end on tiny generated data: ``rs pretrain --method hpcl`` →
``rs finetune --init ... --hpcl-weight`` → ``rs evaluate``, the MRI variant ``medseg pretrain
--method hpcl`` → ``medseg finetune --init``, and clear errors for bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli import main as medseg
from medseg.phantoms import generate_dataset
from medseg.preprocess import preprocess as mri_preprocess
from rs.cli import main as rs
from rs.config import RSPreprocessConfig
from rs.preprocess import run_preprocess
from segcore.checkpoints import read_checkpoint
from segcore.config import parse_config
from segcore.networks import build_network as build_from_spec
from tests.data.rs import make

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
NET = [
    "--fusion",
    "dual",
    "--encoder",
    "tu-regnetx_002",
    "--encoder-depth",
    "3",
    "--decoder-channels",
    "16,8,8",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hpcl_rs")
    raw = make.scene_folder(root / "raw", n=3)
    run_preprocess(
        parse_config(
            RSPreprocessConfig,
            [
                "--input",
                str(raw),
                "--out",
                str(root / "prep"),
                "--tile",
                "16",
                "--overlap",
                "4",
                "--block-tiles",
                "2",
                "--n-segments",
                "8",
            ],
        )
    )
    return root / "prep"


def test_rs_pretrain_then_finetune_with_the_class_aware_term(prepared: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    pre, ft, ev = tmp_path / "pre", tmp_path / "ft", tmp_path / "ev"
    assert (
        rs(
            [
                "pretrain",
                "--method",
                "hpcl",
                "--data",
                str(prepared),
                "--out",
                str(pre),
                *NET,
                "--steps",
                "4",
                "--batch-size",
                "4",
                "--queue-size",
                "64",
                "--checkpoint-every",
                "0",
            ]
        )
        == 0
    )
    ckpt = read_checkpoint(pre / "model.pt")
    assert (
        ckpt["method"] == "hpcl-ssl" and ckpt["stage"] == "pretrain" and ckpt["pretrained"] == ["encoder.", "decoder."]
    )
    assert set(ckpt["heads"]) == {"projection", "momentum_net", "momentum_projection", "queue"}
    assert 0 < int(ckpt["heads"]["queue"]["filled"]) <= 64 and ckpt["heads"]["queue"]["queue"].shape == (64, 128)
    fresh = build_from_spec(ckpt["network"])
    assert set(ckpt["state_dict"]) == set(fresh.state_dict())  # the segmentation net only
    record = json.loads((pre / "train.json").read_text())
    assert len(record["loss_history"]) == 4 and all(np.isfinite(record["loss_history"]))
    assert record["jitter_channels"] == ["B", "G", "R", "NIR"]  # --jitter spectral (default)
    assert (
        rs(
            [
                "pretrain",
                "--method",
                "hpcl",
                "--data",
                str(prepared),
                "--out",
                str(tmp_path / "pre_elev"),
                *NET,
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--queue-size",
                "64",
                "--checkpoint-every",
                "0",
                "--jitter",
                "elevation",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "pre_elev" / "train.json").read_text())["jitter_channels"] == [
        "B",
        "G",
        "R",
        "NIR",
        "elevation",
    ]
    assert (
        rs(
            [
                "pretrain",
                "--method",
                "hpcl",
                "--data",
                str(prepared),
                "--out",
                str(tmp_path / "pre_drop"),
                *NET,
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--queue-size",
                "64",
                "--checkpoint-every",
                "0",
                "--drop-terrain",
                "0.5",
            ]
        )
        == 0
    )
    rec = json.loads((tmp_path / "pre_drop" / "train.json").read_text())
    assert rec["drop_terrain"] == 0.5 and "elevation" in rec["dropped_channels"] and "B" not in rec["dropped_channels"]
    assert (
        rs(
            [
                "pretrain",
                "--method",
                "hpcl",
                "--data",
                str(prepared),
                "--out",
                str(tmp_path / "pre_bad"),
                *NET,
                "--steps",
                "1",
                "--drop-terrain",
                "1.5",
            ]
        )
        == 2
        and not (tmp_path / "pre_bad").exists()
    )

    assert (
        rs(
            [
                "finetune",
                "--data",
                str(prepared),
                "--out",
                str(ft),
                "--init",
                str(pre / "model.pt"),
                "--percent",
                "50",
                "--seed",
                "1",
                "--method",
                "hpcl-ssl+sup",
                "--steps",
                "10",
                "--val-every",
                "5",
                "--batch-size",
                "4",
                "--hpcl-weight",
                "0.2",
                "--hpcl-warmup",
                "2",
                "--hpcl-queue",
                "32",
                "--checkpoint-every",
                "0",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    model = read_checkpoint(ft / "model.pt")
    assert model["run"]["method"] == "hpcl-ssl+sup" and model["run"]["hpcl"]["weight"] == 0.2
    assert model["run"]["initialised_tensors"] > 0
    assert set(model["state_dict"]) == set(fresh.state_dict())  # no momentum encoder, head or queues exported
    with (ft / "logs" / "metrics.csv").open() as f:  # logged every 10 steps
        rows = [r for r in csv.DictReader(f) if r.get("train/hpcl_weight")]
    assert rows and all(np.isfinite(float(r["train/hpcl_loss"])) for r in rows)

    ev2 = ev.with_name("ev2")  # two models in one process, one --out each
    assert (
        rs(
            [
                "evaluate",
                "--data",
                str(prepared),
                "--model",
                str(ft / "model.pt"),
                str(ft / "model.pt"),
                "--out",
                str(ev),
                str(ev2),
                "--no-whole-scene",
            ]
        )
        == 0
    )
    first, second = (json.loads((e / "metrics.json").read_text()) for e in (ev, ev2))
    assert first["method"] == "hpcl-ssl+sup" and first["summary"] == second["summary"]
    assert first["label_seed"] == model["run"]["label_seed"] == 1  # the labeled set, for the report's variance split


def test_rs_pretrain_refuses_data_without_superpixels(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(prepared, bare)
    (bare / "superpixels.npy").unlink()
    assert rs(["pretrain", "--data", str(bare), "--out", str(tmp_path / "out"), *NET, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "superpixels" in err and str(bare) in err and not (tmp_path / "out").exists()


def test_rs_finetune_refuses_a_bad_hpcl_option(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        rs(
            [
                "finetune",
                "--data",
                str(prepared),
                "--out",
                str(tmp_path / "ft"),
                *NET,
                "--steps",
                "1",
                "--hpcl-weight",
                "0.2",
                "--hpcl-boundary-fraction",
                "1.5",
            ]
        )
        == 2
    )
    assert "--hpcl-boundary-fraction" in capsys.readouterr().err
    assert (
        rs(
            [
                "finetune",
                "--data",
                str(prepared),
                "--out",
                str(tmp_path / "ft"),
                *NET,
                "--steps",
                "1",
                "--hpcl-weight",
                "0.2",
                "--hpcl-unlabeled-anchors",
                "8",
            ]
        )
        == 2
    )
    assert "--hpcl-unlabeled" in capsys.readouterr().err and not (tmp_path / "ft").exists()


def test_rs_finetune_with_pseudo_labeled_unlabeled_anchors(prepared: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ft = tmp_path / "ft"
    assert (
        rs(
            [
                "finetune",
                "--data",
                str(prepared),
                "--out",
                str(ft),
                *NET,
                "--percent",
                "50",
                "--method",
                "hpcl-sup",
                "--steps",
                "10",
                "--val-every",
                "10",
                "--batch-size",
                "4",
                "--hpcl-weight",
                "0.2",
                "--hpcl-queue",
                "32",
                "--hpcl-unlabeled",
                "2",
                "--hpcl-pseudo-threshold",
                "0",
                "--hpcl-unlabeled-anchors",
                "4",
                "--checkpoint-every",
                "0",
            ]
        )
        == 0
    )
    model = read_checkpoint(ft / "model.pt")
    assert model["run"]["hpcl"]["unlabeled"] == 2 and model["run"]["hpcl"]["unlabeled_anchors"] == 4
    # a repeat on the same labeled tiles with another training seed (--label-seed): same tiles, other weights
    rep = tmp_path / "rep"
    assert (
        rs(
            [
                "finetune",
                "--data",
                str(prepared),
                "--out",
                str(rep),
                *NET,
                "--percent",
                "50",
                "--seed",
                "7",
                "--label-seed",
                "0",
                "--steps",
                "2",
                "--val-every",
                "2",
                "--batch-size",
                "4",
                "--checkpoint-every",
                "0",
            ]
        )
        == 0
    )
    other = read_checkpoint(rep / "model.pt")
    assert (
        other["run"]["labeled"] == model["run"]["labeled"]
        and other["run"]["label_seed"] == 0
        and other["run"]["seed"] == 7
    )
    with (ft / "logs" / "metrics.csv").open() as f:  # logged every 10 steps
        rows = [r for r in csv.DictReader(f) if r.get("train/pseudo_enqueued")]
    assert (
        rows
        and float(rows[-1]["train/pseudo_enqueued"]) > 0
        and all(np.isfinite(float(r["train/hpcl_loss"])) for r in rows)
    )


def test_rs_finetune_several_seeds_equal_each_seed_alone(prepared: Path, tmp_path: Path) -> None:
    """The class-aware term keeps state (momentum network, class queues, unlabeled draws): a seed
    trained after another in the same process ends exactly where it ends alone."""
    common = [
        "finetune",
        "--data",
        str(prepared),
        *NET,
        "--percent",
        "50",
        "--method",
        "hpcl-sup",
        "--steps",
        "3",
        "--val-every",
        "3",
        "--batch-size",
        "4",
        "--hpcl-weight",
        "0.2",
        "--hpcl-queue",
        "32",
        "--hpcl-unlabeled",
        "2",
        "--hpcl-pseudo-threshold",
        "0",
        "--checkpoint-every",
        "0",
    ]
    assert rs([*common, "--seed", "2", "3", "--out", str(tmp_path / "a2"), str(tmp_path / "a3")]) == 0
    assert rs([*common, "--seed", "3", "--out", str(tmp_path / "b3")]) == 0
    a, b = read_checkpoint(tmp_path / "a3" / "model.pt"), read_checkpoint(tmp_path / "b3" / "model.pt")
    assert a["run"] == b["run"] and a["run"]["seed"] == 3
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert read_checkpoint(tmp_path / "a2" / "model.pt")["run"]["seed"] == 2


def test_mri_hpcl_pretrain_then_finetune(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    generate_dataset(tmp_path / "raw", n_subjects=6, seed=3, n_slices=8, size=64)
    prep = mri_preprocess(
        tmp_path / "raw",
        tmp_path / "prep",
        target_spacing=(3.0, 3.0),
        image_size=(32, 32),
        partitions=4,
        n_test=1,
        n_val=1,
        n_labeled=2,
        seed=0,
    )
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    assert (
        medseg(
            [
                "pretrain",
                "--method",
                "hpcl",
                "--data",
                str(prep),
                "--out",
                str(pre),
                "--channels",
                "4,8,16",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--queue-size",
                "64",
                "--checkpoint-every",
                "0",
            ]
        )
        == 0
    )
    ckpt = read_checkpoint(pre / "model.pt")
    assert ckpt["method"] == "hpcl" and ckpt["pretrained"] == ["encoder.", "decoder."] and "projection" in ckpt["heads"]
    record = json.loads((pre / "train.json").read_text())
    assert record["n_segments"] == 16 and len(record["loss_history"]) == 3
    assert (
        medseg(
            [
                "finetune",
                "--data",
                str(prep),
                "--out",
                str(ft),
                "--init",
                str(pre / "model.pt"),
                "--budget",
                "1",
                "--steps",
                "3",
                "--val-every",
                "3",
                "--checkpoint-every",
                "0",
            ]
        )
        == 0
    )
    model = read_checkpoint(ft / "model.pt")
    assert model["run"]["method"] == "hpcl" and model["run"]["initialised_tensors"] > 0
