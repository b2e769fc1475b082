"""The generic baselines through ``rs pretrain --method M`` (docs/ssl_baselines.md) on tiny
generated scenes: records and pretrained prefixes, fine-tuning from them, DetCon's mask sources,
and a mask-based method without masks refused (exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rs.cli import main as rs
from rs.config import RSPreprocessConfig
from rs.preprocess import run_preprocess
from segcore.checkpoints import read_checkpoint
from segcore.config import parse_config
from segcore.strategies.baselines import PRETRAINED
from tests.data.rs import make

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
NET = ["--fusion", "dual", "--encoder", "tu-regnetx_002", "--encoder-depth", "3", "--decoder-channels", "16,8,8"]
FAST = ["--threads", "1", "--batch-size", "4", "--queue-size", "16"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ssl_rs")
    raw = make.scene_folder(root / "raw", n=3)
    argv = ["--input", str(raw), "--out", str(root / "prep"), "--tile", "16", "--overlap", "4", "--block-tiles", "2"]
    run_preprocess(parse_config(RSPreprocessConfig, [*argv, "--n-segments", "8"]))
    return root / "prep"


def test_rs_baselines_pretrain_then_finetune(prepared: Path, tmp_path: Path) -> None:
    for method in ("mocov2", "byol", "densecl", "detcon"):
        out = tmp_path / method
        argv = ["pretrain", "--method", method, "--data", str(prepared), "--out", str(out), "--steps", "2"]
        assert rs([*argv, *NET, *FAST]) == 0
        rec = json.loads((out / "train.json").read_text())
        assert (rec["method"], rec["variant"], len(rec["chance_history"])) == (method, "dual", 2)
        assert rec["chance_loss"] > 0
        assert read_checkpoint(out / "model.pt")["pretrained"] == PRETRAINED[method]
    ft = tmp_path / "ft"
    argv = ["finetune", "--data", str(prepared), "--out", str(ft), "--init", str(tmp_path / "densecl" / "model.pt")]
    assert rs([*argv, *NET, "--threads", "1", "--percent", "50", "--steps", "2", "--val-every", "2"]) == 0
    rec = json.loads((ft / "train.json").read_text())
    assert rec["method"] == "densecl" and rec["initialised_tensors"] > 0


def test_detcon_masks_stored_computed_or_refused(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(prepared, bare)
    (bare / "superpixels.npy").unlink()
    base = ["pretrain", "--data", str(bare), "--steps", "1", *NET, *FAST]
    # a mask-based method without masks: one line naming the folder, exit 2, nothing written
    assert rs([*base, "--method", "detcon", "--out", str(tmp_path / "no_masks")]) == 2
    err = capsys.readouterr().err
    assert "no 'superpixels' array" in err and str(bare) in err and "Traceback" not in err
    assert not (tmp_path / "no_masks").exists()
    # the image-level baselines need no masks; DetCon can compute its own
    assert rs([*base, "--method", "mocov2", "--out", str(tmp_path / "moco")]) == 0
    for source in ("slic", "felzenszwalb"):
        out = tmp_path / source
        assert rs([*base, "--method", "detcon", "--masks", source, "--n-masks", "4", "--out", str(out)]) == 0
        assert json.loads((out / "train.json").read_text())["masks"] == source
