import torch

from segcore.networks.unet import UNet2D


def test_shapes_encode_decode_forward():
    net = UNet2D(1, 4, channels=(4, 8, 16, 16))
    x = torch.randn(2, 1, 32, 32)
    feats = net.encode(x)
    assert [f.shape[1:] for f in feats] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (16, 4, 4)]
    dec = net.decode(feats, 2)
    assert [d.shape[1:] for d in dec] == [(16, 8, 8), (8, 16, 16)]
    assert net(x).shape == (2, 4, 32, 32)
    assert net.bottleneck_shape((32, 32)) == (16, 4, 4)


def test_reference_widths_give_6x6_bottleneck_at_192():
    net = UNet2D(1, 4)
    assert net.bottleneck_shape((192, 192)) == (128, 6, 6)
