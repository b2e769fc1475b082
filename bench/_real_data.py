"""Generated data in the real layouts at the real sizes, and the stage commands of the full
presets, for the real-size benchmarks (``bench/real_size.py``, ``bench/data_wait.py --real-size``).

* ACDC: 100 training patients x (ED, ES) = 200 labeled volumes of 216 x 256 x 10 voxels at
  1.5625 x 1.5625 x 10 mm (a typical ACDC volume; the real ones range from about 150 x 200 to
  430 x 510 in-plane, 6 to 18 slices), int16, in ACDC's own layout (``training/patientNNN/``
  with ``Info.cfg``), written by ``tests/data/acdc/make.py`` (the 4D cines are left out: the
  preprocess stage reads only the ED and ES frames). Prepared as ``workflows/config/full.yaml``
  prepares ACDC (1.367 mm, 192 x 192, 4 partitions, 20 test / 2 validation / 20 labeled subjects).
* Landslide4Sense: the release's 3,799 + 245 + 800 patches of 128 x 128 x 14 (TrainData,
  ValidData, TestData with masks), written by ``tests/data/l4s/make.py``; prepared as
  ``workflows/config/landslide4sense.yaml`` does (the folders as splits, SLIC superpixels).
* ``fraction``: the same at a fraction of the patients / patches (the memory benchmark's tenth).

The stage commands run as ``python -m medseg.cli`` / ``python -m rs.cli`` of this interpreter,
so the working tree's code runs (PYTHONPATH).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
MEDSEG = [sys.executable, "-m", "medseg.cli"]
RS = [sys.executable, "-m", "rs.cli"]

ACDC_PATIENTS = 100
ACDC_SHAPE = (216, 256, 10)
ACDC_SPACING = (1.5625, 1.5625, 10.0)
ACDC_HEART_SCALE = 4.0  # LV cavity radius 14-20 voxels (22-31 mm), myocardium 8 voxels (12 mm)
L4S_COUNTS = (3799, 245, 800)
MRI_CHANNELS = "16,32,64,128,128,128"  # the reference U-Net (full.yaml)
RS_NETWORK = ["--fusion", "early", "--encoder", "resnet34", "--encoder-depth", "5"]
RS_NETWORK += ["--decoder-channels", "256,128,64,32,16"]  # workflows/config/landslide4sense.yaml


def _make(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_make", REPO / "tests" / "data" / name / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def acdc_raw(root: Path, fraction: float = 1.0) -> Path:
    """ACDC-sized volumes in ACDC's layout under ``root`` (reused when complete)."""
    done = root / ".complete"
    if not done.is_file():
        n = max(1, round(ACDC_PATIENTS * fraction))
        _make("acdc").make_acdc(
            root, n, 0, seed=0, with_4d=False, shape=ACDC_SHAPE, spacing=ACDC_SPACING, scale=ACDC_HEART_SCALE
        )
        done.write_text(f"{n} patients\n")
    return root


def l4s_raw(root: Path, fraction: float = 1.0) -> Path:
    """A Landslide4Sense release of the real size (or ``fraction`` of it) under ``root``."""
    done = root / ".complete"
    if not done.is_file():
        counts = [max(1, round(n * fraction)) for n in L4S_COUNTS]
        _make("l4s").release(root, *counts, eval_masks=True, seed=0)
        done.write_text(f"{counts} patches\n")
    return root


def acdc_preprocess(raw: Path, out: Path, workers: int = 1, n4: bool = False, fraction: float = 1.0) -> list[str]:
    """``medseg preprocess`` of the ACDC protocol (workflows/config/full.yaml)."""
    splits = ["--n-test", "20", "--n-val", "2", "--n-labeled", "20"]
    if fraction < 1.0:
        splits = ["--n-test", "2", "--n-val", "1", "--n-labeled", "2"]
    return [
        *MEDSEG, "preprocess", "--input", str(raw), "--out", str(out), "--layout", "acdc",
        "--target-spacing", "1.367", "1.367", "--image-size", "192", "192", "--partitions", "4", *splits,
        "--seed", "0", "--workers", str(workers), *(["--n4"] if n4 else []),
    ]  # fmt: skip


def l4s_preprocess(raw: Path, out: Path, workers: int = 1) -> list[str]:
    """``rs preprocess`` of the release (workflows/config/landslide4sense.yaml: the patches as delivered)."""
    return [*RS, "preprocess", "--input", str(raw), "--out", str(out), "--seed", "0", "--workers", str(workers)]


def training_commands(
    mri: Path, rs: Path, out: Path, steps: int, global_init: Path | None = None
) -> dict[str, list[str]]:
    """argv of the training loops at the full presets' sizes, ``steps`` steps each (validation
    once, at the end): MRI fine-tuning (batch 20), G^D global (10 volumes x 4 partitions), L^R
    local (from ``global_init``, default ``out/mri_global/model.pt``), RS fine-tuning and
    hyper-pixel pretraining (ResNet-34 early fusion, batch 32, K = 65,536)."""
    common = ["--threads", "1", "--steps", str(steps), "--seed", "0"]
    init = global_init or out / "mri_global" / "model.pt"
    return {
        "MRI finetune": [
            *MEDSEG, "finetune", "--data", str(mri), "--out", str(out / "mri_finetune"), "--budget", "8",
            "--channels", MRI_CHANNELS, "--batch-size", "20", "--lr", "0.001", "--val-every", str(steps), *common,
        ],
        "MRI pretrain global GD": [
            *MEDSEG, "pretrain", "--stage", "global", "--strategy", "GD", "--data", str(mri),
            "--out", str(out / "mri_global"), "--channels", MRI_CHANNELS, "--volumes-per-batch", "10",
            "--lr", "0.001", "--temperature", "0.1", *common,
        ],
        "MRI pretrain local LR": [
            *MEDSEG, "pretrain", "--stage", "local", "--strategy", "LR", "--data", str(mri),
            "--out", str(out / "mri_local"), "--init", str(init), "--volumes-per-batch", "10", "--lr", "0.001",
            "--temperature", "0.1", "--local-negatives", "neighbours", "--noise-std", "0.05", *common,
        ],
        "RS finetune early": [
            *RS, "finetune", "--data", str(rs), "--out", str(out / "rs_finetune"), "--percent", "5", *RS_NETWORK,
            "--batch-size", "32", "--lr", "0.001", "--val-every", str(steps), *common,
        ],
        "RS pretrain hpcl": [
            *RS, "pretrain", "--method", "hpcl", "--data", str(rs), "--out", str(out / "rs_pretrain"), *RS_NETWORK,
            "--batch-size", "32", "--queue-size", "65536", "--momentum", "0.999", "--temperature", "0.1",
            "--crop-scale", "0.6", "1.0", "--lr", "0.001", *common,
        ],
    }  # fmt: skip
