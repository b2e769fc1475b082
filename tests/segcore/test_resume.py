"""Resume: a training stage killed with SIGKILL and started again with the same arguments ends
with the same records, weights and logs as a run that was never interrupted.

Also the parts that make it so: batch k of the step sampler is a function of (seed, k), the
sharded sampler skips the batches already trained, and each process takes its slice of the
global batch.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segcore.runtime.resume import resume_dir, resume_step
from segcore.runtime.sampling import ShardedBatchSampler, StepBatchSampler, _rank_slice
from segcore.runtime.seeds import step_generator
from tests.data.phantoms import prepared_phantoms

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- samplers


def test_step_sampler_batch_k_depends_on_seed_and_k_only():
    full = list(StepBatchSampler(10, 4, steps=8, seed=3))
    assert len(full) == 8 and all(len(b) == 4 and all(0 <= i < 10 for i in b) for b in full)
    # a resumed sampler yields exactly the tail of the uninterrupted stream
    assert list(StepBatchSampler(10, 4, steps=8, seed=3, start_step=5)) == full[5:]
    assert len(StepBatchSampler(10, 4, steps=8, seed=3, start_step=5)) == 8  # Lightning counts trained batches
    assert list(StepBatchSampler(10, 4, steps=8, seed=4)) != full
    # a longer run shares its first batches: batch k does not depend on the run length
    assert list(StepBatchSampler(10, 4, steps=12, seed=3))[:8] == full


def test_global_batch_splits_into_rank_slices():
    s = StepBatchSampler(100, 3, steps=2, seed=0)
    glob = s.global_batch(1, world=2).tolist()
    assert len(glob) == 6
    assert _rank_slice(glob, 0, 2) + _rank_slice(glob, 1, 2) == glob
    # one process with batch 6 draws the same samples as two processes with batch 3
    assert StepBatchSampler(100, 6, steps=2, seed=0).global_batch(1).tolist() == glob
    with pytest.raises(ValueError, match="does not split"):
        _rank_slice([1, 2, 3], 0, 2)


def test_sharded_sampler_skips_trained_batches():
    batches = [[i, i + 1] for i in range(0, 20, 2)]  # 10 deterministic batches
    assert list(ShardedBatchSampler(batches, steps=10, start_step=7)) == batches[7:]
    assert list(ShardedBatchSampler(batches, steps=4)) == batches[:4]


def test_step_generator_is_a_function_of_seed_rank_step():
    draw = lambda *a: torch.rand(3, generator=step_generator(*a)).tolist()  # noqa: E731
    assert draw(0, 0, 5) == draw(0, 0, 5)
    assert len({tuple(draw(*a)) for a in [(0, 0, 5), (0, 1, 5), (0, 0, 6), (1, 0, 5), (0, 0, 4), (1, 0, 4)]}) == 6


def test_a_checkpoint_made_with_other_arguments_is_not_resumed(tmp_path):
    from segcore.runtime.resume import discard_foreign_checkpoint

    work = resume_dir(tmp_path / "out")
    work.mkdir()
    (work / "last.ckpt").write_bytes(b"state")
    (work / "args.json").write_text(json.dumps({"seed": "0", "steps": "40"}))
    discard_foreign_checkpoint(work, {"seed": "0", "steps": "40"}, is_global_zero=True)
    assert (work / "last.ckpt").is_file()  # same arguments: resumed
    discard_foreign_checkpoint(work, {"seed": "0", "steps": "60"}, is_global_zero=True)
    assert not work.exists()  # more steps after a config change: started over


# --------------------------------------------------------------------------- a real kill


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    return prepared_phantoms(root, n_subjects=8, seed=3, size=48)


STEPS, KILL_AFTER = 80, 15  # a wide window: under load the poller may wake only seconds later


def _finetune_cmd(data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medseg.cli",
        "finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--budget",
        "2",
        "--seed",
        "0",
        "--steps",
        str(STEPS),
        "--val-every",
        "10",
        "--channels",
        "8,16,32",
        "--lr",
        "0.01",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "5",
        "--threads",
        "1",
        "--accelerator",
        "cpu",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _kill_after_checkpoint(cmd: list[str], out: Path, step: int) -> int:
    """Start ``cmd``, SIGKILL it once its resume checkpoint is at ``step`` or later; return that step."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if (resume_dir(out) / "last.ckpt").is_file() and resume_step(out) >= step:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed; raise STEPS"
    return resume_step(out)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_finetune_killed_and_restarted_matches_an_uninterrupted_run(prepared, tmp_path):
    ref, res = tmp_path / "ref", tmp_path / "res"
    _run(_finetune_cmd(prepared, ref))
    assert not resume_dir(ref).exists()  # deleted after success

    killed_at = _kill_after_checkpoint(_finetune_cmd(prepared, res), res, KILL_AFTER)
    assert KILL_AFTER <= killed_at < STEPS
    assert not res.exists() and not list(tmp_path.glob(".res.tmp-*"))  # nothing that looks complete
    log = _run(_finetune_cmd(prepared, res))
    assert f"(step {killed_at})" in log  # it resumed instead of starting over
    assert not resume_dir(res).exists()

    a, b = (json.loads((d / "train.json").read_text()) for d in (ref, res))
    assert len(a["history"]) == STEPS // 10 and a["best_val_dice"] > 0
    for key in ("best_val_dice", "best_step", "history", "labeled", "steps"):
        assert a[key] == b[key], key  # bit-identical floats: CPU, one thread, same draws
    wa, wb = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (ref, res))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # the training log is whole: rows of the killed run up to its checkpoint, then the resumed run's
    ra, rb = (_csv_rows(d / "logs" / "metrics.csv") for d in (ref, res))
    assert len(ra) == 2 * STEPS // 10 and ra == rb  # same rows, same values (as written: repr of each float)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_local_pretraining_interrupted_mid_run_resumes_bit_identically(prepared, tmp_path, monkeypatch):
    """In-process, the interruption is an exception after step 7 (checkpoint at step 5). The local
    stage is the delicate one: its frozen encoder must stay in eval mode after Lightning resumes
    mid-epoch (where it skips on_train_epoch_start), or BatchNorm switches to batch statistics."""
    import lightning as L

    from medseg.cli import main as medseg
    from segcore.stages import pretrain as pretrain_stage

    def pretrain(out: Path, *extra: str) -> int:
        return medseg(
            [
                "pretrain",
                "--data",
                str(prepared),
                "--out",
                str(out),
                "--steps",
                "12",
                "--volumes-per-batch",
                "2",
                "--channels",
                "4,8,16,16",
                "--checkpoint-every",
                "5",
                "--threads",
                "1",
                "--accelerator",
                "cpu",
                *extra,
            ]
        )

    assert pretrain(tmp_path / "global", "--stage", "global", "--strategy", "GD") == 0
    local = ("--stage", "local", "--strategy", "LR", "--init", str(tmp_path / "global" / "model.pt"))
    assert pretrain(tmp_path / "ref", *local) == 0

    class InterruptAfter(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 7:
                raise _Interrupt

    plain = pretrain_stage.resumable_trainer

    def interrupted(*args, **kwargs):
        trainer = plain(*args, **kwargs)
        trainer.callbacks.append(InterruptAfter())
        return trainer

    monkeypatch.setattr(pretrain_stage, "resumable_trainer", interrupted)
    assert pretrain(tmp_path / "res", *local) == 1  # an internal failure: exit 1, no output
    assert not (tmp_path / "res").exists() and resume_step(tmp_path / "res") == 5
    monkeypatch.setattr(pretrain_stage, "resumable_trainer", plain)
    assert pretrain(tmp_path / "res", *local) == 0

    a, b = (json.loads((tmp_path / d / "train.json").read_text()) for d in ("ref", "res"))
    assert len(a["loss_history"]) == 12 and a["loss_history"] == b["loss_history"]
    ca, cb = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("ref", "res"))
    assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"])
    assert all(torch.equal(ca["heads"]["g2"][k], cb["heads"]["g2"][k]) for k in ca["heads"]["g2"])
