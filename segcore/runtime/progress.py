"""Progress of a training stage: a progress bar on a terminal, otherwise (a log file, a cluster
job) a line every N steps with step/total, loss, learning rate, speed and remaining time."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger("segcore.progress")


def progress_mode(requested: str) -> str:
    """``auto`` → ``bar`` when standard error is a terminal, else ``log``; others stay."""
    if requested == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return requested


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` for a number of seconds; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _loss_value(outputs: Any) -> float | None:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return float(loss.detach())
    return None


class ProgressLog(Callback):
    """Logs ``step k/total  loss  lr  steps/s  remaining`` every ``every`` steps and at the last
    step, on the global-zero process only. The speed is measured from the first step this
    process trained (a resumed run counts from where it resumed)."""

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self._t0 = 0.0
        self._first = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._first = time.perf_counter(), int(trainer.global_step)
        if trainer.is_global_zero:
            logs = getattr(trainer.logger, "log_dir", None)
            log.info("training %d steps from step %d; Lightning logs: %s", trainer.max_steps, self._first, logs)

    def line(self, step: int, total: int, loss: float | None, lr: float | None, elapsed: float) -> str:
        """The progress line of ``step`` (of ``total``) after ``elapsed`` seconds of this process."""
        done = step - self._first
        speed = done / elapsed if elapsed > 0 and done > 0 else float("nan")
        remaining = (total - step) / speed if speed > 0 else float("nan")
        parts = [f"step {step}/{total}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if lr is not None:
            parts.append(f"lr {lr:.3g}")
        parts.append(f"{speed:.2f} steps/s" if math.isfinite(speed) else "? steps/s")
        parts.append(f"remaining {format_duration(remaining)}")
        return "  ".join(parts)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, total = int(trainer.global_step), int(trainer.max_steps)
        if not trainer.is_global_zero or (step % self.every and step != total):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        log.info(self.line(step, total, _loss_value(outputs), lr, time.perf_counter() - self._t0))
