"""The MRI segmentation network and its checkpoint spec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segcore.networks import SegmentationNetwork
from segcore.networks import build_network as build_registered


def parse_channels(text: str | Sequence[int]) -> tuple[int, ...]:
    if isinstance(text, str):
        vals = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    else:
        vals = tuple(int(t) for t in text)
    if len(vals) < 2 or any(v < 1 for v in vals):
        raise ValueError(f"channel widths must be >= 2 positive integers, got {text!r}")
    return vals


def network_spec(in_channels: int, num_classes: int, channels: Sequence[int]) -> dict[str, Any]:
    return {"name": "unet2d", "in_channels": int(in_channels), "num_classes": int(num_classes), "channels": list(channels)}


def build_network(spec: dict[str, Any]) -> SegmentationNetwork:
    if spec.get("name") != "unet2d":
        raise ValueError(f"medseg builds 'unet2d' networks, checkpoint has {spec.get('name')!r}")
    return build_registered(spec)
