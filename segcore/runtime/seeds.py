"""Randomness of a training run as a function of (seed, step), not of process history.

Batch k of a training loader and the random augmentation of step k are drawn from generators
seeded by (seed, k) and (seed, rank, k): a resumed run draws exactly what the uninterrupted run
drew, and one process training several seeds one after the other trains each as it would alone.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch


def configure_runtime(threads: int, seed: int) -> None:
    """One stage = ``threads`` intra-op threads, so Snakemake can run jobs side by side; every
    global generator (python, numpy, torch) seeded with ``seed``."""
    if threads > 0:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    L.seed_everything(seed, workers=True, verbose=False)


def step_seed(*parts: int) -> int:
    """A 64-bit seed mixed from non-negative integers, e.g. (seed, rank, global step).

    SeedSequence hashes the tuple, so nearby tuples give unrelated streams (seed + step would
    make run (seed=0, step=1) draw what run (seed=1, step=0) draws).
    """
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator of one training step of one process: a function of (seed, rank, step)."""
    return torch.Generator().manual_seed(step_seed(seed, rank, step))
