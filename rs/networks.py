"""The remote-sensing segmentation networks, under the interface of
:class:`segcore.networks.SegmentationNetwork` and registered by name (``early``, ``dual``):

- :class:`EarlyFusionUNet`: ``smp.Unet`` on the stacked spectral + terrain channels.
- :class:`DualEncoderFusionUNet`: one smp encoder for the spectral bands, one for the
  DEM-derived channels, fused at every scale (concat + 1x1 conv, or sum), then one smp
  ``UnetDecoder`` and ``SegmentationHead``.
- ``unet2d``: :class:`segcore.networks.unet.UNet2D`, the MRI network, on the same tiles.

Encoders never load pretrained weights (``encoder_weights=None``): nothing downloads. The smp
encoders build every stage of their backbone even when ``encoder_depth`` uses fewer of them
(resnet18 at depth 4 keeps an unused 8 M-parameter ``layer4``); those stages are removed here
so that every parameter receives a gradient (DDP needs no ``find_unused_parameters``) and
checkpoints hold only what the network uses.

The decoder loop in :func:`run_unet_decoder` follows smp 0.5/0.6's ``UnetDecoder.forward``;
a test checks that its last output equals ``decoder(features)`` exactly, so an smp upgrade
that changes the decoder fails loudly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.base import initialization as smp_init
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import nn

from segcore.networks import SegmentationNetwork, register_network

# Light enough to train on 64x64 tiles on one CPU thread (about 0.5 s per forward+backward of
# a 16x9x64x64 batch for the early-fusion net); see the module report for measured times.
DEFAULT_ENCODER = "resnet18"
DEFAULT_ENCODER_DEPTH = 4
# The default decoder widths for depth d are the last d entries (depth 4: 64, 32, 16, 8).
_DECODER_WIDTHS = (128, 64, 32, 16, 8)
ARCHITECTURES = ("early", "dual", "unet2d")
FUSIONS = ("concat", "sum")


def default_decoder_channels(encoder_depth: int) -> tuple[int, ...]:
    """Decoder widths, coarse to fine, for an smp encoder of ``encoder_depth`` (1 to 5)."""
    if not 1 <= encoder_depth <= len(_DECODER_WIDTHS):
        raise ValueError(f"encoder_depth must be 1 to {len(_DECODER_WIDTHS)}, got {encoder_depth}")
    return _DECODER_WIDTHS[-encoder_depth:]


def build_smp_encoder(name: str, in_channels: int, depth: int) -> nn.Module:
    """An smp encoder with random weights and its unused stages removed.

    smp keeps every backbone stage regardless of ``depth``; a stage whose modules never run in
    a forward pass is replaced by ``nn.Identity`` (found with forward hooks on a dummy input).
    """
    encoder = smp.encoders.get_encoder(name, in_channels=in_channels, depth=depth, weights=None)
    drop_unused_modules(encoder, torch.zeros(1, in_channels, 2 ** (depth + 2), 2 ** (depth + 2)))
    return encoder


def drop_unused_modules(module: nn.Module, example: torch.Tensor) -> int:
    """Replace every parameter-holding submodule that ``module(example)`` never calls.

    Runs one forward pass in eval mode under ``no_grad`` (BatchNorm statistics are untouched),
    then replaces each top-most uncalled submodule holding parameters by ``nn.Identity``.
    Returns the number of parameters removed; the output shapes are checked unchanged.
    """
    called: set[str] = set()
    hooks = []
    for name, sub in module.named_modules():
        hooks.append(sub.register_forward_hook(lambda m, i, o, name=name: called.add(name)))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            before = [f.shape for f in module(example)]
    finally:
        for hook in hooks:
            hook.remove()
    removed = 0
    dropped: list[str] = []
    for name, sub in list(module.named_modules()):
        if not name or name in called or any(name.startswith(d + ".") for d in dropped):
            continue
        n_params = sum(p.numel() for p in sub.parameters())
        if n_params == 0:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, nn.Identity())
        dropped.append(name)
        removed += n_params
    if removed:
        with torch.no_grad():
            after = [f.shape for f in module(example)]
        if after != before:  # a module used without being called: pruning it was wrong
            raise RuntimeError(f"pruning unused modules {dropped} changed the output shapes")
    module.train(was_training)
    return removed


def run_unet_decoder(
    decoder: UnetDecoder, features: Sequence[torch.Tensor], n_blocks: int | None = None
) -> list[torch.Tensor]:
    """Run the first ``n_blocks`` blocks of an smp ``UnetDecoder``; outputs coarse to fine.

    ``features`` are the encoder's maps, fine to coarse, level 0 at the input resolution
    (which the U-Net decoder does not use as a skip). Same arithmetic as smp's
    ``UnetDecoder.forward``, which returns only the last output.
    """
    n = len(decoder.blocks) if n_blocks is None else n_blocks
    if not 0 <= n <= len(decoder.blocks):
        raise ValueError(f"n_blocks must be 0 to {len(decoder.blocks)}, got {n_blocks}")
    sizes = [f.shape[-2:] for f in features][::-1]  # coarse to fine
    deep_first = list(features[1:])[::-1]  # bottleneck first, level-0 input dropped
    x = decoder.center(deep_first[0])
    skips = deep_first[1:]
    outputs = []
    for i, block in enumerate(list(decoder.blocks)[:n]):
        height, width = sizes[i + 1]
        skip = skips[i] if i < len(skips) else None
        x = block(x, height, width, skip_connection=skip)  # (B, decoder_channels[i], h, w)
        outputs.append(x)
    return outputs


class _SmpUNetBase(SegmentationNetwork):
    """Shared decode / head re-initialisation of the smp-based U-Nets."""

    decoder: UnetDecoder
    _decoder_channels: tuple[int, ...]

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        return self._decoder_channels

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(x)

    def decode(self, features: list[torch.Tensor], n_blocks: int | None = None) -> list[torch.Tensor]:
        return run_unet_decoder(self.decoder, features, n_blocks)

    def reset_head(self) -> None:
        smp_init.initialize_head(self.head)  # smp's own head init (Xavier), as at construction


def _check_depth_and_widths(encoder_depth: int, decoder_channels: Sequence[int] | None) -> tuple[int, ...]:
    widths = default_decoder_channels(encoder_depth) if decoder_channels is None else tuple(decoder_channels)
    if len(widths) != encoder_depth:
        raise ValueError(f"decoder_channels needs one width per encoder level ({encoder_depth}), got {widths}")
    return tuple(int(w) for w in widths)


class EarlyFusionUNet(_SmpUNetBase):
    """``smp.Unet`` on the stacked spectral + terrain channels (the single-encoder baseline)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder_name: str = DEFAULT_ENCODER,
        encoder_depth: int = DEFAULT_ENCODER_DEPTH,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        widths = _check_depth_and_widths(encoder_depth, decoder_channels)
        unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=None,
            decoder_channels=widths,
            in_channels=in_channels,
            classes=num_classes,
        )
        drop_unused_modules(
            unet.encoder, torch.zeros(1, in_channels, 2 ** (encoder_depth + 2), 2 ** (encoder_depth + 2))
        )
        # Adopt smp.Unet's parts under the interface's names (the Unet object itself is dropped).
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.head = unet.segmentation_head
        self.in_channels = in_channels
        self.num_classes = num_classes
        self._decoder_channels = widths


class FeatureFusion(nn.Module):
    """Fuse one scale of spectral ``(B, C_s, h, w)`` and terrain ``(B, C_t, h, w)`` features.

    ``concat``: concatenate, then 1x1 conv + BN + ReLU back to ``C_s`` channels.
    ``sum``: spectral + terrain (terrain projected to ``C_s`` by 1x1 conv + BN when widths differ).
    """

    def __init__(self, spectral_width: int, terrain_width: int, fusion: str) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        if fusion == "concat":
            self.mix = nn.Sequential(
                nn.Conv2d(spectral_width + terrain_width, spectral_width, 1, bias=False),
                nn.BatchNorm2d(spectral_width),
                nn.ReLU(inplace=True),
            )
        elif terrain_width == spectral_width:
            self.mix = nn.Identity()
        else:
            self.mix = nn.Sequential(
                nn.Conv2d(terrain_width, spectral_width, 1, bias=False), nn.BatchNorm2d(spectral_width)
            )

    def forward(self, spectral: torch.Tensor, terrain: torch.Tensor) -> torch.Tensor:
        if self.fusion == "concat":
            return self.mix(torch.cat([spectral, terrain], dim=1))  # (B, C_s, h, w)
        return spectral + self.mix(terrain)  # (B, C_s, h, w)


class DualEncoder(nn.Module):
    """Two smp encoders (spectral bands, DEM-derived channels) fused at every scale.

    Input ``(B, C, H, W)``; the encoders see only ``x[:, spectral_channels]`` and
    ``x[:, terrain_channels]``. Output: a feature list like an smp encoder's, with the spectral
    encoder's widths (``out_channels``). Level 0 is the spectral input itself, which the U-Net
    decoder does not read, so only levels 1..depth are fused.
    """

    def __init__(
        self,
        spectral_channels: Sequence[int],
        terrain_channels: Sequence[int],
        encoder_name: str,
        terrain_encoder_name: str,
        depth: int,
        fusion: str,
    ) -> None:
        super().__init__()
        # Not persistent: the channel split is configuration, rebuilt with the network.
        self.register_buffer("spectral_index", torch.tensor(list(spectral_channels)), persistent=False)
        self.register_buffer("terrain_index", torch.tensor(list(terrain_channels)), persistent=False)
        self.spectral = build_smp_encoder(encoder_name, len(spectral_channels), depth)
        self.terrain = build_smp_encoder(terrain_encoder_name, len(terrain_channels), depth)
        s_widths, t_widths = self.spectral.out_channels, self.terrain.out_channels
        self.fuse = nn.ModuleList(FeatureFusion(s_widths[i], t_widths[i], fusion) for i in range(1, depth + 1))
        self.out_channels: list[int] = list(s_widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        spectral = self.spectral(x.index_select(1, self.spectral_index))  # level i: (B, C_s_i, h_i, w_i)
        terrain = self.terrain(x.index_select(1, self.terrain_index))  # level i: (B, C_t_i, h_i, w_i)
        fused = [fuse(s, t) for fuse, s, t in zip(self.fuse, spectral[1:], terrain[1:], strict=True)]
        return [spectral[0], *fused]


def _check_channel_split(spectral_channels: Sequence[int], terrain_channels: Sequence[int], in_channels: int) -> None:
    spectral, terrain = list(spectral_channels), list(terrain_channels)
    if not spectral or not terrain:
        raise ValueError("spectral_channels and terrain_channels must both be non-empty")
    everything = spectral + terrain
    if len(set(everything)) != len(everything):
        raise ValueError(f"spectral_channels {spectral} and terrain_channels {terrain} must be distinct indices")
    if min(everything) < 0 or max(everything) >= in_channels:
        raise ValueError(f"channel indices {everything} must lie in 0..{in_channels - 1}")


class DualEncoderFusionUNet(_SmpUNetBase):
    """Spectral and terrain encoders fused at every scale, one U-Net decoder and head.

    ``spectral_channels`` / ``terrain_channels`` index the input's channel axis; channels in
    neither are unused. ``in_channels`` defaults to the largest index + 1. ``terrain_encoder_name``
    defaults to ``encoder_name``; with ``fusion="sum"`` and differing widths the terrain
    features are projected by a 1x1 conv. The encoder group (``encoder_parameters``) holds
    both encoders and the fusion layers.
    """

    def __init__(
        self,
        spectral_channels: Sequence[int],
        terrain_channels: Sequence[int],
        num_classes: int,
        encoder_name: str = DEFAULT_ENCODER,
        encoder_depth: int = DEFAULT_ENCODER_DEPTH,
        decoder_channels: Sequence[int] | None = None,
        fusion: str = "concat",
        terrain_encoder_name: str | None = None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        spectral, terrain = [int(c) for c in spectral_channels], [int(c) for c in terrain_channels]
        n_in = max(spectral + terrain, default=-1) + 1 if in_channels is None else int(in_channels)
        _check_channel_split(spectral, terrain, n_in)
        widths = _check_depth_and_widths(encoder_depth, decoder_channels)
        self.encoder = DualEncoder(
            spectral, terrain, encoder_name, terrain_encoder_name or encoder_name, encoder_depth, fusion
        )
        self.decoder = UnetDecoder(
            encoder_channels=self.encoder.out_channels,
            decoder_channels=widths,
            n_blocks=encoder_depth,
            add_center_block=encoder_name.startswith("vgg"),  # as smp.Unet does
        )
        self.head = SegmentationHead(in_channels=widths[-1], out_channels=num_classes, kernel_size=3)
        smp_init.initialize_decoder(self.decoder)
        smp_init.initialize_head(self.head)
        self.in_channels = n_in
        self.num_classes = num_classes
        self.spectral_channels = tuple(spectral)
        self.terrain_channels = tuple(terrain)
        self.fusion = fusion
        self._decoder_channels = widths


def build_network(
    arch: str,
    in_channels: int,
    num_classes: int,
    spectral_channels: Sequence[int] | None = None,
    terrain_channels: Sequence[int] | None = None,
    encoder_name: str = DEFAULT_ENCODER,
    encoder_depth: int = DEFAULT_ENCODER_DEPTH,
    decoder_channels: Sequence[int] | None = None,
    fusion: str = "concat",
    terrain_encoder_name: str | None = None,
    unet_channels: Sequence[int] = (16, 32, 64, 128, 128, 128),
    unet_norm: str = "BATCH",
) -> SegmentationNetwork:
    """Build a network by name.

    ``"early"``: :class:`EarlyFusionUNet` on all ``in_channels``. ``"dual"``:
    :class:`DualEncoderFusionUNet` (needs ``spectral_channels`` and ``terrain_channels``).
    ``"unet2d"``: :class:`segcore.networks.unet.UNet2D` with ``unet_channels`` widths. Arguments that an
    architecture does not use are ignored (one config can serve all three).
    """
    if arch == "early":
        return EarlyFusionUNet(in_channels, num_classes, encoder_name, encoder_depth, decoder_channels)
    if arch == "dual":
        if spectral_channels is None or terrain_channels is None:
            raise ValueError("arch 'dual' needs spectral_channels and terrain_channels")
        return DualEncoderFusionUNet(
            spectral_channels,
            terrain_channels,
            num_classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            decoder_channels=decoder_channels,
            fusion=fusion,
            terrain_encoder_name=terrain_encoder_name,
            in_channels=in_channels,
        )
    if arch == "unet2d":
        from segcore.networks.unet import UNet2D  # MONAI: imported only where used

        return UNet2D(in_channels, num_classes, channels=unet_channels, norm=unet_norm)
    raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")


# the remote-sensing checkpoints' specs ({"name": "early" | "dual", **build_network kwargs})
register_network("early", functools.partial(build_network, "early"))
register_network("dual", functools.partial(build_network, "dual"))
