"""Supervised segmentation plus the class-aware hyper-pixel term (the HPCL setting; our
definition, docs/hpcl.md): anchors are labeled hyper-pixels (majority label), over-sampled near
class boundaries; one queue per class, every class including background; positives = same-class
queue entries, negatives = the other classes; optional MoCHi negatives; the weight warms up
linearly. Step order as in the self-supervised strategy: queries -> ``ema_update`` -> keys (no
grad) -> loss with the queues as they were -> enqueue.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from segcore.heads import HyperPixelProjectionHead
from segcore.hyperpixels import hyperpixels, match_hyperpixels, sample_anchors
from segcore.losses.hyperpixel import HyperPixelContrastLoss
from segcore.momentum import ema_update, momentum_copy
from segcore.networks import SegmentationNetwork
from segcore.queue import ClassQueues
from segcore.runtime.sampling import collate_samples
from segcore.runtime.seeds import step_generator
from segcore.tasks.optim import adamw_cosine
from segcore.tasks.segmentation import SegmentationTask, SupervisedStep
from segcore.views import correspondence_view


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
    :func:`~segcore.hyperpixels.sample_anchors`) against :class:`~segcore.queue.ClassQueues` of
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
        net: SegmentationNetwork,
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
        self.hpcl_head = HyperPixelProjectionHead(net.hypercolumn_channels, hpcl_proj_hidden, hpcl_proj_dim)
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

    def _augment(
        self, x: torch.Tensor, y: torch.Tensor, sp: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        ds = self.hpcl_unlabeled_data
        picks = torch.randint(len(ds), (self.hpcl_unlabeled,), generator=g).tolist()
        batch = collate_samples([ds[i] for i in picks])
        x, sp = batch["image"].to(self.device), batch["superpixels"].to(self.device)
        feats = self.key_net.decoder_features(x)
        probs = self.key_net.head(feats[-1]).float().softmax(dim=1)  # (B_u, K, H, W)
        hp = hyperpixels([*feats, probs], sp)  # hypercolumn, then the K mean probabilities
        conf, label = hp.emb[:, -self.num_classes :].max(dim=1)  # (P_u,)
        keep = conf >= self.hpcl_pseudo_threshold
        self.pseudo_enqueued += int(keep.sum())
        source = {"image": x, "superpixels": sp, "batch_idx": hp.batch_idx[keep], "sp_id": hp.sp_id[keep]}
        return hp.emb[keep, : -self.num_classes], label[keep], source

    def _unlabeled_anchors(
        self, source: dict[str, torch.Tensor], labels: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Online-network embeddings (n, D) and pseudo-labels (n,) of at most
        ``hpcl_unlabeled_anchors`` pseudo-labeled hyper-pixels per class, computed on a second
        view of the unlabeled tiles (dihedral transform, photometric jitter on
        ``hpcl_jitter_channels``); the view carries the superpixel map along, so ids still name
        the hyper-pixels the momentum network labeled."""
        x_v, sp_v, _ = correspondence_view(
            source["image"], source["superpixels"], g, jitter_channels=self.hpcl_jitter_channels
        )
        hp_u = hyperpixels(self.net.decoder_features(x_v), sp_v)
        i_src, i_view = match_hyperpixels(source["batch_idx"], source["sp_id"], hp_u.batch_idx, hp_u.sp_id)
        labels = labels[i_src]
        pick = self._per_class_selection(labels, g, self.hpcl_unlabeled_anchors)
        return self.hpcl_head(hp_u.emb[i_view[pick]]), labels[pick]

    def supervised_step(self, batch: dict[str, Any]) -> SupervisedStep:
        x, y, sp = batch["image"], batch["label"], batch["superpixels"]
        g = step_generator(self.seed, self.global_rank, self.global_step)
        x, y, sp = self._augment(x, y, sp, g)
        feats = self.net.decoder_features(x)
        logits = self.net.head(feats[-1])  # (B, K, H, W)
        seg_loss = self.loss(logits, y)
        weight = warmup_weight(self.hpcl_weight, self.hpcl_warmup, int(self.global_step))
        hp = hyperpixels(feats, sp, y, self.ignore_index)
        labeled = (hp.majority != self.ignore_index).nonzero(as_tuple=True)[0]  # (P_l,)
        anchors = labeled[
            sample_anchors(hp.boundary[labeled], self.hpcl_anchors, self.hpcl_boundary_fraction, generator=g)
        ]
        q = self.hpcl_head(hp.emb[anchors])  # (N, D)
        with torch.no_grad():
            ema_update(self.key_net, self.net, self.hpcl_momentum)  # before the keys
            ema_update(self.key_head, self.hpcl_head, self.hpcl_momentum)
            self.key_net.eval()
            hp_k = hyperpixels(self.key_net.decoder_features(x), sp, y, self.ignore_index)
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
        self.log("train/seg_loss", seg_loss, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/hpcl_loss", aux, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/hpcl_weight", weight, on_step=True, on_epoch=False, batch_size=n)
        if self.hpcl_unlabeled > 0:
            self.log("train/pseudo_enqueued", float(self.pseudo_enqueued), on_step=True, on_epoch=False, batch_size=n)
        return SupervisedStep(loss, feats, y)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["hyperpixel_segmentation"] = {"pseudo_enqueued": self.pseudo_enqueued}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.pseudo_enqueued = int(checkpoint.get("hyperpixel_segmentation", {}).get("pseudo_enqueued", 0))

    def configure_optimizers(self) -> Any:
        # SegmentationTask's AdamW + cosine schedule, over the projection head as well
        return adamw_cosine(
            self.param_groups(list(self.hpcl_head.parameters())), self.lr, self.weight_decay, self.max_steps
        )
