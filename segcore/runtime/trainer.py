"""The Lightning trainer of a stage: step-based, CSV logs, devices from the stage's
:class:`~segcore.config.RuntimeConfig`, resumable (:mod:`segcore.runtime.resume`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from segcore.config import RuntimeConfig
from segcore.errors import InputError
from segcore.networks import SegmentationNetwork
from segcore.runtime.devices import resolve_runtime, world_size
from segcore.runtime.resume import ResumeCheckpoint, discard_foreign_checkpoint, resume_dir


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


def compiled_blocks(net: nn.Module) -> list[nn.Module]:
    """The parts of a segmentation network that its methods call (``encode`` and ``decode`` call
    the blocks of a ``ModuleList`` one by one, an smp decoder its ``blocks``): what ``--compile``
    compiles, so that the pretraining strategies, which call ``encode`` / ``decode`` rather than
    ``forward``, run compiled code too."""
    out: list[nn.Module] = []
    for part in (net.encoder, net.decoder, net.head):
        if isinstance(part, nn.ModuleList):
            out += list(part)
        elif isinstance(getattr(part, "blocks", None), nn.ModuleList):
            out += list(part.blocks)
        else:
            out.append(part)
    return out


class CompileNetworks(Callback):
    """``--compile``: ``torch.compile`` the blocks of every segmentation network of the task, in
    place (:meth:`torch.nn.Module.compile`: parameters, state-dict keys and checkpoints unchanged)."""

    def __init__(self, backend: str = "inductor") -> None:
        self.backend = backend

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for net in [m for m in pl_module.modules() if isinstance(m, SegmentationNetwork)]:
            for block in compiled_blocks(net):
                block.compile(backend=self.backend)


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

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._convert(batch)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._convert(batch)


def loggers(out: Path) -> list[Any]:
    """CSV logs in ``out/logs`` (the report reads them), and TensorBoard's beside them where the
    ``tensorboard`` package is installed."""
    found: list[Any] = [CSVLogger(str(out), name="logs", version="")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return found
    from lightning.pytorch.loggers import TensorBoardLogger

    found.append(TensorBoardLogger(str(out), name="logs", version=""))
    return found


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
    progress_bar: bool = False,
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
        logger=loggers(out),
        callbacks=callbacks or [],
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
        use_distributed_sampler=False,
        **kwargs,
    )


def resumable_trainer(
    out: str | Path,
    runtime: RuntimeConfig,
    run_args: dict[str, Any],
    max_steps: int,
    val_every: int | None = None,
    find_unused_parameters: bool = False,
) -> L.Trainer:
    """A trainer for the stage writing ``out``, configured from ``runtime``, working in
    :func:`~segcore.runtime.resume.resume_dir` and checkpointing there. ``run_args`` are the
    options that shape the result (a checkpoint made with others is not resumed)."""
    rt = resolve_runtime(runtime)
    work = resume_dir(out)
    shaping = {k: str(v) for k, v in sorted(run_args.items())}
    callbacks: list[Callback] = [ResumeCheckpoint(work, rt.checkpoint_every, val_every, shaping)]
    if rt.channels_last:
        callbacks.append(ChannelsLast())
    if rt.compile:
        callbacks.append(CompileNetworks())
    trainer = make_trainer(
        work,
        max_steps,
        val_every=val_every,
        accelerator=rt.accelerator,
        devices=rt.devices,
        precision=rt.precision,
        num_nodes=rt.num_nodes,
        strategy=rt.strategy,
        sync_batchnorm=rt.sync_batchnorm,
        find_unused_parameters=find_unused_parameters,
        callbacks=callbacks,
    )
    discard_foreign_checkpoint(work, shaping, trainer.is_global_zero)
    return trainer
