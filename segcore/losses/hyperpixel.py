"""The hyper-pixel contrastive loss (our HPCL definition, docs/hpcl.md): self-supervised
against a queue, or class-aware against one queue per class, with optional MoCHi negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segcore.losses.info_nce import info_nce_keys, info_nce_logits
from segcore.losses.queue_info_nce import queue_info_nce


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
        syn, valid = mochi_negatives(q, bank, neg_mask, self.mochi_hard, self.mochi_query, self.mochi_top)
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
            extra = None
            if mochi:
                l_syn, valid = self._synthetic_logits(q, queue, None)
                extra = l_syn.masked_fill(~valid, float("-inf"))
            return queue_info_nce(q, k, queue, self.T, extra_logits=extra)
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
