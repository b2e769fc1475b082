"""Contrastive and segmentation losses: brute force over the definitions, exact values, descent."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segcore.heads import LocalProjectionHead
from segcore.hyperpixels import hypercolumn_superpixel_embed, sample_anchors
from segcore.losses import (
    REFERENCE_NEIGHBOURS,
    GlobalContrastiveLoss,
    HyperPixelContrastLoss,
    LocalContrastiveLoss,
    SoftDiceCELoss,
    global_masks,
    info_nce_keys,
    info_nce_masked,
    local_masks,
    region_centres,
)
from segcore.losses.local_contrastive import _QUARTER_POSITIONS
from segcore.queue import MomentumQueue

T = 0.1


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only contend for the shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def term(s_ap: float, s_negs: list[float]) -> float:
    """-log(e^s+ / (e^s+ + sum e^s-)), straight from the definition."""
    return -math.log(math.exp(s_ap) / (math.exp(s_ap) + sum(math.exp(s) for s in s_negs)))


def brute_info_nce(z: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float) -> float:
    N = z.shape[0]
    s = [[float(z[a] @ z[b]) / temperature for b in range(N)] for a in range(N)]
    terms = []
    for a in range(N):
        for p in range(N):
            if p != a and pos[a, p]:
                terms.append(term(s[a][p], [s[a][n] for n in range(N) if n != a and neg[a, n]]))
    return sum(terms) / len(terms)


# --- InfoNCE core -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_info_nce_masked_equals_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    N = 9
    z = unit(N, 5, seed=seed)
    pos = torch.rand(N, N, generator=g) < 0.3
    neg = (torch.rand(N, N, generator=g) < 0.6) & ~pos
    pos[0, 1] = True  # at least one term
    neg[0, 1] = False
    got = info_nce_masked(z, pos, neg, T)
    assert got.item() == pytest.approx(brute_info_nce(z, pos, neg, T), abs=1e-5)


def test_info_nce_keys_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(7)
    q, k = unit(5, 4, seed=1), unit(11, 4, seed=2)
    pos = torch.rand(5, 11, generator=g) < 0.3
    neg = ~pos & (torch.rand(5, 11, generator=g) < 0.8)
    pos[0, 0], neg[0, 0] = True, False
    s = (q @ k.T / T).tolist()
    terms, per_anchor = [], []
    for a in range(5):
        ta = [term(s[a][p], [s[a][n] for n in range(11) if neg[a, n]]) for p in range(11) if pos[a, p]]
        terms += ta
        if ta:
            per_anchor.append(sum(ta) / len(ta))
    assert info_nce_keys(q, k, pos, neg, T).item() == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    got = info_nce_keys(q, k, pos, neg, T, reduction="anchors").item()
    assert got == pytest.approx(sum(per_anchor) / len(per_anchor), abs=1e-5)


def test_identical_embeddings_give_log_one_plus_negatives() -> None:
    z = F.normalize(torch.ones(8, 4, dtype=torch.float64), dim=1)
    vol = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    part = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    uid = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pos, neg = global_masks(vol, part, uid, "GR")
    assert info_nce_masked(z, pos, neg, T).item() == pytest.approx(math.log(1 + 6), abs=1e-9)
    pos, neg = global_masks(vol, part, uid, "GD-")
    assert info_nce_masked(z, pos, neg, T).item() == pytest.approx(math.log(1 + 4), abs=1e-9)


def test_no_positive_pair_gives_zero_with_grad_and_no_negative_gives_zero_term() -> None:
    z = unit(4, 3).requires_grad_(True)
    none = torch.zeros(4, 4, dtype=torch.bool)
    loss = info_nce_masked(z, none, ~none, T)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(z.grad == 0)
    pos = torch.zeros(4, 4, dtype=torch.bool)
    pos[0, 1] = True  # a term with no negative at all: -log(e^s / e^s) = 0
    z.grad = None
    loss = info_nce_masked(z, pos, none, T)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12) and torch.isfinite(z.grad).all()


# --- global masks and loss ----------------------------------------------------------------------

# 2 volumes x 2 partitions x 2 views; index = (volume * 2 + partition) * 2 + view
VOL = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
PART = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
UID = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def bool_matrix(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


GR_POS = [
    "01000000",
    "10000000",
    "00010000",
    "00100000",
    "00000100",
    "00001000",
    "00000001",
    "00000010",
]
GR_NEG = [
    "00111111",
    "00111111",
    "11001111",
    "11001111",
    "11110011",
    "11110011",
    "11111100",
    "11111100",
]
GD_NEG = [
    "00110011",
    "00110011",
    "11001100",
    "11001100",
    "00110011",
    "00110011",
    "11001100",
    "11001100",
]
GD_POS = [
    "01001100",
    "10001100",
    "00010011",
    "00100011",
    "11000100",
    "11001000",
    "00110001",
    "00110010",
]


@pytest.mark.parametrize(
    ("strategy", "pos", "neg"),
    [("GR", GR_POS, GR_NEG), ("GD-", GR_POS, GD_NEG), ("GD", GD_POS, GD_NEG)],
)
def test_global_masks_exact(strategy: str, pos: list[str], neg: list[str]) -> None:
    got_pos, got_neg = global_masks(VOL, PART, UID, strategy)
    assert torch.equal(got_pos, bool_matrix(pos))
    assert torch.equal(got_neg, bool_matrix(neg))
    assert not got_pos.diagonal().any() and not got_neg.diagonal().any()
    assert not (got_pos & got_neg).any()
    assert torch.equal(got_pos, got_pos.T) and torch.equal(got_neg, got_neg.T)


def test_global_masks_reject_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="strategy"):
        global_masks(VOL, PART, UID, "GX")


def brute_global(z: torch.Tensor, vol: list[int], part: list[int], uid: list[int], strategy: str) -> float:
    N = len(vol)
    terms = []
    for a in range(N):
        for p in range(N):
            if p == a:
                continue
            same_slice = vol[p] == vol[a] and uid[p] == uid[a]
            is_pos = same_slice or (strategy == "GD" and part[p] == part[a] and vol[p] != vol[a])
            if not is_pos:
                continue
            negs = []
            for n in range(N):
                if n == a:
                    continue
                n_same = vol[n] == vol[a] and uid[n] == uid[a]
                is_neg = (not n_same) if strategy == "GR" else part[n] != part[a]
                if is_neg:
                    negs.append(float(z[a] @ z[n]) / T)
            terms.append(term(float(z[a] @ z[p]) / T, negs))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("strategy", ["GR", "GD-", "GD"])
def test_global_loss_equals_brute_force_and_view_swap(strategy: str) -> None:
    # 3 volumes x 3 partitions x 2 views, views interleaved
    vol = torch.arange(3).repeat_interleave(6)
    part = torch.arange(3).repeat_interleave(2).repeat(3)
    uid = vol * 3 + part
    z = unit(18, 6, seed=5)
    loss = GlobalContrastiveLoss(strategy, temperature=T)
    got = loss(z, vol, part, uid).item()
    assert got == pytest.approx(brute_global(z, vol.tolist(), part.tolist(), uid.tolist(), strategy), abs=1e-5)
    swap = torch.arange(18).view(9, 2).flip(1).reshape(-1)  # view 0 <-> view 1
    assert loss(z[swap], vol[swap], part[swap], uid[swap]).item() == pytest.approx(got, abs=1e-9)


@pytest.mark.parametrize("strategy", ["GR", "GD-", "GD"])
def test_global_loss_goes_down(strategy: str) -> None:
    torch.manual_seed(0)
    vol = torch.arange(2).repeat_interleave(8)
    part = torch.arange(4).repeat_interleave(2).repeat(2)
    uid = vol * 4 + part
    z = nn.Parameter(torch.randn(16, 8))
    loss_fn = GlobalContrastiveLoss(strategy)
    opt = torch.optim.Adam([z], lr=0.05)
    first = None
    for _ in range(20):
        loss = loss_fn(z, vol, part, uid)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_fn(z, vol, part, uid).item() < 0.8 * first


# --- local loss ---------------------------------------------------------------------------------


def test_region_centres_known_sizes() -> None:
    expected = [(1, 1), (1, 7), (1, 14), (7, 1), (7, 7), (7, 14), (14, 1), (14, 7), (14, 14),
                (4, 4), (4, 10), (10, 4), (10, 10)]  # fmt: skip
    assert region_centres(16, 16).tolist() == [list(p) for p in expected]
    assert region_centres(16, 16, n=9).tolist() == [list(p) for p in expected[:9]]
    c = region_centres(12, 20)  # rows: q*9//4 + 1, cols: q*17//4 + 1
    assert sorted(set(c[:, 0].tolist())) == [1, 3, 5, 7, 10]
    assert sorted(set(c[:, 1].tolist())) == [1, 5, 9, 13, 18]
    # every 3x3 window lies inside the map
    assert (c >= 1).all() and (c[:, 0] <= 10).all() and (c[:, 1] <= 18).all()
    assert len({tuple(p) for p in c.tolist()}) == 13
    with pytest.raises(ValueError, match="too small"):
        region_centres(6, 16)


# The reference's neighbour lists for 3x3 windows, in quarter steps (row, col) of the span,
# transcribed independently of segcore.losses (domain_specific_cl, models.py).
REF_POSITIONS = [(0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4), (4, 0), (4, 2), (4, 4),
                 (1, 1), (1, 3), (3, 1), (3, 3)]  # fmt: skip
REF_NEIGHBOURS = [
    [(0, 2), (1, 1), (1, 2), (2, 0), (2, 1)],
    [(0, 0), (0, 4), (1, 1), (1, 3), (2, 2)],
    [(0, 2), (1, 2), (1, 3), (2, 3), (2, 4)],
    [(0, 0), (1, 1), (2, 2), (4, 0), (3, 1)],
    [(1, 1), (1, 3), (3, 1), (3, 3), (2, 0)],
    [(0, 4), (2, 2), (4, 4), (1, 3), (3, 3)],
    [(2, 0), (2, 1), (4, 2), (3, 1), (3, 2)],
    [(2, 2), (4, 0), (4, 4), (3, 1), (3, 3)],
    [(2, 3), (2, 4), (4, 2), (3, 3), (3, 2)],
    [(0, 0), (0, 2), (2, 0), (2, 2), (1, 3)],
    [(0, 2), (0, 4), (1, 1), (2, 2), (2, 4)],
    [(2, 0), (2, 2), (4, 0), (4, 2), (3, 3)],
    [(2, 2), (2, 4), (4, 2), (4, 4), (3, 1)],
]


def test_neighbour_table_matches_reference() -> None:
    assert list(_QUARTER_POSITIONS[:13]) == REF_POSITIONS
    assert len(REFERENCE_NEIGHBOURS) == 13
    for r in range(13):
        assert {_QUARTER_POSITIONS[i] for i in REFERENCE_NEIGHBOURS[r]} == set(REF_NEIGHBOURS[r])
        assert r not in REFERENCE_NEIGHBOURS[r]


def brute_local(loss: LocalContrastiveLoss, f1, f2, vol, part, strategy, negatives) -> float:
    h, w = f1.shape[-2:]

    def top_left(q: int, size: int) -> int:
        return q * (size - 3) // 4

    def embed(f: torch.Tensor, b: int, qr: int, qc: int) -> torch.Tensor:
        r0, c0 = top_left(qr, h), top_left(qc, w)
        window = f[b, :, r0 : r0 + 3, c0 : c0 + 3].reshape(-1)  # (C*9,) channel-major
        return F.normalize(loss.region_proj(window), dim=0)

    views = (f1, f2)
    B = f1.shape[0]
    terms = []
    for b in range(B):
        for v in range(2):
            for r, qp in enumerate(REF_POSITIONS):
                a = embed(views[v], b, *qp)
                positives = [embed(views[1 - v], b, *qp)]
                if strategy == "LD":
                    for b2 in range(B):
                        if vol[b2] != vol[b] and part[b2] == part[b]:
                            positives += [embed(views[0], b2, *qp), embed(views[1], b2, *qp)]
                if negatives == "neighbours":
                    nq = REF_NEIGHBOURS[r]
                else:
                    nq = [p for p in REF_POSITIONS if p != qp]
                negs = [embed(views[vv], b, *p) for vv in range(2) for p in nq]
                s_negs = [float(a @ n) / T for n in negs]
                terms += [term(float(a @ p) / T, s_negs) for p in positives]
    return sum(terms) / len(terms)


@pytest.mark.parametrize(
    ("strategy", "negatives"),
    [("LR", "neighbours"), ("LR", "all"), ("LD", "neighbours"), ("LD", "all")],
)
def test_local_loss_equals_brute_force_and_is_symmetric(strategy: str, negatives: str) -> None:
    torch.manual_seed(3)
    C, h, w = 2, 10, 11
    vol = torch.tensor([0, 0, 1, 1])
    part = torch.tensor([0, 1, 0, 1])
    f1, f2 = (
        torch.randn(4, C, h, w, dtype=torch.float64),
        torch.randn(4, C, h, w, dtype=torch.float64),
    )
    loss = LocalContrastiveLoss(C, strategy=strategy, temperature=T, negatives=negatives, out_dim=6).double()
    with torch.no_grad():
        got = loss(f1, f2, vol, part).item()
        assert got == pytest.approx(brute_local(loss, f1, f2, vol, part, strategy, negatives), abs=1e-5)
        assert loss(f2, f1, vol, part).item() == pytest.approx(got, abs=1e-9)


def test_local_masks_properties() -> None:
    vol, part = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    for strategy in ("LR", "LD"):
        for negatives, R in (("neighbours", 17), ("all", 13), ("batch", 13)):
            pos, neg = local_masks(vol, part, R, strategy, negatives)
            assert not pos.diagonal().any() and not (pos & neg).any()
            extra = torch.arange(3 * 2 * R) % R >= 13  # negative-only positions
            assert not pos[extra].any() and not pos[:, extra].any()
            n_pos = pos.sum(1).view(3, 2, R)[..., :13]
            expected = 1 if strategy == "LR" else torch.tensor([3, 1, 3]).view(3, 1, 1)
            assert torch.equal(n_pos, torch.ones_like(n_pos) * expected)
            if negatives == "neighbours":
                assert (neg.sum(1).view(3, 2, R)[..., :13] == 10).all()
            if negatives == "all":
                assert (neg.sum(1).view(3, 2, R) == 24).all()


def test_local_loss_goes_down_on_tiny_conv_net() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), LocalProjectionHead(8, 8, 8))
    loss_fn = LocalContrastiveLoss(8, strategy="LD", negatives="neighbours", out_dim=16)
    x = torch.rand(4, 1, 12, 12)
    x1, x2 = 1.2 * x + 0.05 * torch.randn_like(x), 0.8 * x + 0.05 * torch.randn_like(x)
    vol, part = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    opt = torch.optim.Adam([*net.parameters(), *loss_fn.parameters()], lr=1e-2)

    def step() -> torch.Tensor:
        return loss_fn(net(x1), net(x2), vol, part)

    first = step().item()
    for _ in range(20):
        loss = step()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert step().item() < 0.8 * first


def test_local_ld_needs_ids() -> None:
    loss = LocalContrastiveLoss(2, strategy="LD")
    with pytest.raises(ValueError, match="volume and partition"):
        loss(torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8))


# --- segmentation loss --------------------------------------------------------------------------


def test_soft_dice_ce_known_value_and_ignore() -> None:
    ln3 = math.log(3.0)
    # pixel 0: p = (0.25, 0.75), label 1; pixel 1: p = (0.75, 0.25), label 0; pixel 2: ignored
    logits = torch.tensor([[[[0.0, ln3, 50.0]], [[ln3, 0.0, -50.0]]]])  # (B=1, K=2, H=1, W=3)
    target = torch.tensor([[[1, 0, 255]]])
    s = 1e-5
    dice = (2 * 0.75 + s) / (1.0 + 1.0 + s)  # class 1: sum p*y = 0.75, sum p = 1, sum y = 1
    expected = -math.log(0.75) + (1 - dice)
    loss = SoftDiceCELoss(2)
    assert loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert SoftDiceCELoss(2, include_background=True)(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert SoftDiceCELoss(2, ce_weight=0.0)(logits, target).item() == pytest.approx(1 - dice, abs=1e-6)
    changed = logits.clone()
    changed[..., 2] = torch.tensor([-7.0, 3.0])[None, :, None]
    assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), abs=1e-7)


def test_soft_dice_ce_ignored_pixels_have_no_effect_or_gradient() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 6))
    target[0, :2] = 255
    loss_fn = SoftDiceCELoss(4)
    loss = loss_fn(logits, target)
    loss.backward()
    assert (logits.grad[0, :, :2] == 0).all()
    other = logits.detach().clone()
    other[0, :, :2] = torch.randn(4, 2, 6) * 10
    assert loss_fn(other, target).item() == pytest.approx(loss.item(), abs=1e-6)
    all_ignored = torch.full((2, 6, 6), 255)
    assert torch.isfinite(loss_fn(logits, all_ignored))
    with pytest.raises(ValueError, match="outside"):
        loss_fn(logits, torch.full((2, 6, 6), 7))


def test_soft_dice_ce_goes_down() -> None:
    torch.manual_seed(0)
    logits = nn.Parameter(torch.randn(1, 3, 8, 8))
    target = torch.randint(0, 3, (1, 8, 8))
    loss_fn = SoftDiceCELoss(3)
    opt = torch.optim.Adam([logits], lr=0.1)
    first = loss_fn(logits, target).item()
    for _ in range(20):
        loss = loss_fn(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_fn(logits, target).item() < 0.5 * first


# --- hyper-pixel loss ---------------------------------------------------------------------------


def test_hyperpixel_ssl_equals_brute_force() -> None:
    q, k, queue = unit(6, 5, seed=1), unit(6, 5, seed=2), unit(10, 5, seed=3)
    got = HyperPixelContrastLoss("ssl", temperature=T)(q, k=k, queue=queue).item()
    expected = sum(term(float(q[i] @ k[i]) / T, [float(q[i] @ queue[j]) / T for j in range(10)]) for i in range(6)) / 6
    assert got == pytest.approx(expected, abs=1e-5)
    empty = HyperPixelContrastLoss("ssl")(q, k=k, queue=queue[:0])
    assert empty.item() == pytest.approx(0.0, abs=1e-9)


def brute_sup(q, y, keys, ky) -> float:
    per_anchor = []
    for a in range(q.shape[0]):
        s = [float(q[a] @ keys[j]) / T for j in range(keys.shape[0])]
        negs = [s[j] for j in range(len(s)) if ky[j] != y[a]]
        ta = [term(s[j], negs) for j in range(len(s)) if ky[j] == y[a]]
        if ta:
            per_anchor.append(sum(ta) / len(ta))
    return sum(per_anchor) / len(per_anchor)


def test_hyperpixel_sup_equals_brute_force_and_skips_anchors_without_positives() -> None:
    q, keys = unit(7, 5, seed=4), unit(12, 5, seed=5)
    y = torch.tensor([0, 1, 2, 1, 0, 2, 1])
    ky = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1])
    loss = HyperPixelContrastLoss("sup", temperature=T)
    got = loss(q, labels=y, queue=keys, queue_labels=ky).item()
    assert got == pytest.approx(brute_sup(q, y, keys, ky), abs=1e-5)
    # an anchor with a label the queue does not hold (here: ignore 255) changes nothing
    q2, y2 = torch.cat([q, unit(1, 5, seed=9)]), torch.cat([y, torch.tensor([255])])
    assert loss(q2, labels=y2, queue=keys, queue_labels=ky).item() == pytest.approx(got, abs=1e-9)
    # no anchor with a positive: 0, with a graph, finite gradient
    qg = q.clone().requires_grad_(True)
    none = loss(qg, labels=torch.full((7,), 5), queue=keys, queue_labels=ky)
    none.backward()
    assert none.item() == 0.0 and torch.isfinite(qg.grad).all()


def test_hyperpixel_sup_binary_with_background_is_finite() -> None:
    from segcore.queue import ClassQueues

    queues = ClassQueues(2, 8, 5)
    queues.enqueue(unit(10, 5, seed=6).float(), torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1]))
    keys, ky = queues.keys_and_labels()
    assert set(ky.tolist()) == {0, 1}
    q = unit(6, 5, seed=7).float().requires_grad_(True)
    loss = HyperPixelContrastLoss("sup")(q, labels=torch.tensor([0, 0, 0, 0, 1, 1]), queue=keys, queue_labels=ky)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0 and torch.isfinite(q.grad).all()
    only_bg = HyperPixelContrastLoss("sup")(q, labels=torch.zeros(6, dtype=torch.long), queue=keys, queue_labels=ky)
    assert torch.isfinite(only_bg) and only_bg.item() > 0


def test_mochi_negatives_raise_the_loss_and_are_not_enqueued() -> None:
    torch.manual_seed(0)
    q, k = unit(6, 5, seed=1).float(), unit(6, 5, seed=2).float()
    mq = MomentumQueue(16, 5)
    mq.enqueue(unit(16, 5, seed=3).float())
    before = mq.queue.clone()
    queue = mq.keys()
    plain = HyperPixelContrastLoss("ssl")(q, k=k, queue=queue)
    hard = HyperPixelContrastLoss("ssl", mochi_hard=8, mochi_query=4, mochi_top=6)(q, k=k, queue=queue)
    assert hard.item() > plain.item()
    assert torch.equal(mq.queue, before) and int(mq.ptr) == 0 and len(mq) == 16
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    ky = torch.arange(16) % 2
    plain = HyperPixelContrastLoss("sup")(q, labels=y, queue=queue, queue_labels=ky)
    hard = HyperPixelContrastLoss("sup", mochi_hard=8, mochi_top=4)(q, labels=y, queue=queue, queue_labels=ky)
    assert hard.item() > plain.item() and torch.isfinite(hard)
    assert torch.equal(mq.queue, before)


def test_hyperpixel_ssl_goes_down() -> None:
    torch.manual_seed(0)
    q = nn.Parameter(torch.randn(8, 6))
    k, queue = F.normalize(torch.randn(8, 6), dim=1), F.normalize(torch.randn(32, 6), dim=1)
    loss_fn = HyperPixelContrastLoss("ssl")
    opt = torch.optim.Adam([q], lr=0.05)
    first = loss_fn(q, k=k, queue=queue).item()
    for _ in range(20):
        loss = loss_fn(q, k=k, queue=queue)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_fn(q, k=k, queue=queue).item() < 0.5 * first


def test_hypercolumn_superpixel_embed_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    B, H, W = 2, 8, 8
    feats = [torch.randn(B, 3, 8, 8, generator=g), torch.randn(B, 2, 4, 4, generator=g)]
    sp = torch.randint(0, 6, (B, H, W), generator=g)
    sp[sp == 3] = 4  # id 3 missing
    sp[0, 0, :3] = -1  # pixels outside any hyper-pixel
    labels = torch.randint(0, 3, (B, H, W), generator=g)
    labels[1, 4:, :] = 255
    emb, bidx, sid, maj, boundary = hypercolumn_superpixel_embed(feats, sp, labels, ignore_index=255)
    hc = torch.cat([feats[0], F.interpolate(feats[1], size=(H, W), mode="bilinear", align_corners=False)], 1)
    rows = []
    for b in range(B):
        for s in sorted(set(sp[b].flatten().tolist()) - {-1}):
            pix = [(i, j) for i in range(H) for j in range(W) if sp[b, i, j] == s]
            mean = torch.stack([hc[b, :, i, j] for i, j in pix]).mean(0)
            counts = Counter(int(labels[b, i, j]) for i, j in pix if labels[b, i, j] != 255)
            top = max(counts.values()) if counts else 0
            majority = min(c for c, n in counts.items() if n == top) if counts else 255
            touches = False
            for i, j in pix:
                if labels[b, i, j] == 255:
                    continue
                for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    i2, j2 = i + di, j + dj
                    if 0 <= i2 < H and 0 <= j2 < W and labels[b, i2, j2] not in (255, labels[b, i, j]):
                        touches = True
            rows.append((b, s, mean, majority, touches))
    assert bidx.tolist() == [r[0] for r in rows] and sid.tolist() == [r[1] for r in rows]
    assert torch.allclose(emb, torch.stack([r[2] for r in rows]), atol=1e-6)
    assert maj.tolist() == [r[3] for r in rows]
    assert boundary.tolist() == [r[4] for r in rows]
    emb2, _, _, maj2, b2 = hypercolumn_superpixel_embed(feats, sp)
    assert torch.equal(emb2, emb) and maj2 is None and not b2.any()


def test_hypercolumn_embed_is_differentiable() -> None:
    f = torch.randn(1, 2, 4, 4, requires_grad=True)
    sp = torch.zeros(1, 8, 8, dtype=torch.long)
    emb, *_ = hypercolumn_superpixel_embed([f], sp)
    emb.sum().backward()
    assert emb.shape == (1, 2) and torch.allclose(f.grad.sum(dim=(2, 3)), torch.ones(1, 2))


def test_sample_anchors_oversamples_boundaries() -> None:
    boundary = torch.zeros(100, dtype=torch.bool)
    boundary[::10] = True  # 10 boundary hyper-pixels
    g = torch.Generator().manual_seed(0)
    idx = sample_anchors(boundary, 20, boundary_fraction=0.5, generator=g)
    assert idx.numel() == 20 and idx.unique().numel() == 20 and int(boundary[idx].sum()) == 10
    idx = sample_anchors(boundary, 20, boundary_fraction=1.0, generator=g)
    assert idx.numel() == 20 and int(boundary[idx].sum()) == 10  # all 10, the rest filled
    idx = sample_anchors(boundary, 500, boundary_fraction=0.2, generator=g)
    assert sorted(idx.tolist()) == list(range(100))
