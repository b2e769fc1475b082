"""Pretraining strategies, one module each, registered by name.

A strategy (:class:`~segcore.strategies.base.PretrainStrategy`) brings its views, its batches,
its loss and its heads; :class:`~segcore.tasks.pretrain.PretrainTask` runs any of them. Adding
a method is one module under ``segcore/strategies/``, one line in ``STRATEGIES`` and its tests.
"""

from __future__ import annotations

import importlib

from segcore.strategies.base import PretrainStrategy

# name -> "module:class"; imported on first use
STRATEGIES: dict[str, str] = {
    "GR": "segcore.strategies.gr:GRStrategy",
    "GD-": "segcore.strategies.gd_minus:GDMinusStrategy",
    "GD": "segcore.strategies.gd:GDStrategy",
    "LR": "segcore.strategies.lr:LRStrategy",
    "LD": "segcore.strategies.ld:LDStrategy",
    "hpcl": "segcore.strategies.hyperpixel_ssl:HyperPixelSSLStrategy",
    # the generic baselines (docs/ssl_baselines.md)
    "mocov2": "segcore.strategies.mocov2:MoCoV2Strategy",
    "byol": "segcore.strategies.byol:BYOLStrategy",
    "densecl": "segcore.strategies.densecl:DenseCLStrategy",
    "detcon": "segcore.strategies.detcon:DetConStrategy",
}


def strategy_class(name: str) -> type[PretrainStrategy]:
    """The strategy registered as ``name``; ValueError names the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown pretraining strategy {name!r} (known: {sorted(STRATEGIES)})")
    module, _, attr = STRATEGIES[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if cls.name != name:
        raise RuntimeError(f"{STRATEGIES[name]} is registered as {name!r} but names itself {cls.name!r}")
    return cls


__all__ = ["STRATEGIES", "PretrainStrategy", "strategy_class"]
