"""``medseg preprocess --workers``: volumes written in parallel, the same prepared data as one worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import main as medseg


@pytest.mark.parametrize("n4", [False, True])
def test_workers_write_the_same_prepared_data_as_one(acdc_make, tmp_path: Path, n4: bool) -> None:
    raw = tmp_path / "acdc"
    acdc_make.make_acdc(raw, n_train=6, n_test=2, seed=2, with_4d=False)
    outs = {}
    for workers in ("1", "2", "auto"):
        out = tmp_path / f"prep{workers}"
        argv = ["preprocess", "--input", str(raw), "--out", str(out), "--image-size", "16", "16", "--n-test", "2"]
        argv += ["--n-val", "1", "--n-labeled", "2", "--workers", workers, *(["--n4"] if n4 else [])]
        assert medseg(argv) == 0
        outs[workers] = out
    for name in ("images.npy", "labels.npy", "manifest.json"):
        first = (outs["1"] / name).read_bytes()
        assert all((out / name).read_bytes() == first for out in outs.values()), name
    manifest = json.loads((outs["1"] / "manifest.json").read_text())
    assert manifest["n4"] is n4 and manifest["slice_axis"] == "auto" and manifest["channel"] == 0
    assert len(manifest["groups"]) == 16 and np.load(outs["2"] / "images.npy").any()


def test_workers_option_is_checked(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        medseg(["preprocess", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "0"])
    assert exc.value.code == 2 and "worker count must be >= 1" in capsys.readouterr().err
