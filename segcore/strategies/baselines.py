"""The generic self-supervised baselines (docs/ssl_baselines.md) built from a domain's options,
the same way for MRI and remote sensing: ``medseg pretrain --method M`` and ``rs pretrain
--method M`` map their options to :class:`BaselineSettings`, and :func:`build_baseline` checks
them (one-line :class:`~segcore.errors.InputError` naming the option) and builds the strategy.

Options left unset (None) take the method's published value: MoCo v2 and DenseCL K = 65,536,
m = 0.999, T = 0.2; BYOL τ = 0.99 (→ 1); DetCon T = 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segcore.errors import InputError
from segcore.networks import SegmentationNetwork
from segcore.strategies import strategy_class
from segcore.strategies.base import PretrainStrategy
from segcore.strategies.masks import MaskSource
from segcore.strategies.ssl_views import ViewOptions

BASELINES = ("mocov2", "byol", "densecl", "detcon")
# the weights each baseline trains, as checkpoint prefixes fine-tuning loads
PRETRAINED = {
    "mocov2": ["encoder."],
    "byol": ["encoder."],
    "densecl": ["encoder."],
    "detcon": ["encoder.", "decoder."],
}


@dataclass(frozen=True)
class BaselineSettings:
    """What a domain's options say about a baseline run (None: the method's default)."""

    method: str
    steps: int
    batch_size: int
    views: ViewOptions
    queue_size: int | None = None
    momentum: float | None = None
    temperature: float | None = None
    proj_hidden: int = 256
    proj_dim: int = 128
    dense_weight: float = 0.5
    dense_grid: int | None = None
    n_masks: int = 16
    masks: MaskSource = MaskSource()


def settings_from_config(cfg: Any, batch_size: int, views: ViewOptions, auto_masks: str) -> BaselineSettings:
    """The settings of a domain's pretraining config (``--method``, ``--steps``, the options of
    :class:`segcore.config.ContrastivePretrainConfig`, ``--masks`` ``--n-segments``
    ``--compactness``); ``--masks auto`` means ``auto_masks`` (the domain's: SLIC computed at the
    start for MRI slices, the stored superpixels for tiles)."""
    masks = MaskSource(
        kind=auto_masks if cfg.masks == "auto" else cfg.masks,
        n_segments=cfg.n_segments,
        compactness=cfg.compactness,
        fh_scale=cfg.fh_scale,
    )
    return BaselineSettings(
        method=cfg.method,
        steps=cfg.steps,
        batch_size=batch_size,
        views=views,
        queue_size=cfg.queue_size,
        momentum=cfg.momentum,
        temperature=cfg.temperature,
        proj_hidden=cfg.proj_hidden,
        proj_dim=cfg.proj_dim,
        dense_weight=cfg.dense_weight,
        dense_grid=cfg.dense_grid,
        n_masks=cfg.n_masks,
        masks=masks,
    )


def check_settings(s: BaselineSettings) -> None:
    """InputError (one line, naming the option) for a value no baseline can run with."""
    if s.method not in BASELINES:
        raise InputError(None, f"--method {s.method!r} is not a baseline (known: {', '.join(BASELINES)})")
    problems = [
        (s.queue_size is not None and s.queue_size <= 0, f"--queue-size must be > 0, got {s.queue_size}"),
        (s.momentum is not None and not 0.0 <= s.momentum <= 1.0, f"--momentum must lie in [0, 1], got {s.momentum}"),
        (s.temperature is not None and s.temperature <= 0, f"--temperature must be > 0, got {s.temperature}"),
        (s.batch_size < 2, f"--batch-size must be >= 2 (contrastive batches), got {s.batch_size}"),
        (not 0.0 <= s.dense_weight <= 1.0, f"--dense-weight must lie in [0, 1], got {s.dense_weight}"),
        (s.dense_grid is not None and s.dense_grid < 1, f"--dense-grid must be >= 1, got {s.dense_grid}"),
        (s.n_masks < 1, f"--n-masks must be >= 1, got {s.n_masks}"),
        (s.proj_hidden < 1 or s.proj_dim < 1, "--proj-hidden and --proj-dim must be >= 1"),
    ]
    for bad, message in problems:
        if bad:
            raise InputError(None, message)


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def build_baseline(
    net: SegmentationNetwork, image_size: Sequence[int], s: BaselineSettings
) -> tuple[PretrainStrategy, dict[str, Any], list[str]]:
    """The strategy of ``s.method`` for ``net``, the train.json entries that describe it (the
    values it runs with, defaults resolved) and the checkpoint prefixes it pretrains."""
    check_settings(s)
    common = {"batch_size": s.batch_size, "views": s.views, "proj_hidden": s.proj_hidden, "proj_dim": s.proj_dim}
    cls = strategy_class(s.method)
    if s.method == "mocov2":
        strategy = cls(net, image_size, **common, **_given(K=s.queue_size, m=s.momentum, T=s.temperature))
    elif s.method == "densecl":
        strategy = cls(
            net,
            image_size,
            **common,
            dense_weight=s.dense_weight,
            grid=s.dense_grid,
            **_given(K=s.queue_size, m=s.momentum, T=s.temperature),
        )
    elif s.method == "byol":
        strategy = cls(net, image_size, steps=s.steps, **common, **_given(tau=s.momentum))
    else:
        strategy = cls(net, image_size, masks=s.masks, n_masks=s.n_masks, **common, **_given(T=s.temperature))
    train: dict[str, Any] = {"batch_size": s.batch_size, "crop_scale": s.views.crop_scale}
    for key, attr in (("queue_size", "K"), ("momentum", "m"), ("momentum", "tau"), ("temperature", "T")):
        if hasattr(strategy, attr):
            train[key] = getattr(strategy, attr)
    if s.method == "densecl":
        train.update(dense_weight=s.dense_weight, dense_grid=s.dense_grid)
    if s.method == "detcon":
        train.update(masks=s.masks.kind, n_masks=s.n_masks)
    return strategy, train, list(PRETRAINED[s.method])
