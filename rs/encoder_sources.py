"""Named sources of pretrained encoder weights for the remote-sensing networks.

* ``imagenet``: the ImageNet weights segmentation-models-pytorch publishes for its encoder (on
  the Hugging Face hub, ``smp-hub/<encoder>.imagenet``) or timm's for a ``tu-`` encoder;
* ``ssl4eo-s12``: the SSL4EO-S12 Sentinel-2 weights TorchGeo publishes for ResNet-18/50.

Nothing is downloaded where the environment says offline (``HF_HUB_OFFLINE=1`` or
``SEGPRETRAIN_OFFLINE=1``; the tests and the demo run so) or the download fails: the error names
the source, the file to fetch and what to do with it (pass its path to ``--encoder-weights``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from segcore.encoder_weights import read_state_dict
from segcore.errors import InputError

NAMED_SOURCES = ("imagenet", "ssl4eo-s12")
# TorchGeo's SSL4EO-S12 weights (13 Sentinel-2 bands, MoCo) by encoder
SSL4EO_WEIGHTS = {"resnet18": "ResNet18_Weights.SENTINEL2_ALL_MOCO", "resnet50": "ResNet50_Weights.SENTINEL2_ALL_MOCO"}


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "SEGPRETRAIN_OFFLINE"))


def _unavailable(source: str, encoder: str, where: str, err: Exception | str) -> InputError:
    return InputError(
        source,
        f"the {source} weights of {encoder} are not on this machine and could not be fetched ({err}); download "
        f"{where} and pass the file's path to --encoder-weights",
    )


def _imagenet(encoder: str) -> dict[str, torch.Tensor]:
    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not hub_id:
            raise InputError("imagenet", f"timm has no pretrained weights for {encoder[3:]}")
        repo, filename, revision = hub_id, "model.safetensors", None
    else:
        from segmentation_models_pytorch.encoders import encoders

        settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")
        if settings is None:
            raise InputError("imagenet", f"segmentation-models-pytorch has no ImageNet weights for encoder {encoder}")
        repo, filename, revision = settings["repo_id"], "model.safetensors", settings.get("revision")
    where = f"https://huggingface.co/{repo}/resolve/{revision or 'main'}/{filename}"
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo, filename=filename, revision=revision, local_files_only=offline())
    except Exception as err:  # offline, no network, hub errors: all mean "not here"
        raise _unavailable("imagenet", encoder, where, type(err).__name__) from err
    return read_state_dict(path)


def _ssl4eo(encoder: str) -> dict[str, torch.Tensor]:
    if encoder not in SSL4EO_WEIGHTS:
        raise InputError("ssl4eo-s12", f"TorchGeo has SSL4EO-S12 weights for {sorted(SSL4EO_WEIGHTS)}, not {encoder}")
    try:
        import torchgeo.models as tgm
    except ImportError as err:
        raise _unavailable(
            "ssl4eo-s12", encoder, f"TorchGeo's {SSL4EO_WEIGHTS[encoder]}", "torchgeo is not installed"
        ) from err
    enum_name, member = SSL4EO_WEIGHTS[encoder].split(".")
    weights = getattr(getattr(tgm, enum_name), member)
    if offline():
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file():
            raise _unavailable("ssl4eo-s12", encoder, weights.url, "offline")
        return read_state_dict(cached)
    try:
        return dict(weights.get_state_dict(progress=False))
    except Exception as err:
        raise _unavailable("ssl4eo-s12", encoder, weights.url, type(err).__name__) from err


def encoder_state(source: str, encoder: str) -> dict[str, torch.Tensor]:
    """The state dict ``source`` names for an smp/timm ``encoder``: a file, or a named source."""
    if Path(source).is_file():
        return read_state_dict(source)
    if source == "imagenet":
        return _imagenet(encoder)
    if source == "ssl4eo-s12":
        return _ssl4eo(encoder)
    raise InputError(source, f"is neither a weights file nor a named source ({', '.join(NAMED_SOURCES)})")
