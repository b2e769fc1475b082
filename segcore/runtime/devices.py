"""Device settings of a training stage with every ``auto`` resolved (:func:`resolve_runtime`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from segcore.config import RuntimeConfig
from segcore.errors import InputError
from segcore.runtime.progress import progress_mode


def parse_devices(text: str | int) -> int | str | list[int]:
    """Lightning ``devices``: ``"2"`` → 2, ``"0,1"`` → [0, 1], ``"auto"`` stays."""
    text = str(text)
    if text.isdigit():
        return int(text)
    if "," in text:
        return [int(t) for t in text.split(",") if t]
    return text


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


@dataclass(frozen=True)
class Runtime:
    """:class:`~segcore.config.RuntimeConfig` with every ``auto`` resolved for this machine."""

    accelerator: str
    devices: Any
    num_nodes: int
    strategy: str
    sync_batchnorm: bool
    precision: str
    channels_last: bool
    workers: int
    pin_memory: bool
    checkpoint_every: int
    progress: str
    log_every: int
    compile: bool = False


def resolve_runtime(cfg: RuntimeConfig) -> Runtime:
    accelerator = resolve_accelerator(cfg.accelerator)
    devices = parse_devices(cfg.devices)
    return Runtime(
        accelerator=accelerator,
        devices=devices,
        num_nodes=int(cfg.num_nodes),
        strategy=cfg.dist_strategy,
        sync_batchnorm=bool(cfg.sync_batchnorm),
        precision=default_precision(accelerator) if cfg.precision in (None, "auto") else cfg.precision,
        channels_last=True if cfg.channels_last is None else bool(cfg.channels_last),
        workers=default_workers(accelerator, devices) if cfg.workers == "auto" else int(cfg.workers),
        pin_memory=accelerator in ("gpu", "cuda"),
        checkpoint_every=int(cfg.checkpoint_every),
        progress=progress_mode(cfg.progress),
        log_every=int(cfg.log_every),
        compile=bool(cfg.compile),
    )


def resolve_device(name: str) -> torch.device:
    """The torch device of an inference stage's ``--device``: ``auto`` (the first CUDA GPU when
    one is visible, else the CPU), ``cpu``, ``gpu`` / ``cuda`` (the first GPU) or ``cuda:N``.
    A GPU that is not there is an :class:`~segcore.errors.InputError`, not a silent CPU run."""
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text in ("gpu", "cuda") or text.startswith("cuda:"):
        index = 0 if ":" not in text else text.split(":", 1)[1]
        if not str(index).isdigit():
            raise InputError(None, f"--device {name!r}: expected cuda:<index>, e.g. cuda:0")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index) >= count:
            raise InputError(
                None,
                f"--device {name}: no such CUDA device ({count} visible); use --device cpu or auto",
            )
        return torch.device("cuda", int(index))
    raise InputError(None, f"--device must be auto, cpu, gpu, cuda or cuda:N, got {name!r}")
