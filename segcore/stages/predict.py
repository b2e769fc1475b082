"""Prediction, written once for both domains: a fine-tuned model segments raw inputs, which the
domain reads and writes back in their own space (NIfTI affine, GeoTIFF CRS), atomically."""

from __future__ import annotations

import torch

from segcore.config import PredictConfig, to_record
from segcore.domain import Domain
from segcore.outputs import atomic_dir, write_yaml
from segcore.stages.evaluate import load_model


def run_predict(cfg: PredictConfig, domain: Domain) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    net, ckpt = load_model(cfg.model, domain)
    with atomic_dir(cfg.out) as tmp:
        domain.predict(net, ckpt, cfg, tmp)
        write_yaml(tmp / "config.yaml", to_record(cfg))
