"""Losses: one masked InfoNCE, and the global, local, hyper-pixel and segmentation losses on top.

Every contrastive loss here is the same per-pair term (Chaitanya et al., NeurIPS 2020)

    l(a, p) = -log( exp(s(a, p)) / (exp(s(a, p)) + sum_{n in N(a)} exp(s(a, n))) ),
    s(x, y) = cos(x, y) / T,

written once over a positive mask (which pairs (a, p) are terms) and a negative mask (which n
are in N(a)). The global strategies G^R, G^D-, G^D and the local L^R, L^D are mask builders;
the hyper-pixel loss (METHODS §4, our definition after HPCL-Net) uses the same term against a
queue of keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# InfoNCE over masks
# ---------------------------------------------------------------------------------------------


def info_nce_logits(
    logits: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor, reduction: str = "pairs"
) -> torch.Tensor:
    """Masked InfoNCE on precomputed similarities ``logits`` (N, M) = s(a, j), finite.

    Every ``pos_mask[a, p]`` is one term l(a, p) with negatives ``{n : neg_mask[a, n]}``.
    ``reduction="pairs"``: mean over all terms; ``"anchors"``: mean over each anchor's positives,
    then over the anchors that have at least one. No term at all gives 0 (with a graph), not NaN.
    """
    if reduction not in ("pairs", "anchors"):
        raise ValueError(f"reduction must be 'pairs' or 'anchors', got {reduction!r}")
    neg_inf = float("-inf")
    has_neg = neg_mask.any(dim=1, keepdim=True)  # (N, 1)
    # logsumexp over a row of -inf has a NaN gradient: feed zeros there and discard the result
    masked = torch.where(neg_mask, logits, neg_inf)
    lse_neg = torch.logsumexp(torch.where(has_neg, masked, 0.0), dim=1, keepdim=True)  # (N, 1)
    lse_neg = lse_neg.masked_fill(~has_neg, neg_inf)
    per_pair = torch.logaddexp(logits, lse_neg) - logits  # (N, M): l(a, j) for every j
    per_pair = torch.where(pos_mask, per_pair, 0.0)
    if reduction == "pairs":
        return per_pair.sum() / pos_mask.sum().clamp(min=1)
    n_pos = pos_mask.sum(dim=1)  # (N,)
    per_anchor = per_pair.sum(dim=1) / n_pos.clamp(min=1)
    return per_anchor.sum() / (n_pos > 0).sum().clamp(min=1)


def info_nce_masked(
    z: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    temperature: float,
    reduction: str = "pairs",
) -> torch.Tensor:
    """InfoNCE among the rows of ``z`` (N, D), L2-normalised, with bool masks (N, N).

    The diagonal of both masks is ignored: an embedding is neither its own positive nor its
    own negative. With symmetric masks each positive pair counts in both directions.
    """
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = torch.einsum("nd,md->nm", z, z) / temperature  # (N, N)
    return info_nce_logits(logits, pos_mask & ~eye, neg_mask & ~eye, reduction)


def info_nce_keys(
    q: torch.Tensor,
    k: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    temperature: float,
    reduction: str = "pairs",
) -> torch.Tensor:
    """InfoNCE of anchors ``q`` (N, D) against a separate key bank ``k`` (M, D); masks (N, M)."""
    logits = torch.einsum("nd,md->nm", q, k) / temperature  # (N, M)
    return info_nce_logits(logits, pos_mask, neg_mask, reduction)


# ---------------------------------------------------------------------------------------------
# Global contrastive loss (METHODS §1)
# ---------------------------------------------------------------------------------------------

GLOBAL_STRATEGIES = ("GR", "GD-", "GD")


def global_masks(
    volume: torch.Tensor, partition: torch.Tensor, slice_uid: torch.Tensor, strategy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative masks (N, N) for one embedding per (volume, partition, slice, view).

    Inputs are (N,) integer ids; two embeddings with equal (volume, slice_uid) are two views of
    one slice. G^R: positives = other view of the same slice, negatives = everything else.
    G^D-: same positives, negatives = other partitions only. G^D: positives also = same
    partition of other volumes (all views), negatives = other partitions.
    """
    if strategy not in GLOBAL_STRATEGIES:
        raise ValueError(f"strategy must be one of {GLOBAL_STRATEGIES}, got {strategy!r}")
    eye = torch.eye(volume.shape[0], dtype=torch.bool, device=volume.device)
    same_volume = volume[:, None] == volume[None, :]  # (N, N)
    same_slice = same_volume & (slice_uid[:, None] == slice_uid[None, :])
    same_partition = partition[:, None] == partition[None, :]
    pos = same_slice
    if strategy == "GD":
        pos = pos | (same_partition & ~same_volume)
    neg = ~same_slice if strategy == "GR" else ~same_partition
    pos = pos & ~eye
    return pos, neg & ~pos & ~eye


class GlobalContrastiveLoss(nn.Module):
    """G^R / G^D- / G^D on g1 embeddings ``z`` (N, D) (normalised here again, harmlessly)."""

    def __init__(self, strategy: str = "GD", temperature: float = 0.1) -> None:
        super().__init__()
        if strategy not in GLOBAL_STRATEGIES:
            raise ValueError(f"strategy must be one of {GLOBAL_STRATEGIES}, got {strategy!r}")
        self.strategy, self.T = strategy, temperature

    def forward(
        self,
        z: torch.Tensor,
        volume: torch.Tensor,
        partition: torch.Tensor,
        slice_uid: torch.Tensor,
    ) -> torch.Tensor:
        dev = z.device
        pos, neg = global_masks(volume.to(dev), partition.to(dev), slice_uid.to(dev), self.strategy)
        return info_nce_masked(F.normalize(z, dim=1), pos, neg, self.T)


# ---------------------------------------------------------------------------------------------
# Local contrastive loss (METHODS §2)
# ---------------------------------------------------------------------------------------------

# Region positions in quarter steps (row, col) of the usable span; see region_centres.
# 0-8: the 3x3 grid, row-major; 9-12: the 4 centres between; 13-16: midpoints that the
# reference's 3x3-window neighbour lists also use, as negatives only (never anchors).
_QUARTER_POSITIONS = (
    (0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4), (4, 0), (4, 2), (4, 4),
    (1, 1), (1, 3), (3, 1), (3, 3),
    (1, 2), (2, 1), (2, 3), (3, 2),
)  # fmt: skip
N_REGIONS = 13
# The reference's 5 negative regions per anchor region (domain_specific_cl, models.py,
# decoder_pretrain_net, 13 regions with 3x3 windows), as indices into _QUARTER_POSITIONS.
# They are taken from both views of the anchor's image (10 negatives per anchor).
REFERENCE_NEIGHBOURS = (
    (1, 9, 13, 3, 14),
    (0, 2, 9, 10, 4),
    (1, 13, 10, 15, 5),
    (0, 9, 4, 6, 11),
    (9, 10, 11, 12, 3),
    (2, 4, 8, 10, 12),
    (3, 14, 7, 11, 16),
    (4, 6, 8, 11, 12),
    (15, 5, 7, 12, 16),
    (0, 1, 3, 4, 10),
    (1, 2, 9, 4, 5),
    (3, 4, 6, 7, 12),
    (4, 5, 7, 8, 11),
)
LOCAL_STRATEGIES = ("LR", "LD")
LOCAL_NEGATIVES = ("neighbours", "all", "batch")


def _all_region_centres(h: int, w: int, window: int = 3) -> torch.Tensor:
    if h < window + 4 or w < window + 4:
        raise ValueError(f"feature map {h}x{w} too small for distinct {window}x{window} regions")
    half = window // 2
    rows = [q * (h - window) // 4 + half for q in range(5)]
    cols = [q * (w - window) // 4 + half for q in range(5)]
    centres = [(rows[r], cols[c]) for r, c in _QUARTER_POSITIONS]
    return torch.tensor(centres, dtype=torch.long)  # (17, 2)


def region_centres(h: int, w: int, n: int = 13, window: int = 3) -> torch.Tensor:
    """Centres (n, 2) as (row, col) of the fixed local regions on an h x w feature map.

    A window's top-left row is ``q * (h - window) // 4`` for q in 0..4 (a quarter of the usable
    span apart; the last window touches the bottom edge), its centre that plus ``window // 2``;
    columns alike. Regions 0-8 are the 3x3 grid (q in {0, 2, 4}, row-major), 9-12 the centres
    between (q in {1, 3}). ``n=9`` gives the grid only. The reference uses a usable span of
    ``h - 4`` for 3x3 windows, leaving the last row and column unused; we use ``h - window``.
    """
    if n not in (9, 13):
        raise ValueError(f"n must be 9 or 13, got {n}")
    return _all_region_centres(h, w, window)[:n]


def local_masks(
    volume: torch.Tensor,
    partition: torch.Tensor,
    n_positions: int,
    strategy: str = "LR",
    negatives: str = "neighbours",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (E, E) over region embeddings ordered (image b, view v, position r), E = B*2*R.

    ``volume``/``partition`` are (B,) ids per image; ``n_positions`` R is 13, or 17 with the
    reference's negative-only positions. Only positions r < 13 are anchors.
    L^R: positive = same position, other view, same image. L^D: also same position in images of
    the same partition from other volumes (both views). Negatives: "neighbours" = the reference's
    5 regions of ``REFERENCE_NEIGHBOURS`` in both views of the anchor's image; "all" = every other
    position of the anchor's image in both views; "batch" = every embedding that is not the anchor
    or a positive (regions of other images too; an extension, not in the paper).
    """
    if strategy not in LOCAL_STRATEGIES:
        raise ValueError(f"strategy must be one of {LOCAL_STRATEGIES}, got {strategy!r}")
    if negatives not in LOCAL_NEGATIVES:
        raise ValueError(f"negatives must be one of {LOCAL_NEGATIVES}, got {negatives!r}")
    R, B, dev = n_positions, volume.shape[0], volume.device
    e = torch.arange(B * 2 * R, device=dev)
    img, reg = e // (2 * R), e % R  # (E,) each
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=dev)
    same_img = img[:, None] == img[None, :]
    same_reg = reg[:, None] == reg[None, :]
    is_anchor = reg < N_REGIONS  # (E,)
    pos = same_img & same_reg
    if strategy == "LD":
        vol, part = volume[img], partition[img]  # (E,) each
        pos = pos | (same_reg & (vol[:, None] != vol[None, :]) & (part[:, None] == part[None, :]))
    pos = pos & is_anchor[:, None] & ~eye
    if negatives == "neighbours":
        table = torch.zeros(R, R, dtype=torch.bool, device=dev)
        for r, nbrs in enumerate(REFERENCE_NEIGHBOURS):
            table[r, list(nbrs)] = True
        neg = same_img & table[reg[:, None], reg[None, :]]
    elif negatives == "all":
        neg = same_img & ~same_reg
    else:
        neg = ~pos & ~eye
    return pos, neg & ~pos & ~eye & is_anchor[:, None]


class LocalContrastiveLoss(nn.Module):
    """L^R / L^D on g2 feature maps of two intensity-augmented (pixel-aligned) views.

    Windows of ``window x window`` pixels at the fixed positions (``region_centres``, plus the
    4 negative-only positions when ``negatives="neighbours"``) are flattened to C*window**2 and
    mapped by ``region_proj``, a shared bias-free Linear to ``out_dim`` that lives in this module
    (optimise ``loss.parameters()`` with the decoder; drop it with g2 after pretraining), then
    L2-normalised. InfoNCE over all B*2*R region embeddings with :func:`local_masks`; averaged over
    every (anchor, positive) pair, i.e. over regions, images and both view directions.
    """

    def __init__(
        self,
        in_channels: int,
        strategy: str = "LR",
        temperature: float = 0.1,
        negatives: str = "neighbours",
        window: int = 3,
        out_dim: int = 128,
    ) -> None:
        super().__init__()
        if strategy not in LOCAL_STRATEGIES:
            raise ValueError(f"strategy must be one of {LOCAL_STRATEGIES}, got {strategy!r}")
        if negatives not in LOCAL_NEGATIVES:
            raise ValueError(f"negatives must be one of {LOCAL_NEGATIVES}, got {negatives!r}")
        self.strategy, self.T = strategy, temperature
        self.negatives, self.window = negatives, window
        self.n_positions = len(_QUARTER_POSITIONS) if negatives == "neighbours" else N_REGIONS
        self.region_proj = nn.Linear(in_channels * window * window, out_dim, bias=False)

    def region_embeddings(self, f: torch.Tensor) -> torch.Tensor:
        """Normalised embeddings (B, R, out_dim) of the R windows of ``f`` (B, C, h, w)."""
        B, C, h, w = f.shape
        centres = _all_region_centres(h, w, self.window)[: self.n_positions].to(f.device)  # (R, 2)
        offsets = torch.arange(self.window, device=f.device) - self.window // 2  # (window,)
        rows = centres[:, 0, None] + offsets  # (R, window)
        cols = centres[:, 1, None] + offsets  # (R, window)
        patches = f[:, :, rows[:, :, None], cols[:, None, :]]  # (B, C, R, window, window)
        flat = patches.permute(0, 2, 1, 3, 4).flatten(2)  # (B, R, C * window * window)
        return F.normalize(self.region_proj(flat), dim=-1)  # (B, R, out_dim)

    def forward(
        self,
        f1: torch.Tensor,
        f2: torch.Tensor,
        volume: torch.Tensor | None = None,
        partition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``f1``, ``f2`` (B, C, h, w): the two views; ``volume``, ``partition`` (B,) (L^D only)."""
        if f1.shape != f2.shape:
            raise ValueError(f"views differ in shape: {tuple(f1.shape)} vs {tuple(f2.shape)}")
        B = f1.shape[0]
        if volume is None or partition is None:
            if self.strategy == "LD":
                raise ValueError("L^D needs volume and partition ids per image")
            volume = partition = torch.zeros(B, dtype=torch.long)
        volume, partition = volume.to(f1.device), partition.to(f1.device)
        z1, z2 = self.region_embeddings(f1), self.region_embeddings(f2)  # (B, R, D) each
        z = torch.stack([z1, z2], dim=1)  # (B, 2, R, D)
        z = z.reshape(B * 2 * self.n_positions, -1)  # (E, D), ordered (image, view, position)
        pos, neg = local_masks(volume, partition, self.n_positions, self.strategy, self.negatives)
        return info_nce_masked(z, pos, neg, self.T)


# ---------------------------------------------------------------------------------------------
# Segmentation loss
# ---------------------------------------------------------------------------------------------


class SoftDiceCELoss(nn.Module):
    """``dice_weight`` * (1 - mean soft Dice) + ``ce_weight`` * cross-entropy.

    ``logits`` (B, K, *spatial), ``target`` (B, *spatial) integer labels. Soft Dice per class is
    batch-wise, (2 sum p*y + smooth) / (sum p + sum y + smooth) over all valid pixels of the
    batch, averaged over classes 1..K-1 (0..K-1 with ``include_background``). Cross-entropy is the
    mean over valid pixels. Pixels labelled ``ignore_index`` count in neither.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        include_background: bool = False,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_classes < 2 and not include_background:
            raise ValueError("Dice without background needs num_classes >= 2")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.include_background, self.smooth = include_background, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        K = self.num_classes
        if (
            logits.shape[1] != K
            or logits.shape[2:] != target.shape[1:]
            or logits.shape[0] != target.shape[0]
        ):
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)} and K={K}"
            )
        target = target.long()
        valid = target != self.ignore_index  # (B, *spatial)
        if bool((valid & ((target < 0) | (target >= K))).any()):
            raise ValueError(
                f"target has labels outside [0, {K}) that are not ignore_index={self.ignore_index}"
            )
        t = torch.where(valid, target, 0)
        w = valid.unsqueeze(1).to(logits.dtype)  # (B, 1, *spatial)
        probs = logits.softmax(dim=1) * w  # (B, K, *spatial)
        onehot = F.one_hot(t, K).movedim(-1, 1).to(logits.dtype) * w  # (B, K, *spatial)
        dims = (0, *range(2, logits.ndim))
        inter = (probs * onehot).sum(dims)  # (K,)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)  # (K,)
        dice_loss = 1 - (dice if self.include_background else dice[1:]).mean()
        ce = F.cross_entropy(logits, t, reduction="none")  # (B, *spatial)
        ce = torch.where(valid, ce, 0.0).sum() / valid.sum().clamp(min=1)
        return self.ce_weight * ce + self.dice_weight * dice_loss


# ---------------------------------------------------------------------------------------------
# Hyper-pixel contrastive loss (METHODS §4)
# ---------------------------------------------------------------------------------------------


def hypercolumn_superpixel_embed(
    features: list[torch.Tensor],
    superpixels: torch.Tensor,
    labels: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Hyper-pixels: the mean hypercolumn over each (image, superpixel) pair.

    ``features``: multi-scale maps (B, C_i, h_i, w_i), each upsampled bilinearly to (H, W) and
    concatenated to (B, sum C_i, H, W). ``superpixels`` (B, H, W) ids per image (pixels < 0
    belong to no hyper-pixel). Returns, for the P hyper-pixels sorted by (image, id):
    ``emb`` (P, sum C_i), ``batch_idx`` (P,), ``sp_id`` (P,), ``majority`` (P,) the most frequent
    valid label (ties to the lowest class; ``ignore_index`` if none is valid; None without
    ``labels``), ``boundary`` (P,) bool: some pixel has a 4-neighbour with another valid label
    (all False without labels).
    """
    B, H, W = superpixels.shape
    cols = [
        f
        if f.shape[-2:] == (H, W)
        else F.interpolate(f, size=(H, W), mode="bilinear", align_corners=False)
        for f in features
    ]
    hc = torch.cat(cols, dim=1)  # (B, C, H, W)
    dev = hc.device
    sp = superpixels.to(dev).long()
    inside = sp >= 0  # (B, H, W)
    n_sp = int(sp.max().clamp(min=0)) + 1
    key = torch.arange(B, device=dev)[:, None, None] * n_sp + sp  # (B, H, W)
    uniq, inv = torch.unique(key[inside], return_inverse=True)  # (P,), (V,)
    P = uniq.shape[0]
    pix = hc.permute(0, 2, 3, 1)[inside]  # (V, C)
    sums = pix.new_zeros(P, pix.shape[1]).index_add(0, inv, pix)  # (P, C)
    counts = torch.zeros(P, device=dev).index_add_(0, inv, torch.ones_like(inv, dtype=torch.float))
    emb = sums / counts[:, None].to(sums.dtype)
    batch_idx, sp_id = uniq // n_sp, uniq % n_sp
    if labels is None:
        return emb, batch_idx, sp_id, None, torch.zeros(P, dtype=torch.bool, device=dev)
    lab = labels.to(dev).long()
    lab_ok = (lab != ignore_index) & (lab >= 0)  # (B, H, W)
    n_cls = int(lab[lab_ok].max()) + 1 if bool(lab_ok.any()) else 1
    ok = lab_ok[inside]  # (V,)
    hist = (
        torch.zeros(P * n_cls, device=dev)
        .index_add_(0, inv[ok] * n_cls + lab[inside][ok], torch.ones(int(ok.sum()), device=dev))
        .view(P, n_cls)
    )
    majority = torch.where(hist.sum(1) > 0, hist.argmax(1), ignore_index)
    edge = torch.zeros_like(lab_ok)  # (B, H, W): pixel touches another valid label
    dv = lab_ok[:, 1:] & lab_ok[:, :-1] & (lab[:, 1:] != lab[:, :-1])  # (B, H-1, W)
    dh = lab_ok[:, :, 1:] & lab_ok[:, :, :-1] & (lab[:, :, 1:] != lab[:, :, :-1])  # (B, H, W-1)
    edge[:, 1:] |= dv
    edge[:, :-1] |= dv
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    touches = torch.zeros(P, device=dev).index_add_(0, inv, edge[inside].float())
    return emb, batch_idx, sp_id, majority, touches > 0


def sample_anchors(
    boundary: torch.Tensor,
    n: int,
    boundary_fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (min(n, P),) of anchors among P hyper-pixels, ``boundary_fraction`` of them on boundaries.

    Drawn without replacement; when one kind runs short the other fills the rest.
    """
    if not 0.0 <= boundary_fraction <= 1.0:
        raise ValueError(f"boundary_fraction must lie in [0, 1], got {boundary_fraction}")
    b_idx = torch.nonzero(boundary.cpu(), as_tuple=True)[0]
    o_idx = torch.nonzero(~boundary.cpu(), as_tuple=True)[0]
    n = min(n, boundary.numel())
    n_b = min(round(n * boundary_fraction), b_idx.numel())
    n_o = min(n - n_b, o_idx.numel())
    n_b = min(n - n_o, b_idx.numel())
    b_pick = b_idx[torch.randperm(b_idx.numel(), generator=generator)[:n_b]]
    o_pick = o_idx[torch.randperm(o_idx.numel(), generator=generator)[:n_o]]
    return torch.cat([b_pick, o_pick]).to(boundary.device)


@torch.no_grad()
def mochi_negatives(
    q: torch.Tensor,
    bank: torch.Tensor,
    neg_mask: torch.Tensor | None = None,
    n_mix: int = 16,
    n_query_mix: int = 0,
    n_hardest: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCHi (Kalantidis et al. 2020) synthetic negatives per anchor, never to be enqueued.

    For each anchor in ``q`` (N, D) take its ``n_hardest`` most similar negatives in ``bank``
    (M, D) (only ``neg_mask`` (N, M) entries when given); synthesise ``n_mix`` negatives
    a*n_i + (1-a)*n_j (a ~ U(0, 1), i, j random among the hardest) and ``n_query_mix`` negatives
    b*q + (1-b)*n_j (b ~ U(0, 0.5), so the negative stays closer to n_j than to q), all
    L2-normalised and detached. Returns synthetic (N, S, D) and valid (N, S) (False for anchors
    without any negative). Uses the global RNG.
    """
    N, M, dev = q.shape[0], bank.shape[0], q.device
    S = n_mix + n_query_mix
    if M == 0 or S == 0:
        return q.new_zeros(N, 0, q.shape[1]), torch.zeros(N, 0, dtype=torch.bool, device=dev)
    q = q.detach()
    sim = torch.einsum("nd,md->nm", q, bank)  # (N, M)
    if neg_mask is not None:
        sim = sim.masked_fill(~neg_mask, float("-inf"))
        n_neg = neg_mask.sum(dim=1)  # (N,)
    else:
        n_neg = torch.full((N,), M, device=dev)
    top = min(n_hardest, M)
    hard = sim.topk(top, dim=1).indices  # (N, top), most similar first, valid ones first
    n_valid = n_neg.clamp(max=top)  # (N,)

    def pick(s: int) -> torch.Tensor:  # (N, s, D) random entries among each anchor's valid hardest
        rank = (torch.rand(N, s, device=dev) * n_valid[:, None]).long().clamp(max=top - 1)
        return bank[hard.gather(1, rank)]

    a = torch.rand(N, n_mix, 1, device=dev)
    mixed = a * pick(n_mix) + (1 - a) * pick(n_mix)  # (N, n_mix, D)
    b = 0.5 * torch.rand(N, n_query_mix, 1, device=dev)
    with_q = b * q[:, None, :] + (1 - b) * pick(n_query_mix)  # (N, n_query_mix, D)
    synthetic = F.normalize(torch.cat([mixed, with_q], dim=1), dim=-1)  # (N, S, D)
    return synthetic, (n_valid > 0)[:, None].expand(N, S)


class HyperPixelContrastLoss(nn.Module):
    """InfoNCE of hyper-pixel embeddings against momentum keys and queues (our HPCL definition).

    ``mode="ssl"`` (MoCo): ``forward(q, k=k, queue=queue)`` with queries q (N, D) (view 1),
    keys k (N, D) of the same hyper-pixels from the momentum encoder on view 2, negatives queue
    (K, D): cross-entropy over [q.k, q.queue] / T with the positive at index 0.
    ``mode="sup"``: ``forward(q, labels=y, queue=keys, queue_labels=ky)`` with anchor labels
    (N,) and class-queue entries (M, D), (M,): positives = same-class entries, negatives = the
    others; each anchor's terms averaged over its positives, then over anchors; anchors without
    a positive (e.g. label ``ignore_index``) are skipped, and with none left the loss is 0.
    ``mochi_hard`` > 0 adds that many MoCHi negatives per anchor mixed from its hardest negatives
    (``mochi_query`` more mixed with the query); they enter the loss only.
    Inputs are L2-normalised here; keys and queue are detached. Enqueue after calling this.
    """

    def __init__(
        self,
        mode: str = "ssl",
        temperature: float = 0.1,
        mochi_hard: int = 0,
        mochi_query: int = 0,
        mochi_top: int = 64,
    ) -> None:
        super().__init__()
        if mode not in ("ssl", "sup"):
            raise ValueError(f"mode must be 'ssl' or 'sup', got {mode!r}")
        self.mode, self.T = mode, temperature
        self.mochi_hard, self.mochi_query, self.mochi_top = mochi_hard, mochi_query, mochi_top

    def _synthetic_logits(
        self, q: torch.Tensor, bank: torch.Tensor, neg_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        syn, valid = mochi_negatives(
            q, bank, neg_mask, self.mochi_hard, self.mochi_query, self.mochi_top
        )
        return torch.einsum("nd,nsd->ns", q, syn) / self.T, valid  # (N, S), (N, S)

    def forward(
        self,
        q: torch.Tensor,
        *,
        k: torch.Tensor | None = None,
        queue: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        queue_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if queue is None:
            raise ValueError("queue (K, D) is required (it may have 0 rows)")
        mochi = self.mochi_hard + self.mochi_query > 0
        q = F.normalize(q, dim=1)
        queue = F.normalize(queue.detach().to(q.dtype), dim=1)
        if q.shape[0] == 0:
            return q.sum() * 0.0
        if self.mode == "ssl":
            if k is None:
                raise ValueError("ssl mode needs keys k (N, D)")
            k = F.normalize(k.detach().to(q.dtype), dim=1)
            l_pos = torch.einsum("nd,nd->n", q, k)[:, None]  # (N, 1)
            l_neg = torch.einsum("nd,kd->nk", q, queue)  # (N, K)
            logits = torch.cat([l_pos, l_neg], dim=1) / self.T  # (N, 1 + K)
            if mochi:
                l_syn, valid = self._synthetic_logits(q, queue, None)
                logits = torch.cat([logits, l_syn.masked_fill(~valid, float("-inf"))], dim=1)
            target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
            return F.cross_entropy(logits, target)
        if labels is None or queue_labels is None:
            raise ValueError("sup mode needs labels (N,) and queue_labels (M,)")
        pos = labels.to(q.device)[:, None] == queue_labels.to(q.device)[None, :]  # (N, M)
        neg = ~pos
        if not mochi:
            return info_nce_keys(q, queue, pos, neg, self.T, reduction="anchors")
        logits = torch.einsum("nd,md->nm", q, queue) / self.T  # (N, M)
        l_syn, valid = self._synthetic_logits(q, queue, neg)
        logits = torch.cat([logits, l_syn], dim=1)  # (N, M + S)
        pos = torch.cat([pos, torch.zeros_like(valid)], dim=1)
        neg = torch.cat([neg, valid], dim=1)
        return info_nce_logits(logits, pos, neg, reduction="anchors")
