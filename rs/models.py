"""Checkpoint spec ↔ network for the remote-sensing stages."""

from __future__ import annotations

from typing import Any

import rs.networks  # noqa: F401  (registers the early and dual networks)
from segcore.networks import SegmentationNetwork, build_network
from segcore.prepared import PreparedData


def network_spec(data: PreparedData, arch: str, encoder_name: str, encoder_depth: int, decoder_channels: list[int] | None) -> dict[str, Any]:
    m = data.manifest
    return {
        "name": arch,
        "in_channels": data.in_channels,
        "num_classes": data.num_classes,
        "spectral_channels": list(m.get("spectral_channels", [])) or None,
        "terrain_channels": list(m.get("terrain_channels", [])) or None,
        "encoder_name": encoder_name,
        "encoder_depth": int(encoder_depth),
        "decoder_channels": None if decoder_channels is None else list(decoder_channels),
    }


def build_from_spec(spec: dict[str, Any]) -> SegmentationNetwork:
    return build_network(spec)
