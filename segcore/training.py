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


def parse_devices(text: str | int) -> int | str | list[int]:
    """Lightning ``devices``: ``"2"`` → 2, ``"0,1"`` → [0, 1], ``"auto"`` stays."""
    text = str(text)
    if text.isdigit():
        return int(text)
    if "," in text:
        return [int(t) for t in text.split(",") if t]
    return text


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
) -> dict[str, Any]:
    """Train a :class:`~segcore.tasks.SegmentationTask`, keep the best validation weights and
    write ``model.pt``, ``train.json``, ``config.yaml`` and ``logs/`` into ``out`` atomically.

    ``args`` needs: steps, batch_size, lr, val_every, val_batch_size, seed, workers,
    accelerator, devices. Returns the train record.
    """
    import time

    from segcore.checkpoints import save_checkpoint
    from segcore.cli import resolved_args
    from segcore.outputs import atomic_dir, write_json, write_yaml
    from segcore.tasks import SegmentationTask

    task = SegmentationTask(net, data.num_classes, ignore_index=data.ignore_index, lr=args.lr, val_metric=val_metric, max_steps=args.steps, augment=augment, seed=args.seed)
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        trainer = make_trainer(tmp, args.steps, val_every=min(args.val_every, args.steps), accelerator=args.accelerator, devices=parse_devices(args.devices))
        trainer.fit(task, step_loader(train_ds, args.batch_size, args.steps, args.seed, args.workers), eval_loader(val_ds, args.val_batch_size))
        if task.best_state is None:
            raise RuntimeError("validation never produced a score; check the validation split")
        net.load_state_dict(task.best_state)
        data_record = {k: data.manifest[k] for k in ("classes", "channels", "image_size") if k in data.manifest}
        if "normalization" in data.manifest:
            data_record["normalization"] = data.manifest["normalization"]
        save_checkpoint(tmp / "model.pt", net, network, stage="finetune", method=run["method"], pretrained=[], run=run, data=data_record, **(extra_record or {}))
        record = {
            **run, "domain": data.manifest.get("domain"), f"best_val_{val_metric}": task.best_score, "best_step": task.best_step,
            "steps": args.steps, "train_samples": len(train_ds), "history": task.history, "wall_seconds": time.perf_counter() - t0,
        }
        write_json(tmp / "train.json", record)
        write_yaml(tmp / "config.yaml", resolved_args(args))
    log.info("best validation %s %.4f at step %d; wrote %s", val_metric, task.best_score, task.best_step, out)
    return record
