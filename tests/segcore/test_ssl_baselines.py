"""The generic self-supervised baselines (docs/ssl_baselines.md): each loss against a brute-force
computation or Lightly's, our momentum and queue parts against Lightly's, views for any channel
count, DetCon's masks through the views, DenseCL's correspondence, the shared parts reused, and a
short run of each method that lowers its loss."""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightly.loss import DetConSLoss, NTXentLoss
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import update_momentum
from torch.utils.data import Dataset

import segcore.strategies.densecl as densecl_module
import segcore.strategies.mocov2 as mocov2_module
from segcore.losses.queue_info_nce import queue_info_nce
from segcore.momentum import ema_update
from segcore.networks.unet import UNet2D
from segcore.queue import MomentumQueue
from segcore.runtime.sampling import collate_samples, step_loader
from segcore.runtime.seeds import step_generator
from segcore.strategies import STRATEGIES, strategy_class
from segcore.strategies.byol import BYOLStrategy, byol_loss
from segcore.strategies.densecl import DenseCLStrategy, dense_correspondence
from segcore.strategies.detcon import DetConStrategy, pool_ids, sample_masks
from segcore.strategies.mocov2 import MoCoV2Strategy
from segcore.strategies.random_batches import DistinctRandomBatches
from segcore.strategies.ssl_views import ViewOptions, random_view
from segcore.tasks.pretrain import PretrainTask

SIZE = 16


def tiny_net(in_channels: int = 3) -> UNet2D:
    torch.manual_seed(0)
    return UNet2D(in_channels, 2, channels=(4, 8, 8))


def block_masks(b: int, size: int = SIZE, side: int = 4) -> torch.Tensor:
    """(b, size, size) ids of side×side blocks, row-major."""
    per_row = size // side
    ids = (torch.arange(size)[:, None] // side) * per_row + torch.arange(size)[None, :] // side
    return ids.expand(b, size, size).clone()


class BlockSet(Dataset):
    """Images of 4x4-pixel blocks, each of a colour of its own (an easy pretext), with the blocks
    as superpixels."""

    def __init__(self, n: int = 16, seed: int = 0, channels: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        blocks = block_masks(1)[0]
        self.items = []
        for i in range(n):
            colours = torch.randn(16, channels, generator=g)
            img = colours[blocks].permute(2, 0, 1) + 0.1 * torch.randn(channels, SIZE, SIZE, generator=g)
            self.items.append({"image": img, "superpixels": blocks.clone(), "meta": {"group": f"g{i}"}})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


VIEWS = ViewOptions(crop_scale=(0.7, 1.0), brightness=0.1, contrast=(0.9, 1.1), noise_std=0.02)


def make_strategy(name: str, net: UNet2D, steps: int = 30) -> Any:
    common = {"batch_size": 8, "views": VIEWS, "proj_hidden": 32, "proj_dim": 16}
    if name == "mocov2":
        return MoCoV2Strategy(net, (SIZE, SIZE), K=16, m=0.9, **common)
    if name == "densecl":
        return DenseCLStrategy(net, (SIZE, SIZE), K=16, m=0.9, **common)
    if name == "byol":
        return BYOLStrategy(net, (SIZE, SIZE), steps=steps, tau=0.9, **common)
    return DetConStrategy(net, (SIZE, SIZE), n_masks=6, **common)


def test_registered_by_name() -> None:
    for name in ("mocov2", "byol", "densecl", "detcon"):
        assert name in STRATEGIES and strategy_class(name).name == name
    with pytest.raises(ValueError, match="unknown pretraining strategy 'simclr'"):
        strategy_class("simclr")


# --------------------------------------------------------------------------- losses


def test_queue_info_nce_agrees_with_lightly_ntxent_with_a_memory_bank() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    bank = F.normalize(torch.randn(12, 8, generator=g), dim=1)
    lightly_loss = NTXentLoss(temperature=0.2, memory_bank_size=(12, 8))
    lightly_loss.memory_bank.bank = bank.clone()
    ours = queue_info_nce(q, k, bank, 0.2)
    assert torch.allclose(ours, lightly_loss(q, k), atol=1e-6)
    # and against the definition: -log(e^{q.k/T} / (e^{q.k/T} + sum_n e^{q.n/T})), unit vectors
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    pos = torch.exp((qn * kn).sum(dim=1) / 0.2)  # (5,)
    terms = [-torch.log(pos[i] / (pos[i] + torch.exp(bank @ qn[i] / 0.2).sum())) for i in range(5)]
    assert torch.allclose(ours, torch.stack(terms).mean(), atol=1e-5)


def test_momentum_queue_holds_what_lightlys_memory_bank_holds() -> None:
    ours, theirs = MomentumQueue(8, 4), MemoryBankModule(size=(8, 4), feature_dim_first=False)
    g = torch.Generator().manual_seed(1)
    for step in range(5):  # wraps around the ring once and a half
        keys = torch.randn(4, 4, generator=g)
        theirs(keys, update=True)
        ours.enqueue(keys)
        written = min(8, 4 * (step + 1))
        assert torch.equal(ours.queue[:written], theirs.bank[:written])
        assert int(ours.ptr) == int(theirs.bank_ptr)


def test_ema_update_agrees_with_lightlys_update_momentum() -> None:
    online, key = tiny_net(), tiny_net()
    with torch.no_grad():
        for p in key.parameters():
            p.add_(torch.randn_like(p))
    theirs = copy.deepcopy(key)
    ema_update(key, online, 0.9)
    update_momentum(online, theirs, 0.9)
    for (name, a), b in zip(key.named_parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7), name


def test_byol_loss_is_two_minus_two_cos_symmetrised() -> None:
    g = torch.Generator().manual_seed(2)
    p1, p2, z1, z2 = (torch.randn(6, 5, generator=g) for _ in range(4))
    brute = sum(
        (2 - 2 * (p[i] @ z[i]) / (p[i].norm() * z[i].norm())) / 6 for p, z in ((p1, z2), (p2, z1)) for i in range(6)
    )
    assert torch.allclose(byol_loss(p1, p2, z1, z2), brute, atol=1e-5)
    assert float(byol_loss(p1, p2, p2, p1)) == pytest.approx(0.0, abs=1e-5)  # perfect predictions


def detcon_brute_force(v0: torch.Tensor, v1: torch.Tensor, T: float) -> torch.Tensor:
    """DetCon-S by its definition, masks distinct within each image: for view a's mask m of image
    b the positive is view b's mask m of image b; the candidates are every mask of every image in
    the other view and every other mask in the same view; mean over (b, m), both directions summed."""
    B, M, _ = v0.shape
    z = [F.normalize(v, dim=-1).reshape(B * M, -1) for v in (v0, v1)]
    total = torch.zeros(())
    for a, o in ((0, 1), (1, 0)):
        for i in range(B * M):
            same = torch.cat([z[a][:i], z[a][i + 1 :]])
            cands = torch.cat([z[o], same]) @ z[a][i] / T
            total = total + (torch.logsumexp(cands, 0) - z[o][i] @ z[a][i] / T) / (B * M)
    return total


def test_detcon_loss_by_hand_and_its_chance_level() -> None:
    g = torch.Generator().manual_seed(3)
    B, M = 3, 4
    v0, v1 = torch.randn(B, M, 8, generator=g), torch.randn(B, M, 8, generator=g)
    ids = torch.stack([torch.randperm(10, generator=g)[:M] for _ in range(B)])  # distinct per image
    loss = DetConSLoss(temperature=0.1, gather_distributed=False)
    assert torch.allclose(loss(v0, v1, ids, ids), detcon_brute_force(v0, v1, 0.1), atol=1e-4)
    # every similarity equal: 2 directions × log(2·B·M − 1 candidates)
    chance = loss(torch.zeros(B, M, 8), torch.zeros(B, M, 8), ids, ids)
    assert float(chance) == pytest.approx(2 * math.log(2 * B * M - 1), rel=1e-5)


def test_pool_ids_is_the_mean_over_each_mask() -> None:
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 3, 8, 8, generator=g)
    masks = torch.randint(0, 5, (2, 8, 8), generator=g)
    masks[0, 0, 0] = -1  # a pixel of no mask is left out
    ids = torch.tensor([[0, 4, 2], [1, 1, 3]])
    out = pool_ids(feats, masks, ids)
    for b in range(2):
        for j, i in enumerate(ids[b].tolist()):
            sel = masks[b] == i
            assert torch.allclose(out[b, j], feats[b][:, sel].mean(dim=1), atol=1e-6)


# --------------------------------------------------------------------------- views and masks


@pytest.mark.parametrize("channels", [1, 3, 9])
def test_views_work_for_any_channel_count_with_per_channel_jitter(channels: int) -> None:
    x = torch.rand(4, channels, SIZE, SIZE)
    g = torch.Generator().manual_seed(0)
    opts = ViewOptions(crop_scale=None, dihedral=False, brightness=0.0, contrast=(0.5, 1.5), noise_std=0.0)
    view, masks = random_view(x, g, opts)
    assert view.shape == x.shape and masks is None
    # a gain about each channel's mean, drawn per image and channel
    gains = (view - view.mean(dim=(2, 3), keepdim=True)).std(dim=(2, 3)) / (x - x.mean(dim=(2, 3), keepdim=True)).std(
        dim=(2, 3)
    )  # (4, C)
    assert ((gains > 0.5 - 1e-4) & (gains < 1.5 + 1e-4)).all()
    if channels > 1:
        assert (gains.std(dim=1) > 1e-3).all()  # channels differ: not one colour operation for all


def test_detcon_masks_stay_aligned_under_the_geometric_views() -> None:
    size, side = 32, 8
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    # channels 0 and 1: the source row and column of each pixel; masks: 8x8 blocks
    x = torch.stack([rows.float(), cols.float(), torch.zeros(size, size)])[None].repeat(6, 1, 1, 1)
    masks = block_masks(6, size, side)
    opts = ViewOptions(crop_scale=(0.5, 1.0), jitter_channels=[2], brightness=0.2, noise_std=0.05)

    def off_block(view: torch.Tensor, warped: torch.Tensor) -> float:
        """How far (pixels) a view's pixel lies outside the source block its mask id names."""
        r0, c0 = (warped // (size // side)) * side, (warped % (size // side)) * side  # the block's corner
        dr = (r0 - view[:, 0]).clamp(min=0) + (view[:, 0] - (r0 + side - 1)).clamp(min=0)
        dc = (c0 - view[:, 1]).clamp(min=0) + (view[:, 1] - (c0 + side - 1)).clamp(min=0)
        return float(torch.maximum(dr, dc).max())

    for seed in range(5):
        view, warped = random_view(x, torch.Generator().manual_seed(seed), opts, masks)
        assert warped is not None and warped.shape == masks.shape
        # image bilinear, masks nearest: a mask's pixels come from its block, within half a pixel
        assert off_block(view, warped) <= 0.5 + 1e-4
        assert off_block(view, warped.flip(-1)) > 1  # misaligned masks would fail
    # no crop: flips and quarter turns only, exact
    view, warped = random_view(
        x, torch.Generator().manual_seed(9), ViewOptions(crop_scale=None, jitter_channels=[2]), masks
    )
    assert warped is not None and off_block(view, warped) == 0.0


def test_sample_masks_draws_shared_ids_and_keeps_disjoint_views_apart() -> None:
    g = torch.Generator().manual_seed(0)
    m1, m2 = block_masks(3), block_masks(3)
    m2[0] = torch.where(m2[0] < 8, m2[0], 3)  # image 0: view 2 shows ids 0..7 only
    m2[2] = m2[2] + 100  # image 2: the views share no id
    ids1, ids2, lab1, lab2 = sample_masks(m1, m2, 5, g)
    assert ids1.shape == (3, 5)
    assert set(ids1[0].tolist()) <= set(range(8)) and torch.equal(ids1[0], ids2[0]) and len(set(ids1[0].tolist())) == 5
    assert torch.equal(lab1[:2], lab2[:2])
    assert not (lab1[2][:, None] == lab2[2][None, :]).any()  # no positive: negatives only
    assert set(ids2[2].tolist()) <= set(range(100, 116))
    few1, few2, *_ = sample_masks(block_masks(1), torch.where(block_masks(1) < 2, block_masks(1), 0), 5, g)
    assert set(few1[0].tolist()) == {0, 1} and torch.equal(few1, few2)  # every shared id, then repeats


def test_densecl_correspondence_picks_the_known_match() -> None:
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 9, 16, generator=g)
    perm = torch.stack([torch.randperm(9, generator=g) for _ in range(2)])  # key cell j = query cell perm[j]
    k = torch.stack([q[b, perm[b]] for b in range(2)]) * 3.0 + 0.01 * torch.randn(2, 9, 16, generator=g)
    match = dense_correspondence(q, k)  # (2, 9): key index of each query cell
    for b in range(2):
        assert torch.equal(perm[b][match[b]], torch.arange(9))


def test_distinct_random_batches_are_reproducible_and_without_repeats() -> None:
    a = list(DistinctRandomBatches(20, 8, 5, seed=3))
    assert a == list(DistinctRandomBatches(20, 8, 5, seed=3)) and a != list(DistinctRandomBatches(20, 8, 5, seed=4))
    assert all(len(set(b)) == 8 and all(0 <= i < 20 for i in b) for b in a)
    with pytest.raises(ValueError, match="needs at least 8 images"):
        DistinctRandomBatches(5, 8, 1, seed=0)


# --------------------------------------------------------------------------- the shared parts, the step order


def test_mocov2_reuses_the_shared_queue_ema_and_loss_in_moco_order(monkeypatch: pytest.MonkeyPatch) -> None:
    net = tiny_net()
    strategy = make_strategy("mocov2", net)
    assert isinstance(strategy.queue, MomentumQueue)
    calls: list[str] = []
    real_ema, real_nce = mocov2_module.ema_update, mocov2_module.queue_info_nce
    monkeypatch.setattr(mocov2_module, "ema_update", lambda k, q, m: (calls.append("ema"), real_ema(k, q, m))[1])

    def spy(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float) -> torch.Tensor:
        calls.append(f"loss:{queue.shape[0]}")
        assert q.requires_grad and not k.requires_grad
        return real_nce(q, k, queue, T)

    monkeypatch.setattr(mocov2_module, "queue_info_nce", spy)
    batch = collate_samples([BlockSet(8)[i] for i in range(8)])
    strategy.loss(net, batch, step_generator(0, 0, 0))
    assert calls == ["ema", "ema", "loss:0"] and len(strategy.queue) == 8 and strategy.chance == 0.0
    strategy.loss(net, batch, step_generator(0, 0, 1))
    assert calls[-1] == "loss:8" and strategy.chance == pytest.approx(math.log(9))


def test_densecl_weighs_global_and_dense_terms_and_uses_matched_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    net = tiny_net()
    strategy = make_strategy("densecl", net)
    assert isinstance(strategy.queue, MomentumQueue) and isinstance(strategy.dense_queue, MomentumQueue)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    real = densecl_module.queue_info_nce

    def spy(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float) -> torch.Tensor:
        out = real(q, k, queue, T)
        seen.append((q, k, out))
        return out

    monkeypatch.setattr(densecl_module, "queue_info_nce", spy)
    batch = collate_samples([BlockSet(8)[i] for i in range(8)])
    for step in range(2):
        loss, extra = strategy.loss(net, batch, step_generator(0, 0, step))
    (_, _, l_global), (q_dense, _, l_dense) = seen[-2:]
    assert float(loss.detach()) == pytest.approx(
        0.5 * float(l_global.detach()) + 0.5 * float(l_dense.detach()), rel=1e-6
    )
    cells = (SIZE // 4) ** 2  # the 4x4 bottleneck of the 16x16 input
    assert q_dense.shape[0] == 8 * cells and len(strategy.dense_queue) == 16 and len(strategy.queue) == 16
    assert strategy.chance == pytest.approx(math.log(1 + 8))  # both queues held 8 keys at step 1


def test_byol_target_follows_the_cosine_schedule_and_takes_no_gradient() -> None:
    net = tiny_net()
    strategy = make_strategy("byol", net, steps=11)
    assert [round(strategy.momentum(k), 6) for k in (0, 5, 10)] == [0.9, 0.95, 1.0]
    batch = collate_samples([BlockSet(8)[i] for i in range(8)])
    loss, extra = strategy.loss(net, batch, step_generator(0, 0, 0))
    loss.backward()
    assert int(strategy.updates) == 1 and extra["tau"] == pytest.approx(0.9)
    assert all(p.grad is None for p in strategy.target_net.parameters())
    assert any(p.grad is not None for p in strategy.predictor.parameters())
    assert strategy.chance == 4.0


# --------------------------------------------------------------------------- a short run lowers the loss


def run_steps(name: str, steps: int) -> list[float]:
    torch.manual_seed(0)
    net = tiny_net()
    strategy = make_strategy(name, net, steps)
    task = PretrainTask(net, strategy, lr=3e-3, seed=0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    loader = step_loader(BlockSet(32), 8, steps, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, loader)
    assert len(task.chances) == steps and all(math.isfinite(c) for c in task.chances)
    return task.losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mocov2", "byol", "densecl", "detcon"])
def test_a_short_pretraining_run_lowers_the_loss(name: str) -> None:
    torch.set_num_threads(1)
    losses = run_steps(name, 40)
    first, last = np.mean(losses[2:8]), np.mean(losses[-6:])  # from step 2 the queues (K 16) are full
    assert last < first - 0.1, losses
