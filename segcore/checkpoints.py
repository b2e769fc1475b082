"""Model checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is a plain dict: ``format``, ``network`` (the builder's name and keyword
arguments), ``state_dict`` (the segmentation network only; projection heads g1/g2 are stored
apart under ``heads`` so that fine-tuning can drop them), ``pretrained`` (module prefixes that
were trained by a pretraining stage), ``data`` (classes, channels, image size, normalisation)
and ``stage`` / ``method`` strings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcore.errors import InputError
from segcore.outputs import atomic_file

FORMAT = "segpretrain-checkpoint/1"
log = logging.getLogger(__name__)


def save_checkpoint(path: str | Path, net: nn.Module, network: dict[str, Any], **record: Any) -> None:
    payload = {
        "format": FORMAT,
        "network": network,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **record,
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors differ by torch version
        raise InputError(path, f"not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(path, f"not a {FORMAT} checkpoint")
    return ckpt


def load_pretrained(
    net: nn.Module, ckpt: dict[str, Any], path: str | Path, skip_prefixes: tuple[str, ...] = ("head.",)
) -> list[str]:
    """Copy the checkpoint's pretrained weights into ``net``; heads are re-initialised.

    Only the modules named in ``ckpt["pretrained"]`` are taken (all of the state dict when
    the checkpoint is a fine-tuned model). Returns the loaded parameter names. A shape
    mismatch (e.g. other channel widths) is an :class:`InputError` naming the checkpoint.
    """
    prefixes = tuple(ckpt.get("pretrained") or ("",))
    own = net.state_dict()
    taken: dict[str, torch.Tensor] = {}
    for k, v in ckpt["state_dict"].items():
        if k.startswith(skip_prefixes) or not k.startswith(prefixes):
            continue
        if k not in own:
            raise InputError(path, f"checkpoint weight '{k}' does not exist in this network (other architecture?)")
        if own[k].shape != v.shape:
            raise InputError(
                path, f"checkpoint weight '{k}' has shape {tuple(v.shape)}, network expects {tuple(own[k].shape)}"
            )
        taken[k] = v
    if not taken:
        raise InputError(path, "checkpoint holds no weights usable by this network")
    net.load_state_dict(taken, strict=False)
    log.info("initialised %d tensors from %s (prefixes %s)", len(taken), path, list(prefixes))
    return sorted(taken)


def checkpoint_network(ckpt: dict[str, Any], path: str | Path, domain: Any) -> dict[str, Any]:
    """The network spec of a checkpoint, checked to be one of ``domain``'s networks
    (a :class:`segcore.domain.Domain`: its ``name``, ``title`` and ``network_names``)."""
    spec = ckpt.get("network")
    if not isinstance(spec, dict) or "name" not in spec:
        raise InputError(path, "checkpoint holds no network description ('network'); was it written by this pipeline?")
    saved = ckpt.get("domain") or (ckpt.get("data") or {}).get("domain")
    if (saved and saved != domain.name) or spec["name"] not in domain.network_names:
        article = "an" if domain.title[:1] in "AEFHILMNORSX" and domain.title.isupper() else "a"
        found = f"domain {saved!r}, network {spec['name']!r}" if saved else f"network {spec['name']!r}"
        raise InputError(path, f"is not {article} {domain.title} model ({found}); use the stages of its own domain")
    return spec
