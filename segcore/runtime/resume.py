"""Resumable training: the state of a stage lives beside its output until it succeeds.

Training state is checkpointed every ``--checkpoint-every`` steps to
``<out.parent>/.<out.name>.resume/last.ckpt`` (:func:`resume_dir`), a folder beside the output
that is no declared output, so the atomic-output cleanup and Snakemake leave it alone. A stage
started again with the same ``--out`` continues from that checkpoint and ends with the same
weights and records as an uninterrupted run (the loaders and augmentations are functions of
(seed, step): :mod:`segcore.runtime.seeds`); the folder is deleted after success. The CSV logs
of the interrupted runs are carried over and merged.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from segcore.outputs import atomic_dir

log = logging.getLogger(__name__)

RESUME_FILE = "last.ckpt"
RESUME_ARGS = "args.json"


class ResumeCheckpoint(Callback):
    """Writes the full training state (weights, optimiser, scheduler, loops, task records) to
    ``folder/last.ckpt`` every ``every`` steps, atomically: a kill while writing leaves the
    previous checkpoint intact.

    Where validation follows step k (``val_every``), the checkpoint is written after it, so a
    resumed run neither repeats nor loses that validation (Lightning restarts such a checkpoint
    past the finished validation). No checkpoint is written at the last step: the stage writes
    its outputs right after. ``run_args`` (the arguments that shape the result) are written
    beside it as ``args.json``: a checkpoint made with other arguments is not resumed.
    """

    def __init__(
        self, folder: Path, every: int, val_every: int | None = None, run_args: dict[str, str] | None = None
    ) -> None:
        self.folder, self.every, self.val_every = Path(folder), every, val_every
        self.run_args = run_args or {}

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        return self.every > 0 and step > 0 and step % self.every == 0 and step < trainer.max_steps

    def _validates_now(self, trainer: L.Trainer) -> bool:
        return bool(self.val_every) and trainer.global_step % int(self.val_every) == 0 and trainer.enable_validation

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._due(trainer) and not self._validates_now(trainer):
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self._due(trainer) and self._validates_now(trainer):
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        final = self.folder / RESUME_FILE
        tmp = self.folder / f".{RESUME_FILE}.tmp"
        if trainer.is_global_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            for logger in trainer.loggers:
                logger.save()  # the CSV rows up to this step survive a kill; later ones are trimmed on resume
        trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes; every rank takes part (barrier)
        if trainer.is_global_zero:
            (self.folder / RESUME_ARGS).write_text(json.dumps(self.run_args, indent=1) + "\n")
            os.replace(tmp, final)
        trainer.strategy.barrier("resume-checkpoint")


def resume_dir(out: str | Path) -> Path:
    """``<out.parent>/.<out.name>.resume``: the training state of the stage writing ``out``."""
    out = Path(out)
    return out.parent / f".{out.name}.resume"


def resume_step(out: str | Path) -> int:
    """Global step of the resume checkpoint of ``out`` (0 when there is none).

    The samplers must start at this step before Lightning restores the rest.
    """
    ckpt = resume_dir(out) / RESUME_FILE
    if not ckpt.is_file():
        return 0
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return int(state["global_step"])


EARLIER_LOG = "metrics.earlier.csv"


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    keys = sorted(set().union(*rows)) if rows else ["step"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _carry_csv_log(logs: Path, first_step: int) -> None:
    """Before a resumed run: Lightning's CSV writer deletes ``metrics.csv`` when it starts, so the
    rows of the earlier runs move to ``metrics.earlier.csv``, without those logged at
    ``step >= first_step`` (logged after the last checkpoint; the resumed run logs them again)."""
    rows = _read_csv(logs / EARLIER_LOG) + _read_csv(logs / "metrics.csv")
    if not rows:
        return
    kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < first_step]
    _write_csv(logs / EARLIER_LOG, kept)
    (logs / "metrics.csv").unlink(missing_ok=True)


def _merge_csv_log(logs: Path) -> None:
    """After training: one ``metrics.csv`` with the rows of every run, in step order."""
    if not (logs / EARLIER_LOG).is_file():
        return
    _write_csv(logs / "metrics.csv", _read_csv(logs / EARLIER_LOG) + _read_csv(logs / "metrics.csv"))
    (logs / EARLIER_LOG).unlink()


def discard_foreign_checkpoint(work: Path, run_args: dict[str, str], is_global_zero: bool) -> None:
    """A resume checkpoint left by a run with other arguments (say, more steps after a config
    change) would mix two runs: delete it and start over."""
    if not (work / RESUME_FILE).is_file():
        return
    saved = json.loads((work / RESUME_ARGS).read_text()) if (work / RESUME_ARGS).is_file() else {}
    if saved == run_args:
        return
    changed = sorted(k for k in set(saved) | set(run_args) if saved.get(k) != run_args.get(k))
    log.warning("not resuming from %s: it was made with other arguments (%s); starting over", work, ", ".join(changed))
    if is_global_zero:
        shutil.rmtree(work, ignore_errors=True)


def fit_resumable(
    trainer: L.Trainer,
    task: L.LightningModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    out: str | Path,
) -> None:
    """``trainer.fit``, continuing from the resume checkpoint of ``out`` when there is one.

    The training loader must already start at :func:`resume_step` (its sampler's
    ``start_step``): Lightning restores weights, optimiser, scheduler, loop counters and the
    task's records, not the position of a plain sampler.
    """
    ckpt = resume_dir(out) / RESUME_FILE
    ckpt_path = str(ckpt) if ckpt.is_file() else None
    if ckpt_path:
        step = resume_step(out)
        log.info("resuming from %s (step %d)", ckpt, step)
        if trainer.is_global_zero:
            _carry_csv_log(resume_dir(out) / "logs", step)
    with warnings.catch_warnings():
        # the earlier rows were moved aside (_carry_csv_log); the step-seeded loader is resumable
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*checkpoint that ended before the epoch ended.*")
        trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)


@contextmanager
def stage_outputs(out: str | Path) -> Iterator[Path]:
    """:func:`~segcore.outputs.atomic_dir` for a trained stage: the temporary folder starts with
    the training logs (``logs/``) from :func:`resume_dir`, and after the rename the resume folder
    is deleted. Call it on rank 0 only."""
    work = resume_dir(out)
    with atomic_dir(out) as tmp:
        if (work / "logs").is_dir():
            _merge_csv_log(work / "logs")
            shutil.copytree(work / "logs", tmp / "logs")
        yield tmp
    shutil.rmtree(work, ignore_errors=True)
