"""Encoders pretrained elsewhere as an init (``--encoder-weights``): local files of timm/smp
encoders with the first convolution adapted to the band count, named sources that never
download offline, and clear errors for weights of another architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch

from medseg.cli import main as medseg
from medseg.phantoms import generate_dataset
from medseg.preprocess import preprocess
from rs.cli import main as rs
from segcore.checkpoints import read_checkpoint
from segcore.encoder_weights import adapt_first_conv, load_encoder_weights, read_state_dict
from segcore.errors import InputError
from segcore.networks.unet import UNet2D
from tests.data.rs import make


def test_first_convolution_adapted_as_smp_does():
    w = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).reshape(2, 3, 1, 1)  # [[0,1,2],[3,4,5]]
    assert adapt_first_conv(w, 3) is w
    assert adapt_first_conv(w, 1).flatten().tolist() == [3.0, 12.0]  # the sum over the bands
    five = adapt_first_conv(w, 5)  # bands repeated in turn, scaled by 3/5
    assert five[:, :, 0, 0].flatten().tolist() == pytest.approx([0, 0.6, 1.2, 0, 0.6, 1.8, 2.4, 3.0, 1.8, 2.4])
    # the same as smp's own patch_first_conv on a real encoder
    enc = smp.encoders.get_encoder("resnet18", in_channels=3, depth=3, weights=None)
    ref = smp.encoders.get_encoder("resnet18", in_channels=3, depth=3, weights=None)
    ref.load_state_dict(enc.state_dict())
    smp.encoders._utils.patch_first_conv(ref, 7, pretrained=True)
    assert torch.allclose(adapt_first_conv(enc.conv1.weight.detach(), 7), ref.conv1.weight.detach())


def _resnet18_file(tmp_path: Path, prefix: str = "backbone.") -> tuple[Path, dict[str, torch.Tensor]]:
    """A 3-band ResNet-18 state dict as timm/TorchGeo save it (with a classifier and a wrapper prefix)."""
    torch.manual_seed(3)
    enc = smp.encoders.get_encoder("resnet18", in_channels=3, depth=5, weights=None)
    state = {f"{prefix}{k}": v for k, v in enc.state_dict().items()}
    state[f"{prefix}fc.weight"] = torch.zeros(1000, 512)  # what the encoder does not have is ignored
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": state}, path)
    return path, enc.state_dict()


def test_a_timm_style_file_loads_into_an_encoder_of_other_depth_and_bands(tmp_path):
    import rs.networks  # noqa: F401
    from segcore.networks import build_network

    path, ref = _resnet18_file(tmp_path)
    net = build_network(
        {
            "name": "early",
            "in_channels": 9,
            "num_classes": 2,
            "encoder_name": "resnet18",
            "encoder_depth": 3,
            "decoder_channels": [16, 8, 4],
        }
    )
    loaded = load_encoder_weights(net.encoder, read_state_dict(path), path)
    own = net.encoder.state_dict()
    assert "layer1.0.conv1.weight" in loaded and not any(k.startswith("layer4") for k in loaded)
    assert torch.equal(own["layer1.0.conv1.weight"], ref["layer1.0.conv1.weight"])
    assert torch.allclose(own["conv1.weight"], adapt_first_conv(ref["conv1.weight"], 9))


def test_weights_of_another_architecture_are_refused_naming_the_file(tmp_path):
    torch.save(
        smp.encoders.get_encoder("resnet34", in_channels=3, depth=5, weights=None).state_dict(), tmp_path / "r34.pt"
    )
    enc = smp.encoders.get_encoder("resnet18", in_channels=3, depth=5, weights=None)
    # resnet34 has more blocks: resnet18's keys all exist, but block shapes agree: compare a U-Net instead
    with pytest.raises(InputError, match="another architecture") as err:
        load_encoder_weights(
            UNet2D(1, 2, channels=(4, 8)).encoder, read_state_dict(tmp_path / "r34.pt"), tmp_path / "r34.pt"
        )
    assert err.value.path == str(tmp_path / "r34.pt")
    (tmp_path / "junk.pt").write_bytes(b"not weights")
    with pytest.raises(InputError, match="not a readable weights file"):
        read_state_dict(tmp_path / "junk.pt")
    del enc


def test_named_sources_fail_offline_with_what_to_do(monkeypatch):
    from rs.encoder_sources import encoder_state

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no cached copy either
    with pytest.raises(InputError) as err:
        encoder_state("imagenet", "resnet18")
    message = str(err.value)
    assert message.startswith("imagenet: the imagenet weights of resnet18 are not on this machine")
    assert "huggingface.co/smp-hub/resnet18.imagenet" in message and "--encoder-weights" in message
    with pytest.raises(InputError, match="ssl4eo-s12: .*(torchgeo is not installed|offline)"):
        encoder_state("ssl4eo-s12", "resnet18")
    with pytest.raises(InputError, match="neither a weights file nor a named source"):
        encoder_state("imagenet21k", "resnet18")


@pytest.fixture(scope="module")
def rs_prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("encw")
    return make.prepared_scenes(root)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["early", "dual"])
def test_rs_finetune_and_pretrain_start_from_a_weights_file(rs_prepared, tmp_path, fusion):
    path, ref = _resnet18_file(tmp_path)
    net = ["--fusion", fusion, "--encoder", "resnet18", "--encoder-depth", "3", "--decoder-channels", "16,8,4"]
    common = ["--data", str(rs_prepared), "--steps", "2", "--batch-size", "4", "--checkpoint-every", "0", *net]
    assert (
        rs(
            [
                "finetune",
                *common,
                "--percent",
                "50",
                "--val-every",
                "2",
                "--out",
                str(tmp_path / "ft"),
                "--encoder-weights",
                str(path),
                "--lr",
                "1e-9",
            ]
        )
        == 0
    )
    model = read_checkpoint(tmp_path / "ft" / "model.pt")
    assert model["run"]["method"] == "pretrained" and model["run"]["initialised_tensors"] > 20
    prefix = "encoder.spectral." if fusion == "dual" else "encoder."
    # lr 1e-9 for two steps: the weights are still the file's
    assert torch.allclose(
        model["state_dict"][f"{prefix}layer1.0.conv1.weight"], ref["layer1.0.conv1.weight"], atol=1e-6
    )
    assert (
        rs(["pretrain", *common, "--out", str(tmp_path / "pre"), "--encoder-weights", str(path), "--lr", "1e-9"]) == 0
    )
    pre = read_checkpoint(tmp_path / "pre" / "model.pt")
    assert torch.allclose(pre["state_dict"][f"{prefix}layer1.0.conv1.weight"], ref["layer1.0.conv1.weight"], atol=1e-6)


def test_init_and_encoder_weights_together_are_an_error(rs_prepared, tmp_path, capsys):
    path, _ = _resnet18_file(tmp_path)
    assert (
        rs(
            [
                "finetune",
                "--data",
                str(rs_prepared),
                "--out",
                str(tmp_path / "ft"),
                "--encoder-weights",
                str(path),
                "--init",
                str(path),
            ]
        )
        == 2
    )
    assert "give --init (a checkpoint of this pipeline) or --encoder-weights, not both" in capsys.readouterr().err


@pytest.mark.slow
def test_mri_finetune_from_an_encoder_file(tmp_path, capsys):
    generate_dataset(tmp_path / "raw", n_subjects=5, seed=1, n_slices=6, size=32)
    prep = preprocess(
        tmp_path / "raw",
        tmp_path / "prep",
        target_spacing=(3.0, 3.0),
        image_size=(32, 32),
        n_test=1,
        n_val=1,
        n_labeled=2,
        seed=0,
    )
    torch.manual_seed(5)
    donor = UNet2D(1, 4, channels=(4, 8, 16))
    torch.save({f"encoder.{k}": v for k, v in donor.encoder.state_dict().items()}, tmp_path / "enc.pt")
    common = [
        "finetune",
        "--data",
        str(prep),
        "--channels",
        "4,8,16",
        "--budget",
        "1",
        "--steps",
        "1",
        "--val-every",
        "1",
        "--checkpoint-every",
        "0",
        "--lr",
        "1e-9",
    ]
    assert medseg([*common, "--out", str(tmp_path / "ft"), "--encoder-weights", str(tmp_path / "enc.pt")]) == 0
    model = read_checkpoint(tmp_path / "ft" / "model.pt")
    key = "encoder.1.convs.0.conv.weight"
    assert torch.allclose(model["state_dict"][key], donor.state_dict()[key], atol=1e-6)
    assert medseg([*common, "--out", str(tmp_path / "ft2"), "--encoder-weights", "imagenet"]) == 2
    assert "has no published weights" in capsys.readouterr().err
