"""Runtime options of the stages: ``--device`` (alias ``--accelerator``) of evaluation and
prediction, ``--compile`` of the training stages."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import lightning as L
import pytest
import torch

from segcore.config import EvaluateConfig, PredictConfig, RuntimeConfig, add_options, from_namespace
from segcore.errors import InputError
from segcore.networks import build_network
from segcore.runtime.devices import resolve_device
from segcore.runtime.trainer import CompileNetworks, compiled_blocks, resumable_trainer


@pytest.mark.parametrize("cls", [EvaluateConfig, PredictConfig])
def test_device_option_and_its_alias(cls: type) -> None:
    p = argparse.ArgumentParser()
    add_options(p, cls)
    base = ["--model", "m.pt", "--out", "o", "--data", "d"]
    assert from_namespace(cls, p.parse_args(base)).device == "auto"
    assert from_namespace(cls, p.parse_args([*base, "--device", "cuda:1"])).device == "cuda:1"
    assert from_namespace(cls, p.parse_args([*base, "--accelerator", "cpu"])).device == "cpu"


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(InputError, match="no such CUDA device"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0) and resolve_device("gpu") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    for bad, message in (("cuda:2", "no such CUDA device"), ("cuda:x", "cuda:<index>"), ("tpu", "must be")):
        with pytest.raises(InputError, match=message):
            resolve_device(bad)


class _Task(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = build_network({"name": "unet2d", "in_channels": 1, "num_classes": 3, "channels": [4, 8, 16]})


def test_compile_compiles_the_blocks_in_place() -> None:
    task = _Task().eval()
    reference = copy.deepcopy(task.net)
    keys = list(task.net.state_dict())
    CompileNetworks(backend="eager").setup(None, task, "fit")  # type: ignore[arg-type]
    blocks = compiled_blocks(task.net)
    assert len(blocks) == len(task.net.encoder) + len(task.net.decoder) + 1
    assert all(b._compiled_call_impl is not None for b in blocks)
    assert list(task.net.state_dict()) == keys  # checkpoints keep their keys
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(task.net(x), reference(x))


def test_compile_option_reaches_the_trainer(tmp_path: Path) -> None:
    def callbacks(compile_: bool) -> list[str]:
        cfg = RuntimeConfig(accelerator="cpu", compile=compile_)
        trainer = resumable_trainer(tmp_path / f"out{compile_}", cfg, {}, max_steps=1)
        return [type(c).__name__ for c in trainer.callbacks]

    assert "CompileNetworks" in callbacks(True) and "CompileNetworks" not in callbacks(False)
