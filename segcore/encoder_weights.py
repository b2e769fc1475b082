"""Encoder weights from elsewhere (``--encoder-weights``): a state-dict file of a timm, smp or
TorchGeo encoder (or of this pipeline's own encoder), loaded into a network's encoder with its
first convolution adapted to the band count as segmentation-models-pytorch does.

Named sources (``imagenet``, ``ssl4eo-s12``) are resolved by the domain (:mod:`rs.encoder_sources`)
to such a state dict; this module only loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from segcore.errors import InputError

log = logging.getLogger(__name__)

# key prefixes of the usual checkpoint wrappers: Lightning ("model.", "net."), timm/TorchGeo
# ("backbone.", "encoder."), DDP ("module.")
WRAPPER_PREFIXES = ("module.", "model.", "net.", "backbone.", "encoder.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pt``/``.pth``/``.ckpt`` (``torch.load``, weights only; a nested
    ``state_dict`` or ``model`` entry is taken) or ``.safetensors`` file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and safetensors errors differ
        raise InputError(path, f"not a readable weights file ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model", "network"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and key != "network":
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "holds no state dict of tensors (a timm, smp or TorchGeo weights file is expected)")
    return dict(state)


def _strip_wrappers(state: Mapping[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with wrapper prefixes removed while that makes more of its keys match ``wanted``."""
    best = dict(state)
    for _ in range(3):
        scores = {}
        for prefix in WRAPPER_PREFIXES:
            stripped = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in best.items()}
            scores[prefix] = (len(set(stripped) & wanted), stripped)
        prefix, (score, stripped) = max(scores.items(), key=lambda item: item[1][0])
        if score <= len(set(best) & wanted):
            break
        best = stripped
    return best


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first-convolution weight (O, C, k, k) for ``in_channels`` inputs, as smp's
    ``patch_first_conv`` makes it: one channel = the sum over the pretrained channels; more
    channels = the pretrained ones repeated in turn, scaled by C / in_channels (so that the
    response to a constant input keeps its size)."""
    out_c, c, *k = weight.shape
    if in_channels == c:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    new = torch.empty(out_c, in_channels, *k, dtype=weight.dtype)
    for i in range(in_channels):
        new[:, i] = weight[:, i % c]
    return new * (c / in_channels)


def load_encoder_weights(encoder: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> list[str]:
    """Load ``state`` into ``encoder``: every tensor of the encoder must be found (after wrapper
    prefixes are stripped) with its shape, except a first convolution whose input channels differ,
    which is adapted (:func:`adapt_first_conv`). Tensors the encoder does not have (a classifier,
    stages the encoder's depth leaves out) are ignored. Returns the encoder's loaded keys."""
    own = encoder.state_dict()
    state = _strip_wrappers(state, set(own))
    taken: dict[str, torch.Tensor] = {}
    missing, wrong = [], []
    first_conv = next((k for k, v in own.items() if v.ndim == 4), None)
    for key, target in own.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue
            missing.append(key)
            continue
        value = state[key]
        if (
            key == first_conv
            and value.ndim == 4
            and value.shape[1] != target.shape[1]
            and value.shape[0] == target.shape[0]
        ):
            value = adapt_first_conv(value, target.shape[1])
        if value.shape != target.shape:
            wrong.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
            continue
        taken[key] = value.to(target.dtype)
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"shapes differ: {wrong[:2]}"
        raise InputError(
            source,
            f"these weights are of another architecture than the encoder ({detail}); {len(taken)} of {len(own)} "
            "tensors match",
        )
    encoder.load_state_dict(taken, strict=False)
    log.info("encoder weights from %s: %d tensors", source, len(taken))
    return sorted(taken)
