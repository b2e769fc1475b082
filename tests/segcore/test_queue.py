"""Momentum queues: pointer, wrap-around, validity, checkpoint round trip, DDP gather."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from segcore.queue import ClassQueues, MomentumQueue


def rows(*values: float) -> torch.Tensor:
    """Keys (n, 2) whose row i is (v_i, -v_i): easy to read back."""
    v = torch.tensor(values, dtype=torch.float)
    return torch.stack([v, -v], dim=1)


def test_pointer_wrap_around_and_filled() -> None:
    q = MomentumQueue(K=5, D=2)
    assert len(q) == 0 and q.keys().shape == (0, 2)
    q.enqueue(rows(1, 2, 3))
    assert int(q.ptr) == 3 and int(q.filled) == 3
    assert torch.equal(q.keys(), rows(1, 2, 3))
    q.enqueue(rows(4, 5, 6, 7))  # rows 3, 4, then wrap to 0, 1
    assert torch.equal(q.queue, rows(6, 7, 3, 4, 5))
    assert int(q.ptr) == 2 and int(q.filled) == 5
    assert torch.equal(q.keys(), rows(6, 7, 3, 4, 5))


def test_more_keys_than_K_equals_enqueueing_one_by_one() -> None:
    a, b = MomentumQueue(5, 2), MomentumQueue(5, 2)
    a.enqueue(rows(1))
    b.enqueue(rows(1))
    a.enqueue(rows(*range(2, 14)))  # 12 keys into K = 5
    for v in range(2, 14):
        b.enqueue(rows(v))
    assert torch.equal(a.queue, b.queue) and int(a.ptr) == int(b.ptr) == 13 % 5


def test_keys_is_a_copy_and_enqueue_detaches() -> None:
    q = MomentumQueue(4, 2)
    k = rows(1, 2).requires_grad_(True)
    q.enqueue(k * 2)
    out = q.keys()
    out.add_(100)
    assert torch.equal(q.keys(), rows(2, 4)) and not q.queue.requires_grad


def test_state_dict_round_trip(tmp_path: Path) -> None:
    q = MomentumQueue(6, 3)
    q.enqueue(torch.randn(4, 3))
    q.enqueue(torch.randn(4, 3))
    assert set(q.state_dict()) == {"queue", "ptr", "filled"}
    torch.save(q.state_dict(), tmp_path / "q.pt")
    r = MomentumQueue(6, 3)
    r.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    assert torch.equal(r.queue, q.queue) and int(r.ptr) == int(q.ptr) == 2 and int(r.filled) == 6
    c = ClassQueues(3, 4, 2)
    c.enqueue(torch.randn(7, 2), torch.tensor([0, 1, 2, 0, 0, 1, 255]))
    torch.save(c.state_dict(), tmp_path / "c.pt")
    d = ClassQueues(3, 4, 2)
    d.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    for x, y in zip(c.keys_and_labels(), d.keys_and_labels(), strict=True):
        assert torch.equal(x, y)


def test_class_queues_keep_background_and_drop_ignored() -> None:
    c = ClassQueues(num_classes=2, K_per_class=3, D=2)
    c.enqueue(rows(1, 2, 3, 4, 5), torch.tensor([0, 1, 0, 255, 0]))
    keys, labels = c.keys_and_labels()
    assert labels.tolist() == [0, 0, 0, 1]
    assert torch.equal(keys, rows(1, 3, 5, 2))
    c.enqueue(rows(6), torch.tensor([0]))  # class 0 ring wraps
    keys, labels = c.keys_and_labels()
    assert torch.equal(keys, rows(6, 3, 5, 2)) and c.ptr.tolist() == [1, 1] and c.filled.tolist() == [3, 1]


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        q = MomentumQueue(8, 2)
        q.enqueue(rows(10 * rank, 10 * rank + 1))  # equal sizes
        q.enqueue(rows(*([100] if rank == 0 else [200, 201, 202])))  # unequal sizes
        c = ClassQueues(2, 4, 2)
        c.enqueue(rows(10 * rank + 5), torch.tensor([rank]))
        keys, labels = c.keys_and_labels()
        torch.save({"queue": q.queue, "ptr": q.ptr, "filled": q.filled, "ck": keys, "cl": labels},
                   f"{out_dir}/rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_ddp_gather_gives_identical_queues_in_rank_order(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    assert torch.equal(r0["queue"][:8], rows(0, 1, 10, 11, 100, 200, 201, 202))
    assert int(r0["ptr"]) == 0 and int(r0["filled"]) == 8
    assert torch.equal(r0["ck"], rows(5, 15)) and r0["cl"].tolist() == [0, 1]
