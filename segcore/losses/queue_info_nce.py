"""MoCo's InfoNCE of queries against their momentum keys and a queue of negatives.

Used by the self-supervised hyper-pixel strategy and by :class:`HyperPixelContrastLoss`
(``mode="ssl"``), so the queue contrast is written once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def queue_info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    batch_negatives: bool = False,
    extra_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of queries ``q`` (N, D) whose positive is row i of the keys ``k`` (N, D),
    against the negatives ``queue`` (K, D) and, with ``batch_negatives``, the other N - 1 keys of
    this step. ``extra_logits`` (N, S), already divided by T, are further negatives (MoCHi's
    synthetic ones; -inf where absent). Inputs are L2-normalised here; keys and queue detached.

    Batch negatives close a shortcut: every key of this step shares the batch statistics it was
    computed with, the queue's keys do not, so a model could tell the positive from the queue's
    negatives by batch statistics alone (MoCo's reason for shuffled BatchNorm); the other keys
    of the same batch share them too.
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
    if extra_logits is not None:
        logits = torch.cat([logits, extra_logits], dim=1)
    return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=q.device))
