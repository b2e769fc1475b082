"""Evaluation, written once for both domains: each fine-tuned ``--model`` is checked against the
prepared data and scored by the domain (in the input's own space) into its ``--out``
(``metrics.json``, ``config.yaml``, the domain's predictions and overlays), atomically.

A workflow job scores every seed of a cell in one process: the imports cost more than scoring one
model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from segcore.checkpoints import checkpoint_network, read_checkpoint
from segcore.config import EvaluateConfig, to_record
from segcore.domain import Domain
from segcore.errors import InputError
from segcore.networks import SegmentationNetwork, build_network
from segcore.outputs import atomic_dir, write_json, write_yaml
from segcore.prepared import PreparedData, open_prepared
from segcore.runtime.devices import resolve_device

log = logging.getLogger(__name__)


def model_runs(cfg: EvaluateConfig) -> list[tuple[Path, Path]]:
    """``--model A B C --out a b c`` → (model, out) pairs. Checked up front, before any output is
    written: equal counts, every checkpoint a file, no output folder named twice."""
    models, outs = [Path(m) for m in cfg.model], [Path(o) for o in cfg.out]
    if len(models) != len(outs):
        raise InputError(
            None, f"{len(models)} --model checkpoint(s) but {len(outs)} --out folder(s): give one --out per --model"
        )
    for m in models:
        if not m.is_file():
            raise InputError(m, "model checkpoint not found")
    if len({o.resolve() for o in outs}) != len(outs):
        raise InputError(None, "the same --out folder is named more than once")
    return list(zip(models, outs, strict=True))


def load_model(
    path: Path, domain: Domain, device: torch.device | None = None
) -> tuple[SegmentationNetwork, dict[str, Any]]:
    """A fine-tuned model of ``domain`` in eval mode (on ``device``, default the CPU), and its
    checkpoint record. A pretraining checkpoint or another domain's model is an
    :class:`InputError` saying what to do."""
    ckpt = read_checkpoint(path)
    spec = checkpoint_network(ckpt, path, domain)
    stage = str(ckpt.get("stage", "finetune"))
    if stage.startswith("pretrain"):
        raise InputError(
            path,
            f"is a pretraining checkpoint ({ckpt.get('method')}); fine-tune it first "
            f"(`{domain.cli} finetune --init {path}`) and pass the fine-tuned model.pt",
        )
    net = build_network(spec, path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise InputError(path, "checkpoint holds no weights ('state_dict')")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(
            path, f"weights do not fit the network the checkpoint describes ({str(err).splitlines()[0]})"
        ) from err
    net.eval()
    if device is not None:
        net.to(device)
    return net, ckpt


def check_model_fits(ckpt: dict[str, Any], path: Path, data: PreparedData) -> None:
    spec = ckpt["network"]
    if spec.get("in_channels") != data.in_channels:
        raise InputError(path, f"model takes {spec.get('in_channels')} channels, data has {data.in_channels}")
    if spec.get("num_classes") != data.num_classes:
        raise InputError(path, f"model predicts {spec.get('num_classes')} classes, data has {data.num_classes}")


def run_evaluate(cfg: EvaluateConfig, domain: Domain) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    runs = model_runs(cfg)
    device = resolve_device(cfg.device)
    log.info("evaluating on %s", device)
    data = open_prepared(cfg.data, domain.name, domain.title)
    if not data.split_groups(cfg.split):
        raise InputError(cfg.data, f"split '{cfg.split}' is empty{domain.empty_split_reason(data, cfg.split)}")
    for model, out in runs:
        net, ckpt = load_model(model, domain, device)
        check_model_fits(ckpt, model, data)
        run = ckpt.get("run", {})
        with atomic_dir(out) as tmp:
            scores = domain.evaluate(net, ckpt, data, cfg, tmp)
            write_json(
                tmp / "metrics.json",
                {
                    "domain": domain.name,
                    "dataset": data.manifest.get("dataset", Path(cfg.data).name),
                    "split": cfg.split,
                    "method": run.get("method", ckpt.get("method", "none")),
                    **domain.run_record(ckpt["network"], run),
                    "budget": run.get("budget"),
                    "seed": run.get("seed"),
                    "label_seed": run.get(
                        "label_seed"
                    ),  # the labeled set: repeats of one set share it (docs/report.md)
                    **({"selection": run["selection"]} if isinstance(run.get("selection"), dict) else {}),
                    **scores,
                },
            )
            write_yaml(tmp / "config.yaml", {**to_record(cfg), "model": str(model), "out": str(out)})
