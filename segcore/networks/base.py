"""The interface every segmentation network of the pipeline implements.

A network has an ``encoder``, a ``decoder`` and a ``head`` submodule, plus

- ``encode(x)``: the encoder's feature maps, fine to coarse (level 0 = input resolution);
- ``decode(features, n_blocks=None)``: the first ``n_blocks`` decoder blocks' outputs, coarse
  to fine (the local contrastive stage trains only some of them);
- ``forward(x)``: logits ``(B, K, H, W)``; ``decoder_features(x)``: the decoder maps that make
  the hypercolumn (``hypercolumn_channels`` wide); ``forward_with_features(x)``: both from one pass;
- ``encoder_parameters()`` / ``decoder_parameters()`` / ``head_parameters()`` and
  ``load_backbone_state_dict`` + ``reset_head`` so that a pretrained encoder+decoder can be
  loaded while the head is re-initialised (e.g. for another class count).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn


class SegmentationNetwork(nn.Module):
    """Interface shared by every segmentation network of the pipeline.

    Subclasses define the submodules ``encoder``, ``decoder`` and ``head`` (the names matter:
    ``load_backbone_state_dict`` treats every state key under ``head.`` as the head), the
    attributes ``in_channels`` and ``num_classes``, and the methods ``encode`` and ``decode``.
    """

    in_channels: int
    num_classes: int
    encoder: nn.Module
    decoder: nn.Module
    head: nn.Module

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        """Widths of the decoder blocks' outputs, coarse to fine."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps, fine to coarse; the last is the bottleneck."""
        raise NotImplementedError

    def decode(self, features: list[torch.Tensor], n_blocks: int | None = None) -> list[torch.Tensor]:
        """Outputs of the first ``n_blocks`` (default all) decoder blocks, coarse to fine."""
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, K, H, W)`` and the decoder features (coarse to fine) from one pass.

        Feature ``i`` has shape ``(B, decoder_channels[i], h_i, w_i)``; the last one is at the
        input resolution and is what the head reads.
        """
        self._check_input(x)
        features = self.decode(self.encode(x))
        return self.head(features[-1]), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for input ``(B, in_channels, H, W)``."""
        return self.forward_with_features(x)[0]

    def decoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder feature maps, coarse to fine, each ``(B, C_i, h_i, w_i)``: the parts of the
        hypercolumn; ``self.head(features[-1])`` gives the logits."""
        self._check_input(x)
        return self.decode(self.encode(x))

    @property
    def hypercolumn_channels(self) -> int:
        """Width of the hypercolumn (every decoder output stacked): the sum of the decoder widths."""
        return int(sum(self.decoder_channels))

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.decoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def reset_head(self) -> None:
        """Re-initialise the head (as at construction); encoder and decoder are untouched."""
        for module in self.head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """State of encoder + decoder (every key not under ``head.``)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}

    def load_backbone_state_dict(
        self, state_dict: Mapping[str, torch.Tensor], prefix: str = "", reset_head: bool = True
    ) -> None:
        """Load encoder + decoder weights from ``state_dict``; the head is not loaded.

        ``prefix`` selects and strips a key prefix (e.g. ``"net."`` in a Lightning checkpoint);
        keys without it are ignored. Every encoder/decoder key must be present and no other
        non-head key may be, else ``KeyError`` names them. With ``reset_head`` the head is
        re-initialised, so a checkpoint trained for another class count can be used.
        """
        backbone = {
            k[len(prefix) :]: v
            for k, v in state_dict.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith("head.")
        }
        missing, unexpected = self.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith("head.")]
        if missing or unexpected:
            raise KeyError(
                f"backbone state does not match {type(self).__name__}: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {list(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        if reset_head:
            self.reset_head()
