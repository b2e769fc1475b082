"""Two-process DDP on CPU (gloo) trains what one process trains on the same global batch.

The test runs this file as a script in a subprocess (``python -m tests.segcore.test_ddp OUT``):
one process with batch 8, then DDP with 2 ranks × batch 4, for which Lightning's launcher starts
the second rank by running the same command again (a fresh interpreter, no fork), so pytest
itself is never forked. Each rank writes its per-step losses and final weights.

Equivalence holds exactly in exact arithmetic here: the step sampler gives rank r the r-th
slice of the global batch, the network has no normalisation layers (batch statistics would
differ per rank without SyncBatchNorm, which has no CPU kernel; instance norm would make the
conv biases before it gradient-free, so Adam would amplify float noise in them), and the loss is a
cross-entropy mean over equally many pixels per rank, so the mean of the rank losses is the
global-batch loss and DDP's averaged gradient is the global-batch gradient. What remains is
float summation order, hence the tolerances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6


class _Squares(torch.utils.data.Dataset):
    """16 images (1, 16, 16): a bright square on noise; label 1 inside the square, 2 on its border row."""

    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 16, 16, generator=g) * 0.3
        self.labels = torch.zeros(n, 16, 16, dtype=torch.long)
        for i in range(n):
            y0, x0 = (int(v) for v in torch.randint(0, 9, (2,), generator=g))
            self.images[i, 0, y0 : y0 + 7, x0 : x0 + 7] += 0.6
            self.labels[i, y0 : y0 + 7, x0 : x0 + 7] = 1
            self.labels[i, y0, x0 : x0 + 7] = 2

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "meta": {"group": f"s{i}"}}


def train(out: Path, world: int, batch_size: int) -> None:
    """Fit a small U-Net without normalisation for STEPS steps on ``world`` CPU processes."""
    import lightning as L

    from segcore.networks.unet import UNet2D
    from segcore.runtime.sampling import step_loader
    from segcore.runtime.seeds import configure_runtime
    from segcore.runtime.trainer import make_trainer
    from segcore.tasks.segmentation import SegmentationTask

    configure_runtime(1, 0)
    net = UNet2D(1, 3, channels=(4, 8), norm=None)
    task = SegmentationTask(net, 3, lr=0.01, dice_weight=0.0, ce_weight=1.0, max_steps=STEPS, seed=0)
    losses: list[float] = []

    class RecordLoss(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    trainer = make_trainer(
        out, STEPS, accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto", callbacks=[RecordLoss()]
    )
    trainer.fit(task, step_loader(_Squares(), batch_size, STEPS, seed=0))
    rank = trainer.global_rank
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out / f"weights_rank{rank}.pt")
    (out / f"losses_rank{rank}.json").write_text(json.dumps(losses))


def _run(out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("SLURM_NTASKS", None)  # inside a SLURM job Lightning would wait for srun's ranks
    proc = subprocess.run(
        [sys.executable, "-m", "tests.segcore.test_ddp", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_ddp_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    _run(tmp_path)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    w0, w1 = (torch.load(ddp / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1))
    ws = torch.load(single / "weights_rank0.pt", weights_only=True)
    # DDP broadcasts the initial weights and all-reduces gradients: the ranks stay bit-identical
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    start = _initial_weights()
    assert any(not torch.equal(start[k], w0[k]) for k in w0)  # it did train
    for k in ws:
        torch.testing.assert_close(w0[k], ws[k], rtol=1e-4, atol=1e-5, msg=k)

    l0, l1 = (json.loads((ddp / f"losses_rank{r}.json").read_text()) for r in (0, 1))
    ls = json.loads((single / "losses_rank0.json").read_text())
    assert len(l0) == len(l1) == len(ls) == STEPS
    assert l0 != l1  # the ranks saw different halves of the batch
    mean = [(a + b) / 2 for a, b in zip(l0, l1, strict=True)]
    assert mean == pytest.approx(ls, rel=1e-5, abs=1e-6)


def test_device_options_resolve_to_cpu_defaults_and_refuse_cpu_syncbatchnorm(tmp_path):
    import argparse
    from dataclasses import asdict

    from segcore.config import RuntimeConfig, add_options, from_namespace
    from segcore.errors import InputError
    from segcore.runtime.devices import resolve_runtime
    from segcore.runtime.trainer import make_trainer

    p = argparse.ArgumentParser()
    add_options(p, RuntimeConfig)

    def runtime_settings(ns: argparse.Namespace) -> dict:
        return asdict(resolve_runtime(from_namespace(RuntimeConfig, ns)))

    rt = runtime_settings(p.parse_args(["--accelerator", "cpu"]))
    assert rt == {
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "sync_batchnorm": False,
        "precision": "32-true",
        "channels_last": True,
        "workers": 0,
        "pin_memory": False,
        "checkpoint_every": 50,
        "progress": "log",  # not a terminal
        "log_every": 50,
        "compile": False,
    }
    rt = runtime_settings(
        p.parse_args(
            [
                "--accelerator",
                "cpu",
                "--devices",
                "0,1",
                "--workers",
                "3",
                "--channels-last",
                "--precision",
                "bf16-mixed",
            ]
        )
    )
    assert (rt["devices"], rt["workers"], rt["channels_last"], rt["precision"]) == ([0, 1], 3, True, "bf16-mixed")
    with pytest.raises(SystemExit):
        p.parse_args(["--workers", "-1"])
    with pytest.raises(InputError, match="SyncBatchNorm has no CPU kernel"):
        make_trainer(tmp_path, 1, accelerator="cpu", devices=2, sync_batchnorm=True)


def _initial_weights() -> dict[str, torch.Tensor]:
    """The initial weights both runs start from (same seed, same construction)."""
    from segcore.networks.unet import UNet2D
    from segcore.runtime.seeds import configure_runtime

    configure_runtime(1, 0)
    return UNet2D(1, 3, channels=(4, 8), norm=None).state_dict()


if __name__ == "__main__":
    # one interpreter for both runs (imports dominate); the DDP launcher re-runs this command
    # for rank 1 with LOCAL_RANK=1, which goes straight to the DDP run
    out_dir = Path(sys.argv[1])
    if os.environ.get("LOCAL_RANK", "0") == "0":
        (out_dir / "single").mkdir(parents=True, exist_ok=True)
        train(out_dir / "single", world=1, batch_size=8)
    (out_dir / "ddp").mkdir(parents=True, exist_ok=True)
    train(out_dir / "ddp", world=2, batch_size=4)
