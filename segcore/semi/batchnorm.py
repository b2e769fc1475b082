"""BatchNorm in the forward passes of unlabeled views.

Only the labeled forward of a step updates the running statistics that validation and the
exported model use. A throw-away prototype that sent labeled and unlabeled slices through one
train-mode forward (shared batch statistics) drove validation Dice to 0.03-0.12 even with the
unlabeled loss off (docs/semi_supervised.md); so every unlabeled forward runs inside
:func:`unlabeled_batchnorm`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def unlabeled_batchnorm(net: nn.Module, mode: str = "batch") -> Iterator[None]:
    """Within the block, no BatchNorm of ``net`` changes its running statistics (nor its batch
    counter). ``batch``: a BatchNorm in train mode normalises by the statistics of the batch it
    sees (``track_running_stats`` off for the block); ``running``: every BatchNorm normalises by
    its running statistics (eval mode for the block). Gradients flow either way; the modules'
    settings are restored on exit."""
    if mode not in ("batch", "running"):
        raise ValueError(f"BatchNorm mode must be 'batch' or 'running', got {mode!r}")
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.track_running_stats, m.training) for m in norms]
    try:
        for m in norms:
            if mode == "batch":
                m.track_running_stats = False
            else:
                m.eval()
        yield
    finally:
        for m, (track, training) in zip(norms, saved, strict=True):
            m.track_running_stats = track
            m.train(training)
