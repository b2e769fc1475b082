"""Data-loading wait as a share of step time, for each training loop of the demo DAG.

    .venv/bin/python bench/data_wait.py [--steps 50] [--warmup 3] [--work DIR]

Target: wait / (wait + step) ≤ 5 % for every loop.

The demo data are generated and preprocessed with the settings of ``workflows/config/config.yaml``
(as the workflow's rules do). Each loop is built by the stage itself: the stage's ``run_*``
function runs with the demo options up to the point where it would call ``fit_resumable``, which
is replaced here, so the loader (sampler, workers, pinning, collate), the dataset and the
LightningModule are exactly what the stage trains with. Two measurements per loop:

* **manual**: ``next(iterator)`` (sampling, reading the memory-mapped arrays, normalising,
  collating) against ``training_step`` + backward + optimiser step, timed separately for
  ``--steps`` steps after ``--warmup``. "aug" is the part of the step spent in the task's
  augmentation or view generation (on the training thread, inside the step).
* **Lightning**: the stage's own ``trainer.fit`` with a callback that times the gap between
  one batch's end and the next batch's start (the fetch plus Lightning's bookkeeping between
  batches: an upper bound of the wait) against batch start → end. Gaps with a validation run
  in them are left out.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _demo_data import prepare_demo, training_commands
from _machine import machine_description
from lightning.pytorch.callbacks import Callback

import medseg.pretrain
import segcore.training

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


class Stopwatch:
    """Accumulated seconds of the calls of a wrapped function."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


class BatchTimer(Callback):
    """Per batch: the gap since the previous batch ended (fetch + Lightning between batches) and
    the batch itself (training_step, backward, optimiser, callbacks before this one)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.gaps: list[float] = []
        self.steps: list[float] = []
        self._start = self._end = None
        self._validated = False

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._end is not None and not self._validated and batch_idx >= self.warmup:
            self.gaps.append(now - self._end)
        self._validated = False
        self._start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._end = time.perf_counter()
        if batch_idx >= self.warmup:
            self.steps.append(self._end - self._start)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = True


class _Measured(Exception):
    """Raised in place of the stage's output writing once the loop is measured."""


def _optimizer(task: L.LightningModule) -> torch.optim.Optimizer:
    cfg = task.configure_optimizers()
    return cfg["optimizer"] if isinstance(cfg, dict) else cfg


def _timed_augmentation(task: L.LightningModule) -> Stopwatch | None:
    # SegmentationTask augments with task.augment; the contrastive tasks draw views with task.view
    if getattr(task, "augment", None) is not None:
        task.augment = Stopwatch(task.augment)
        return task.augment
    if hasattr(task, "view"):
        task.view = Stopwatch(task.view)
        return task.view
    return None


def manual_loop(task: L.LightningModule, loader: Any, steps: int, warmup: int) -> dict[str, float]:
    """Mean seconds per step of fetching a batch, of the whole step, and of its augmentation."""
    opt = _optimizer(task)
    task.train()
    aug = _timed_augmentation(task)
    it = iter(loader)
    fetch = step = 0.0
    for k in range(warmup + steps):
        if k == warmup:
            fetch = step = 0.0
            if aug is not None:
                aug.seconds = 0.0
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = task.training_step(batch, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        fetch += t1 - t0
        step += t2 - t1
    return {
        "fetch": fetch / steps,
        "step": step / steps,
        "aug": (aug.seconds / steps) if aug else float("nan"),
        "batch": len(batch["image"]),
    }


@contextmanager
def intercepted_fit(measure: Callable[..., None]) -> Iterator[None]:
    """Replace ``fit_resumable`` where the stages call it by ``measure(trainer, task, loader,
    val_loader, out, real_fit)``; the stage stops right after (no outputs are written)."""
    real = segcore.training.fit_resumable

    def fake(trainer: L.Trainer, task: L.LightningModule, loader: Any, val_loader: Any, out: Any) -> None:
        measure(trainer, task, loader, val_loader, out, real)
        raise _Measured

    segcore.training.fit_resumable = fake
    medseg.pretrain.fit_resumable = fake
    try:
        yield
    finally:
        segcore.training.fit_resumable = real
        medseg.pretrain.fit_resumable = real


def measure_stage(
    run: Callable[[argparse.Namespace], None], args: argparse.Namespace, steps: int, warmup: int
) -> dict[str, float]:
    """Both measurements of one stage's loop (``args.steps`` must be ``warmup + steps``)."""
    result: dict[str, float] = {}

    def measure(
        trainer: L.Trainer,
        task: L.LightningModule,
        loader: Any,
        val_loader: Any,
        out: Any,
        real_fit: Callable[..., None],
    ) -> None:
        result.update(manual_loop(task, loader, steps, warmup))
        timer = BatchTimer(warmup)
        trainer.callbacks.append(timer)  # last: its batch end comes after the resume checkpoint's
        real_fit(trainer, task, loader, val_loader, out)
        result["gap"] = sum(timer.gaps) / max(1, len(timer.gaps))
        result["lightning_step"] = sum(timer.steps) / max(1, len(timer.steps))

    with intercepted_fit(measure):
        try:
            run(args)
        except _Measured:
            pass
    return result


def stage_loops(work: Path, steps: int) -> list[tuple[str, Callable[[argparse.Namespace], None], argparse.Namespace]]:
    """(name, stage run function, parsed demo options) of every training loop of the demo DAG."""
    from medseg.finetune import add_finetune_options as mri_finetune_options
    from medseg.finetune import run_finetune as mri_finetune
    from medseg.pretrain import add_pretrain_options, run_pretrain
    from rs.finetune import add_finetune_options as rs_finetune_options
    from rs.finetune import run_finetune as rs_finetune

    mri_data = prepare_demo("mri", work / "mri")
    rs_data = prepare_demo("rs", work / "rs")
    # the local stage starts from a global checkpoint: a 2-step global run is enough to time it
    global_init = work / "mri" / "global_init"
    if not (global_init / "model.pt").is_file():
        argv = training_commands(mri_data, rs_data, work, 2)["MRI pretrain global GD"]
        argv[argv.index("--out") + 1] = str(global_init)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    commands = training_commands(mri_data, rs_data, work / "out", steps, global_init / "model.pt")
    stages = {
        "medseg finetune": (mri_finetune_options, mri_finetune),
        "medseg pretrain": (add_pretrain_options, run_pretrain),
        "rs finetune": (rs_finetune_options, rs_finetune),
    }
    loops = []
    for name, argv in commands.items():
        add_options, run = stages[f"{Path(argv[0]).name} {argv[1]}"]
        p = argparse.ArgumentParser()
        add_options(p)
        loops.append((name, run, p.parse_args(argv[2:])))
    return loops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per loop")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--work", type=Path, default=None, help="folder for the demo data (kept; default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_data_wait_") as tmp:
        work = args.work or Path(tmp)
        loops = stage_loops(work, args.warmup + args.steps)
        rows = []
        for name, run, stage_args in loops:
            rows.append((name, measure_stage(run, stage_args, args.steps, args.warmup)))
        print(f"machine: {machine_description()}")
        print(f"{args.steps} steps per loop after {args.warmup} warm-up; target: wait share <= 5 %")
        print(
            f"{'loop':24s} {'batch':>5s} | {'fetch ms':>8s} {'step ms':>8s} {'aug ms':>7s} {'wait %':>6s} | "
            f"{'gap ms':>7s} {'step ms':>8s} {'wait %':>6s}  (manual | Lightning)"
        )
        for name, r in rows:
            manual = 100 * r["fetch"] / (r["fetch"] + r["step"])
            lightning = 100 * r["gap"] / (r["gap"] + r["lightning_step"])
            print(
                f"{name:24s} {r['batch']:5d} | {1e3 * r['fetch']:8.2f} {1e3 * r['step']:8.1f} {1e3 * r['aug']:7.1f} "
                f"{manual:6.2f} | {1e3 * r['gap']:7.2f} {1e3 * r['lightning_step']:8.1f} {lightning:6.2f}"
            )


if __name__ == "__main__":
    main()
