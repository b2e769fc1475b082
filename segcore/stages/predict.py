"""Prediction, written once for both domains: a fine-tuned model segments raw inputs, which the
domain reads and writes back in their own space (NIfTI affine, GeoTIFF CRS), atomically.

The inputs are processed exactly as the model's training data were: the preprocessing record
that fine-tuning stores in ``model.pt`` (``data.preprocessing``: what the domain's preprocess
stage recorded in its manifest, :meth:`segcore.domain.Domain.preprocessing_record`). A
checkpoint written before models carried it needs ``--data``, the prepared data it was trained
on; given with a newer checkpoint, ``--data`` must agree with the model's record.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from segcore.config import PredictConfig, to_record
from segcore.domain import Domain
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml
from segcore.prepared import open_prepared
from segcore.runtime.devices import resolve_device
from segcore.stages.evaluate import load_model

log = logging.getLogger(__name__)


def model_preprocessing(ckpt: dict[str, Any], cfg: PredictConfig, domain: Domain) -> dict[str, Any]:
    """The preprocessing to apply to the raw inputs: the checkpoint's record, or (``--data``)
    the prepared data's, checked against the record where the checkpoint has one."""
    recorded = (ckpt.get("data") or {}).get("preprocessing")
    if cfg.data is None:
        if not recorded:
            raise InputError(
                cfg.model,
                "the checkpoint carries no preprocessing record (fine-tuned before models stored it); pass --data "
                "with the prepared data folder the model was trained on",
            )
        return dict(recorded)
    manifest = open_prepared(cfg.data, domain.name, domain.title).manifest
    from_data = domain.preprocessing_record(manifest)
    if recorded:
        differ = sorted(k for k in recorded if k in from_data and from_data[k] != recorded[k])
        if differ:
            raise InputError(
                cfg.data,
                f"was not prepared like the model's training data ({', '.join(differ)} differ); leave out --data "
                "to use the model's own record",
            )
    else:
        size = (ckpt.get("data") or {}).get("image_size")
        if size is not None and list(size) != list(manifest["image_size"]):
            raise InputError(
                cfg.data, "prepared data and model disagree on the image size; pass the data the model was trained on"
            )
    return from_data


def run_predict(cfg: PredictConfig, domain: Domain) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    net, ckpt = load_model(cfg.model, domain, device)
    preprocessing = model_preprocessing(ckpt, cfg, domain)
    log.info("predicting on %s", device)
    with atomic_dir(cfg.out) as tmp:
        domain.predict(net, preprocessing, cfg, tmp)
        write_yaml(tmp / "config.yaml", to_record(cfg))
