"""Segmentation networks behind one interface (:class:`SegmentationNetwork`) and a builder
registry (:func:`build_network` from a checkpoint's network spec).

Network modules register themselves by name: :mod:`segcore.networks.unet` (``unet2d``, the MRI
U-Net) here; the remote-sensing fusion networks (``early``, ``dual``) in :mod:`rs.networks`.
"""

from segcore.networks.base import SegmentationNetwork
from segcore.networks.registry import build_network, network_names, register_network

__all__ = ["SegmentationNetwork", "build_network", "network_names", "register_network"]
