"""Pretraining, written once for both domains: the domain picks network and strategy from its
options (:meth:`~segcore.domain.Domain.pretrain_setup`), the strategy brings views, batches and
loss, :class:`~segcore.tasks.pretrain.PretrainTask` trains, and the outputs are written atomically:
``model.pt`` (the pretrained modules marked in ``pretrained``, heads apart under ``heads``),
``train.json`` (loss per step and the loss at chance level of the pretext task, at the last step
and per step), ``config.yaml``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from segcore.checkpoints import save_checkpoint
from segcore.config import RUNTIME_OPTIONS, PretrainConfig, to_record
from segcore.domain import Domain
from segcore.outputs import write_json, write_yaml
from segcore.prepared import open_prepared
from segcore.runtime.devices import resolve_runtime
from segcore.runtime.resume import fit_resumable, resume_step, stage_outputs
from segcore.runtime.seeds import configure_runtime
from segcore.runtime.trainer import resumable_trainer
from segcore.tasks.pretrain import PretrainTask

log = logging.getLogger(__name__)


def run_pretrain(cfg: PretrainConfig, domain: Domain) -> dict[str, Any]:
    configure_runtime(cfg.runtime.threads, cfg.seed)
    data = open_prepared(cfg.data, domain.name, domain.title)
    groups = domain.pretrain_groups(data)
    t0 = time.perf_counter()
    net, spec, strategy, record = domain.pretrain_setup(data, cfg)
    task = PretrainTask(net, strategy, lr=cfg.lr, seed=cfg.seed)
    arguments = to_record(cfg)
    shaping = {k: v for k, v in arguments.items() if k not in RUNTIME_OPTIONS}
    # pretraining tasks leave parts of the network (decoder, head) out of the graph
    trainer = resumable_trainer(cfg.out, cfg.runtime, shaping, cfg.steps, find_unused_parameters=True)
    rt = resolve_runtime(cfg.runtime)
    loader = strategy.loader(
        data, groups, cfg.steps, cfg.seed, resume_step(cfg.out), trainer.world_size, rt.workers, rt.pin_memory
    )
    fit_resumable(trainer, task, loader, None, cfg.out)
    losses = task.losses
    train = {
        "stage": strategy.stage,
        "method": record["method"],
        "strategy": strategy.name,
        "steps": cfg.steps,
        "seed": cfg.seed,
        **record.get("train", {}),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_history": losses,
        "chance_loss": None if math.isnan(strategy.chance) else strategy.chance,
        # per step: a queue's chance grows while it fills (0 at an empty queue's first step)
        "chance_history": [None if math.isnan(c) else c for c in task.chances],
        "wall_seconds": time.perf_counter() - t0,
        "processes": trainer.world_size,
    }
    if not trainer.is_global_zero:
        return train
    heads = {**record.get("heads", {}), **strategy.exported_heads()}
    heads = {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in heads.items()}
    data_record = {
        k: data.manifest[k] for k in ("classes", "channels", "image_size", "normalization") if k in data.manifest
    }
    with stage_outputs(cfg.out) as tmp:
        save_checkpoint(
            tmp / "model.pt",
            net,
            spec,
            stage=record["stage"],
            method=record["method"],
            pretrained=record["pretrained"],
            heads=heads,
            data=data_record,
            domain=domain.name,
        )
        write_json(tmp / "train.json", train)
        write_yaml(tmp / "config.yaml", arguments)
    log.info(
        "%s pretraining (%s): loss %.4f -> %.4f (chance %.4f) in %.1fs",
        strategy.name,
        record["method"],
        losses[0],
        losses[-1],
        strategy.chance,
        time.perf_counter() - t0,
    )
    return train
