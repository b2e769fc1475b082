"""Network builders by name: a checkpoint's ``network`` spec (``{"name": ..., **kwargs}``)
rebuilds its network with :func:`build_network`.

A builder is registered as a callable or as a ``"module:function"`` reference imported on first
use (the MRI U-Net needs MONAI, about 3 s per process, which remote-sensing jobs never pay).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from segcore.errors import InputError
from segcore.networks.base import SegmentationNetwork

Builder = Callable[..., SegmentationNetwork]
_BUILDERS: dict[str, Builder | str] = {"unet2d": "segcore.networks.unet:build_unet2d"}


def register_network(name: str, builder: Builder | str) -> None:
    """Make ``build_network({"name": name, **kwargs})`` call ``builder(**kwargs)``."""
    current = _BUILDERS.get(name)
    if current is not None and current is not builder:
        raise ValueError(f"network name {name!r} is registered already")
    _BUILDERS[name] = builder


def network_names() -> list[str]:
    return sorted(_BUILDERS)


def _builder(name: str) -> Builder:
    ref = _BUILDERS[name]
    if isinstance(ref, str):
        module, _, attr = ref.partition(":")
        ref = getattr(importlib.import_module(module), attr)
        _BUILDERS[name] = ref
    return ref


def build_network(spec: Mapping[str, Any], source: Any = None) -> SegmentationNetwork:
    """The network a spec describes. ``source`` (a checkpoint path) names the file in errors."""
    name = spec.get("name")
    if name not in _BUILDERS:
        raise InputError(source, f"unknown network {name!r} (known: {network_names()})")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    try:
        return _builder(str(name))(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(source, f"network spec {dict(spec)} does not build: {err}") from err
