"""Wiring shared by every training stage: threads, seeds, loaders, the Lightning trainer."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, RandomSampler

log = logging.getLogger(__name__)


def configure_runtime(threads: int, seed: int) -> None:
    """One stage = ``threads`` intra-op threads, so Snakemake can run jobs side by side."""
    if threads > 0:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    L.seed_everything(seed, workers=True, verbose=False)


def collate_samples(batch: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in batch[0]:
        if key == "meta":
            out["meta"] = {k: [b["meta"][k] for b in batch] for k in batch[0]["meta"]}
        else:
            out[key] = torch.stack([torch.as_tensor(b[key]) for b in batch])
    return out


def step_loader(ds: Dataset, batch_size: int, steps: int, seed: int, workers: int = 0) -> DataLoader:
    """A loader of exactly ``steps`` batches drawn with replacement (few labeled slices)."""
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, replacement=True, num_samples=steps * batch_size, generator=g)
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_samples,
        drop_last=True, persistent_workers=workers > 0,
    )


def eval_loader(ds: Dataset, batch_size: int, workers: int = 0) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_samples)


def make_trainer(out: Path, max_steps: int, val_every: int | None = None, accelerator: str = "auto", devices: Any = 1, precision: str | None = None) -> L.Trainer:
    kwargs: dict[str, Any] = {}
    if val_every:
        kwargs.update(val_check_interval=val_every, check_val_every_n_epoch=None)
    else:
        kwargs.update(limit_val_batches=0)
    return L.Trainer(
        default_root_dir=str(out),
        max_steps=max_steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        logger=CSVLogger(str(out), name="logs", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        deterministic=False,
        **kwargs,
    )
