"""Momentum queues: ring buffers of key embeddings (MoCo's K), persistent in checkpoints.

Contract for callers (docs/hpcl.md "Parts"; docs/ssl_baselines.md):

- Enqueue **after** the loss is computed from the current queue: the keys of this step must not
  be their own negatives. ``keys()`` returns a copy, so enqueueing before ``backward()`` is safe.
- Keys come from the momentum encoder under ``torch.no_grad()``; ``enqueue`` detaches anyway.
- Under DDP every process must call ``enqueue`` at the same step (it is a collective): keys of
  all processes are gathered in rank order and every process writes the same entries, so the
  queues stay identical across processes. In one process (or without torch.distributed
  initialised) the gather is a no-op.
- ``queue``, ``ptr`` and ``filled`` are persistent buffers: a resumed run continues with the same
  queue. Only the first ``filled`` rows are valid until the ring has wrapped once.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def gather_across_processes(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N_r, ...) from every process in rank order; ``x`` itself in one process.

    Processes may hold different N_r (hyper-pixel counts vary per tile): sizes are gathered
    first, every tensor is padded to the largest, gathered, and trimmed again.
    """
    if not _distributed():
        return x
    world = dist.get_world_size()
    x = x.contiguous()
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    n_max = max(counts)
    padded = x.new_zeros((n_max, *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return torch.cat([o[:c] for o, c in zip(out, counts, strict=True)])  # (sum N_r, ...)


def _ring_write(buf: torch.Tensor, ptr: int, keys: torch.Tensor) -> int:
    """Write ``keys`` (n, D) into ``buf`` (K, D) from ``ptr`` with wrap-around; return the new ptr.

    With n > K only the last K keys survive (the older ones would be overwritten anyway).
    """
    K, n = buf.shape[0], keys.shape[0]
    new_ptr = (ptr + n) % K
    if n > K:
        ptr, keys = (ptr + n - K) % K, keys[n - K :]
    idx = (ptr + torch.arange(keys.shape[0], device=buf.device)) % K  # (min(n, K),)
    buf[idx] = keys.to(buf.dtype)
    return new_ptr


class MomentumQueue(nn.Module):
    """One ring buffer of ``K`` keys of dimension ``D``.

    Buffers: ``queue`` (K, D) float, ``ptr`` () long (next row to write), ``filled`` () long
    (number of valid rows, at most K).
    """

    queue: torch.Tensor
    ptr: torch.Tensor
    filled: torch.Tensor

    def __init__(self, K: int, D: int) -> None:
        super().__init__()
        if K <= 0 or D <= 0:
            raise ValueError(f"queue size K and dimension D must be positive, got K={K}, D={D}")
        self.K, self.D = K, D
        self.register_buffer("queue", torch.zeros(K, D), persistent=True)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long), persistent=True)
        self.register_buffer("filled", torch.zeros((), dtype=torch.long), persistent=True)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Gather ``keys`` (N, D) across processes, write them at ``ptr``, advance ptr by the count."""
        if keys.ndim != 2 or keys.shape[1] != self.D:
            raise ValueError(f"keys must have shape (N, {self.D}), got {tuple(keys.shape)}")
        keys = gather_across_processes(keys.detach())  # (N * world, D)
        n = keys.shape[0]
        if n == 0:
            return
        self.ptr.fill_(_ring_write(self.queue, int(self.ptr), keys))
        self.filled.fill_(min(int(self.filled) + n, self.K))

    def keys(self) -> torch.Tensor:
        """The valid entries (filled, D), as a detached copy (safe to enqueue before backward)."""
        # writes start at row 0, so before the first wrap the valid rows are exactly [0, filled)
        return self.queue[: int(self.filled)].detach().clone()

    def __len__(self) -> int:
        return int(self.filled)


class ClassQueues(nn.Module):
    """One ring of ``K_per_class`` keys per class, every class including background 0.

    Buffers: ``queue`` (num_classes, K_per_class, D), ``ptr`` (num_classes,), ``filled``
    (num_classes,). Keys whose label is outside [0, num_classes) (e.g. ignore 255) are dropped.
    """

    queue: torch.Tensor
    ptr: torch.Tensor
    filled: torch.Tensor

    def __init__(self, num_classes: int, K_per_class: int, D: int) -> None:
        super().__init__()
        if num_classes <= 0 or K_per_class <= 0 or D <= 0:
            raise ValueError("num_classes, K_per_class and D must be positive")
        self.num_classes, self.K, self.D = num_classes, K_per_class, D
        self.register_buffer("queue", torch.zeros(num_classes, K_per_class, D), persistent=True)
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long), persistent=True)
        self.register_buffer("filled", torch.zeros(num_classes, dtype=torch.long), persistent=True)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Gather ``keys`` (N, D) and ``labels`` (N,) across processes; append each key to its class ring."""
        if keys.ndim != 2 or keys.shape[1] != self.D or labels.shape != keys.shape[:1]:
            raise ValueError(
                f"keys must be (N, {self.D}) and labels (N,), got {tuple(keys.shape)} and {tuple(labels.shape)}"
            )
        keys = gather_across_processes(keys.detach())  # (N * world, D)
        labels = gather_across_processes(labels.to(keys.device).long())  # (N * world,)
        for c in range(self.num_classes):
            sel = keys[labels == c]  # (n_c, D)
            if sel.shape[0] == 0:
                continue
            self.ptr[c] = _ring_write(self.queue[c], int(self.ptr[c]), sel)
            self.filled[c] = min(int(self.filled[c]) + sel.shape[0], self.K)

    def keys_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Valid entries of every class: keys (M, D) (a detached copy) and labels (M,) long."""
        keys, labels = [], []
        for c in range(self.num_classes):
            n = int(self.filled[c])
            keys.append(self.queue[c, :n])
            labels.append(torch.full((n,), c, dtype=torch.long, device=self.queue.device))
        return torch.cat(keys).detach().clone(), torch.cat(labels)
