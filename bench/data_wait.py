"""Data-loading wait as a share of step time, for each training loop of the demo DAG or, with
``--real-size``, of the full presets at ACDC and Landslide4Sense sizes.

    .venv/bin/python bench/data_wait.py [--steps 50] [--warmup 3] [--work DIR]
    .venv/bin/python bench/data_wait.py --real-size --work DIR [--steps 3 --warmup 1]

Target: wait / (wait + step) ≤ 5 % for every loop, with the stages' default worker count
(``--workers auto``: 0 on a CPU, up to 4 per GPU).

The demo data are generated and preprocessed with the settings of ``workflows/config/config.yaml``
(as the workflow's rules do); ``--real-size`` uses the data ``bench/real_size.py`` prepares under
the same ``--work`` (200 ACDC-sized volumes prepared at 192², the Landslide4Sense release) and
the full presets' loops (``bench/_real_data.py``: MRI fine-tuning batch 20, G^D and L^R with 10
volumes x 4 partitions, RS fine-tuning and hyper-pixel pretraining with ResNet-34, batch 32).
Each loop is built by the stage itself: the stage CLI runs in this process with those options up
to the point where it would call ``fit_resumable``, which is replaced here, so the loader
(sampler, workers, pinning, collate), the dataset and the LightningModule are exactly what the
stage trains with. Two measurements per loop:

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
import shutil
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
from _real_data import training_commands as real_training_commands
from lightning.pytorch.callbacks import Callback

import segcore.stages.finetune
import segcore.stages.pretrain
from segcore.runtime.trainer import ChannelsLast

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


class _Measured(BaseException):
    """Raised in place of the stage's output writing once the loop is measured (a BaseException:
    the stage CLI reports an Exception as a failure and returns instead of raising)."""


def _optimizer(task: L.LightningModule) -> torch.optim.Optimizer:
    cfg = task.configure_optimizers()
    return cfg["optimizer"] if isinstance(cfg, dict) else cfg


def _timed_augmentation(task: L.LightningModule) -> Stopwatch | None:
    # SegmentationTask augments with task.augment; a pretraining strategy draws views with view / views
    if getattr(task, "augment", None) is not None:
        task.augment = Stopwatch(task.augment)
        return task.augment
    strategy = getattr(task, "strategy", None)
    for name in ("view", "views"):
        if strategy is not None and hasattr(strategy, name):
            watch = Stopwatch(getattr(strategy, name))
            setattr(strategy, name, watch)
            return watch
    return None


def manual_loop(
    task: L.LightningModule, loader: Any, steps: int, warmup: int, channels_last: bool = False
) -> dict[str, float]:
    """Mean seconds per step of fetching a batch, of the whole step, and of its augmentation
    (in the stage's memory format: ``channels_last`` as its ChannelsLast callback would)."""
    opt = _optimizer(task)
    task.train()
    if channels_last:
        task.to(memory_format=torch.channels_last)
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
        if channels_last:
            ChannelsLast._convert(batch)
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
    stages = (segcore.stages.finetune, segcore.stages.pretrain)
    real = stages[0].fit_resumable

    def fake(trainer: L.Trainer, task: L.LightningModule, loader: Any, val_loader: Any, out: Any) -> None:
        measure(trainer, task, loader, val_loader, out, real)
        raise _Measured

    for module in stages:
        module.fit_resumable = fake
    try:
        yield
    finally:
        for module in stages:
            module.fit_resumable = real


def measure_stage(run: Callable[[], int], steps: int, warmup: int) -> dict[str, float]:
    """Both measurements of one stage's loop (``run`` calls the stage CLI, whose ``--steps``
    must be ``warmup + steps``)."""
    result: dict[str, float] = {}

    def measure(
        trainer: L.Trainer,
        task: L.LightningModule,
        loader: Any,
        val_loader: Any,
        out: Any,
        real_fit: Callable[..., None],
    ) -> None:
        channels_last = any(isinstance(c, ChannelsLast) for c in trainer.callbacks)
        result.update(manual_loop(task, loader, steps, warmup, channels_last))
        result["workers"] = loader.num_workers
        timer = BatchTimer(warmup)
        trainer.callbacks.append(timer)  # last: its batch end comes after the resume checkpoint's
        real_fit(trainer, task, loader, val_loader, out)
        result["gap"] = sum(timer.gaps) / max(1, len(timer.gaps))
        result["lightning_step"] = sum(timer.steps) / max(1, len(timer.steps))

    with intercepted_fit(measure):
        try:
            status = run()
        except _Measured:
            return result
    raise RuntimeError(f"the stage returned {status} before training")


def cli_runner(argv: list[str]) -> Callable[[], int]:
    """The stage CLI of a command (``.../medseg finetune ...`` or ``python -m rs.cli pretrain ...``),
    called in this process."""
    from medseg.cli import main as medseg
    from rs.cli import main as rs

    words = [Path(a).name for a in argv[:3]]
    if "medseg" in words or "medseg.cli" in words:
        main, domain = medseg, "medseg"
    elif "rs" in words or "rs.cli" in words:
        main, domain = rs, "rs"
    else:
        raise ValueError(f"not a stage command: {argv[:3]}")
    start = next(i for i, w in enumerate(words) if w in (domain, f"{domain}.cli")) + 1
    return lambda: main(argv[start:])


def stage_loops(work: Path, steps: int, real_size: bool = False) -> list[tuple[str, list[str]]]:
    """(name, argv) of every training loop of the demo DAG, or of the full presets (``real_size``)."""
    if real_size:
        mri_data, rs_data = work / "mri" / "prepared", work / "rs" / "prepared"
        for folder in (mri_data, rs_data):
            if not (folder / "manifest.json").is_file():
                raise SystemExit(f"{folder}: prepare the real-size data first (bench/real_size.py --part preprocess)")
        commands_of = real_training_commands
    else:
        mri_data = prepare_demo("mri", work / "mri")
        rs_data = prepare_demo("rs", work / "rs")
        commands_of = training_commands
    # the local stage starts from a global checkpoint: a 1-step global run is enough to time it
    global_init = work / "data_wait" / "global_init"
    if not (global_init / "model.pt").is_file():
        argv = commands_of(mri_data, rs_data, work / "data_wait", 1)["MRI pretrain global GD"]
        argv[argv.index("--out") + 1] = str(global_init)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return list(commands_of(mri_data, rs_data, work / "data_wait" / "out", steps, global_init / "model.pt").items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per loop")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--work", type=Path, default=None, help="folder for the demo data (kept; default: a temporary one)")
    ap.add_argument(
        "--real-size", action="store_true", help="the full presets' loops on bench/real_size.py's data in --work"
    )
    args = ap.parse_args()
    if args.real_size and args.work is None:
        ap.error("--real-size needs --work (the folder bench/real_size.py prepared)")
    with tempfile.TemporaryDirectory(prefix="bench_data_wait_") as tmp:
        work = args.work or Path(tmp)
        loops = stage_loops(work, args.warmup + args.steps, args.real_size)
        rows = []
        for name, argv in loops:
            out = Path(argv[argv.index("--out") + 1])
            if out.exists():
                shutil.rmtree(out)
            rows.append((name, measure_stage(cli_runner(argv), args.steps, args.warmup)))
            print(f"  {name}: {rows[-1][1]}", flush=True)
        print(f"machine: {machine_description()}")
        print(
            f"{'real-size presets' if args.real_size else 'demo'}: {args.steps} steps per loop after {args.warmup} "
            "warm-up, the stages' default worker count; target: wait share <= 5 %"
        )
        print(
            f"{'loop':24s} {'batch':>5s} {'wrk':>3s} | {'fetch ms':>8s} {'step ms':>8s} {'aug ms':>7s} "
            f"{'wait %':>6s} | {'gap ms':>7s} {'step ms':>8s} {'wait %':>6s}  (manual | Lightning)"
        )
        for name, r in rows:
            manual = 100 * r["fetch"] / (r["fetch"] + r["step"])
            lightning = 100 * r["gap"] / (r["gap"] + r["lightning_step"])
            print(
                f"{name:24s} {r['batch']:5d} {r['workers']:3d} | {1e3 * r['fetch']:8.2f} {1e3 * r['step']:8.1f} "
                f"{1e3 * r['aug']:7.1f} {manual:6.2f} | {1e3 * r['gap']:7.2f} {1e3 * r['lightning_step']:8.1f} "
                f"{lightning:6.2f}"
            )


if __name__ == "__main__":
    main()
