"""The generic baselines through ``medseg pretrain --method M`` (docs/ssl_baselines.md): each
writes its record and the prefixes fine-tuning loads, defaults are the papers', bad options and
a mask-based method without masks are one-line errors (exit 2), and G^R draws random slices."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medseg.cli import main as medseg
from medseg.config import MRIPretrainConfig
from medseg.domain import MRIDomain
from segcore.checkpoints import read_checkpoint
from segcore.config import add_options, defaults, from_namespace
from segcore.networks.unet import UNet2D
from segcore.prepared import PreparedData
from segcore.strategies.baselines import PRETRAINED
from segcore.strategies.gr import GRStrategy
from tests.data.phantoms import prepared_phantoms

pytestmark = [pytest.mark.filterwarnings("ignore")]
CHANNELS = "4,8,16,16"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mri_ssl")
    return prepared_phantoms(root, n_subjects=10, seed=5, size=64)


def exit_code(argv: list[str]) -> int:
    """medseg's exit status; argparse's own errors (an unknown choice) exit through SystemExit."""
    try:
        return medseg(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def config(prepared: Path, *argv: str) -> MRIPretrainConfig:
    parser = argparse.ArgumentParser()
    add_options(parser, MRIPretrainConfig)
    return from_namespace(MRIPretrainConfig, parser.parse_args(["--data", str(prepared), "--out", "x", *argv]))


@pytest.mark.slow
def test_every_baseline_pretrains_then_finetunes(prepared: Path, tmp_path: Path) -> None:
    for method in ("mocov2", "byol", "densecl", "detcon"):
        out = tmp_path / method
        argv = ["pretrain", "--method", method, "--data", str(prepared), "--out", str(out), "--steps", "3"]
        assert medseg([*argv, "--batch-size", "4", "--channels", CHANNELS, "--queue-size", "16"]) == 0
        rec = json.loads((out / "train.json").read_text())
        assert (rec["method"], rec["strategy"], len(rec["loss_history"]), len(rec["chance_history"])) == (
            method,
            method,
            3,
            3,
        )
        assert rec["chance_loss"] > 0 and rec["chance_history"][-1] == pytest.approx(rec["chance_loss"])
        ckpt = read_checkpoint(out / "model.pt")
        assert ckpt["pretrained"] == PRETRAINED[method] and ckpt["method"] == method
    ft = tmp_path / "ft"
    argv = ["finetune", "--data", str(prepared), "--out", str(ft), "--init", str(tmp_path / "detcon" / "model.pt")]
    assert medseg([*argv, "--budget", "1", "--steps", "2", "--val-every", "2", "--channels", CHANNELS]) == 0
    net = UNet2D(1, 4, channels=(4, 8, 16, 16))
    backbone = [k for k in net.state_dict() if k.startswith(("encoder.", "decoder."))]
    rec = json.loads((ft / "train.json").read_text())
    assert rec["method"] == "detcon" and rec["initialised_tensors"] == len(backbone)


def test_unset_options_take_the_papers_values(prepared: Path) -> None:
    data = PreparedData(prepared)
    expected = {
        "mocov2": {"queue_size": 65536, "momentum": 0.999, "temperature": 0.2},
        "densecl": {"queue_size": 65536, "momentum": 0.999, "temperature": 0.2, "dense_weight": 0.5},
        "byol": {"momentum": 0.99},
        "detcon": {"temperature": 0.1, "masks": "slic", "n_masks": 16},
    }
    for method, values in expected.items():
        _, _, strategy, record = MRIDomain().pretrain_setup(data, config(prepared, "--method", method))
        assert {k: record["train"][k] for k in values} == values and strategy.name == method
    # hpcl and the stages keep theirs
    _, _, hpcl, record = MRIDomain().pretrain_setup(data, config(prepared, "--method", "hpcl"))
    assert (record["train"]["queue_size"], record["train"]["momentum"], record["train"]["temperature"]) == (
        4096,
        0.99,
        0.1,
    )
    _, _, gd, _ = MRIDomain().pretrain_setup(data, config(prepared, "--channels", CHANNELS))
    assert gd.criterion.T == 0.1


def test_local_negatives_default_to_the_papers_neighbours() -> None:
    assert defaults(MRIPretrainConfig)["local_negatives"] == "neighbours"
    schema = yaml.safe_load((ROOT / "workflows/config/config.schema.yaml").read_text())
    local = schema["properties"]["mri"]["properties"]["pretrain"]["properties"]["local"]["properties"]
    assert local["negatives"]["default"] == "neighbours"


def test_gr_batches_are_random_distinct_slices(prepared: Path) -> None:
    data = PreparedData(prepared)
    groups = data.split_groups("unlabeled") + data.split_groups("labeled")
    strategy = GRStrategy(UNet2D(1, 4, channels=(4, 8, 16, 16)), (32, 32), volumes_per_batch=3)
    batches = list(strategy.loader(data, groups, 20, 7, 0, 1, 0, False))
    allowed = set(data.sample_indices(groups).tolist())
    stratified = 0
    for batch in batches:
        samples = batch["meta"]["sample"]
        assert len(samples) == 3 * 4 == len(set(samples)) and set(samples) <= allowed
        vols = np.array(batch["meta"]["group"])
        parts = np.array(batch["meta"]["partition"])
        stratified += len(set(vols)) == 3 and all(sorted(parts[vols == v]) == [0, 1, 2, 3] for v in set(vols))
    assert stratified == 0  # not G^D's m volumes × S partitions
    again = list(strategy.loader(data, groups, 20, 7, 0, 1, 0, False))
    assert [b["meta"]["sample"] for b in again] == [b["meta"]["sample"] for b in batches]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--method", "simclr"], "invalid choice: 'simclr'"),
        (["--method", "detcon", "--masks", "stored"], "prepared data has no 'superpixels' array"),
        (["--method", "mocov2", "--queue-size", "0"], "--queue-size must be >= 1, got 0"),
        (["--method", "byol", "--momentum", "1.5"], "--momentum must be <= 1, got 1.5"),
        (["--method", "densecl", "--dense-weight", "2"], "--dense-weight must be <= 1, got 2"),
    ],
)
def test_bad_baseline_options_exit_2_and_write_nothing(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    out = tmp_path / "out"
    assert exit_code(["pretrain", "--data", str(prepared), "--out", str(out), "--steps", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err and not out.exists()


def test_a_config_file_with_an_unknown_method_exits_2(prepared: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text("method: simclr\n")
    assert exit_code(["pretrain", "--config", str(cfg), "--data", str(prepared), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "method" in err and "simclr" in err
