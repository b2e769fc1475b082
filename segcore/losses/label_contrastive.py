"""Label-guided local contrastive loss on pixel embeddings (the term of semi-supervised
self-training, Chaitanya et al., MedIA 2023; our definition, docs/semi_supervised.md).

Pixels of a batch carry a class: the ground truth on labeled samples, a confident pseudo-label on
unlabeled ones. Up to ``per_class`` pixels of each class are sampled (:func:`sample_pixels_per_class`);
their embeddings ``z`` (L2-normalised) meet in one loss where, for an anchor ``i`` of class
``c``, the positives ``P(i)`` are the other sampled pixels of class ``c`` and the negatives ``N(i)``
the sampled pixels of every other class:

    l_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / T) / (exp(z_i.z_p / T) + sum_{n in N(i)} exp(z_i.z_n / T)) )

An anchor without a positive (its class has one sampled pixel) or without a negative (one class
in the batch) is skipped. The loss is the mean over the classes that have an anchor of the mean
``l_i`` of their anchors, so a class absent from the batch is no term at all and a class with
many pixels weighs as much as a rare one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_pixels_per_class(
    labels: torch.Tensor, num_classes: int, per_class: int, generator: torch.Generator
) -> torch.Tensor:
    """Flat indices into ``labels`` (any shape, integer; values outside 0..K-1 are not sampled) of at
    most ``per_class`` pixels of each class, drawn without replacement with ``generator`` (a CPU
    generator: the draw is a function of the step). Returns (n,) int64 on ``labels.device``, classes
    in order 0..K-1."""
    flat = labels.reshape(-1)
    picked = []
    for c in range(num_classes):
        idx = (flat == c).nonzero(as_tuple=True)[0]
        if idx.numel() > per_class:
            order = torch.randperm(idx.numel(), generator=generator)[:per_class].to(idx.device)
            idx = idx[order]
        picked.append(idx)
    return torch.cat(picked) if picked else flat.new_zeros(0)


def label_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The loss of the module docstring: ``embeddings`` (N, D) (normalised here), ``labels`` (N,)
    int. A scalar; 0 (still attached to the graph) when no anchor has both a positive and a
    negative."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"embeddings (N, D) and labels (N,) expected, got {tuple(embeddings.shape)}, {tuple(labels.shape)}"
        )
    z = F.normalize(embeddings.float(), dim=1)
    n = len(z)
    same = labels[:, None] == labels[None, :]  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = same & ~eye
    neg = ~same
    sim = z @ z.T / temperature  # (N, N)
    # log of the sum over the negatives of each anchor; -inf where it has none
    neg_lse = torch.logsumexp(sim.masked_fill(~neg, float("-inf")), dim=1)  # (N,)
    # -log(e^s / (e^s + e^neg)) = softplus(neg_lse - s)
    pair = F.softplus(neg_lse[:, None] - sim)  # (N, N)
    anchor = pos.any(1) & neg.any(1)  # (N,)
    if not bool(anchor.any()):
        return embeddings.sum() * 0.0
    n_pos = pos.sum(1).clamp(min=1)
    per_anchor = torch.where(pos, pair, 0.0).sum(1) / n_pos  # (N,)
    class_means = []
    for c in torch.unique(labels[anchor]):
        members = anchor & (labels == c)
        class_means.append(per_anchor[members].mean())
    return torch.stack(class_means).mean()
