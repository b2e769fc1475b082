"""Hyper-pixel contrastive learning (segcore.hyperpixel): views with geometric correspondence,
step order (EMA before keys, keys without grad, enqueue after the loss), resume with the same
queue, the class-aware term on binary labels, loss goes down, superpixels."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

import segcore.strategies.hyperpixel_ssl as hpx
from segcore.augment import BatchSpatialAugment
from segcore.hyperpixels import hyperpixels, match_hyperpixels
from segcore.losses import HyperPixelContrastLoss
from segcore.losses.queue_info_nce import queue_info_nce as moco_info_nce
from segcore.networks.unet import UNet2D
from segcore.runtime.sampling import collate_samples, step_loader
from segcore.runtime.seeds import step_generator
from segcore.strategies.hyperpixel_ssl import HyperPixelSSLStrategy
from segcore.superpixels import slic_superpixels
from segcore.tasks.hyperpixel_segmentation import HyperPixelSegmentationTask, warmup_weight
from segcore.tasks.pretrain import PretrainTask
from segcore.views import correspondence_view, dihedral


def decoder_maps(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return net.decoder_features(x)


pytestmark = pytest.mark.filterwarnings("ignore:.*self.log.*")
SIZE = 16


def coordinate_batch(b: int = 4, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose channels 0 and 1 are the row and column of each pixel, channel 2 noise;
    superpixels = one id per pixel (row * size + col), so an id names its source pixel."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.stack([rows.float(), cols.float(), torch.zeros(size, size)])[None].repeat(b, 1, 1, 1)
    x[:, 2] = torch.randn(b, size, size, generator=torch.Generator().manual_seed(0))
    sp = (rows * size + cols)[None].repeat(b, 1, 1)
    return x, sp


def test_dihedral_views_are_exact_and_ids_follow_the_pixels() -> None:
    x, sp = coordinate_batch(8)
    view, sp_view, ks = correspondence_view(x, sp, torch.Generator().manual_seed(1), jitter_channels=[2], noise_std=0.0)
    assert len(set(ks.tolist())) > 1
    for i, k in enumerate(ks.tolist()):
        assert torch.equal(view[i, :2], dihedral(x[i, :2], k)) and torch.equal(sp_view[i], dihedral(sp[i], k))
    # the pixel a view shows is the pixel its superpixel id names: same ground in every view
    assert torch.equal(view[:, 0].long(), sp_view // SIZE) and torch.equal(view[:, 1].long(), sp_view % SIZE)
    assert not torch.equal(
        view[:, 2], torch.stack([dihedral(x[i, 2], k) for i, k in enumerate(ks.tolist())])
    )  # jittered


def test_terrain_dropout_zeroes_the_dropped_channels_of_whole_images_only() -> None:
    x, sp = coordinate_batch(64)
    x = x + 1.0  # no channel is 0 anywhere before the dropout
    kw = {"jitter_channels": [], "dihedral_transforms": False}
    plain, _, _ = correspondence_view(x, sp, torch.Generator().manual_seed(3), **kw)
    view, sp_view, _ = correspondence_view(
        x, sp, torch.Generator().manual_seed(3), drop_channels=[1, 2], drop_prob=0.5, **kw
    )
    dropped = (view[:, 1:] == 0).flatten(1).all(1)  # (B,)
    assert 10 < int(dropped.sum()) < 54  # about half of 64 images
    assert torch.equal(view[~dropped], plain[~dropped]) and torch.equal(
        view[:, 0], plain[:, 0]
    )  # kept images, kept channel
    assert not (view[~dropped, 1:] == 0).any() and torch.equal(sp_view, sp)
    # probability 0 draws nothing: the same view as without the option
    same, _, _ = correspondence_view(x, sp, torch.Generator().manual_seed(3), drop_channels=[1, 2], drop_prob=0.0, **kw)
    assert torch.equal(same, plain)
    every, _, _ = correspondence_view(x, sp, torch.Generator().manual_seed(3), drop_channels=[2], drop_prob=1.0, **kw)
    assert (every[:, 2] == 0).all() and torch.equal(every[:, :2], plain[:, :2])


def test_crop_views_keep_ids_on_their_ground() -> None:
    x, sp = coordinate_batch(8)
    g = torch.Generator().manual_seed(2)
    view, sp_view, _ = correspondence_view(x, sp, g, crop_scale=(0.5, 0.8), jitter_channels=[])
    # bilinear sampling reproduces the coordinate channels exactly at the sampled point; the
    # nearest-sampled id names a source pixel within half a pixel of it
    assert (view[:, 0] - (sp_view // SIZE).float()).abs().max() <= 0.5 + 1e-4
    assert (view[:, 1] - (sp_view % SIZE).float()).abs().max() <= 0.5 + 1e-4
    assert all(len(sp_view[i].unique()) < SIZE * SIZE for i in range(8))  # zoomed in: ids are lost


def test_hyperpixel_embedding_targets_match_across_views() -> None:
    """Two views of piecewise-constant superpixels: the matched hyper-pixels carry the same
    (image, id) and the same mean 'id channel' in both views."""
    b = 6
    blocks = (torch.arange(SIZE)[:, None] // 4) * 4 + torch.arange(SIZE)[None, :] // 4  # (16, 16) 4x4 blocks
    sp = blocks[None].repeat(b, 1, 1)
    x = torch.cat([sp[:, None].float(), torch.randn(b, 2, SIZE, SIZE)], dim=1)
    g = torch.Generator().manual_seed(3)
    (x1, sp1, _), (x2, sp2, _) = (correspondence_view(x, sp, g, jitter_channels=[1, 2]) for _ in range(2))
    h1, h2 = hyperpixels([x1[:, :1]], sp1), hyperpixels([x2[:, :1]], sp2)
    i1, i2 = match_hyperpixels(h1.batch_idx, h1.sp_id, h2.batch_idx, h2.sp_id)
    assert i1.numel() == b * 16
    assert torch.equal(h1.batch_idx[i1], h2.batch_idx[i2]) and torch.equal(h1.sp_id[i1], h2.sp_id[i2])
    assert torch.equal(h1.emb[i1, 0], h1.sp_id[i1].float()) and torch.equal(h2.emb[i2, 0], h1.sp_id[i1].float())


def test_match_hyperpixels_by_hand() -> None:
    a_b, a_id = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 2, 5, 1, 3])
    b_b, b_id = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([2, 5, 0, 3, 1])
    ia, ib = match_hyperpixels(a_b, a_id, b_b, b_id)
    assert ia.tolist() == [1, 2, 4] and ib.tolist() == [0, 1, 3]


def test_warmup_weight() -> None:
    assert [warmup_weight(0.4, 4, s) for s in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert warmup_weight(0.4, 0, 0) == 0.4


def test_slic_superpixels() -> None:
    img = np.zeros((2, 1, 16, 16), dtype=np.float32)
    img[:, :, :, 8:] = 1.0
    sp = slic_superpixels(img, n_segments=4, compactness=0.5)
    assert sp.shape == (2, 16, 16) and sp.dtype == np.int32 and sp.min() == 0
    for s in sp:  # no superpixel crosses the edge between the halves
        assert not set(np.unique(s[:, :8])) & set(np.unique(s[:, 8:]))
    assert np.array_equal(slic_superpixels(img, 4, 0.5, indices=[1]), sp[1:])


# --------------------------------------------------------------------------- tiny synthetic set


def tiny_net(in_channels: int = 3, num_classes: int = 2) -> UNet2D:
    torch.manual_seed(0)
    return UNet2D(in_channels, num_classes, channels=(4, 8, 8))


class TinySet(Dataset):
    """16x16 tiles of 4x4-pixel blocks (the superpixels); each block has one of four colours
    (class = colour > 1, so tiles have both classes and boundaries), or with ``distinct`` a
    colour of its own (every hyper-pixel tells itself apart: an easy self-supervised task)."""

    def __init__(self, n: int = 16, seed: int = 0, distinct: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        blocks = (torch.arange(SIZE)[:, None] // 4) * 4 + torch.arange(SIZE)[None, :] // 4
        self.items = []
        protos = torch.randn(4, 3, generator=g)
        for _ in range(n):
            kind = torch.randint(0, 4, (16,), generator=g)
            colours = torch.randn(16, 3, generator=g) if distinct else protos[kind]
            img = colours[blocks].permute(2, 0, 1) + 0.3 * torch.randn(3, SIZE, SIZE, generator=g)
            self.items.append(
                {
                    "image": img,
                    "label": (kind[blocks] > 1).long(),
                    "superpixels": blocks.clone(),
                    "meta": {"group": "g"},
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def trainer(steps: int) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )


def pretrain_task(K: int = 64, m: float = 0.9, crop: tuple[float, float] | None = (0.7, 1.0)) -> PretrainTask:
    net = tiny_net()
    # batch statistics + in-batch negatives: the variant that learns this toy pretext fastest
    strategy = HyperPixelSSLStrategy(
        net, K=K, m=m, T=0.2, proj_hidden=32, proj_dim=16, crop_scale=crop, key_batchnorm="batch", batch_negatives=True
    )
    return PretrainTask(net, strategy, lr=3e-3, seed=0)


def one_batch(n: int = 4) -> dict[str, Any]:
    return collate_samples([TinySet(n)[i] for i in range(n)])


def test_hypercolumn_dim() -> None:
    net = tiny_net()
    assert net.hypercolumn_channels == 8 + 4
    assert sum(f.shape[1] for f in decoder_maps(net, torch.zeros(1, 3, SIZE, SIZE))) == 12


@pytest.mark.parametrize("key_batchnorm", ["batch", "running"])
def test_ema_before_keys_and_keys_without_grad(monkeypatch: pytest.MonkeyPatch, key_batchnorm: str) -> None:
    task = pretrain_task(m=0.0, crop=None)  # m = 0: after the update the key model IS the online model
    ssl = task.strategy
    ssl.key_batchnorm = key_batchnorm
    with torch.no_grad():
        for p in ssl.key_net.parameters():
            p.add_(torch.randn_like(p))  # a stale key model: keys from it would differ
    calls: list[str] = []
    real_ema, real_maps, real_nce = hpx.ema_update, UNet2D.decoder_features, hpx.queue_info_nce
    monkeypatch.setattr(
        hpx,
        "ema_update",
        lambda k, q, m: (calls.append(f"ema:{'net' if k is ssl.key_net else 'head'}"), real_ema(k, q, m))[1],
    )
    monkeypatch.setattr(
        UNet2D,
        "decoder_features",
        lambda net, x: (calls.append("keys" if net is ssl.key_net else "queries"), real_maps(net, x))[1],
    )
    seen: dict[str, torch.Tensor] = {}

    def spy(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, *args: Any) -> torch.Tensor:
        seen.update(q=q, k=k, queue=queue)
        return real_nce(q, k, queue, *args)

    monkeypatch.setattr(hpx, "queue_info_nce", spy)
    batch = one_batch()
    loss = task.training_step(batch, 0)
    assert calls == ["queries", "ema:net", "ema:head", "keys"]
    assert seen["q"].requires_grad and not seen["k"].requires_grad and not seen["queue"].requires_grad
    # independent recomputation: keys = the online model on view 2 of this step
    _, (x2, sp2) = ssl.views(batch["image"], batch["superpixels"], step_generator(0, 0, 0))
    online = copy.deepcopy(task.net).train(key_batchnorm == "batch")
    with torch.no_grad():
        expected = ssl.head(hyperpixels(real_maps(online, x2), sp2).emb)
    assert torch.allclose(seen["k"], expected, atol=1e-5)
    loss.backward()
    assert all(p.grad is None for p in ssl.key_net.parameters()) and all(
        p.grad is None for p in ssl.key_head.parameters()
    )
    assert any(p.grad is not None for p in task.net.encoder.parameters())


def test_queue_enqueued_after_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    task = pretrain_task(K=1000, crop=None)
    queues: list[torch.Tensor] = []
    keys: list[torch.Tensor] = []
    real = hpx.queue_info_nce
    monkeypatch.setattr(
        hpx, "queue_info_nce", lambda q, k, queue, *a: (queues.append(queue), keys.append(k), real(q, k, queue, *a))[2]
    )
    batch = one_batch()
    task.training_step(batch, 0)
    assert queues[0].shape[0] == 0  # the first step's loss saw the empty queue, not its own keys
    n = keys[0].shape[0]
    assert int(task.strategy.queue.filled) == n == int(task.strategy.queue.ptr) == 4 * 16
    task.training_step(batch, 1)
    assert torch.equal(queues[1], keys[0])  # the second step's negatives: the first step's keys


def test_moco_info_nce_by_hand_and_against_the_ssl_loss() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, queue = (torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1) for n in (5, 5, 7))
    ssl = HyperPixelContrastLoss("ssl", temperature=0.2)(q, k=k, queue=queue)
    assert torch.allclose(moco_info_nce(q, k, queue, 0.2, batch_negatives=False), ssl, atol=1e-6)
    terms = []
    for i in range(5):  # brute force: positive k_i; negatives = queue + k_j (j != i)
        negs = torch.cat([queue, k[torch.arange(5) != i]])
        pos = torch.exp(q[i] @ k[i] / 0.2)
        terms.append(-torch.log(pos / (pos + torch.exp(negs @ q[i] / 0.2).sum())))
    assert torch.allclose(moco_info_nce(q, k, queue, 0.2, batch_negatives=True), torch.stack(terms).mean(), atol=1e-5)
    assert torch.isfinite(moco_info_nce(q, k, queue[:0], 0.2, batch_negatives=False))  # empty queue: 0


def run_pretrain_steps(steps: int, start: int = 0, ckpt: Path | None = None, save: Path | None = None) -> PretrainTask:
    torch.manual_seed(0)
    task = pretrain_task(K=100)
    tr = trainer(steps)
    loader = step_loader(TinySet(16, distinct=True), 4, steps, seed=0, start_step=start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr.fit(task, loader, ckpt_path=None if ckpt is None else str(ckpt), weights_only=False)
    if save is not None:
        tr.save_checkpoint(save)
    return task


@pytest.mark.slow
def test_resumed_run_has_the_same_queue_and_pointer(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    whole = run_pretrain_steps(4)
    half = run_pretrain_steps(2, save=tmp_path / "half.ckpt")
    state = torch.load(tmp_path / "half.ckpt", weights_only=True)
    hq, wq = half.strategy.queue, whole.strategy.queue
    assert torch.equal(state["state_dict"]["strategy.queue.queue"], hq.queue) and int(
        state["state_dict"]["strategy.queue.ptr"]
    ) == int(hq.ptr)
    assert (
        any(k.startswith("strategy.key_net.") for k in state["state_dict"])
        and state["pretrain_task"]["losses"] == half.losses
    )
    resumed = run_pretrain_steps(4, start=2, ckpt=tmp_path / "half.ckpt")
    rq = resumed.strategy.queue
    assert int(rq.ptr) == int(wq.ptr) and int(rq.filled) == int(wq.filled)
    assert torch.allclose(rq.queue, wq.queue, atol=1e-5)
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-5)


@pytest.mark.slow
def test_pretrain_loss_goes_down() -> None:
    torch.set_num_threads(1)
    task = run_pretrain_steps(30)
    first, last = np.mean(task.losses[1:6]), np.mean(task.losses[-5:])  # step 0 has an empty queue
    assert last < first - 0.3, task.losses


def seg_task(**kw: Any) -> HyperPixelSegmentationTask:
    return HyperPixelSegmentationTask(
        tiny_net(),
        2,
        lr=3e-3,
        max_steps=30,
        augment=BatchSpatialAugment(rotate_deg=0, scale=0, elastic_prob=0, rot90=True),
        **{"hpcl_weight": 0.5, "hpcl_queue": 64, "hpcl_anchors": 32, "hpcl_enqueue_per_class": 16, **kw},
    )


def test_augmentation_moves_superpixels_with_the_labels() -> None:
    batch = one_batch(8)
    for augment in (
        BatchSpatialAugment(rotate_deg=0, scale=0, elastic_prob=0, rot90=True),
        BatchSpatialAugment(rotate_deg=20, scale=0.2, elastic_prob=1.0),
    ):
        task = seg_task()
        task.augment = augment
        sp = batch["label"] * 7  # a superpixel map that is a function of the label
        x, y, sp_aug = task._augment(batch["image"], batch["label"], sp, torch.Generator().manual_seed(5))
        inside = y != 255
        assert inside.float().mean() > 0.5 and torch.equal(sp_aug[inside], y[inside] * 7)
        assert (sp_aug[~inside] == -1).all() and augment.ignore_index == 255


def test_binary_labels_give_a_finite_loss_with_background_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    task = seg_task(hpcl_warmup=2)
    aux: list[float] = []
    real = task.hpcl_loss.forward
    monkeypatch.setattr(
        task.hpcl_loss, "forward", lambda q, **kw: (lambda v: (aux.append(float(v.detach())), v)[1])(real(q, **kw))
    )
    batch = one_batch(8)
    for step in range(3):
        loss = task.training_step(batch, step)
        assert torch.isfinite(loss)
        loss.backward()
    assert aux[0] == 0.0  # empty class queues: no positive yet, 0 rather than NaN
    assert all(np.isfinite(aux)) and aux[1] > 0
    assert int(task.class_queues.filled[0]) > 0 and int(task.class_queues.filled[1]) > 0  # background queued too
    assert int(task.class_queues.filled[0]) <= 3 * 16  # at most hpcl_enqueue_per_class per step
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.hpcl_head.parameters())


def test_segmentation_task_state_holds_momentum_model_and_queues() -> None:
    task = seg_task()
    keys = task.state_dict().keys()
    assert any(k.startswith("key_net.") for k in keys) and any(k.startswith("key_head.") for k in keys)
    assert {"class_queues.queue", "class_queues.ptr", "class_queues.filled"} <= set(keys)
    params = {id(p) for g in task.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert all(id(p) in params for p in task.hpcl_head.parameters()) and not any(
        id(p) in params for p in task.key_net.parameters()
    )


@pytest.mark.slow
def test_supervised_hyperpixel_loss_goes_down() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = seg_task(hpcl_weight=1.0)
    aux: list[float] = []
    real = task.hpcl_loss.forward
    task.hpcl_loss.forward = lambda q, **kw: (lambda v: (aux.append(float(v.detach())), v)[1])(real(q, **kw))  # type: ignore[method-assign]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(40).fit(task, step_loader(TinySet(16), 4, 40, seed=0))
    # the class queues (64 keys, 16 enqueued per class and step) are full from step 4 on
    assert np.mean(aux[-5:]) < np.mean(aux[5:10]) - 0.2, aux


def test_pseudo_labeled_hyperpixels_come_from_the_momentum_network() -> None:
    unlabeled = TinySet(6, seed=1)
    task = seg_task(hpcl_unlabeled=3, hpcl_unlabeled_data=unlabeled, hpcl_pseudo_threshold=0.0)
    with torch.no_grad():
        for p in task.net.parameters():
            p.add_(1.0)  # the online net differs: pseudo-labels must come from the momentum net
    task.key_net.eval()
    emb, labels, source = task._pseudo_labeled(torch.Generator().manual_seed(0))
    picks = torch.randint(6, (3,), generator=torch.Generator().manual_seed(0)).tolist()
    x = torch.stack([unlabeled[i]["image"] for i in picks])
    with torch.no_grad():
        probs = task.key_net(x).softmax(1)  # (3, 2, 16, 16)
    blocks = unlabeled[0]["superpixels"]
    expected = torch.stack(
        [torch.stack([probs[b][:, blocks == s].mean(1) for s in range(16)]) for b in range(3)]
    )  # (3, 16, 2)
    assert emb.shape == (48, 12) and torch.equal(labels, expected.argmax(-1).flatten())
    assert task.pseudo_enqueued == 48
    assert torch.equal(source["image"], x) and torch.equal(source["batch_idx"], torch.arange(3).repeat_interleave(16))
    assert torch.equal(source["sp_id"], torch.arange(16).repeat(3))
    confident = seg_task(hpcl_unlabeled=3, hpcl_unlabeled_data=unlabeled, hpcl_pseudo_threshold=1.01)
    confident.key_net.eval()
    assert confident._pseudo_labeled(torch.Generator().manual_seed(0))[1].numel() == 0
    with pytest.raises(ValueError, match="hpcl_unlabeled_data"):
        seg_task(hpcl_unlabeled=2)


def test_training_step_fills_the_class_queues_from_unlabeled_tiles() -> None:
    task = seg_task(
        hpcl_unlabeled=4,
        hpcl_unlabeled_data=TinySet(6, seed=1),
        hpcl_pseudo_threshold=0.0,
        hpcl_enqueue_per_class=1000,
        hpcl_queue=1000,
    )
    task.training_step(one_batch(2), 0).backward()
    assert int(task.class_queues.filled.sum()) == 2 * 16 + 4 * 16  # labeled + pseudo-labeled hyper-pixels


def test_unlabeled_anchors_are_online_embeddings_of_pseudo_labeled_hyperpixels_in_a_second_view() -> None:
    unlabeled = TinySet(6, seed=1)
    task = seg_task(
        hpcl_unlabeled=3,
        hpcl_unlabeled_data=unlabeled,
        hpcl_pseudo_threshold=0.0,
        hpcl_unlabeled_anchors=5,
        hpcl_jitter_channels=[0, 1],
    )
    task.key_net.eval()
    with torch.no_grad():
        for p in task.key_net.parameters():
            p.add_(0.5)  # pseudo-labels from the momentum net, anchors from the online net
    _, labels, source = task._pseudo_labeled(torch.Generator().manual_seed(0))
    # drop some hyper-pixels (as a confidence threshold would): the rest must keep their ids
    kept = torch.arange(labels.numel()) % 3 != 1
    source = {**source, "batch_idx": source["batch_idx"][kept], "sp_id": source["sp_id"][kept]}
    labels = labels[kept]
    q, q_labels = task._unlabeled_anchors(source, labels, torch.Generator().manual_seed(7))
    # brute force: the same view (same generator), online hypercolumn means per (tile, id), head
    x_v, sp_v, ks = correspondence_view(
        source["image"], source["superpixels"], torch.Generator().manual_seed(7), jitter_channels=[0, 1]
    )
    assert torch.equal(
        x_v[:, 2], torch.stack([dihedral(source["image"][b, 2], int(k)) for b, k in enumerate(ks)])
    )  # channel 2 not jittered
    feats = decoder_maps(task.net, x_v)
    hyper = torch.cat(
        [F.interpolate(f, size=(SIZE, SIZE), mode="bilinear", align_corners=False) for f in feats], 1
    )  # (3, 12, 16, 16)
    table = {
        (int(b), int(s)): (task.hpcl_head(hyper[b][:, sp_v[b] == s].mean(1)[None])[0], int(lab))
        for b, s, lab in zip(source["batch_idx"], source["sp_id"], labels, strict=True)
    }
    assert q.requires_grad and 0 < q.shape[0] <= 2 * 5
    for c in (0, 1):
        assert int((q_labels == c).sum()) == min(5, int((labels == c).sum()))  # at most 5 per class
    for row, lab in zip(q, q_labels, strict=True):
        hits = [key for key, (emb, lab2) in table.items() if lab2 == int(lab) and torch.allclose(emb, row, atol=1e-5)]
        assert len(hits) == 1, "every anchor is the head of one pseudo-labeled hyper-pixel's online hypercolumn mean"
    q.sum().backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in task.net.parameters()
    )  # the unlabeled tiles train the online net
    assert all(p.grad is None for p in task.key_net.parameters())
    with pytest.raises(ValueError, match="hpcl_unlabeled_anchors"):
        seg_task(hpcl_unlabeled_anchors=4)


def test_training_step_with_unlabeled_anchors_adds_them_to_the_term(monkeypatch: pytest.MonkeyPatch) -> None:
    task = seg_task(
        hpcl_unlabeled=4, hpcl_unlabeled_data=TinySet(6, seed=1), hpcl_pseudo_threshold=0.0, hpcl_unlabeled_anchors=8
    )
    seen: list[int] = []
    real = task.hpcl_loss.forward
    monkeypatch.setattr(task.hpcl_loss, "forward", lambda q, **kw: (seen.append(q.shape[0]), real(q, **kw))[1])
    for step in range(2):
        loss = task.training_step(one_batch(2), step)
        assert torch.isfinite(loss)
        loss.backward()
    labeled_anchors = 32  # hpcl_anchors of seg_task, 2 tiles x 16 hyper-pixels available
    assert all(labeled_anchors < n <= labeled_anchors + 2 * 8 for n in seen), seen
