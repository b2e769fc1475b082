"""Momentum (EMA) key encoder, as in MoCo: theta_k <- m * theta_k + (1 - m) * theta_q.

Call order in a training step (docs/hpcl.md; docs/ssl_baselines.md): ``ema_update`` first, then the keys with the
key model under ``torch.no_grad()``, then the loss, then enqueue the keys.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def momentum_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every parameter frozen (``requires_grad=False``).

    The copy starts equal to the model (MoCo initialises the key encoder from the query encoder)
    and is only ever changed by :func:`ema_update`.
    """
    key_model = copy.deepcopy(model)
    for p in key_model.parameters():
        p.requires_grad_(False)
    return key_model


@torch.no_grad()
def ema_update(key_model: nn.Module, query_model: nn.Module, m: float, average_buffers: bool = False) -> None:
    """In place: parameters theta_k <- m * theta_k + (1 - m) * theta_q; buffers copied.

    ``m = 0`` copies the query model exactly, ``m = 1`` leaves the key model unchanged. Buffers
    (BatchNorm running statistics, ``num_batches_tracked``) are copied rather than averaged: they
    are statistics of the data, not weights, and the key model never updates them itself when it
    runs in eval mode. ``average_buffers``: floating-point buffers are averaged like the
    parameters instead (a weight average for evaluation, as timm's ModelEmaV2; integer buffers
    are still copied).
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must lie in [0, 1], got {m}")
    k_params = dict(key_model.named_parameters())
    q_params = dict(query_model.named_parameters())
    if k_params.keys() != q_params.keys():
        raise ValueError("key and query models have different parameters")
    for name, p_k in k_params.items():
        # mul_ then add_ keeps m = 0 and m = 1 exact (lerp would round)
        p_k.mul_(m).add_(q_params[name].detach(), alpha=1.0 - m)
    k_bufs = dict(key_model.named_buffers())
    q_bufs = dict(query_model.named_buffers())
    if k_bufs.keys() != q_bufs.keys():
        raise ValueError("key and query models have different buffers")
    for name, b_k in k_bufs.items():
        if average_buffers and b_k.is_floating_point():
            b_k.mul_(m).add_(q_bufs[name].detach(), alpha=1.0 - m)
        else:
            b_k.copy_(q_bufs[name])


def ema_decay(m: float, step: int) -> float:
    """Momentum of a weight average at optimiser step ``step`` (0-based): min(m, (1 + step) / (10 +
    step)), the warm-up of timm's ModelEma, so that early averages are not dominated by the
    initial weights."""
    return min(m, (1.0 + step) / (10.0 + step))
