"""Local contrastive loss of the decoder (L^R, L^D; docs/methods.md): 3x3 regions at 13 fixed
positions of a decoder feature map, each mapped to an embedding; masks over one InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segcore.losses.info_nce import chance_level, info_nce_masked

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
        self.chance = torch.tensor(float("nan"))  # the loss at chance level of the last call

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
        self.chance = chance_level(pos, neg)
        return info_nce_masked(z, pos, neg, self.T)
