"""EMA key encoder: exact endpoints, midpoint, buffers copied, frozen copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcore.momentum import ema_decay, ema_update, momentum_copy


def make_pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    query = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    key = momentum_copy(query)
    with torch.no_grad():  # make the two differ in every parameter and buffer
        for p in query.parameters():
            p.add_(torch.randn_like(p))
    query.train()
    query(torch.randn(8, 3))  # updates running stats and num_batches_tracked
    return key, query


def test_momentum_copy_is_frozen_and_equal() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    key = momentum_copy(model)
    for (n, p), (_, pk) in zip(model.named_parameters(), key.named_parameters(), strict=True):
        assert torch.equal(p, pk) and not pk.requires_grad and p.requires_grad, n
        assert p.data_ptr() != pk.data_ptr()


def test_m0_copies_m1_freezes_half_is_midpoint() -> None:
    key, query = make_pair()
    old = {n: p.clone() for n, p in key.named_parameters()}
    ema_update(key, query, 1.0)
    for n, p in key.named_parameters():
        assert torch.equal(p, old[n])
    ema_update(key, query, 0.5)
    q = dict(query.named_parameters())
    for n, p in key.named_parameters():
        assert torch.allclose(p, (old[n] + q[n]) / 2, atol=1e-7)
    ema_update(key, query, 0.0)
    for n, p in key.named_parameters():
        assert torch.equal(p, q[n])


def test_buffers_are_copied() -> None:
    key, query = make_pair()
    ema_update(key, query, 0.99)
    kb, qb = dict(key.named_buffers()), dict(query.named_buffers())
    assert set(kb) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    for n in kb:
        assert torch.equal(kb[n], qb[n]), n
    assert int(kb["1.num_batches_tracked"]) == 1


def test_bad_momentum_and_mismatched_models_raise() -> None:
    key, query = make_pair()
    with pytest.raises(ValueError, match="momentum"):
        ema_update(key, query, 1.5)
    with pytest.raises(ValueError, match="parameters"):
        ema_update(nn.Linear(3, 4), query, 0.9)


def test_averaged_buffers_for_a_weight_average() -> None:
    key, query = make_pair()
    old = {n: b.clone() for n, b in key.named_buffers()}
    ema_update(key, query, 0.75, average_buffers=True)
    kb, qb = dict(key.named_buffers()), dict(query.named_buffers())
    for n in ("1.running_mean", "1.running_var"):
        assert torch.allclose(kb[n], 0.75 * old[n] + 0.25 * qb[n], atol=1e-7), n
    assert int(kb["1.num_batches_tracked"]) == 1  # integer buffers are copied


def test_ema_decay_warms_up_to_m() -> None:
    assert ema_decay(0.99, 0) == pytest.approx(0.1) and ema_decay(0.99, 8) == pytest.approx(9 / 18)
    assert ema_decay(0.99, 10_000) == 0.99 and ema_decay(0.5, 5) == pytest.approx(6 / 15) and ema_decay(0.5, 20) == 0.5
