"""A 2D U-Net with an explicit encoder / decoder split, built from MONAI blocks.

The contrastive stages need the halves apart: the global stage trains ``encoder`` (+ g1 on the
last encoder block), the local stage trains the first ``l`` blocks of ``decoder`` (+ g2), and
fine-tuning trains everything. Reference widths (Chaitanya et al.): 16, 32, 64, 128, 128, 128.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from segcore.networks.base import SegmentationNetwork

# the reference widths of Chaitanya et al.: 6 levels, a 6x6 bottleneck at 192x192
REFERENCE_CHANNELS = (16, 32, 64, 128, 128, 128)


def _double_conv(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        Convolution(2, c_in, c_out, kernel_size=3, act="RELU", norm=norm),
        Convolution(2, c_out, c_out, kernel_size=3, act="RELU", norm=norm),
    )


class EncoderLevel(nn.Module):
    """2x2 max-pool (except at level 0), then two 3x3 conv+norm+ReLU."""

    def __init__(self, c_in: int, c_out: int, pool: bool, norm: str) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.convs = _double_conv(c_in, c_out, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class DecoderLevel(nn.Module):
    """Upsample x2, 3x3 conv, concatenate the skip, two 3x3 convs."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_conv = Convolution(2, c_in, c_out, kernel_size=3, act="RELU", norm=norm)
        self.convs = _double_conv(c_out + c_skip, c_out, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up_conv(self.up(x))  # (B, c_out, 2h, 2w)
        return self.convs(torch.cat([x, skip], dim=1))  # (B, c_out, 2h, 2w)


class UNet2D(SegmentationNetwork):
    """U-Net whose encoder levels have ``channels`` widths; input side must divide 2**(len-1).

    ``encode(x)`` returns every level's features (last = bottleneck); ``decode(feats, n)``
    runs the first ``n`` decoder blocks and returns their outputs (coarse to fine).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = REFERENCE_CHANNELS,
        norm: str = "BATCH",
    ) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.in_channels = in_channels
        self.num_classes = num_classes
        widths = (in_channels, *self.channels)
        self.encoder = nn.ModuleList(
            EncoderLevel(widths[i], widths[i + 1], pool=i > 0, norm=norm) for i in range(len(self.channels))
        )
        rev = self.channels[::-1]
        self.decoder = nn.ModuleList(
            DecoderLevel(rev[i], rev[i + 1], rev[i + 1], norm=norm) for i in range(len(rev) - 1)
        )
        self.head = nn.Conv2d(self.channels[0], num_classes, kernel_size=1)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        return self.channels[::-1][1:]

    def _check_input(self, x: torch.Tensor) -> None:
        super()._check_input(x)
        if any(s % self.downsampling for s in x.shape[-2:]):
            raise ValueError(
                f"UNet2D with {len(self.channels)} levels needs H and W divisible by "
                f"{self.downsampling}, got {tuple(x.shape[-2:])}"
            )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.encoder:
            x = level(x)
            feats.append(x)  # level i: (B, channels[i], H / 2**i, W / 2**i)
        return feats

    def decode(self, feats: list[torch.Tensor], n_blocks: int | None = None) -> list[torch.Tensor]:
        n = len(self.decoder) if n_blocks is None else n_blocks
        x = feats[-1]
        skips = feats[-2::-1]
        outs = []
        for block, skip in zip(list(self.decoder)[:n], skips[:n], strict=True):
            x = block(x, skip)
            outs.append(x)
        return outs

    def bottleneck_shape(self, image_size: Sequence[int]) -> tuple[int, int, int]:
        h, w = (int(s) // self.downsampling for s in image_size)
        return (self.channels[-1], h, w)


def build_unet2d(
    in_channels: int, num_classes: int, channels: Sequence[int] = REFERENCE_CHANNELS, norm: str = "BATCH"
) -> UNet2D:
    """The ``unet2d`` builder of the network registry (spec keys: in_channels, num_classes, channels)."""
    widths = tuple(int(c) for c in channels)
    if len(widths) < 2 or any(c < 1 for c in widths):
        raise ValueError(f"channel widths must be >= 2 positive integers, got {list(channels)}")
    return UNet2D(in_channels, num_classes, channels=widths, norm=norm)
