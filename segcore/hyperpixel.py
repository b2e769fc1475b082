"""Hyper-pixel contrastive learning (HPCL) with a momentum encoder and queues: views and tasks.

This is OUR definition of the method (METHODS §4), after HPCL-Net (Zhou et al. 2023), whose
abstract names the design but not its details:

* **Hyper-pixel**: a superpixel (SLIC, computed once before training: ``superpixels.npy`` of
  ``rs preprocess``, :func:`slic_superpixels` for MRI slices). Its embedding is the mean over
  its pixels of the hypercolumn, i.e. every decoder output upsampled to the input size and
  concatenated (:func:`segcore.losses.hypercolumn_superpixel_embed`), then an MLP projection
  head (:class:`segcore.heads.HyperPixelProjectionHead`), L2-normalised.
* **Momentum encoder**: an EMA copy (``m``) of network + head, updated BEFORE the keys are
  computed; keys under ``no_grad``. The key network normalises with the BatchNorm running
  statistics copied from the online network (eval mode, ``key_batchnorm="running"``, the
  default): keys then carry no statistics of the current batch, which queue keys lack, so
  the positive cannot be told from the queue's negatives by batch statistics (the shortcut
  MoCo closes with shuffled BN). Option: batch statistics (``"batch"``) with the step's other
  keys as negatives too (``batch_negatives``), which closes the same shortcut another way
  (learns the pretext faster on toy data; no better downstream, docs/hpcl.md).
* **Queues**: ring buffers of keys, persistent in the Lightning checkpoint (a resumed run has
  the same queue and pointer), gathered across processes under DDP, enqueued AFTER the loss.

Two tasks use them:

* :class:`HyperPixelPretrainTask` (self-supervised, ``rs pretrain`` / ``medseg pretrain
  --method hpcl``): two views with geometric correspondence (:func:`correspondence_view`:
  the same random dihedral transform and crop applied to the image and to its superpixel map,
  photometric jitter on the chosen channels only), so a (tile, superpixel id) pair names the
  same ground in both views. Query = a hyper-pixel of view 1 (online encoder), positive key =
  the same hyper-pixel of view 2 (momentum encoder), negatives = the queue (+ the step's other
  keys) (MoCo InfoNCE, :func:`moco_info_nce`).
* :class:`HyperPixelSegmentationTask` (``rs finetune --hpcl-weight W``, the HPCL setting): the
  supervised segmentation loss plus ``W`` x a class-aware term: anchors are labeled hyper-pixels
  (majority label), over-sampled near class boundaries; one queue per class, every class
  including background; positives = same-class queue entries, negatives = the other classes;
  optional MoCHi negatives; the weight warms up linearly over ``hpcl_warmup`` steps.

Step order in both (and tested): queries -> ``ema_update`` -> keys (no grad) -> loss with the
queue as it was before this step -> enqueue this step's keys.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from torch.utils.data import Dataset

from segcore.heads import HyperPixelProjectionHead
from segcore.losses import HyperPixelContrastLoss, hypercolumn_superpixel_embed, sample_anchors
from segcore.momentum import ema_update, momentum_copy
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData, PreparedDataset
from segcore.queue import ClassQueues, MomentumQueue
from segcore.tasks import OPTIMIZER_KWARGS, SegmentationTask
from segcore.training import step_generator

# --------------------------------------------------------------------------- superpixels


def slic_superpixels(
    images: np.ndarray,
    n_segments: int,
    compactness: float = 0.5,
    indices: Sequence[int] | None = None,
    batch: int = 256,
) -> np.ndarray:
    """SLIC labels (n, H, W) int32, from 0 per image, of ``images[indices]`` ((N, C, H, W); all
    N images without ``indices``).

    Each image is standardised per channel first (zero mean, unit std over its pixels), so that
    ``compactness`` means the same for any intensity scale (``rs preprocess`` uses 0.5 on its
    standardised channels too). ``images`` may be a memory map: it is read ``batch`` images at
    a time.
    """
    from skimage.segmentation import slic

    idx = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    _, _, h, w = images.shape
    out = np.empty((len(idx), h, w), dtype=np.int32)
    for start in range(0, len(idx), batch):
        chunk = np.asarray(images[idx[start : start + batch]], dtype=np.float64)  # (b, C, H, W)
        mean = chunk.mean(axis=(2, 3), keepdims=True)
        std = chunk.std(axis=(2, 3), keepdims=True)
        chunk = (chunk - mean) / np.where(std > 1e-8, std, 1.0)
        for j, img in enumerate(chunk):
            out[start + j] = slic(
                np.moveaxis(img, 0, -1), n_segments=n_segments, compactness=compactness,
                channel_axis=-1, start_label=0, convert2lab=False,
            )
    return out


class SuperpixelDataset(PreparedDataset):
    """:class:`~segcore.prepared.PreparedDataset` whose samples also carry ``superpixels``
    (H, W) long, taken from an in-memory array (N, H, W) indexed like the prepared data (for
    superpixels computed at the start of a run rather than stored by preprocessing)."""

    def __init__(self, data: PreparedData, indices: Sequence[int], superpixels: np.ndarray, with_label: bool = False) -> None:
        super().__init__(data, indices, with_label=with_label)
        if superpixels.shape[0] != len(data):
            raise ValueError(f"superpixels hold {superpixels.shape[0]} maps, the data {len(data)} samples")
        self.superpixels = superpixels

    def __getitem__(self, k: int) -> dict[str, Any]:
        sample = super().__getitem__(k)
        sample["superpixels"] = torch.from_numpy(self.superpixels[int(self.indices[k])].astype(np.int64))
        return sample


# --------------------------------------------------------------------------- views


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform k in 0..7 of the square's symmetry group on the last two axes: rotate by
    ``k % 4`` quarter turns, then transpose when ``k >= 4`` (exact: only indexing)."""
    out = torch.rot90(x, k % 4, dims=(-2, -1))
    return out.transpose(-2, -1) if k >= 4 else out


def correspondence_view(
    x: torch.Tensor,
    superpixels: torch.Tensor,
    g: torch.Generator,
    *,
    dihedral_transforms: bool = True,
    crop_scale: tuple[float, float] | None = None,
    jitter_channels: Sequence[int] | None = None,
    brightness: float = 0.2,
    contrast: tuple[float, float] = (0.8, 1.2),
    noise_std: float = 0.05,
    drop_channels: Sequence[int] | None = None,
    drop_prob: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random view of ``x`` (B, C, H, W) and of its superpixel map (B, H, W), geometry shared.

    Per image: a dihedral transform k in 0..7 (:func:`dihedral`; 0..3 as rotations by 0 and 180
    degrees and flips only when H != W), then with ``crop_scale`` a random square box of side
    s in [lo, hi] of the image resized back (image bilinear, superpixels nearest, ids unchanged:
    ids cut off by the box are simply absent from the view). Then per image and per jittered
    channel a gain U(contrast) about the channel mean and a shift U(-brightness, brightness) (in
    the data's units, standardised for rs), plus Gaussian noise of std U(0, noise_std); channels
    not in ``jitter_channels`` (default: all) are left as they are. (Left-alone channels are
    identical in both views up to geometry: the terrain channels alone let a hyper-pixel find
    its positive among thousands; docs/hpcl.md.) Last, with ``drop_prob`` > 0, each image's
    ``drop_channels`` are all set to 0 (the mean of a standardised channel) with probability
    ``drop_prob`` (modality dropout): a view without terrain must find its positive in a view
    with it from the spectra alone. With ``drop_prob`` 0 no random number is drawn for it.
    Returns (view (B, C, H, W), superpixels (B, H, W) long, k (B,) long).
    """
    b, c, h, w = x.shape
    dev = x.device
    sp = superpixels.to(dev).long()
    n_k = (8 if h == w else 4) if dihedral_transforms else 1
    ks = torch.randint(0, n_k, (b,), generator=g)  # (B,)
    xs, sps = torch.empty_like(x), torch.empty_like(sp)
    for k in ks.unique().tolist():
        sel = (ks == k).nonzero(as_tuple=True)[0].to(dev)
        if h == w:
            xs[sel], sps[sel] = dihedral(x[sel], k), dihedral(sp[sel], k)
        else:  # k bit 0: flip rows, bit 1: flip columns
            dims = [d for d, bit in ((-2, 1), (-1, 2)) if k & bit]
            xs[sel], sps[sel] = (x[sel].flip(dims), sp[sel].flip(dims)) if dims else (x[sel], sp[sel])
    if crop_scale is not None and crop_scale[0] < 1.0:
        s = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * torch.rand(b, generator=g)  # (B,) side fraction
        t = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - s)[:, None]  # (B, 2) box centre, normalised
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = s, s, t
        grid = F.affine_grid(theta.to(dev), [b, 1, h, w], align_corners=False)  # (B, H, W, 2) float32
        # the outermost sample points may lie up to half a pixel beyond the edge pixels' centres:
        # border padding keeps them on the image (zeros would darken the rim)
        xs = F.grid_sample(xs, grid.to(xs.dtype), mode="bilinear", padding_mode="border", align_corners=False)
        # ids as float32 are exact below 2**24; nearest keeps them ids
        sps = F.grid_sample(sps[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)[:, 0].round().long()
    channels = list(range(c)) if jitter_channels is None else list(jitter_channels)
    if channels:
        idx = torch.tensor(channels, device=dev)
        part = xs.index_select(1, idx)  # (B, c_j, H, W)
        n_c = len(channels)
        gain = contrast[0] + (contrast[1] - contrast[0]) * torch.rand(b, n_c, 1, 1, generator=g)
        shift = (torch.rand(b, n_c, 1, 1, generator=g) * 2 - 1) * brightness
        mean = part.mean(dim=(2, 3), keepdim=True)  # (B, c_j, 1, 1)
        part = (part - mean) * gain.to(part) + mean + shift.to(part)
        if noise_std > 0:
            sd = noise_std * torch.rand(b, 1, 1, 1, generator=g)
            part = part + sd.to(part) * torch.randn(part.shape, generator=g).to(part)
        xs = xs.index_copy(1, idx, part)
    if drop_prob > 0 and drop_channels:
        drop = (torch.rand(b, generator=g) < drop_prob).to(dev)  # (B,)
        keep = torch.ones(b, c, 1, 1, dtype=xs.dtype, device=dev)
        keep[:, list(drop_channels)] = (~drop).to(xs.dtype)[:, None, None, None]
        xs = xs * keep
    return xs, sps, ks


def match_hyperpixels(
    batch_a: torch.Tensor, id_a: torch.Tensor, batch_b: torch.Tensor, id_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i_a, i_b), each (P,), of the hyper-pixels present in both views, such that
    ``(batch_a[i_a], id_a[i_a]) == (batch_b[i_b], id_b[i_b])``. Both inputs sorted by
    (image, id), as :func:`~segcore.losses.hypercolumn_superpixel_embed` returns them."""
    n = int(torch.cat([id_a, id_b]).max().clamp(min=0)) + 1 if id_a.numel() + id_b.numel() else 1
    key_a, key_b = batch_a * n + id_a, batch_b * n + id_b  # (P_a,), (P_b,) sorted
    common = key_a[torch.isin(key_a, key_b)]
    return torch.searchsorted(key_a, common), torch.searchsorted(key_b, common)


# --------------------------------------------------------------------------- hyper-pixels


class HyperPixels(NamedTuple):
    """Hyper-pixels of a batch, sorted by (image, superpixel id); P rows each."""

    emb: torch.Tensor  # (P, sum C_i) mean hypercolumns (before the projection head)
    batch_idx: torch.Tensor  # (P,) image index in the batch
    sp_id: torch.Tensor  # (P,) superpixel id within its image
    majority: torch.Tensor | None  # (P,) majority label (ignore_index where none); None unlabeled
    boundary: torch.Tensor  # (P,) bool: touches another class


def decoder_maps(net: SegmentationNetwork, x: torch.Tensor) -> list[torch.Tensor]:
    """Every decoder output, coarse to fine, each (B, C_i, h_i, w_i): the hypercolumn parts
    (:meth:`~segcore.networks.SegmentationNetwork.decoder_features`)."""
    return net.decoder_features(x)


def hypercolumn_dim(net: SegmentationNetwork) -> int:
    """Width of the hypercolumn of ``net``: the sum of its decoder widths."""
    return net.hypercolumn_channels


def hyperpixels(
    features: list[torch.Tensor], superpixels: torch.Tensor, labels: torch.Tensor | None = None, ignore_index: int = 255
) -> HyperPixels:
    """:func:`~segcore.losses.hypercolumn_superpixel_embed` as a :class:`HyperPixels`."""
    return HyperPixels(*hypercolumn_superpixel_embed(features, superpixels, labels, ignore_index))


# --------------------------------------------------------------------------- self-supervised task


def moco_info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float, batch_negatives: bool = True
) -> torch.Tensor:
    """MoCo InfoNCE of queries ``q`` (N, D) with positive keys ``k`` (N, D) (row i of k is the
    positive of row i of q) and negatives = the ``queue`` (K, D), plus with ``batch_negatives``
    the other N - 1 keys of this step. Inputs are L2-normalised here; keys and queue detached.

    Without ``batch_negatives`` this equals ``HyperPixelContrastLoss("ssl")`` (tested). With them,
    a shortcut closes: every key of this step shares the batch it was computed in, the queue's
    keys do not, so a model could tell the positive from queue negatives by batch statistics
    alone (MoCo's reason for shuffled BatchNorm); other keys of the same batch share them too.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach().to(q.dtype), dim=1)
    queue = F.normalize(queue.detach().to(q.dtype), dim=1)
    n = q.shape[0]
    parts = [torch.einsum("nd,nd->n", q, k)[:, None]]  # (N, 1): the positives, at index 0
    if batch_negatives:
        own = torch.eye(n, dtype=torch.bool, device=q.device)
        parts.append(torch.einsum("nd,md->nm", q, k).masked_fill(own, float("-inf")))  # (N, N)
    parts.append(torch.einsum("nd,kd->nk", q, queue))  # (N, K)
    # one dense (N, 1 [+ N] + K) logit matrix and cross-entropy, as in MoCo: no (N, K) masks
    logits = torch.cat(parts, dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=q.device))


class HyperPixelPretrainTask(L.LightningModule):
    """Self-supervised hyper-pixel contrast (MoCo over hyper-pixels; our HPCL definition).

    ``net``: a segmentation network with ``encode``/``decode`` (its own ``head`` is not trained
    here); ``head``: the projection head on hypercolumns (in_dim = :func:`hypercolumn_dim`).
    Batches need ``image`` (B, C, H, W) and ``superpixels`` (B, H, W). Hyper-parameters named as
    in MoCo: ``K`` queue length, ``m`` EMA momentum, ``T`` temperature. ``max_anchors`` caps the
    hyper-pixels per step (random subset; 0 = all); the keys of those are enqueued.
    ``batch_negatives``: the step's other keys are negatives besides the queue
    (:func:`moco_info_nce`); ``key_batchnorm``: ``"batch"`` (key network in train mode) or
    ``"running"`` (eval mode). View options are those of :func:`correspondence_view`. The
    online and momentum networks, head and queue are module state: a Lightning checkpoint holds
    them all, and a resumed run continues with the same queue and pointer.
    """

    def __init__(
        self,
        net: nn.Module,
        head: nn.Module,
        K: int = 4096,
        m: float = 0.99,
        T: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_anchors: int = 0,
        batch_negatives: bool = False,
        key_batchnorm: str = "running",
        dihedral_transforms: bool = True,
        crop_scale: tuple[float, float] | None = None,
        jitter_channels: Sequence[int] | None = None,
        brightness: float = 0.2,
        contrast: tuple[float, float] = (0.8, 1.2),
        noise_std: float = 0.05,
        drop_channels: Sequence[int] | None = None,
        drop_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= m <= 1.0:
            raise ValueError(f"momentum m must lie in [0, 1], got {m}")
        self.net, self.head = net, head
        self.key_net, self.key_head = momentum_copy(net), momentum_copy(head)
        with torch.no_grad():
            dim = int(head(torch.zeros(2, hypercolumn_dim(net))).shape[1])
        self.queue = MomentumQueue(K, dim)
        self.loss = HyperPixelContrastLoss("ssl", temperature=T)
        if key_batchnorm not in ("batch", "running"):
            raise ValueError(f"key_batchnorm must be 'batch' or 'running', got {key_batchnorm!r}")
        self.m, self.lr, self.weight_decay, self.max_anchors = m, lr, weight_decay, max_anchors
        self.batch_negatives, self.key_batchnorm = batch_negatives, key_batchnorm
        self.view_options: dict[str, Any] = {
            "dihedral_transforms": dihedral_transforms, "crop_scale": None if crop_scale is None else tuple(crop_scale),
            "jitter_channels": None if jitter_channels is None else list(jitter_channels),
            "brightness": brightness, "contrast": tuple(contrast), "noise_std": noise_std,
            "drop_channels": None if drop_channels is None else list(drop_channels), "drop_prob": float(drop_prob),
        }
        self.seed = seed
        self.losses: list[float] = []

    def views(self, x: torch.Tensor, sp: torch.Tensor, g: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Two views (image, superpixels) of the batch with geometric correspondence."""
        v1 = correspondence_view(x, sp, g, **self.view_options)[:2]
        v2 = correspondence_view(x, sp, g, **self.view_options)[:2]
        return v1, v2

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, sp = batch["image"], batch["superpixels"]
        g = step_generator(self.seed, self.global_rank, self.global_step)
        (x1, sp1), (x2, sp2) = self.views(x, sp, g)
        with record_function("hpcl/queries"):
            hp_q = hyperpixels(decoder_maps(self.net, x1), sp1)
        with torch.no_grad(), record_function("hpcl/keys"):
            ema_update(self.key_net, self.net, self.m)  # before the keys: MoCo's order
            ema_update(self.key_head, self.head, self.m)
            self.key_net.train(self.key_batchnorm == "batch")
            hp_k = hyperpixels(decoder_maps(self.key_net, x2), sp2)
        i_q, i_k = match_hyperpixels(hp_q.batch_idx, hp_q.sp_id, hp_k.batch_idx, hp_k.sp_id)
        if self.max_anchors and i_q.numel() > self.max_anchors:
            pick = torch.randperm(i_q.numel(), generator=g)[: self.max_anchors].to(i_q.device)
            i_q, i_k = i_q[pick], i_k[pick]
        q = self.head(hp_q.emb[i_q])  # (P, D)
        with torch.no_grad():
            k = self.key_head(hp_k.emb[i_k])  # (P, D)
        with record_function("hpcl/queue_loss"):
            loss = moco_info_nce(q, k, self.queue.keys(), self.loss.T, self.batch_negatives)
        with record_function("hpcl/enqueue"):
            self.queue.enqueue(k)  # after the loss: this step's keys are no negatives of themselves
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=x.shape[0])
        self.log("train/hyperpixels", float(i_q.numel()), on_step=True, batch_size=x.shape[0])
        self.losses.append(float(loss.detach()))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hyperpixel_task"] = {"losses": self.losses}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.losses = list(checkpoint["hyperpixel_task"]["losses"])

    def trained_parameters(self) -> list[nn.Parameter]:
        """Encoder, decoder and projection head (the segmentation head is re-initialised later)."""
        skip = {id(p) for p in self.net.head.parameters()}
        return [p for p in self.net.parameters() if id(p) not in skip] + list(self.head.parameters())

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.trained_parameters(), lr=self.lr, weight_decay=self.weight_decay, **OPTIMIZER_KWARGS)


# --------------------------------------------------------------------------- supervised auxiliary term


def warmup_weight(weight: float, warmup: int, step: int) -> float:
    """``weight`` x min(1, (step + 1) / warmup): linear warm-up over ``warmup`` steps (0: none)."""
    if warmup <= 0:
        return weight
    return weight * min(1.0, (step + 1) / warmup)


class HyperPixelSegmentationTask(SegmentationTask):
    """:class:`~segcore.tasks.SegmentationTask` plus the class-aware hyper-pixel term (HPCL setting).

    loss = segmentation loss + ``warmup_weight(hpcl_weight, hpcl_warmup, step)`` x
    ``HyperPixelContrastLoss("sup")`` of ``hpcl_anchors`` labeled hyper-pixels (a fraction
    ``hpcl_boundary_fraction`` of them touching another class, see
    :func:`~segcore.losses.sample_anchors`) against :class:`~segcore.queue.ClassQueues` of
    ``hpcl_queue`` keys per class. Keys come from a momentum copy (``hpcl_momentum``) of net +
    projection head on the same augmented batch; at most ``hpcl_enqueue_per_class`` random keys
    per class are enqueued per step (so one batch of background does not flush its queue).
    ``hpcl_mochi`` > 0 adds that many MoCHi negatives per anchor. With ``hpcl_unlabeled`` > 0
    the class queues also receive keys of hyper-pixels of that many tiles per step drawn from
    ``hpcl_unlabeled_data`` (samples with ``image`` and ``superpixels``), pseudo-labeled by the
    momentum network where confident (``hpcl_pseudo_threshold``): the anchors (labeled) then meet
    positives and negatives from the unlabeled pool. With ``hpcl_unlabeled_anchors`` > 0 (needs
    ``hpcl_unlabeled``) up to that many of those pseudo-labeled hyper-pixels per class are
    anchors too: the online network sees a second view of the unlabeled tiles (a dihedral
    transform of image and superpixels, photometric jitter on ``hpcl_jitter_channels``), and the
    term pulls each such hyper-pixel toward its pseudo-class in the queues (the semi-supervised
    class-wise memory-bank contrast of Alonso et al. 2021), so the unlabeled pool shapes the
    online network and not only the queues. Batches need
    ``superpixels`` (B, H, W) besides ``image`` and ``label``; the spatial augmentation is applied
    to both with the same random draws. The momentum encoder, head and queues are module state,
    so they are in every Lightning (resume) checkpoint; the exported model is ``net`` alone.
    Other keyword arguments go to :class:`~segcore.tasks.SegmentationTask`.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        *,
        hpcl_weight: float = 0.2,
        hpcl_warmup: int = 0,
        hpcl_queue: int = 1024,
        hpcl_temperature: float = 0.1,
        hpcl_mochi: int = 0,
        hpcl_momentum: float = 0.99,
        hpcl_anchors: int = 256,
        hpcl_boundary_fraction: float = 0.5,
        hpcl_enqueue_per_class: int = 128,
        hpcl_proj_dim: int = 128,
        hpcl_proj_hidden: int = 256,
        hpcl_unlabeled: int = 0,
        hpcl_unlabeled_data: Dataset | None = None,
        hpcl_pseudo_threshold: float = 0.9,
        hpcl_unlabeled_anchors: int = 0,
        hpcl_jitter_channels: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, num_classes, **kwargs)
        if hpcl_unlabeled > 0 and (hpcl_unlabeled_data is None or len(hpcl_unlabeled_data) == 0):
            raise ValueError("hpcl_unlabeled > 0 needs a non-empty hpcl_unlabeled_data")
        if hpcl_unlabeled_anchors > 0 and hpcl_unlabeled <= 0:
            raise ValueError("hpcl_unlabeled_anchors > 0 needs hpcl_unlabeled > 0 (the unlabeled tiles they come from)")
        self.hpcl_head = HyperPixelProjectionHead(hypercolumn_dim(net), hpcl_proj_hidden, hpcl_proj_dim)
        self.key_net, self.key_head = momentum_copy(net), momentum_copy(self.hpcl_head)
        self.class_queues = ClassQueues(num_classes, hpcl_queue, hpcl_proj_dim)
        self.hpcl_loss = HyperPixelContrastLoss("sup", temperature=hpcl_temperature, mochi_hard=hpcl_mochi)
        self.hpcl_weight, self.hpcl_warmup, self.hpcl_momentum = hpcl_weight, hpcl_warmup, hpcl_momentum
        self.hpcl_anchors, self.hpcl_boundary_fraction = hpcl_anchors, hpcl_boundary_fraction
        self.hpcl_enqueue_per_class = hpcl_enqueue_per_class
        self.hpcl_unlabeled, self.hpcl_pseudo_threshold = hpcl_unlabeled, hpcl_pseudo_threshold
        self.hpcl_unlabeled_anchors = hpcl_unlabeled_anchors
        self.hpcl_jitter_channels = None if hpcl_jitter_channels is None else list(hpcl_jitter_channels)
        self.hpcl_unlabeled_data = hpcl_unlabeled_data  # a Dataset, not module state
        self.pseudo_enqueued = 0  # pseudo-labeled keys enqueued so far (a record, for the logs)

    def _augment(self, x: torch.Tensor, y: torch.Tensor, sp: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The task's spatial augmentation on image, label and superpixels with the same draws:
        the superpixel map goes through it as a label (nearest), on a clone of the generator;
        pixels from outside the image get id -1 (no hyper-pixel)."""
        if self.augment is None:
            return x, y, sp
        g_sp = torch.Generator(device=g.device)
        g_sp.set_state(g.get_state())
        sp_augment = copy.copy(self.augment)
        sp_augment.ignore_index = -1
        _, sp = sp_augment(x[:, :1], sp, g_sp)
        x, y = self.augment(x, y, g)
        return x, y, sp

    def _per_class_selection(self, labels: torch.Tensor, g: torch.Generator, per_class: int) -> torch.Tensor:
        """Indices of at most ``per_class`` random rows per class of ``labels`` (keys to enqueue,
        unlabeled anchors)."""
        keep = []
        for c in range(self.num_classes):
            idx = (labels == c).nonzero(as_tuple=True)[0]
            if idx.numel() > per_class:
                idx = idx[torch.randperm(idx.numel(), generator=g)[:per_class].to(idx.device)]
            keep.append(idx)
        return torch.cat(keep) if keep else labels.new_zeros(0)

    @torch.no_grad()
    def _pseudo_labeled(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Hyper-pixels of ``hpcl_unlabeled`` random unlabeled tiles (drawn with ``g``: a function
        of the step), pseudo-labeled by the momentum network: mean softmax over the hyper-pixel,
        kept where its top probability reaches ``hpcl_pseudo_threshold``. Returns their mean
        hypercolumns (n, C) from the momentum network, labels (n,), and the unlabeled batch
        (``image``, ``superpixels``) with the kept hyper-pixels' ``batch_idx`` and ``sp_id`` (n,)."""
        from segcore.training import collate_samples

        ds = self.hpcl_unlabeled_data
        picks = torch.randint(len(ds), (self.hpcl_unlabeled,), generator=g).tolist()
        batch = collate_samples([ds[i] for i in picks])
        x, sp = batch["image"].to(self.device), batch["superpixels"].to(self.device)
        feats = decoder_maps(self.key_net, x)
        probs = self.key_net.head(feats[-1]).float().softmax(dim=1)  # (B_u, K, H, W)
        hp = hyperpixels([*feats, probs], sp)  # hypercolumn, then the K mean probabilities
        conf, label = hp.emb[:, -self.num_classes :].max(dim=1)  # (P_u,)
        keep = conf >= self.hpcl_pseudo_threshold
        self.pseudo_enqueued += int(keep.sum())
        source = {"image": x, "superpixels": sp, "batch_idx": hp.batch_idx[keep], "sp_id": hp.sp_id[keep]}
        return hp.emb[keep, : -self.num_classes], label[keep], source

    def _unlabeled_anchors(self, source: dict[str, torch.Tensor], labels: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Online-network embeddings (n, D) and pseudo-labels (n,) of at most
        ``hpcl_unlabeled_anchors`` pseudo-labeled hyper-pixels per class, computed on a second
        view of the unlabeled tiles (dihedral transform, photometric jitter on
        ``hpcl_jitter_channels``); the view carries the superpixel map along, so ids still name
        the hyper-pixels the momentum network labeled."""
        x_v, sp_v, _ = correspondence_view(source["image"], source["superpixels"], g, jitter_channels=self.hpcl_jitter_channels)
        hp_u = hyperpixels(decoder_maps(self.net, x_v), sp_v)
        i_src, i_view = match_hyperpixels(source["batch_idx"], source["sp_id"], hp_u.batch_idx, hp_u.sp_id)
        labels = labels[i_src]
        pick = self._per_class_selection(labels, g, self.hpcl_unlabeled_anchors)
        return self.hpcl_head(hp_u.emb[i_view[pick]]), labels[pick]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, y, sp = batch["image"], batch["label"], batch["superpixels"]
        g = step_generator(self.seed, self.global_rank, self.global_step)
        x, y, sp = self._augment(x, y, sp, g)
        feats = decoder_maps(self.net, x)
        logits = self.net.head(feats[-1])  # (B, K, H, W)
        seg_loss = self.loss(logits, y)
        weight = warmup_weight(self.hpcl_weight, self.hpcl_warmup, int(self.global_step))
        hp = hyperpixels(feats, sp, y, self.ignore_index)
        labeled = (hp.majority != self.ignore_index).nonzero(as_tuple=True)[0]  # (P_l,)
        anchors = labeled[sample_anchors(hp.boundary[labeled], self.hpcl_anchors, self.hpcl_boundary_fraction, generator=g)]
        q = self.hpcl_head(hp.emb[anchors])  # (N, D)
        with torch.no_grad():
            ema_update(self.key_net, self.net, self.hpcl_momentum)  # before the keys
            ema_update(self.key_head, self.hpcl_head, self.hpcl_momentum)
            self.key_net.eval()
            hp_k = hyperpixels(decoder_maps(self.key_net, x), sp, y, self.ignore_index)
            k_labels = hp_k.majority[labeled]
            k_emb = hp_k.emb[labeled]  # (P_l, C)
            if self.hpcl_unlabeled > 0:
                u_emb, u_labels, u_source = self._pseudo_labeled(g)
                k_emb, k_labels = torch.cat([k_emb, u_emb]), torch.cat([k_labels, u_labels])
            chosen = self._per_class_selection(k_labels, g, self.hpcl_enqueue_per_class)
            keys = self.key_head(k_emb[chosen])  # (n, D)
        q_labels = hp.majority[anchors]
        if self.hpcl_unlabeled_anchors > 0:
            q_u, q_u_labels = self._unlabeled_anchors(u_source, u_labels, g)
            q, q_labels = torch.cat([q, q_u]), torch.cat([q_labels, q_u_labels])
        queue, queue_labels = self.class_queues.keys_and_labels()
        aux = self.hpcl_loss(q, labels=q_labels, queue=queue, queue_labels=queue_labels)
        self.class_queues.enqueue(keys, k_labels[chosen])  # after the loss; a collective under DDP
        loss = seg_loss + weight * aux
        n = len(logits)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/seg_loss", seg_loss, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/hpcl_loss", aux, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/hpcl_weight", weight, on_step=True, on_epoch=False, batch_size=n)
        if self.hpcl_unlabeled > 0:
            self.log("train/pseudo_enqueued", float(self.pseudo_enqueued), on_step=True, on_epoch=False, batch_size=n)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["hyperpixel_segmentation"] = {"pseudo_enqueued": self.pseudo_enqueued}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.pseudo_enqueued = int(checkpoint.get("hyperpixel_segmentation", {}).get("pseudo_enqueued", 0))

    def configure_optimizers(self) -> Any:
        # SegmentationTask's AdamW + cosine schedule, over the projection head as well
        opt = torch.optim.AdamW(self.param_groups(list(self.hpcl_head.parameters())), lr=self.lr, weight_decay=self.weight_decay, **OPTIMIZER_KWARGS)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_steps), eta_min=self.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_projection_head(net: nn.Module, hidden: int = 256, out_dim: int = 128) -> HyperPixelProjectionHead:
    """The projection head for ``net``'s hypercolumns (in_dim = :func:`hypercolumn_dim`)."""
    return HyperPixelProjectionHead(hypercolumn_dim(net), hidden, out_dim)


__all__ = [
    "HyperPixelPretrainTask", "HyperPixelSegmentationTask", "HyperPixels", "SuperpixelDataset", "build_projection_head",
    "correspondence_view", "decoder_maps", "dihedral", "hypercolumn_dim", "hyperpixels", "match_hyperpixels",
    "moco_info_nce", "slic_superpixels", "warmup_weight",
]
