"""A user's mistake ends in one line naming the file and the problem and exit 2, never a
traceback; argument and config mistakes are reported before torch is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medseg.cli import main as medseg
from medseg.phantoms import generate_dataset
from medseg.preprocess import preprocess
from rs.cli import main as rs
from segcore.checkpoints import FORMAT, save_checkpoint
from segcore.networks import build_network
from tests.data.rs import make

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = "4,8,16"


@pytest.fixture(scope="module")
def mri_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mri_err")
    generate_dataset(root / "raw", n_subjects=5, seed=1, n_slices=6, size=32)
    return preprocess(
        root / "raw",
        root / "prep",
        target_spacing=(3.0, 3.0),
        image_size=(32, 32),
        n_test=1,
        n_val=1,
        n_labeled=2,
        seed=0,
    )


@pytest.fixture(scope="module")
def rs_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rs_err")
    return make.prepared_scenes(root)


def _checkpoint(path: Path, spec: dict, stage: str = "finetune", **extra) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_network(spec), spec, stage=stage, method="none", pretrained=[], **extra)
    return path


def _mri_spec() -> dict:
    return {"name": "unet2d", "in_channels": 1, "num_classes": 4, "channels": [4, 8, 16]}


def _rs_spec(data: Path) -> dict:
    import rs.networks  # noqa: F401
    from segcore.prepared import PreparedData

    d = PreparedData(data)
    return {
        "name": "early",
        "in_channels": d.in_channels,
        "num_classes": d.num_classes,
        "encoder_name": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [16, 8, 4],
    }


def _one_error_line(capsys, *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1, err
    for text in expected:
        assert text in line[0], line[0]
    return line[0]


def test_a_model_of_the_other_domain_is_refused(mri_data, rs_data, tmp_path, capsys):
    # as the fine-tuning stages write them: the domain is recorded
    mri_model = _checkpoint(tmp_path / "mri.pt", _mri_spec(), domain="mri")
    rs_model = _checkpoint(tmp_path / "rs.pt", _rs_spec(rs_data), domain="rs")
    assert medseg(["evaluate", "--data", str(mri_data), "--model", str(rs_model), "--out", str(tmp_path / "e1")]) == 2
    _one_error_line(capsys, str(rs_model), "is not an MRI model", "network 'early'")
    assert rs(["evaluate", "--data", str(rs_data), "--model", str(mri_model), "--out", str(tmp_path / "e2")]) == 2
    _one_error_line(capsys, str(mri_model), "is not a remote-sensing model")
    assert medseg(["finetune", "--data", str(mri_data), "--init", str(rs_model), "--out", str(tmp_path / "f1")]) == 2
    _one_error_line(capsys, str(rs_model), "is not an MRI model")
    # a model of a version that did not record its domain: its network does not take the data
    legacy = _checkpoint(tmp_path / "legacy.pt", _mri_spec())
    assert rs(["evaluate", "--data", str(rs_data), "--model", str(legacy), "--out", str(tmp_path / "e3")]) == 2
    _one_error_line(capsys, str(legacy), "model takes 1 channels")
    assert not any((tmp_path / n).exists() for n in ("e1", "e2", "e3", "f1"))


def test_a_checkpoint_without_its_network_is_refused(mri_data, tmp_path, capsys):
    bad = tmp_path / "nonet.pt"
    torch.save({"format": FORMAT, "state_dict": {}, "stage": "finetune"}, bad)
    assert medseg(["evaluate", "--data", str(mri_data), "--model", str(bad), "--out", str(tmp_path / "e")]) == 2
    _one_error_line(capsys, str(bad), "no network description")
    weightless = tmp_path / "noweights.pt"
    torch.save({"format": FORMAT, "network": _mri_spec(), "stage": "finetune"}, weightless)
    assert medseg(["evaluate", "--data", str(mri_data), "--model", str(weightless), "--out", str(tmp_path / "e")]) == 2
    _one_error_line(capsys, str(weightless), "no weights")
    other = tmp_path / "wrongweights.pt"
    spec = _mri_spec()
    torch.save(
        {"format": FORMAT, "network": spec, "stage": "finetune", "state_dict": {"head.weight": torch.zeros(1)}}, other
    )
    assert medseg(["evaluate", "--data", str(mri_data), "--model", str(other), "--out", str(tmp_path / "e")]) == 2
    _one_error_line(capsys, str(other), "weights do not fit")
    assert not (tmp_path / "e").exists()


def test_a_pretraining_checkpoint_is_not_scored_as_a_model(mri_data, tmp_path, capsys):
    pre = _checkpoint(tmp_path / "pre.pt", _mri_spec(), stage="pretrain-global")
    assert medseg(["evaluate", "--data", str(mri_data), "--model", str(pre), "--out", str(tmp_path / "e")]) == 2
    _one_error_line(capsys, str(pre), "is a pretraining checkpoint", "fine-tune it first", "medseg finetune --init")
    nii = tmp_path / "in"
    nii.mkdir()
    assert (
        medseg(
            ["predict", "--data", str(mri_data), "--model", str(pre), "--input", str(nii), "--out", str(tmp_path / "p")]
        )
        == 2
    )
    _one_error_line(capsys, "fine-tune it first")
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "yaml_text, problem",
    [
        ("steps: 2.5\n", "option 'steps' must be an integer, got 2.5"),
        ("steps: [1, 2]\n", "option 'steps' must be an integer, got [1, 2]"),
        ("lr: fast\n", "option 'lr' must be a number, got 'fast'"),
        ("channels_last: 1\n", "option 'channels_last' must be true or false, got 1"),
        ("dist_strategy: ddp2\n", "option 'dist_strategy' must be 'auto' or 'ddp', got 'ddp2'"),
        ("steps: -5\n", "--steps must be >= 1, got -5"),
    ],
)
def test_config_values_are_type_checked(tmp_path, capsys, yaml_text, problem):
    cfg = tmp_path / "stage.yaml"
    cfg.write_text(yaml_text)
    assert medseg(["finetune", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    line = _one_error_line(capsys, problem)
    if "option" in problem:
        assert str(cfg) in line


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--steps", "-5"], "--steps must be >= 1, got -5"),
        (["--lr", "0"], "--lr must be > 0, got 0"),
        (["--weight-ema", "1"], "--weight-ema must be < 1, got 1"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--checkpoint-every", "-2"], "--checkpoint-every must be >= 0, got -2"),
    ],
)
def test_out_of_range_options_are_errors_not_tracebacks(tmp_path, capsys, argv, problem):
    assert medseg(["finetune", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *argv]) == 2
    _one_error_line(capsys, problem)


def test_rs_range_checks(tmp_path, capsys):
    assert rs(["finetune", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--percent", "150"]) == 2
    _one_error_line(capsys, "--percent must be <= 100, got 150")
    assert rs(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--drop-terrain", "1.5"]) == 2
    _one_error_line(capsys, "--drop-terrain must be <= 1, got 1.5")


def test_argument_errors_come_before_torch_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from medseg.cli import main\n"
        f"rc = main(['finetune', '--data', {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}, '--steps', '-5'])\n"
        "print(rc, 'torch' in sys.modules, 'lightning' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.stdout.split() == ["2", "False", "False"], res.stdout + res.stderr
    assert "--steps must be >= 1" in res.stderr
