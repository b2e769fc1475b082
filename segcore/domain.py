"""What a domain (MRI volumes, remote-sensing scenes) gives the shared stage flow.

The stages in :mod:`segcore.stages` (pretrain, finetune, evaluate, predict) are written once;
``medseg.domain.MRIDomain`` and ``rs.domain.RSDomain`` implement this protocol with what is
specific to them: which prepared data they read, how a label budget is counted, the network a
config describes, augmentation, the pretraining strategy's domain options, the metrics in the
input's own space (NIfTI affine, GeoTIFF CRS) and prediction of raw files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from segcore.augment import BatchSpatialAugment
from segcore.config import EvaluateConfig, FinetuneConfig, PredictConfig, PretrainConfig
from segcore.networks import SegmentationNetwork
from segcore.prepared import PreparedData
from segcore.strategies.base import PretrainStrategy


class Domain(Protocol):
    name: str  # the manifest's and the checkpoints' domain: "mri" or "rs"
    title: str  # for messages: "MRI", "remote-sensing"
    cli: str  # the command of this domain's stages: "medseg", "rs"
    groups: str  # what the prepared data's groups are, for messages: "subjects", "tiles"
    val_metric: str  # the validation score of fine-tuning: "dice" or "miou"
    network_names: frozenset[str]  # the network specs this domain builds
    init_skip_prefixes: tuple[str, ...]  # checkpoint keys not taken by --init (heads)

    def empty_split_reason(self, data: PreparedData, split: str) -> str:
        """Why the preprocessing left ``split`` empty (``" (<why>)"``), or ""."""
        ...

    def preprocessing_record(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """What prediction needs to process raw inputs exactly as the prepared data were (from
        the preprocess stage's manifest: spacing, sizes, normalisation, channels, ...); stored in
        every fine-tuned ``model.pt`` as ``data.preprocessing``. Plain JSON values only."""
        ...

    # --- fine-tuning
    def select_labeled(
        self, data: PreparedData, cfg: FinetuneConfig, label_seed: int
    ) -> tuple[list[str], dict[str, Any]]:
        """The labeled groups of a run and what the run record says of them (``budget``, ...)."""
        ...

    def network_spec(self, data: PreparedData, cfg: Any) -> dict[str, Any]:
        """The spec of a new network for the data from the stage's network options."""
        ...

    def check_init(self, spec: dict[str, Any], data: PreparedData, path: Path) -> None:
        """Raise InputError when a checkpoint's network cannot take this data."""
        ...

    def finetune_augment(self, data: PreparedData) -> BatchSpatialAugment: ...

    def load_encoder_weights(self, net: SegmentationNetwork, spec: dict[str, Any], source: str) -> list[str]:
        """Load encoder weights from ``source`` (a named source or a file) into ``net``; returns the
        loaded tensors' names in ``net``."""
        ...

    def run_record(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Extra entries of a fine-tuned model's run record (e.g. the fusion ``variant``)."""
        ...

    # --- pretraining
    def pretrain_groups(self, data: PreparedData) -> list[str]: ...

    def pretrain_setup(
        self, data: PreparedData, cfg: PretrainConfig
    ) -> tuple[SegmentationNetwork, dict[str, Any], PretrainStrategy, dict[str, Any]]:
        """Network, its spec, the strategy and the checkpoint record (method, pretrained
        prefixes, heads carried over from --init, extra train.json entries)."""
        ...

    # --- evaluation and prediction
    def evaluate(
        self, net: SegmentationNetwork, ckpt: dict[str, Any], data: PreparedData, cfg: EvaluateConfig, tmp: Path
    ) -> dict[str, Any]:
        """Score ``net`` on ``cfg.split``; write predictions and overlays into ``tmp``; return the
        metrics.json entries beyond the shared ones (domain, dataset, split, method, budget, seed)."""
        ...

    def predict(self, net: SegmentationNetwork, preprocessing: dict[str, Any], cfg: PredictConfig, tmp: Path) -> None:
        """Segment the raw inputs of ``cfg`` into ``tmp`` in their own space, processed as
        ``preprocessing`` (a :meth:`preprocessing_record`) says."""
        ...
