"""Training progress: a line every N steps with step/total, loss, learning rate, speed and the
remaining time, when standard error is not a terminal."""

from __future__ import annotations

import logging

import pytest
import torch

from segcore.runtime.progress import ProgressLog, format_duration, progress_mode


def test_durations_and_modes(monkeypatch):
    assert (
        format_duration(59.6) == "1:00" and format_duration(3723) == "1:02:03" and format_duration(float("nan")) == "?"
    )
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress_mode("auto") == "log" and progress_mode("none") == "none"
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert progress_mode("auto") == "bar"


def test_the_line_has_step_loss_lr_speed_and_remaining_time():
    p = ProgressLog(every=10)
    p._first = 100  # a run resumed at step 100: speed counts from there
    assert p.line(150, 300, 0.12345, 1e-3, elapsed=25.0) == (
        "step 150/300  loss 0.1235  lr 0.001  2.00 steps/s  remaining 1:15"
    )
    assert p.line(100, 300, None, None, elapsed=0.0) == "step 100/300  ? steps/s  remaining ?"


@pytest.mark.slow
def test_a_training_stage_logs_progress_lines(tmp_path, caplog):
    from segcore.networks.unet import UNet2D
    from segcore.runtime.sampling import step_loader
    from segcore.runtime.trainer import make_trainer
    from segcore.tasks.segmentation import SegmentationTask

    class Tiny(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            return {
                "image": torch.rand(1, 16, 16),
                "label": torch.zeros(16, 16, dtype=torch.long),
                "meta": {"group": "a"},
            }

    task = SegmentationTask(UNet2D(1, 2, channels=(4, 8)), 2, max_steps=6)
    trainer = make_trainer(tmp_path, 6, accelerator="cpu", callbacks=[ProgressLog(every=3)])
    with caplog.at_level(logging.INFO, logger="segcore.progress"):
        trainer.fit(task, step_loader(Tiny(), 2, 6, seed=0))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split()[1] for line in lines] == ["3/6", "6/6"]
    assert all("loss " in line and "lr " in line and "steps/s" in line for line in lines)
