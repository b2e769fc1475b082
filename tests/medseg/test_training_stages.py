"""The MRI training stages end to end on a small phantom dataset: sampler, pretraining
invariants, a fine-tuning run whose loss goes down, evaluation and prediction in native space."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.cli import main as medseg
from segcore.checkpoints import read_checkpoint
from segcore.prepared import PreparedData
from segcore.strategies.partitions import PartitionBatchSampler
from tests.data.phantoms import prepared_phantoms

CHANNELS = "4,8,16,16"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mri")
    return prepared_phantoms(root, n_subjects=12, seed=3, size=64)


def test_partition_sampler_layout_and_no_empty_images(prepared):
    data = PreparedData(prepared)
    groups = data.split_groups("unlabeled") + data.split_groups("labeled")
    sampler = PartitionBatchSampler(data, groups, volumes_per_batch=3, steps=20, seed=1)
    for batch in sampler:
        assert len(batch) == 3 * 4
        vols = data.group[batch].reshape(3, 4)
        assert all(len(set(row)) == 1 for row in vols) and len({row[0] for row in vols}) == 3
        assert (data.partition[batch].reshape(3, 4) == np.arange(4)).all()
        # the reference's G^D batch builder padded with all-zero images: none here
        assert all(np.abs(data.image(i)).max() > 0 for i in batch)


def _run(*argv: str) -> None:
    assert medseg(list(argv)) == 0


def test_global_then_local_then_finetune_evaluate_predict(prepared, tmp_path):
    g, loc = tmp_path / "gd", tmp_path / "gd_lr"
    _run(
        "pretrain",
        "--data",
        str(prepared),
        "--out",
        str(g),
        "--stage",
        "global",
        "--strategy",
        "GD",
        "--steps",
        "20",
        "--volumes-per-batch",
        "3",
        "--channels",
        CHANNELS,
    )
    rec = json.loads((g / "train.json").read_text())
    assert rec["loss_last"] < rec["loss_first"]
    _run(
        "pretrain",
        "--data",
        str(prepared),
        "--out",
        str(loc),
        "--stage",
        "local",
        "--strategy",
        "LR",
        "--init",
        str(g / "model.pt"),
        "--steps",
        "20",
        "--volumes-per-batch",
        "3",
    )
    before, after = read_checkpoint(g / "model.pt"), read_checkpoint(loc / "model.pt")
    enc = [k for k in before["state_dict"] if k.startswith("encoder.")]
    assert enc and all(
        torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in enc
    )  # frozen, BN stats too
    assert any(
        not torch.equal(before["state_dict"][k], after["state_dict"][k])
        for k in after["state_dict"]
        if k.startswith("decoder.0.")
    )
    assert after["pretrained"] == ["decoder.0.", "encoder."] and after["method"] == "GD+LR"
    assert set(after["heads"]) == {"g1", "g2", "g2_region"}

    ft = tmp_path / "ft"
    _run(
        "finetune",
        "--data",
        str(prepared),
        "--out",
        str(ft),
        "--budget",
        "1",
        "--seed",
        "0",
        "--steps",
        "30",
        "--val-every",
        "10",
        "--init",
        str(loc / "model.pt"),
    )
    model = read_checkpoint(ft / "model.pt")
    assert model["run"]["method"] == "GD+LR" and model["run"]["budget"] == "1" and len(model["run"]["labeled"]) == 1
    assert not any(k.startswith(("g1", "g2")) for k in model["state_dict"])

    ev = tmp_path / "ev"
    _run("evaluate", "--data", str(prepared), "--model", str(ft / "model.pt"), "--out", str(ev))
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["method"] == "GD+LR" and metrics["n_subjects"] == 2
    assert metrics["label_seed"] == model["run"]["label_seed"] == 0  # the labeled set, for the report's variance split
    assert 0 <= metrics["summary"]["dice_mean"] <= 1
    # how the weights were selected, from train.json to the checkpoint to metrics.json (the report's ↗ mark)
    train = json.loads((ft / "train.json").read_text())
    assert metrics["selection"] == model["run"]["selection"]
    assert metrics["selection"]["best_step"] == train["best_step"] and metrics["selection"]["steps"] == 30
    assert metrics["selection"]["last_val_step"] == train["history"][-1]["step"] == 30
    assert metrics["selection"]["at_last_validation"] == (train["best_step"] == 30)
    data = PreparedData(prepared)
    for subject in data.split_groups("test"):
        src = nib.load(data.manifest["groups"][subject]["image"])
        pred = nib.load(ev / "predictions" / f"{subject}.nii.gz")
        assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)

    # several models in one process (the workflow's one job per cell): each --out as if alone
    ev2, ev3 = tmp_path / "ev2", tmp_path / "ev3"
    _run(
        "evaluate",
        "--data",
        str(prepared),
        "--model",
        str(ft / "model.pt"),
        str(ft / "model.pt"),
        "--out",
        str(ev2),
        str(ev3),
        "--no-save-predictions",
    )
    for other in (ev2, ev3):
        assert json.loads((other / "metrics.json").read_text())["summary"] == metrics["summary"]
    assert (
        medseg(
            [
                "evaluate",
                "--data",
                str(prepared),
                "--model",
                str(ft / "model.pt"),
                str(ft / "model.pt"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert (
        medseg(
            [
                "evaluate",
                "--data",
                str(prepared),
                "--model",
                str(ft / "model.pt"),
                str(tmp_path / "missing.pt"),
                "--out",
                str(tmp_path / "y"),
                str(tmp_path / "z"),
            ]
        )
        == 2
    )
    assert not any((tmp_path / n).exists() for n in "xyz")  # checked before anything is written

    pr = tmp_path / "pred"
    image = data.manifest["groups"][data.split_groups("test")[0]]["image"]
    _run("predict", "--input", image, "--model", str(ft / "model.pt"), "--data", str(prepared), "--out", str(pr))
    out = nib.load(next(pr.glob("*.nii.gz")))
    assert out.shape == nib.load(image).shape and np.allclose(out.affine, nib.load(image).affine)


@pytest.mark.slow
def test_finetune_from_scratch_lowers_the_loss_and_budgets_are_deterministic(prepared, tmp_path):
    runs = {}
    for name, seed, steps in (("a", 0, 150), ("b", 0, 5), ("c", 1, 5)):
        out = tmp_path / name
        _run(
            "finetune",
            "--data",
            str(prepared),
            "--out",
            str(out),
            "--budget",
            "2",
            "--seed",
            str(seed),
            "--steps",
            str(steps),
            "--val-every",
            "50",
            "--channels",
            "8,16,32,32",
            "--lr",
            "0.01",
        )
        runs[name] = json.loads((out / "train.json").read_text())
    assert runs["a"]["labeled"] == runs["b"]["labeled"] != runs["c"]["labeled"]
    logs = np.genfromtxt(tmp_path / "a" / "logs" / "metrics.csv", delimiter=",", names=True)
    loss = logs["trainloss"][~np.isnan(logs["trainloss"])]
    assert loss[-3:].mean() < 0.7 * loss[:2].mean()
    assert runs["a"]["best_val_dice"] > 0.3


def test_several_seeds_in_one_process_equal_each_seed_alone(prepared, tmp_path, capsys):
    common = (
        "--data",
        str(prepared),
        "--budget",
        "1",
        "--steps",
        "4",
        "--val-every",
        "2",
        "--channels",
        "4,8,16,16",
        "--checkpoint-every",
        "0",
    )
    _run("finetune", *common, "--seed", "0", "5", "--out", str(tmp_path / "a0"), str(tmp_path / "a5"))
    _run("finetune", *common, "--seed", "5", "--out", str(tmp_path / "b5"))
    a, b = read_checkpoint(tmp_path / "a5" / "model.pt"), read_checkpoint(tmp_path / "b5" / "model.pt")
    assert a["run"] == b["run"] and a["run"]["seed"] == 5
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    ra, rb = (json.loads((tmp_path / d / "train.json").read_text()) for d in ("a5", "b5"))
    assert ra["history"] == rb["history"] and ra["best_step"] == rb["best_step"]
    first = read_checkpoint(tmp_path / "a0" / "model.pt")
    assert first["run"]["seed"] == 0 and first["run"]["labeled"] != a["run"]["labeled"]
    # each seed's config.yaml reruns that seed alone
    assert "seed: 5" in (tmp_path / "a5" / "config.yaml").read_text()
    # unequal counts: exit 2 before anything is written
    assert medseg(["finetune", *common, "--seed", "0", "1", "--out", str(tmp_path / "c0")]) == 2
    assert "one --out per --seed" in capsys.readouterr().err and not (tmp_path / "c0").exists()


def test_stage_errors_exit_2_and_leave_no_output(prepared, tmp_path, capsys):
    out = tmp_path / "ft"
    assert medseg(["finetune", "--data", str(prepared), "--out", str(out), "--budget", "99"]) == 2
    assert "exceeds" in capsys.readouterr().err and not out.exists()
    (tmp_path / "empty").mkdir()
    assert medseg(["finetune", "--data", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert medseg(["finetune", "--data", str(prepared), "--out", str(out), "--init", str(bad)]) == 2
    assert "bad.pt" in capsys.readouterr().err and not out.exists()
    assert not list(tmp_path.glob(".ft.tmp-*"))


def test_every_stage_documents_its_options(capsys):
    assert medseg(["--help"]) == 0
    listing = capsys.readouterr().out
    for stage in ("demo-data", "preprocess", "pretrain", "finetune", "evaluate", "predict", "report"):
        assert stage in listing
        with pytest.raises(SystemExit) as exc:
            medseg([stage, "--help"])
        assert exc.value.code == 0
        assert "(default:" in capsys.readouterr().out
