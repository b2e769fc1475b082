"""Segmentation networks: shapes, channel routing, parameter groups, checkpoints, training."""

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from rs.networks import (
    DualEncoderFusionUNet,
    EarlyFusionUNet,
    SegmentationNetwork,
    build_network,
    default_decoder_channels,
    run_unet_decoder,
)
from segcore.networks.unet import UNet2D

torch.set_num_threads(1)

# Small settings keep the file fast: resnet18 at depth 3 (layer3/layer4 pruned away).
SMALL = dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8))


def _expected_feature_shapes(net: SegmentationNetwork, batch: int, size: int, depth: int):
    # Decoder block i outputs at 1 / 2**(depth - 1 - i) of the input side, coarse to fine.
    return [
        (batch, c, size // 2 ** (depth - 1 - i), size // 2 ** (depth - 1 - i))
        for i, c in enumerate(net.decoder_channels)
    ]


@pytest.mark.parametrize(
    ("encoder_name", "depth", "size"),
    [("resnet18", 3, 32), ("resnet18", 4, 32), ("tu-regnetx_002", 4, 32), ("resnet18", 3, 40)],
)
def test_early_fusion_shapes(encoder_name, depth, size):
    torch.manual_seed(0)
    net = EarlyFusionUNet(6, 3, encoder_name=encoder_name, encoder_depth=depth)
    assert net.decoder_channels == default_decoder_channels(depth)
    x = torch.randn(2, 6, size, size)
    logits, feats = net.forward_with_features(x)
    assert logits.shape == (2, 3, size, size)
    assert [tuple(f.shape) for f in feats] == _expected_feature_shapes(net, 2, size, depth)
    assert [tuple(f.shape) for f in net.decoder_features(x)] == [tuple(f.shape) for f in feats]


@pytest.mark.parametrize("fusion", ["concat", "sum"])
@pytest.mark.parametrize(
    ("spectral", "terrain", "in_channels"),
    [([0, 1, 2, 3], [4, 5, 6], 7), ([0, 2, 4], [1, 3], 5), ([5], [0, 1], 7)],
)
def test_dual_fusion_shapes(fusion, spectral, terrain, in_channels):
    torch.manual_seed(0)
    net = build_network(
        "dual", in_channels, 2, spectral_channels=spectral, terrain_channels=terrain, fusion=fusion, **SMALL
    )
    assert isinstance(net, DualEncoderFusionUNet) and net.in_channels == in_channels
    x = torch.randn(2, in_channels, 32, 32)
    logits, feats = net.forward_with_features(x)
    assert logits.shape == (2, 2, 32, 32)
    assert [tuple(f.shape) for f in feats] == _expected_feature_shapes(net, 2, 32, 3)


def test_sum_fusion_with_a_different_terrain_encoder_projects_widths():
    net = DualEncoderFusionUNet(
        [0, 1, 2],
        [3],
        2,
        encoder_name="resnet18",
        terrain_encoder_name="tu-regnetx_002",
        encoder_depth=3,
        decoder_channels=(32, 16, 8),
        fusion="sum",
    )
    assert net.encoder.terrain.out_channels[1:] != net.encoder.spectral.out_channels[1:]
    assert net(torch.randn(1, 4, 32, 32)).shape == (1, 2, 32, 32)


def test_dual_encoders_see_only_their_channels():
    torch.manual_seed(0)
    spectral, terrain = [0, 2, 4], [1, 3]
    net = DualEncoderFusionUNet(spectral, terrain, 2, in_channels=6, **SMALL)
    seen = {}
    hooks = [
        net.encoder.terrain.register_forward_pre_hook(lambda m, inp: seen.__setitem__("terrain", inp[0])),
        net.encoder.spectral.register_forward_pre_hook(lambda m, inp: seen.__setitem__("spectral", inp[0])),
        net.encoder.terrain.register_forward_hook(lambda m, inp, out: seen.__setitem__("terrain_out", out)),
    ]
    x = torch.randn(2, 6, 32, 32, requires_grad=True)
    net(x)
    for h in hooks:
        h.remove()
    assert torch.equal(seen["terrain"], x[:, terrain])
    assert torch.equal(seen["spectral"], x[:, spectral])
    # The terrain features depend on the terrain channels and nothing else (channel 5 is unused).
    sum(f.sum() for f in seen["terrain_out"][1:]).backward()
    per_channel = x.grad.abs().sum(dim=(0, 2, 3))
    assert (per_channel[terrain] > 0).all()
    assert (per_channel[[0, 2, 4, 5]] == 0).all()


def test_decoder_loop_matches_smp_and_early_fusion_is_smp_unet():
    torch.manual_seed(0)
    net = EarlyFusionUNet(5, 2, **SMALL).eval()
    torch.manual_seed(0)
    unet = smp.Unet(
        "resnet18", encoder_depth=3, encoder_weights=None, decoder_channels=(32, 16, 8), in_channels=5, classes=2
    ).eval()
    x = torch.randn(2, 5, 32, 32)
    with torch.no_grad():
        features = net.encode(x)
        assert torch.equal(run_unet_decoder(net.decoder, features)[-1], net.decoder(features))
        assert torch.equal(net(x), unet(x))  # same weights from the same seed, same arithmetic
        partial = run_unet_decoder(net.decoder, features, n_blocks=2)
    assert [f.shape[1] for f in partial] == [32, 16]


@pytest.mark.parametrize("arch", ["early", "dual", "unet2d"])
def test_parameter_groups_partition_the_network_and_all_get_gradients(arch):
    net = build_network(
        arch, 5, 2, spectral_channels=[0, 1, 2], terrain_channels=[3, 4], unet_channels=(8, 16, 32), **SMALL
    )
    groups = [list(net.encoder_parameters()), list(net.decoder_parameters()), list(net.head_parameters())]
    ids = [id(p) for g in groups for p in g]
    assert all(groups) and len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}
    # Unused encoder stages are pruned: every parameter gets a gradient (DDP-friendly).
    F.cross_entropy(net(torch.randn(2, 5, 32, 32)), torch.randint(0, 2, (2, 32, 32))).backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []


def test_unused_encoder_stages_are_pruned():
    full = smp.encoders.get_encoder("resnet18", in_channels=5, depth=3, weights=None)
    net = EarlyFusionUNet(5, 2, **SMALL)
    n_full = sum(p.numel() for p in full.parameters())
    n_ours = sum(p.numel() for p in net.encoder.parameters())
    assert n_ours == n_full - sum(p.numel() for p in [*full.layer3.parameters(), *full.layer4.parameters()])


def _perturb(net: torch.nn.Module) -> None:
    # One training step with a large LR changes weights and BatchNorm running statistics.
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    F.cross_entropy(net(torch.randn(2, net.in_channels, 32, 32)), torch.randint(0, 2, (2, 32, 32))).backward()
    opt.step()


_ARCH_KW = dict(spectral_channels=[0, 1, 2], terrain_channels=[3], unet_channels=(8, 16, 32), **SMALL)


@pytest.mark.parametrize("arch", ["early", "dual", "unet2d"])
def test_checkpoint_round_trip(arch, tmp_path):
    torch.manual_seed(0)
    net = build_network(arch, 4, 2, **_ARCH_KW)
    _perturb(net)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    torch.manual_seed(1)
    fresh = build_network(arch, 4, 2, **_ARCH_KW)
    fresh.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), fresh.eval()(x))


@pytest.mark.parametrize("arch", ["early", "dual", "unet2d"])
def test_backbone_load_with_head_reinit(arch, tmp_path):
    torch.manual_seed(0)
    pretrained = build_network(arch, 4, 2, **_ARCH_KW)
    _perturb(pretrained)
    # A Lightning-style checkpoint: keys under "net.", saved and loaded weights-only.
    torch.save({f"net.{k}": v for k, v in pretrained.state_dict().items()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)

    torch.manual_seed(1)
    target = build_network(arch, 4, 3, **_ARCH_KW)  # another class count: head shapes differ
    target.load_backbone_state_dict(state, prefix="net.")
    ours, theirs = target.state_dict(), pretrained.state_dict()
    backbone = [k for k in ours if not k.startswith("head.")]
    assert backbone and all(torch.equal(ours[k], theirs[k]) for k in backbone)
    assert set(target.backbone_state_dict()) == set(backbone)

    # Same class count: the head is re-initialised, not copied.
    same = build_network(arch, 4, 2, **_ARCH_KW)
    same.load_backbone_state_dict(pretrained.state_dict())
    head_keys = [k for k, v in same.state_dict().items() if k.startswith("head.") and v.is_floating_point()]
    assert head_keys and not any(torch.equal(same.state_dict()[k], theirs[k]) for k in head_keys if "weight" in k)
    assert all(torch.equal(same.state_dict()[k], theirs[k]) for k in backbone)


def test_backbone_load_rejects_another_architecture():
    early = build_network("early", 4, 2, **_ARCH_KW)
    dual = build_network("dual", 4, 2, **_ARCH_KW)
    with pytest.raises(KeyError, match="missing"):
        dual.load_backbone_state_dict(early.state_dict())


def test_unet2d_network_is_unet2d():
    torch.manual_seed(0)
    net = build_network("unet2d", 3, 4, unet_channels=(8, 16, 32, 32)).eval()
    torch.manual_seed(0)
    plain = UNet2D(3, 4, channels=(8, 16, 32, 32)).eval()
    x = torch.randn(2, 3, 32, 32)
    assert isinstance(net, UNet2D) and isinstance(net, SegmentationNetwork)
    with torch.no_grad():
        logits, feats = net.forward_with_features(x)
        assert torch.equal(logits, plain(x))
        assert torch.equal(logits, plain.head(plain.decode(plain.encode(x))[-1]))
    assert net.decoder_channels == (32, 16, 8)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 8, 8), (2, 16, 16, 16), (2, 8, 32, 32)]
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.randn(1, 3, 36, 36))


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="arch must be one of"):
        build_network("vit", 4, 2)
    with pytest.raises(ValueError, match="needs spectral_channels"):
        build_network("dual", 4, 2)
    with pytest.raises(ValueError, match="distinct"):
        DualEncoderFusionUNet([0, 1], [1, 2], 2, **SMALL)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        DualEncoderFusionUNet([0, 1], [4], 2, in_channels=4, **SMALL)
    with pytest.raises(ValueError, match="fusion"):
        DualEncoderFusionUNet([0], [1], 2, fusion="attention", **SMALL)
    with pytest.raises(ValueError, match="one width per encoder level"):
        EarlyFusionUNet(4, 2, encoder_depth=3, decoder_channels=(16, 8))
    net = EarlyFusionUNet(4, 2, **SMALL)
    with pytest.raises(ValueError, match=r"expects input \(B, 4, H, W\)"):
        net(torch.randn(1, 5, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_training_steps_lower_the_loss(fusion):
    # Landslide where the terrain channel is high: only the terrain encoder can see it.
    torch.manual_seed(0)
    x = torch.randn(8, 4, 32, 32)
    terrain = F.avg_pool2d(torch.randn(8, 1, 32, 32), 5, stride=1, padding=2)
    x[:, 3:] = terrain
    y = (terrain[:, 0] > 0.1).long()
    net = DualEncoderFusionUNet([0, 1, 2], [3], 2, fusion=fusion, **SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.4 * losses[0], losses
