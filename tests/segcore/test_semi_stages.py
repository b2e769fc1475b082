"""Semi-supervised fine-tuning through the stages (``medseg finetune --semi``, ``rs finetune
--semi`` beside ``--hpcl-*``) on tiny generated data: the unlabeled stream never holds labeled,
validation or test samples and never reads a label (scrambling every label outside the labeled
set changes nothing), runs interrupted mid-way resume to the same result, the method name and
run record, and bad options as one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from medseg.cli import main as medseg
from rs.cli import main as rs
from rs.config import RSPreprocessConfig
from rs.preprocess import run_preprocess
from segcore.config import parse_config
from segcore.errors import InputError
from segcore.prepared import PreparedData
from segcore.runtime.resume import resume_step
from segcore.semi import unlabeled_dataset, unlabeled_groups
from segcore.stages import finetune as finetune_stage
from tests.data.phantoms import prepared_phantoms
from tests.data.rs import make

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("semi")
    return prepared_phantoms(root, n_subjects=8, seed=3, size=48)


def _finetune(data: Path, out: Path, *extra: str, steps: int = 12) -> int:
    return medseg(
        [
            "finetune",
            "--data",
            str(data),
            "--out",
            str(out),
            "--budget",
            "1",
            "--seed",
            "0",
            "--steps",
            str(steps),
            "--val-every",
            "4",
            "--channels",
            "4,8,16",
            "--lr",
            "0.01",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--accelerator",
            "cpu",
            *extra,
        ]
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


def test_the_unlabeled_stream_holds_no_labeled_validation_or_test_sample(prepared: Path) -> None:
    data = PreparedData(prepared)
    labeled_pool = data.split_groups("labeled")
    chosen = labeled_pool[:1]
    groups = unlabeled_groups(data, chosen)
    assert set(groups) == (set(data.split_groups("unlabeled")) | set(labeled_pool)) - set(chosen)
    assert not set(groups) & (set(chosen) | set(data.split_groups("val")) | set(data.split_groups("test")))
    ds = unlabeled_dataset(data, chosen)
    assert len(ds) == len(data.sample_indices(groups)) > 0
    assert all("label" not in ds[i] for i in range(len(ds)))  # images only: no label can be read
    with pytest.raises(InputError, match="unlabeled pool is empty"):
        unlabeled_dataset(data, data.split_groups("unlabeled") + labeled_pool)


def test_pseudo_labels_never_come_from_labels_outside_the_labeled_set(prepared: Path, tmp_path: Path) -> None:
    """Every label outside the run's labeled set (the unlabeled pool, the unselected labeled
    subjects, the test subjects) replaced by random classes: the run is bit-identical. Without
    --semi it differs from the semi-supervised run: the unlabeled stream did train it."""
    # every pixel pseudo-labeled; distribution alignment's class prior is read from labels too
    semi = ("--semi", "fixmatch", "--semi-threshold", "0", "--semi-align", "distribution")
    assert _finetune(prepared, tmp_path / "ref", *semi) == 0
    record = json.loads((tmp_path / "ref" / "train.json").read_text())
    assert record["method"] == "none+fixmatch" and record["semi"]["mode"] == "fixmatch"
    assert record["semi"]["loss"] == "ce" and record["semi"]["unlabeled_samples"] > 0
    assert all(h["semi_coverage"] == 1.0 for h in record["history"])

    scrambled = tmp_path / "scrambled"
    shutil.copytree(prepared, scrambled)
    data = PreparedData(scrambled)
    keep = data.sample_indices(record["labeled"])
    labels = np.load(scrambled / "labels.npy")
    rng = np.random.default_rng(0)
    outside = np.setdiff1d(
        np.arange(len(labels)), np.concatenate([keep, data.sample_indices(data.split_groups("val"))])
    )
    labels[outside] = rng.integers(0, data.num_classes, size=labels[outside].shape, dtype=np.uint8)
    np.save(scrambled / "labels.npy", labels)
    assert _finetune(scrambled, tmp_path / "scr", *semi) == 0
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "scr")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "scr" / "train.json").read_text())["history"] == record["history"]

    assert _finetune(prepared, tmp_path / "sup") == 0
    c = _weights(tmp_path / "sup")
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert json.loads((tmp_path / "sup" / "train.json").read_text())["method"] == "none"


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    "options",
    [
        ("--semi", "self-training", "--semi-threshold-mode", "adaptive", "--semi-threshold", "0.6"),
        ("--semi", "unimatch", "--semi-threshold", "0.5", "--semi-align", "distribution"),
    ],
    ids=["self-training", "unimatch"],
)
def test_interrupted_semi_supervised_run_resumes_bit_identically(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...]
) -> None:
    """Interrupted after step 7 (checkpoint at step 5) and started again: the same weights and
    history as the uninterrupted run (the teacher, the contrastive head and its optimiser state,
    the class thresholds, the alignment's moving mean and the coverage record are restored; the
    unlabeled draws are a function of the step)."""
    extra = (*options, "--checkpoint-every", "5")
    assert _finetune(prepared, tmp_path / "ref", *extra, steps=16) == 0

    class InterruptAfter(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 7:
                raise _Interrupt

    plain = finetune_stage.resumable_trainer

    def interrupted(*args, **kwargs):
        trainer = plain(*args, **kwargs)
        trainer.callbacks.append(InterruptAfter())
        return trainer

    monkeypatch.setattr(finetune_stage, "resumable_trainer", interrupted)
    assert _finetune(prepared, tmp_path / "res", *extra, steps=16) == 1
    assert not (tmp_path / "res").exists() and resume_step(tmp_path / "res") == 5
    monkeypatch.setattr(finetune_stage, "resumable_trainer", plain)
    assert _finetune(prepared, tmp_path / "res", *extra, steps=16) == 0
    a, b = (json.loads((tmp_path / d / "train.json").read_text()) for d in ("ref", "res"))
    assert a["history"] == b["history"] and "semi_coverage" in a["history"][-1]
    wa, wb = _weights(tmp_path / "ref"), _weights(tmp_path / "res")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_any_init_with_any_mode(prepared: Path, tmp_path: Path) -> None:
    """G^D and G^D + L^R checkpoints start semi-supervised runs: the pretrained tensors are loaded,
    the teacher of self-training starts from them, the method name is <init>+<mode>."""

    def pretrain(out: Path, *extra: str) -> None:
        argv = ["pretrain", "--data", str(prepared), "--out", str(out), "--steps", "2", "--volumes-per-batch", "2"]
        assert medseg([*argv, "--channels", "4,8,16", "--threads", "1", "--accelerator", "cpu", *extra]) == 0

    pretrain(tmp_path / "GD", "--stage", "global", "--strategy", "GD")
    pretrain(tmp_path / "GD+LR", "--stage", "local", "--strategy", "LR", "--init", str(tmp_path / "GD" / "model.pt"))
    for init, mode in (("GD", "unimatch"), ("GD+LR", "self-training")):
        out = tmp_path / f"{init}+{mode}"
        assert _finetune(prepared, out, "--init", str(tmp_path / init / "model.pt"), "--semi", mode, steps=4) == 0
        record = json.loads((out / "train.json").read_text())
        assert record["method"] == f"{init}+{mode}" and record["initialised_tensors"] > 0
        assert record["semi"]["mode"] == mode


def test_bad_semi_options_are_one_line_errors(prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for bad in (("--semi-threshold", "1.5"), ("--semi-cutmix-area", "0.5", "0.1"), ("--semi-fp-dropout", "1")):
        assert _finetune(prepared, tmp_path / "bad", "--semi", "fixmatch", *bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "--semi-" in err[0]
        assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse: not a mode
        _finetune(prepared, tmp_path / "bad", "--semi", "mean-teacher")
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_rs_semi_supervised_beside_the_class_aware_term(tmp_path: Path) -> None:
    """``rs finetune --init <hpcl-ssl> --semi fixmatch --hpcl-weight ...``: both terms train from the
    pretrained init, the record has both."""
    raw = make.scene_folder(tmp_path / "raw", n=3)
    args = ["--input", str(raw), "--out", str(tmp_path / "prep"), "--tile", "16", "--overlap", "4"]
    run_preprocess(parse_config(RSPreprocessConfig, [*args, "--block-tiles", "2", "--n-segments", "8"]))
    net = ["--fusion", "dual", "--encoder", "tu-regnetx_002", "--encoder-depth", "3", "--decoder-channels", "16,8,8"]
    pre = ["pretrain", "--method", "hpcl", "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "pre"), *net]
    assert rs([*pre, "--steps", "2", "--batch-size", "4", "--queue-size", "64", "--threads", "1"]) == 0
    out = tmp_path / "ft"
    code = rs(
        [
            "finetune",
            "--data",
            str(tmp_path / "prep"),
            "--out",
            str(out),
            "--percent",
            "50",
            "--init",
            str(tmp_path / "pre" / "model.pt"),
            "--method",
            "hpcl-ssl+sup",
            *net,
            "--steps",
            "4",
            "--val-every",
            "2",
            "--batch-size",
            "4",
            "--hpcl-weight",
            "0.2",
            "--hpcl-queue",
            "32",
            "--semi",
            "fixmatch",
            "--semi-threshold",
            "0",
            "--semi-batch-size",
            "3",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    record = json.loads((out / "train.json").read_text())
    assert record["method"] == "hpcl-ssl+sup+fixmatch" and record["hpcl"]["weight"] == 0.2
    assert record["initialised_tensors"] > 0  # from the hpcl-ssl checkpoint
    assert record["semi"]["unlabeled_batch"] == 3
    assert len(record["history"]) == 2 and all(h["semi_coverage"] == 1.0 for h in record["history"])
