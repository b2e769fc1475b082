"""Self-supervised hyper-pixel contrast (our HPCL definition, docs/hpcl.md): MoCo over
hyper-pixels, with a momentum encoder and a queue.

* **Views** with geometric correspondence (:func:`~segcore.views.correspondence_view`: the same
  random dihedral transform and crop applied to the image and to its superpixel map,
  photometric jitter on the chosen channels only), so a (image, superpixel id) pair names the
  same ground in both views.
* **Batches**: random images (drawn with replacement per step); superpixels from the prepared
  data (``superpixels.npy`` of ``rs preprocess``) or, where it has none (MRI slices), SLIC at the
  start of the run (:func:`~segcore.superpixels.slic_superpixels`).
* **Loss**: query = a hyper-pixel of view 1 (online network + head), positive key = the same
  hyper-pixel of view 2 (momentum network + head, no gradient), negatives = the queue (+ the
  step's other keys with ``batch_negatives``): :func:`~segcore.losses.queue_info_nce.queue_info_nce`.

Step order (tested): queries -> ``ema_update`` -> keys (no grad) -> loss with the queue as it
was before this step -> enqueue this step's keys. The key network normalises with the
BatchNorm running statistics copied from the online network (eval mode, ``key_batchnorm=
"running"``, the default): keys then carry no statistics of the current batch, which queue keys
lack, so the positive cannot be told from the queue's negatives by batch statistics (the
shortcut MoCo closes with shuffled BN). Option: batch statistics (``"batch"``) with the step's
other keys as negatives too (``batch_negatives``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.data import DataLoader

from segcore.errors import InputError
from segcore.hyperpixels import build_projection_head, hyperpixels, match_hyperpixels
from segcore.losses.queue_info_nce import queue_info_nce
from segcore.momentum import ema_update, momentum_copy
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData, PreparedDataset
from segcore.queue import MomentumQueue
from segcore.strategies.base import PretrainStrategy, random_loader
from segcore.superpixels import SuperpixelDataset, slic_superpixels
from segcore.tasks.optim import OPTIMIZER_KWARGS
from segcore.views import correspondence_view

log = logging.getLogger(__name__)


# defaults of K, m and T (docs/hpcl.md); the stages' --queue-size/--momentum/--temperature default to them
HPCL_QUEUE, HPCL_MOMENTUM, HPCL_TEMPERATURE = 4096, 0.99, 0.1


def queue_settings(cfg: Any) -> tuple[int, float, float]:
    """K, m and T of a pretraining config (``queue_size``, ``momentum``, ``temperature``), the
    HPCL defaults where it leaves them unset (None); an InputError for values no run can use."""
    K = HPCL_QUEUE if cfg.queue_size is None else cfg.queue_size
    m = HPCL_MOMENTUM if cfg.momentum is None else cfg.momentum
    T = HPCL_TEMPERATURE if cfg.temperature is None else cfg.temperature
    if K <= 0 or not 0.0 <= m <= 1.0 or T <= 0:
        raise InputError(None, "need --queue-size > 0, 0 <= --momentum <= 1 and --temperature > 0")
    return K, m, T


class HyperPixelSSLStrategy(PretrainStrategy):
    """``K`` queue length, ``m`` EMA momentum, ``T`` temperature (named as in MoCo);
    ``max_anchors`` caps the hyper-pixels per step (random subset; 0 = all), whose keys are
    enqueued; ``batch_size`` images per process and step. ``slic`` = (superpixels per image or
    None for one per 8x8 pixels, compactness) computes superpixels at the start of the run
    instead of reading the stored ones. View options are those of
    :func:`~segcore.views.correspondence_view`. Trains encoder, decoder and projection head
    (the segmentation head is re-initialised by fine-tuning)."""

    name = "hpcl"
    stage = "hyperpixel"

    def __init__(
        self,
        net: SegmentationNetwork,
        *,
        batch_size: int = 16,
        K: int = HPCL_QUEUE,
        m: float = HPCL_MOMENTUM,
        T: float = HPCL_TEMPERATURE,
        proj_hidden: int = 256,
        proj_dim: int = 128,
        weight_decay: float = 1e-4,
        max_anchors: int = 0,
        batch_negatives: bool = False,
        key_batchnorm: str = "running",
        slic: tuple[int | None, float] | None = None,
        dihedral_transforms: bool = True,
        crop_scale: tuple[float, float] | None = None,
        jitter_channels: Sequence[int] | None = None,
        brightness: float = 0.2,
        contrast: tuple[float, float] = (0.8, 1.2),
        noise_std: float = 0.05,
        drop_channels: Sequence[int] | None = None,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= m <= 1.0:
            raise ValueError(f"momentum m must lie in [0, 1], got {m}")
        if key_batchnorm not in ("batch", "running"):
            raise ValueError(f"key_batchnorm must be 'batch' or 'running', got {key_batchnorm!r}")
        self.head = build_projection_head(net, proj_hidden, proj_dim)
        self.key_net, self.key_head = momentum_copy(net), momentum_copy(self.head)
        with torch.no_grad():
            dim = int(self.head(torch.zeros(2, net.hypercolumn_channels)).shape[1])
        self.queue = MomentumQueue(K, dim)
        self.batch_size, self.T, self.m, self.weight_decay, self.max_anchors = (
            batch_size,
            T,
            m,
            weight_decay,
            max_anchors,
        )
        self.batch_negatives, self.key_batchnorm, self.slic = batch_negatives, key_batchnorm, slic
        self.view_options: dict[str, Any] = {
            "dihedral_transforms": dihedral_transforms,
            "crop_scale": None if crop_scale is None else tuple(crop_scale),
            "jitter_channels": None if jitter_channels is None else list(jitter_channels),
            "brightness": brightness,
            "contrast": tuple(contrast),
            "noise_std": noise_std,
            "drop_channels": None if drop_channels is None else list(drop_channels),
            "drop_prob": float(drop_prob),
        }

    def views(
        self, x: torch.Tensor, sp: torch.Tensor, g: torch.Generator
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Two views (image, superpixels) of the batch with geometric correspondence."""
        v1 = correspondence_view(x, sp, g, **self.view_options)[:2]
        v2 = correspondence_view(x, sp, g, **self.view_options)[:2]
        return v1, v2

    def loss(
        self, net: SegmentationNetwork, batch: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x, sp = batch["image"], batch["superpixels"]
        (x1, sp1), (x2, sp2) = self.views(x, sp, g)
        with record_function("hpcl/queries"):
            hp_q = hyperpixels(net.decoder_features(x1), sp1)
        with torch.no_grad(), record_function("hpcl/keys"):
            ema_update(self.key_net, net, self.m)  # before the keys: MoCo's order
            ema_update(self.key_head, self.head, self.m)
            self.key_net.train(self.key_batchnorm == "batch")
            hp_k = hyperpixels(self.key_net.decoder_features(x2), sp2)
        i_q, i_k = match_hyperpixels(hp_q.batch_idx, hp_q.sp_id, hp_k.batch_idx, hp_k.sp_id)
        if self.max_anchors and i_q.numel() > self.max_anchors:
            pick = torch.randperm(i_q.numel(), generator=g)[: self.max_anchors].to(i_q.device)
            i_q, i_k = i_q[pick], i_k[pick]
        q = self.head(hp_q.emb[i_q])  # (P, D)
        with torch.no_grad():
            k = self.key_head(hp_k.emb[i_k])  # (P, D)
        with record_function("hpcl/queue_loss"):
            negatives = len(self.queue) + (i_q.numel() - 1 if self.batch_negatives else 0)
            loss = queue_info_nce(q, k, self.queue.keys(), self.T, self.batch_negatives)
        with record_function("hpcl/enqueue"):
            self.queue.enqueue(k)  # after the loss: this step's keys are no negatives of themselves
        self.chance = math.log(1 + max(negatives, 0))
        return loss, {"hyperpixels": float(i_q.numel())}

    def trained_parameters(self, net: SegmentationNetwork) -> list[nn.Parameter]:
        """Encoder, decoder and projection head (the segmentation head is re-initialised later)."""
        skip = {id(p) for p in net.head.parameters()}
        return [p for p in net.parameters() if id(p) not in skip] + list(self.head.parameters())

    def optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay, **OPTIMIZER_KWARGS)

    def dataset(self, data: PreparedData, groups: list[str]) -> PreparedDataset:
        indices = data.sample_indices(groups)
        if self.slic is None:
            superpixels = data.extra("superpixels")  # InputError when preprocessing did not write it
            if superpixels.shape != data.labels.shape:
                raise InputError(
                    data.folder / "superpixels.npy",
                    f"shape {superpixels.shape} differs from the images' {data.labels.shape}",
                )
            return PreparedDataset(data, indices, with_label=False, extras=["superpixels"])
        t0 = time.perf_counter()
        h, w = data.manifest["image_size"]
        n_segments = self.slic[0] or max(1, (h // 8) * (w // 8))  # one per 8x8 pixels by default
        # once per run, before training: SLIC costs milliseconds per image, too much inside the loop
        superpixels = np.full((len(data), h, w), -1, dtype=np.int32)
        superpixels[indices] = slic_superpixels(data.images, n_segments, self.slic[1], indices)
        log.info("SLIC superpixels of %d images in %.1fs", len(indices), time.perf_counter() - t0)
        return SuperpixelDataset(data, indices, superpixels)

    def loader(
        self,
        data: PreparedData,
        groups: list[str],
        steps: int,
        seed: int,
        start_step: int,
        world: int,
        workers: int,
        pin_memory: bool,
    ) -> DataLoader:
        return random_loader(self.dataset(data, groups), self.batch_size, steps, seed, start_step, workers, pin_memory)

    def exported_heads(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "projection": self.head.state_dict(),
            "momentum_net": self.key_net.state_dict(),
            "momentum_projection": self.key_head.state_dict(),
            "queue": self.queue.state_dict(),
        }
