"""The masked InfoNCE that every contrastive loss of the pipeline is written with.

The per-pair term (Chaitanya et al., NeurIPS 2020; docs/methods.md)

    l(a, p) = -log( exp(s(a, p)) / (exp(s(a, p)) + sum_{n in N(a)} exp(s(a, n))) ),
    s(x, y) = cos(x, y) / T,

over a positive mask (which pairs (a, p) are terms) and a negative mask (which n are in N(a)).
The global strategies G^R, G^D-, G^D and the local L^R, L^D are mask builders on top of it.
"""

from __future__ import annotations

import torch


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


def chance_level(pos_mask: torch.Tensor, neg_mask: torch.Tensor, reduction: str = "pairs") -> torch.Tensor:
    """The loss of :func:`info_nce_logits` when every similarity is equal (an encoder that tells
    nothing apart): mean over the terms of log(1 + |N(a)|). Detached, a 0-dim tensor."""
    with torch.no_grad():
        return info_nce_logits(torch.zeros(pos_mask.shape, device=pos_mask.device), pos_mask, neg_mask, reduction)
