"""Fine-tuning, written once for both domains: a network (random or from ``--init``) trained on
the labeled set a seed draws, best weights kept by validation, outputs written atomically.

One process may train several seeds one after the other (``--seed 0 1 2 --out a b c``): each
seed reseeds everything and trains exactly as it would alone, and the stage's start-up (~10 s of
imports on a CPU) is paid once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from segcore.checkpoints import (
    checkpoint_network,
    load_pretrained,
    read_checkpoint,
    save_checkpoint,
)
from segcore.config import RUNTIME_OPTIONS, FinetuneConfig, HyperPixelConfig, to_record
from segcore.domain import Domain
from segcore.errors import InputError
from segcore.networks import SegmentationNetwork, build_network
from segcore.outputs import write_json, write_yaml
from segcore.prepared import PreparedData, PreparedDataset, open_prepared
from segcore.runtime.devices import resolve_runtime, world_size
from segcore.runtime.resume import fit_resumable, resume_step, stage_outputs
from segcore.runtime.sampling import eval_loader, step_loader
from segcore.runtime.seeds import configure_runtime
from segcore.runtime.trainer import resumable_trainer
from segcore.tasks.segmentation import SegmentationTask

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """One training run of a fine-tuning stage: its seed, the seed of its labeled set, its output."""

    seed: int
    label_seed: int
    out: Path


def selection_record(history: list[dict[str, Any]], best_step: int, steps: int) -> dict[str, Any]:
    """How the weights were selected, for the report's convergence mark (docs/report.md): the
    steps trained, the step kept and the last validation step; ``at_last_validation``: the best
    validation score came at the last validation, so the score may still have been rising."""
    last = int(history[-1]["step"]) if history else int(best_step)
    return {
        "steps": int(steps),
        "best_step": int(best_step),
        "last_val_step": last,
        "validations": len(history),
        "at_last_validation": int(best_step) >= last and len(history) > 1,
    }


def seed_runs(cfg: FinetuneConfig) -> list[SeedRun]:
    """``--seed 0 1 2 --out a b c`` → one run per pair. Checked up front, before any output is
    written: equal counts, no output folder named twice, and a single process (a DDP launcher
    cannot start its processes once per seed)."""
    seeds, outs = list(cfg.seed), [Path(o) for o in cfg.out]
    if len(seeds) != len(outs):
        raise InputError(
            None, f"{len(seeds)} --seed value(s) but {len(outs)} --out folder(s): give one --out per --seed"
        )
    if len({o.resolve() for o in outs}) != len(outs):
        raise InputError(None, "the same --out folder is named more than once")
    if len(seeds) > 1:
        world = world_size(cfg.runtime.devices, cfg.runtime.num_nodes)
        if world > 1:
            raise InputError(
                None,
                f"several --seed values train in one process; with {world} processes (--devices/--num-nodes) "
                "run one seed per command",
            )
    return [
        SeedRun(int(s), int(s if cfg.label_seed is None else cfg.label_seed), o)
        for s, o in zip(seeds, outs, strict=True)
    ]


def seed_arguments(cfg: FinetuneConfig, run: SeedRun) -> dict[str, Any]:
    """The arguments of one seed's run as ``config.yaml`` holds them: exactly the options that
    rerun that seed alone."""
    return {**to_record(cfg), "seed": run.seed, "out": str(run.out)}


def run_finetune(cfg: FinetuneConfig, domain: Domain) -> None:
    """Fine-tune once per ``--seed`` (each into its ``--out``), one after the other."""
    if cfg.init is not None and cfg.encoder_weights is not None:
        raise InputError(None, "give --init (a checkpoint of this pipeline) or --encoder-weights, not both")
    runs = seed_runs(cfg)
    for i, run in enumerate(runs):
        if len(runs) > 1:
            log.info("seed %d (%d of %d) -> %s", run.seed, i + 1, len(runs), run.out)
        finetune_one(cfg, run, domain)


def initial_network(
    cfg: FinetuneConfig, domain: Domain, data: PreparedData
) -> tuple[SegmentationNetwork, dict[str, Any], list[str], str]:
    """The network to train: from ``--init`` (its pretrained weights loaded, heads skipped) or
    new from the stage's network options. Returns network, spec, loaded tensor names, method."""
    if cfg.init is None:
        spec = domain.network_spec(data, cfg)
        net = build_network(spec)
        if cfg.encoder_weights is None:
            return net, spec, [], cfg.method or "none"
        loaded = domain.load_encoder_weights(net, spec, cfg.encoder_weights)
        return net, spec, loaded, cfg.method or "pretrained"
    init = read_checkpoint(cfg.init)
    spec = checkpoint_network(init, cfg.init, domain)
    domain.check_init(spec, data, cfg.init)
    net = build_network(spec, cfg.init)
    pretrained = load_pretrained(net, init, cfg.init, skip_prefixes=domain.init_skip_prefixes)
    return net, spec, pretrained, cfg.method or init.get("method", "pretrained")


def finetune_one(cfg: FinetuneConfig, run: SeedRun, domain: Domain) -> dict[str, Any]:
    configure_runtime(cfg.runtime.threads, run.seed)
    data = open_prepared(cfg.data, domain.name, domain.title)
    chosen, budget = domain.select_labeled(data, cfg, run.label_seed)
    val_groups = data.split_groups("val")
    if not val_groups:
        why = domain.empty_split_reason(data, "val") or " (preprocess with a validation split)"
        raise InputError(cfg.data, f"no validation {domain.groups} in the prepared data{why}")
    net, spec, pretrained, method = initial_network(cfg, domain, data)
    hpcl: HyperPixelConfig | None = getattr(cfg, "hpcl", None)
    extras = ["superpixels"] if hpcl is not None and hpcl.enabled else []
    train_ds = PreparedDataset(data, data.sample_indices(chosen), extras=extras)
    val_ds = PreparedDataset(data, data.sample_indices(val_groups))
    extra = {k: v for k, v in budget.items() if k != "budget"}  # e.g. the labeled subjects of an MRI run
    record = {
        "method": method,
        **domain.run_record(spec),
        "budget": budget["budget"],
        "seed": run.seed,
        "label_seed": run.label_seed,
        "labeled": chosen,
        **extra,
        "init": None if cfg.init is None else str(cfg.init),
        "initialised_tensors": len(pretrained),
    }
    task_cls, task_kwargs = SegmentationTask, {}
    if hpcl is not None and hpcl.enabled:
        task_cls, task_kwargs = hyperpixel_task(hpcl, data, cfg)
        record["hpcl"] = dataclasses.asdict(hpcl)
    if cfg.semi.enabled:
        task_cls, task_kwargs, record["semi"] = semi_task(cfg, data, chosen, net, task_cls, task_kwargs)
        record["method"] = semi_method_name(method, cfg.semi.mode)
    return fit_segmentation(
        cfg,
        run,
        net=net,
        network=spec,
        data=data,
        train_ds=train_ds,
        val_ds=val_ds,
        val_metric=domain.val_metric,
        run_record=record,
        augment=domain.finetune_augment(data),
        pretrained=pretrained,
        task_cls=task_cls,
        task_kwargs=task_kwargs,
        domain=domain.name,
        preprocessing=domain.preprocessing_record(data.manifest),
    )


def semi_method_name(method: str, mode: str) -> str:
    """The method name of a run with a semi-supervised mode: ``<init method>+<mode>`` (none+fixmatch,
    GD+LR+unimatch), as the report names and pairs it (docs/semi_supervised.md)."""
    return method if method.endswith(f"+{mode}") else f"{method}+{mode}"


def semi_task(
    cfg: FinetuneConfig,
    data: PreparedData,
    chosen: list[str],
    net: SegmentationNetwork,
    task_cls: type,
    task_kwargs: dict[str, Any],
) -> tuple[type, dict[str, Any], dict[str, Any]]:
    """The semi-supervised variant of the task (``--semi``), its keyword arguments and the run
    record's ``semi`` entry (every option, the resolved loss and contrastive weight, the size of
    the unlabeled stream)."""
    from segcore.semi import build_semi_mode
    from segcore.tasks.semi_segmentation import semi_task_class

    mode = build_semi_mode(cfg.semi, data, chosen, net, cfg.batch_size)
    record = {
        **dataclasses.asdict(cfg.semi),
        "loss": cfg.semi.unlabeled_loss,
        "contrast_weight": cfg.semi.contrast,
        "unlabeled_batch": mode.batch_size,
        "unlabeled_samples": len(mode.unlabeled),
    }
    return semi_task_class(task_cls), {**task_kwargs, "semi": mode}, record


def hyperpixel_task(hpcl: HyperPixelConfig, data: PreparedData, cfg: FinetuneConfig) -> tuple[type, dict[str, Any]]:
    """The task class and keyword arguments of fine-tuning with the class-aware hyper-pixel term."""
    from segcore.tasks.hyperpixel_segmentation import HyperPixelSegmentationTask

    if hpcl.queue <= 0 or hpcl.temperature <= 0 or hpcl.anchors <= 0 or not 0 <= hpcl.boundary_fraction <= 1:
        raise InputError(
            None, "need --hpcl-queue, --hpcl-temperature, --hpcl-anchors > 0 and --hpcl-boundary-fraction in [0, 1]"
        )
    if hpcl.unlabeled_anchors > 0 and hpcl.unlabeled <= 0:
        raise InputError(
            None,
            "--hpcl-unlabeled-anchors needs --hpcl-unlabeled > 0 (the unlabeled tiles per step they are drawn from)",
        )
    kwargs: dict[str, Any] = {f"hpcl_{k}": v for k, v in dataclasses.asdict(hpcl).items()}
    # the second view of unlabeled samples jitters the spectral bands only, as hyper-pixel pretraining does by default
    kwargs["hpcl_jitter_channels"] = data.spectral_channels
    if hpcl.unlabeled > 0:
        pool = data.sample_indices(data.split_groups("unlabeled"))
        if len(pool) == 0:
            raise InputError(cfg.data, "--hpcl-unlabeled needs samples in the 'unlabeled' split")
        kwargs["hpcl_unlabeled_data"] = PreparedDataset(data, pool, with_label=False, extras=["superpixels"])
    return HyperPixelSegmentationTask, kwargs


def fit_segmentation(
    cfg: FinetuneConfig,
    run: SeedRun,
    *,
    net: SegmentationNetwork,
    network: dict[str, Any],
    data: PreparedData,
    train_ds: PreparedDataset,
    val_ds: PreparedDataset,
    val_metric: str,
    run_record: dict[str, Any],
    augment: Any = None,
    pretrained: list[str] | None = None,
    task_cls: type = SegmentationTask,
    task_kwargs: dict[str, Any] | None = None,
    domain: str | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a :class:`~segcore.tasks.segmentation.SegmentationTask`, keep the best validation
    weights and write ``model.pt``, ``train.json``, ``config.yaml`` and ``logs/`` into
    ``run.out`` atomically. Resumes from the resume folder of ``run.out`` when a checkpoint is
    there. ``preprocessing``: the domain's preprocessing record, stored in ``model.pt`` for
    prediction from raw files. Returns the train record (on every rank; only rank 0 writes)."""
    if not 0.0 <= cfg.weight_ema < 1.0:
        raise InputError(None, f"--weight-ema must lie in [0, 1), got {cfg.weight_ema}")
    if cfg.pretrained_lr_scale <= 0:
        raise InputError(None, f"--pretrained-lr-scale must be > 0, got {cfg.pretrained_lr_scale}")
    task = task_cls(
        net,
        data.num_classes,
        ignore_index=data.ignore_index,
        lr=cfg.lr,
        val_metric=val_metric,
        max_steps=cfg.steps,
        augment=augment,
        seed=run.seed,
        weight_ema=cfg.weight_ema,
        pretrained=pretrained or (),
        pretrained_lr_scale=cfg.pretrained_lr_scale,
        **(task_kwargs or {}),
    )
    t0 = time.perf_counter()
    rt = resolve_runtime(cfg.runtime)
    val_every = min(cfg.val_every, cfg.steps)
    arguments = seed_arguments(cfg, run)
    shaping = {k: v for k, v in arguments.items() if k not in RUNTIME_OPTIONS}
    trainer = resumable_trainer(run.out, cfg.runtime, shaping, cfg.steps, val_every=val_every)
    train_loader = step_loader(
        train_ds,
        cfg.batch_size,
        cfg.steps,
        run.seed,
        rt.workers,
        start_step=resume_step(run.out),
        pin_memory=rt.pin_memory,
    )
    fit_resumable(
        trainer, task, train_loader, eval_loader(val_ds, cfg.val_batch_size, rt.workers, rt.pin_memory), run.out
    )
    if task.best_state is None:
        raise RuntimeError("validation never produced a score; check the validation split")
    record = {
        **run_record,
        "domain": data.manifest.get("domain"),
        f"best_val_{val_metric}": task.best_score,
        "best_step": task.best_step,
        "steps": cfg.steps,
        "train_samples": len(train_ds),
        "history": task.history,
        "wall_seconds": time.perf_counter() - t0,
        "processes": trainer.world_size,
    }
    if not trainer.is_global_zero:
        return record
    net.load_state_dict(task.best_state)
    data_record = {k: data.manifest[k] for k in ("classes", "channels", "image_size") if k in data.manifest}
    if "normalization" in data.manifest:
        data_record["normalization"] = data.manifest["normalization"]
    if preprocessing is not None:  # what prediction needs to process raw inputs as the training data
        data_record["preprocessing"] = preprocessing
    with stage_outputs(run.out) as tmp:
        save_checkpoint(
            tmp / "model.pt",
            net,
            network,
            stage="finetune",
            method=run_record["method"],
            pretrained=[],
            run={**run_record, "selection": selection_record(task.history, task.best_step, cfg.steps)},
            data=data_record,
            domain=domain,
        )
        write_json(tmp / "train.json", record)
        write_yaml(tmp / "config.yaml", arguments)
    log.info("best validation %s %.4f at step %d; wrote %s", val_metric, task.best_score, task.best_step, run.out)
    return record
