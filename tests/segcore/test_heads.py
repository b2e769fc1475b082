"""Projection heads: shapes, unit norm, per-pixel locality of g2."""

from __future__ import annotations

import torch

from segcore.heads import GlobalProjectionHead, HyperPixelProjectionHead, LocalProjectionHead


def test_global_head_flattens_and_normalises() -> None:
    head = GlobalProjectionHead(in_features=8 * 3 * 3, hidden=16, out_dim=5)
    z = head(torch.randn(4, 8, 3, 3))
    assert z.shape == (4, 5)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-6)
    assert [m.bias for m in head.mlp if isinstance(m, torch.nn.Linear)] == [None, None]


def test_local_head_is_per_pixel() -> None:
    torch.manual_seed(0)
    head = LocalProjectionHead(6, hidden=7, out_channels=5).eval()
    x = torch.randn(2, 6, 5, 5)
    y = head(x)
    assert y.shape == (2, 5, 5, 5)
    x2 = x.clone()
    x2[1, :, 2, 3] += 1.0
    changed = (head(x2) - y).abs().sum(dim=1) > 0  # (B, h, w)
    expected = torch.zeros(2, 5, 5, dtype=torch.bool)
    expected[1, 2, 3] = True
    assert torch.equal(changed, expected)
    assert LocalProjectionHead(6)(x).shape == (2, 6, 5, 5)


def test_hyperpixel_head_normalises() -> None:
    head = HyperPixelProjectionHead(10, hidden=12, out_dim=4)
    z = head(torch.randn(7, 10))
    assert z.shape == (7, 4) and torch.allclose(z.norm(dim=1), torch.ones(7), atol=1e-6)
