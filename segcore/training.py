"""Wiring shared by every training stage: threads, seeds, loaders, devices, resume, the trainer.

Three properties hold for every stage built from these parts:

* **Resumable.** Training state is checkpointed every ``--checkpoint-every`` steps to
  ``<out.parent>/.<out.name>.resume/last.ckpt`` (see :func:`resume_dir`), a folder beside the
  output that is no declared output, so the atomic-output cleanup and Snakemake leave it alone.
  A stage started again with the same ``--out`` continues from that checkpoint and ends with the
  same weights and records as an uninterrupted run; the folder is deleted after success.
* **A function of (seed, step), not of process history.** Batch k of the training loader and
  the random augmentation of step k are drawn from generators seeded by (seed, k) and
  (seed, rank, k): a resumed run draws exactly what the uninterrupted run drew.
* **Multi-process.** Under DDP (``--devices N``, ``--num-nodes M``, ``--dist-strategy ddp``) the
  samplers draw one global batch of ``batch_size × world`` and each process takes its own
  contiguous slice, so N processes with batch b see the samples that one process with batch
  N·b sees. Validation runs on every process over the whole validation set (identical scores,
  no gather needed); outputs are written by rank 0 only.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, Sampler

from segcore.errors import InputError

log = logging.getLogger(__name__)

RESUME_FILE = "last.ckpt"
RESUME_ARGS = "args.json"
# options that change where or how fast a stage runs, not what it computes: a checkpoint made
# with other values of these is still resumed (e.g. on another node)
RUNTIME_OPTIONS = frozenset({
    "threads", "workers", "accelerator", "devices", "num_nodes", "dist_strategy", "precision", "channels_last",
    "checkpoint_every", "config", "out", "overwrite",
})


def configure_runtime(threads: int, seed: int) -> None:
    """One stage = ``threads`` intra-op threads, so Snakemake can run jobs side by side."""
    if threads > 0:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    L.seed_everything(seed, workers=True, verbose=False)


def add_seed_out_options(p: argparse.ArgumentParser, what: str, several: bool = False) -> None:
    """``--seed`` and ``--out`` of a training stage. With ``several``, both take several values
    in the same order (``--seed 0 1 2 --out a b c``): one process trains every seed of a cell
    one after the other (:func:`per_seed_args`), paying the stage's start-up once."""
    if several:
        p.add_argument("--out", type=Path, nargs="+", required=True, help="output folder (model.pt, train.json, config.yaml, logs/); one per --seed, in the same order")
        p.add_argument("--seed", type=int, nargs="+", default=[0], help=f"random seed(s), trained one after the other in this process (each also picks the {what}, unless --label-seed is given)")
    else:
        p.add_argument("--out", type=Path, required=True, help="output folder (model.pt, train.json, config.yaml, logs/)")
        p.add_argument("--seed", type=int, default=0, help=f"random seed (also picks the {what}, unless --label-seed is given)")


def per_seed_args(args: argparse.Namespace) -> list[argparse.Namespace]:
    """``--seed 0 1 2 --out a b c`` → one copy of ``args`` per pair, with ``seed`` an int and
    ``out`` one path. Each copy is exactly the arguments of a single-seed run (its
    ``config.yaml`` reruns that seed alone), and the stage reseeds everything per copy
    (:func:`configure_runtime`), so seed ``s`` trained beside others equals seed ``s`` alone.
    Checked up front, before any output is written: equal counts, no output folder named twice,
    and a single process (a DDP launcher cannot start its processes once per seed)."""
    seeds = list(args.seed) if isinstance(args.seed, (list, tuple)) else [args.seed]
    outs = [Path(o) for o in (args.out if isinstance(args.out, (list, tuple)) else [args.out])]
    if len(seeds) != len(outs):
        raise InputError(None, f"{len(seeds)} --seed value(s) but {len(outs)} --out folder(s): give one --out per --seed")
    if len({o.resolve() for o in outs}) != len(outs):
        raise InputError(None, "the same --out folder is named more than once")
    if len(seeds) > 1:
        world = world_size(getattr(args, "devices", 1), int(getattr(args, "num_nodes", 1)))
        if world > 1:
            raise InputError(None, f"several --seed values train in one process; with {world} processes (--devices/--num-nodes) run one seed per command")
    return [argparse.Namespace(**{**vars(args), "seed": int(s), "out": o}) for s, o in zip(seeds, outs, strict=True)]


def run_per_seed(args: argparse.Namespace, train_one: Callable[[argparse.Namespace], Any]) -> None:
    """Run ``train_one`` once per ``--seed`` (each into its ``--out``, :func:`per_seed_args`),
    one after the other."""
    runs = per_seed_args(args)
    for i, one in enumerate(runs):
        if len(runs) > 1:
            log.info("seed %d (%d of %d) -> %s", one.seed, i + 1, len(runs), one.out)
        train_one(one)


def collate_samples(batch: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in batch[0]:
        if key == "meta":
            out["meta"] = {k: [b["meta"][k] for b in batch] for k in batch[0]["meta"]}
        else:
            out[key] = torch.stack([torch.as_tensor(b[key]) for b in batch])
    return out


# --------------------------------------------------------------------------- randomness per step


def step_seed(*parts: int) -> int:
    """A 64-bit seed mixed from non-negative integers, e.g. (seed, rank, global step).

    SeedSequence hashes the tuple, so nearby tuples give unrelated streams (seed + step would
    make run (seed=0, step=1) draw what run (seed=1, step=0) draws).
    """
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator of one training step of one process: a function of (seed, rank, step)."""
    return torch.Generator().manual_seed(step_seed(seed, rank, step))


def process_rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rank_slice(batch: Sequence[int], rank: int, world: int) -> list[int]:
    if len(batch) % world:
        raise ValueError(f"a global batch of {len(batch)} samples does not split over {world} processes")
    per = len(batch) // world
    return [int(i) for i in batch[rank * per : (rank + 1) * per]]


class StepBatchSampler(Sampler[list[int]]):
    """Batches drawn with replacement (few labeled samples) where batch k is a function of (seed, k).

    Step k draws a global batch of ``batch_size × world`` indices in ``[0, n_samples)`` from a
    generator seeded by (seed, k); this process yields its rank's contiguous slice of
    ``batch_size``. Iteration starts at ``start_step`` (the restored global step of a resumed
    run). ``len()`` is the whole run's ``steps``: Lightning counts the batches trained before a
    resume as already consumed.
    """

    def __init__(self, n_samples: int, batch_size: int, steps: int, seed: int, start_step: int = 0) -> None:
        if n_samples <= 0 or batch_size <= 0:
            raise ValueError(f"need n_samples > 0 and batch_size > 0, got {n_samples}, {batch_size}")
        self.n_samples, self.batch_size, self.steps, self.seed = n_samples, batch_size, steps, seed
        self.start_step = start_step

    def __len__(self) -> int:
        return self.steps

    def global_batch(self, step: int, world: int = 1) -> np.ndarray:
        """The ``batch_size × world`` sample indices of ``step``: (B·world,) int64."""
        rng = np.random.default_rng(step_seed(self.seed, step))
        return rng.integers(0, self.n_samples, size=self.batch_size * world)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = process_rank_and_world()
        for step in range(self.start_step, self.steps):
            yield _rank_slice(self.global_batch(step, world).tolist(), rank, world)


class ShardedBatchSampler(Sampler[list[int]]):
    """Wraps a deterministic batch sampler (same batches for the same seed, e.g. the MRI
    partition sampler) built for the global batch: skips the ``start_step`` batches a resumed run
    has already trained, and yields this process's contiguous slice of every global batch.

    Skipping replays index draws only (no data is read), so it costs microseconds per step.
    """

    def __init__(self, batches: Sampler[list[int]] | Iterable[list[int]], steps: int, start_step: int = 0) -> None:
        self.batches, self.steps, self.start_step = batches, steps, start_step

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = process_rank_and_world()
        for step, batch in enumerate(self.batches):
            if step >= self.steps:
                return
            if step >= self.start_step:
                yield _rank_slice(batch, rank, world)


def step_loader(
    ds: Dataset, batch_size: int, steps: int, seed: int, workers: int = 0, start_step: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A loader of ``steps`` batches drawn with replacement; batch k is a function of (seed, k)
    (:class:`StepBatchSampler`), so a resumed run (``start_step`` > 0) continues the same stream."""
    sampler = StepBatchSampler(len(ds), batch_size, steps, seed, start_step=start_step)  # type: ignore[arg-type]
    return batch_loader(ds, sampler, workers=workers, pin_memory=pin_memory)


def batch_loader(ds: Dataset, batch_sampler: Sampler[list[int]], workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A training loader over a batch sampler (one item = one batch of sample indices)."""
    return DataLoader(
        ds, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate_samples,
        persistent_workers=workers > 0, pin_memory=pin_memory,
    )


def eval_loader(ds: Dataset, batch_size: int, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_samples, pin_memory=pin_memory)


# --------------------------------------------------------------------------- devices and options


def parse_devices(text: str | int) -> int | str | list[int]:
    """Lightning ``devices``: ``"2"`` → 2, ``"0,1"`` → [0, 1], ``"auto"`` stays."""
    text = str(text)
    if text.isdigit():
        return int(text)
    if "," in text:
        return [int(t) for t in text.split(",") if t]
    return text


def parse_workers(text: str | int) -> int | str:
    """``--workers``: a count ≥ 0 or ``auto``."""
    if str(text) == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a count or 'auto', got {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError(f"worker count must be >= 0, got {value}")
    return value


def add_device_options(p: argparse.ArgumentParser) -> None:
    """Options of every training stage for devices, precision, processes and resume."""
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto (a GPU when one is visible), cpu, gpu")
    p.add_argument("--devices", default="1", help="devices per node: a count or a list of GPU ids (0,1); one process each")
    p.add_argument("--num-nodes", type=int, default=1, help="machines of a multi-node DDP run (SLURM: one task per device)")
    # not --strategy: the pretraining stages use that name for the contrastive strategy
    p.add_argument("--dist-strategy", choices=["auto", "ddp"], default="auto", help="Lightning strategy; auto: one process, or DDP when devices × nodes > 1; ddp: distributed data parallel")
    p.add_argument("--sync-batchnorm", action="store_true", help="BatchNorm statistics over the global batch of all processes (SyncBatchNorm)")
    p.add_argument("--precision", default="auto", help="Lightning precision; auto: bf16-mixed on a GPU that supports it, else 32-true")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="channels-last (NHWC) memory format for weights and images; default on (tensor-core convolutions on a GPU, 13-29%% faster steps on CPU: bench/README.md)")
    p.add_argument("--workers", type=parse_workers, default="auto", help="data-loader worker processes per device; auto: 0 on CPU, up to 4 per GPU")
    p.add_argument("--checkpoint-every", type=int, default=50, help="write the resume checkpoint every N steps (0: never); a restarted run resumes from it")


def resolve_accelerator(name: str) -> str:
    """``auto`` → ``gpu`` when CUDA sees a device, else ``cpu``; other names stay."""
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return name


def default_precision(accelerator: str) -> str:
    """bf16 autocast where the GPU has it (Ampere and later), full fp32 elsewhere (CPU bf16 is slow)."""
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def local_device_count(devices: int | str | list[int]) -> int:
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, int):
        return devices
    return max(1, torch.cuda.device_count()) if devices == "auto" else 1


def world_size(devices: int | str | list[int], num_nodes: int = 1) -> int:
    """Processes of a run: devices per node (``--devices``, parsed here) times ``--num-nodes``."""
    return local_device_count(parse_devices(devices)) * num_nodes


def default_workers(accelerator: str, devices: int | str | list[int]) -> int:
    """0 on CPU (loading in the training process keeps the thread budget exact); with GPUs up
    to 4 per device, within this process's CPU affinity (a SLURM job's cores)."""
    if accelerator not in ("gpu", "cuda"):
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus // local_device_count(devices) - 1))


def runtime_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The device settings of a stage with every ``auto`` resolved: accelerator, devices,
    num_nodes, strategy, sync_batchnorm, precision, channels_last, workers, pin_memory,
    checkpoint_every. Missing options (older callers) take the defaults of
    :func:`add_device_options`."""
    accelerator = resolve_accelerator(getattr(args, "accelerator", "auto"))
    devices = parse_devices(getattr(args, "devices", 1))
    precision = getattr(args, "precision", "auto")
    channels_last = getattr(args, "channels_last", None)
    workers = getattr(args, "workers", "auto")
    gpu = accelerator in ("gpu", "cuda")
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": int(getattr(args, "num_nodes", 1)),
        "strategy": getattr(args, "dist_strategy", "auto"),
        "sync_batchnorm": bool(getattr(args, "sync_batchnorm", False)),
        "precision": default_precision(accelerator) if precision in (None, "auto") else precision,
        "channels_last": True if channels_last is None else bool(channels_last),
        "workers": default_workers(accelerator, devices) if workers == "auto" else int(workers),
        "pin_memory": gpu,
        "checkpoint_every": int(getattr(args, "checkpoint_every", 50)),
    }


def _strategy(name: str, find_unused_parameters: bool) -> Any:
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # pretraining tasks leave parts of the U-Net (decoder, head) out of the graph
        return DDPStrategy(find_unused_parameters=find_unused_parameters)
    return name


def _cluster_plugins(world: int) -> list[Any]:
    """Inside a SLURM job with fewer tasks than processes wanted (a one-task job asking for
    ``--devices 2``), Lightning must start the processes itself instead of expecting srun to."""
    tasks = os.environ.get("SLURM_NTASKS")
    if world > 1 and tasks is not None and int(tasks) != world:
        from lightning.pytorch.plugins.environments import LightningEnvironment

        return [LightningEnvironment()]
    return []


# --------------------------------------------------------------------------- callbacks


class ChannelsLast(Callback):
    """Channels-last weights and input images: NHWC convolutions on tensor cores."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before the strategy wraps the module (DDP buckets follow the parameters' strides)
        pl_module.to(memory_format=torch.channels_last)

    @staticmethod
    def _convert(batch: Any) -> None:
        # the batch dict is the object training_step receives: converting in place reaches it
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor) and batch["image"].dim() == 4:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._convert(batch)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._convert(batch)


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

    def __init__(self, folder: Path, every: int, val_every: int | None = None, run_args: dict[str, str] | None = None) -> None:
        self.folder, self.every, self.val_every = Path(folder), every, val_every
        self.run_args = run_args or {}

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        return self.every > 0 and step > 0 and step % self.every == 0 and step < trainer.max_steps

    def _validates_now(self, trainer: L.Trainer) -> bool:
        return bool(self.val_every) and trainer.global_step % int(self.val_every) == 0 and trainer.enable_validation

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
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


# --------------------------------------------------------------------------- resume and outputs


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


def make_trainer(
    out: Path,
    max_steps: int,
    val_every: int | None = None,
    accelerator: str = "auto",
    devices: Any = 1,
    precision: str | None = None,
    *,
    num_nodes: int = 1,
    strategy: str = "auto",
    sync_batchnorm: bool = False,
    find_unused_parameters: bool = False,
    callbacks: list[Callback] | None = None,
) -> L.Trainer:
    """The Lightning trainer of a stage: step-based, CSV logs under ``out/logs``, no Lightning
    checkpointing (stages write their own model files; :class:`ResumeCheckpoint` the resume state),
    our samplers shard batches themselves (no DistributedSampler)."""
    kwargs: dict[str, Any] = {}
    if val_every:
        kwargs.update(val_check_interval=val_every, check_val_every_n_epoch=None)
    else:
        kwargs.update(limit_val_batches=0)
    world = world_size(devices, num_nodes)
    if strategy == "auto" and world > 1:
        strategy = "ddp"  # ours, with find_unused_parameters where a stage needs it
    if sync_batchnorm and accelerator == "cpu":
        raise InputError(None, "--sync-batchnorm needs GPUs: torch's SyncBatchNorm has no CPU kernel")
    return L.Trainer(
        default_root_dir=str(out),
        max_steps=max_steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=_strategy(strategy, find_unused_parameters),
        sync_batchnorm=sync_batchnorm,
        precision=precision,
        plugins=_cluster_plugins(world) or None,
        logger=CSVLogger(str(out), name="logs", version=""),
        callbacks=callbacks or [],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def resumable_trainer(
    out: str | Path, args: argparse.Namespace, max_steps: int, val_every: int | None = None, find_unused_parameters: bool = False
) -> L.Trainer:
    """A trainer for the stage writing ``out``, configured from the stage's device options
    (:func:`add_device_options`), working in :func:`resume_dir` and checkpointing there."""
    rt = runtime_settings(args)
    work = resume_dir(out)
    run_args = {k: str(v) for k, v in sorted(vars(args).items()) if k not in RUNTIME_OPTIONS}
    callbacks: list[Callback] = [ResumeCheckpoint(work, rt["checkpoint_every"], val_every, run_args)]
    if rt["channels_last"]:
        callbacks.append(ChannelsLast())
    trainer = make_trainer(
        work, max_steps, val_every=val_every, accelerator=rt["accelerator"], devices=rt["devices"], precision=rt["precision"],
        num_nodes=rt["num_nodes"], strategy=rt["strategy"], sync_batchnorm=rt["sync_batchnorm"],
        find_unused_parameters=find_unused_parameters, callbacks=callbacks,
    )
    _discard_foreign_checkpoint(work, run_args, trainer.is_global_zero)
    return trainer


def _discard_foreign_checkpoint(work: Path, run_args: dict[str, str], is_global_zero: bool) -> None:
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


def fit_resumable(trainer: L.Trainer, task: L.LightningModule, train_loader: DataLoader, val_loader: DataLoader | None, out: str | Path) -> None:
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
    from segcore.outputs import atomic_dir

    work = resume_dir(out)
    with atomic_dir(out) as tmp:
        if (work / "logs").is_dir():
            _merge_csv_log(work / "logs")
            shutil.copytree(work / "logs", tmp / "logs")
        yield tmp
    shutil.rmtree(work, ignore_errors=True)


def fit_segmentation(
    *,
    out: Path,
    net: torch.nn.Module,
    network: dict[str, Any],
    data: Any,
    train_ds: Dataset,
    val_ds: Dataset,
    val_metric: str,
    run: dict[str, Any],
    args: Any,
    augment: Any = None,
    extra_record: dict[str, Any] | None = None,
    task_cls: Any = None,
    task_kwargs: dict[str, Any] | None = None,
    pretrained: list[str] | None = None,
) -> dict[str, Any]:
    """Train a :class:`~segcore.tasks.SegmentationTask`, keep the best validation weights and
    write ``model.pt``, ``train.json``, ``config.yaml`` and ``logs/`` into ``out`` atomically.

    ``args`` needs: steps, batch_size, lr, val_every, val_batch_size, seed, and the options of
    :func:`add_device_options`; optional: weight_ema, pretrained_lr_scale (for the parameters
    named in ``pretrained``, those loaded from a checkpoint). Resumes from ``resume_dir(out)`` when a checkpoint is there.
    Returns the train record (on every rank; only rank 0 writes).
    """
    from segcore.checkpoints import save_checkpoint
    from segcore.cli import resolved_args
    from segcore.outputs import write_json, write_yaml
    from segcore.tasks import SegmentationTask

    task_cls = task_cls or SegmentationTask
    weight_ema = float(getattr(args, "weight_ema", 0.0) or 0.0)
    lr_scale = float(getattr(args, "pretrained_lr_scale", 1.0))
    if not 0.0 <= weight_ema < 1.0:
        raise InputError(None, f"--weight-ema must lie in [0, 1), got {weight_ema}")
    if lr_scale <= 0:
        raise InputError(None, f"--pretrained-lr-scale must be > 0, got {lr_scale}")
    task = task_cls(
        net, data.num_classes, ignore_index=data.ignore_index, lr=args.lr, val_metric=val_metric, max_steps=args.steps,
        augment=augment, seed=args.seed, weight_ema=weight_ema, pretrained=pretrained or (), pretrained_lr_scale=lr_scale,
        **(task_kwargs or {}),
    )
    t0 = time.perf_counter()
    rt = runtime_settings(args)
    val_every = min(args.val_every, args.steps)
    trainer = resumable_trainer(out, args, args.steps, val_every=val_every)
    train_loader = step_loader(train_ds, args.batch_size, args.steps, args.seed, rt["workers"], start_step=resume_step(out), pin_memory=rt["pin_memory"])
    fit_resumable(trainer, task, train_loader, eval_loader(val_ds, args.val_batch_size, rt["workers"], rt["pin_memory"]), out)
    if task.best_state is None:
        raise RuntimeError("validation never produced a score; check the validation split")
    record = {
        **run, "domain": data.manifest.get("domain"), f"best_val_{val_metric}": task.best_score, "best_step": task.best_step,
        "steps": args.steps, "train_samples": len(train_ds), "history": task.history, "wall_seconds": time.perf_counter() - t0,
        "processes": trainer.world_size,
    }
    if not trainer.is_global_zero:
        return record
    net.load_state_dict(task.best_state)
    data_record = {k: data.manifest[k] for k in ("classes", "channels", "image_size") if k in data.manifest}
    if "normalization" in data.manifest:
        data_record["normalization"] = data.manifest["normalization"]
    with stage_outputs(out) as tmp:
        save_checkpoint(tmp / "model.pt", net, network, stage="finetune", method=run["method"], pretrained=[], run=run, data=data_record, **(extra_record or {}))
        write_json(tmp / "train.json", record)
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("best validation %s %.4f at step %d; wrote %s", val_metric, task.best_score, task.best_step, out)
    return record
