"""The remote-sensing domain of the shared stage flow (:class:`segcore.domain.Domain`): tiles of
scenes, label budgets in percent of the labeled tiles, early- or dual-fusion networks, scores over
whole scenes and GeoTIFF prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rs.networks  # noqa: F401  (registers the early and dual networks)
from rs import landslide4sense_protocol
from rs.config import (
    FusionNetworkConfig,
    RSEvaluateConfig,
    RSFinetuneConfig,
    RSPredictConfig,
    RSPretrainConfig,
)
from rs.encoder_sources import encoder_state
from segcore.augment import BatchSpatialAugment
from segcore.budget import select_percent
from segcore.config import EvaluateConfig, FinetuneConfig, PredictConfig, PretrainConfig
from segcore.encoder_weights import load_encoder_weights
from segcore.errors import InputError
from segcore.networks import SegmentationNetwork, build_network
from segcore.prepared import PreparedData
from segcore.strategies import strategy_class
from segcore.strategies.base import PretrainStrategy
from segcore.strategies.baselines import BASELINES, build_baseline, settings_from_config
from segcore.strategies.hyperpixel_ssl import queue_settings
from segcore.strategies.ssl_views import ViewOptions

# fine-tuning augmentation of tiles: flips and quarter turns only (north-up imagery, no resampling)
AUGMENT = {"rotate_deg": 0, "scale": 0, "flip_axes": (0, 1), "elastic_prob": 0, "rot90": True}
# hpcl's K, m and T when the options are not given (the baselines' defaults live in their strategies)


# the manifest entries of `rs preprocess` that decide how a raw scene becomes network input
PREPROCESSING_KEYS = (
    "source",
    "channels",
    "spectral_channels",
    "terrain_channels",
    "classes",
    "image_size",
    "tile",
    "overlap",
    "normalization",
    "terrain",
)


def preprocessing_record(manifest: dict[str, Any]) -> dict[str, Any]:
    """The remote-sensing preprocessing a model was trained with
    (:meth:`segcore.domain.Domain.preprocessing_record`): the source kind, channel names and
    roles, the standardisation (training mean / std per channel), the terrain settings
    (hillshade sun), tile size and overlap, class names."""
    return {"domain": "rs", **{k: manifest[k] for k in PREPROCESSING_KEYS if k in manifest}}


def parse_widths(text: str | None) -> list[int] | None:
    if text in (None, "", "auto"):
        return None
    try:
        return [int(t) for t in str(text).split(",") if t]
    except ValueError as err:
        raise InputError(None, f"--decoder-channels must be integers, comma-separated, got {text!r}") from err


def network_spec(data: PreparedData, net: FusionNetworkConfig) -> dict[str, Any]:
    m = data.manifest
    return {
        "name": net.fusion,
        "in_channels": data.in_channels,
        "num_classes": data.num_classes,
        "spectral_channels": list(m.get("spectral_channels", [])) or None,
        "terrain_channels": list(m.get("terrain_channels", [])) or None,
        "encoder_name": net.encoder,
        "encoder_depth": int(net.encoder_depth),
        "decoder_channels": parse_widths(net.decoder_channels),
    }


class RSDomain:
    name = "rs"
    title = "remote-sensing"
    cli = "rs"
    groups = "tiles"
    val_metric = "miou"
    network_names = frozenset({"early", "dual", "unet2d"})
    init_skip_prefixes = ("head.", "segmentation_head.")

    def empty_split_reason(self, data: PreparedData, split: str) -> str:
        return landslide4sense_protocol.empty_split_reason(data.manifest, split)  # e.g. TestData without masks

    def preprocessing_record(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return preprocessing_record(manifest)

    # --------------------------------------------------------------------------- fine-tuning

    def select_labeled(
        self, data: PreparedData, cfg: FinetuneConfig, label_seed: int
    ) -> tuple[list[str], dict[str, Any]]:
        assert isinstance(cfg, RSFinetuneConfig)
        pool = data.split_groups("labeled")
        if not pool:
            raise InputError(cfg.data, "no labeled training tiles in the prepared data")
        try:
            chosen = select_percent(pool, cfg.percent, label_seed)
        except ValueError as err:
            raise InputError(None, str(err)) from err
        return chosen, {"budget": f"{cfg.percent:g}"}

    def network_spec(self, data: PreparedData, cfg: Any) -> dict[str, Any]:
        return network_spec(data, cfg.network)

    def check_init(self, spec: dict[str, Any], data: PreparedData, path: Path) -> None:
        if spec.get("in_channels") != data.in_channels:
            raise InputError(
                path, f"checkpoint expects {spec.get('in_channels')} channels, data has {data.in_channels}"
            )

    def load_encoder_weights(self, net: SegmentationNetwork, spec: dict[str, Any], source: str) -> list[str]:
        """Early fusion: the encoder; dual fusion: both encoders (spectral bands, terrain), each
        with its first convolution adapted to its own channels."""
        state = encoder_state(source, spec["encoder_name"])
        parts = (
            {"encoder.spectral": net.encoder.spectral, "encoder.terrain": net.encoder.terrain}
            if spec["name"] == "dual"
            else {"encoder": net.encoder}
        )
        return [
            f"{prefix}.{k}" for prefix, module in parts.items() for k in load_encoder_weights(module, state, source)
        ]

    def finetune_augment(self, data: PreparedData) -> BatchSpatialAugment:
        return BatchSpatialAugment(**AUGMENT, ignore_index=data.ignore_index)

    def run_record(self, spec: dict[str, Any], run: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"variant": (run or {}).get("variant", spec["name"])}

    # --------------------------------------------------------------------------- pretraining

    def pretrain_groups(self, data: PreparedData) -> list[str]:
        tiles = data.split_groups("unlabeled")
        if not tiles:
            raise InputError(data.folder, "no training tiles in the 'unlabeled' split to pretrain on")
        return tiles

    def view_channels(self, data: PreparedData, cfg: RSPretrainConfig) -> tuple[list[int], list[int]]:
        """The channels the views jitter (``--jitter``) and the terrain channels ``--drop-terrain``
        may drop (every channel that is not a spectral band)."""
        names = list(data.manifest.get("channels") or [])
        spectral = data.spectral_channels
        jittered = list(range(data.in_channels)) if cfg.jitter == "all" else list(spectral)
        if cfg.jitter == "elevation":
            if "elevation" not in names:
                raise InputError(cfg.data, f"--jitter elevation needs an 'elevation' channel; the data has {names}")
            jittered.append(names.index("elevation"))
        if not 0.0 <= cfg.drop_terrain <= 1.0:
            raise InputError(None, f"--drop-terrain must lie in [0, 1], got {cfg.drop_terrain}")
        terrain = [i for i in range(data.in_channels) if i not in set(spectral)]
        if cfg.drop_terrain > 0 and not terrain:
            raise InputError(
                cfg.data, "--drop-terrain needs terrain channels besides the spectral bands; the data has none"
            )
        return jittered, terrain

    def pretrain_setup(
        self, data: PreparedData, cfg: PretrainConfig
    ) -> tuple[SegmentationNetwork, dict[str, Any], PretrainStrategy, dict[str, Any]]:
        assert isinstance(cfg, RSPretrainConfig)
        if cfg.method in BASELINES:
            return self._baseline_setup(data, cfg)
        data.extra("superpixels")  # InputError when preprocessing did not write it
        K, m, T = queue_settings(cfg)
        names = list(data.manifest.get("channels") or [])
        jittered, terrain = self.view_channels(data, cfg)
        spec = network_spec(data, cfg.network)
        net = build_network(spec)
        if cfg.encoder_weights is not None:  # pretraining may start from an encoder trained elsewhere
            self.load_encoder_weights(net, spec, cfg.encoder_weights)
        crop = None if cfg.crop_scale[0] >= 1.0 else tuple(cfg.crop_scale)
        strategy = strategy_class("hpcl")(
            net,
            batch_size=cfg.batch_size,
            K=K,
            m=m,
            T=T,
            proj_hidden=cfg.proj_hidden,
            proj_dim=cfg.proj_dim,
            max_anchors=cfg.max_anchors,
            batch_negatives=cfg.batch_negatives,
            key_batchnorm=cfg.key_batchnorm,
            dihedral_transforms=cfg.dihedral,
            crop_scale=crop,
            jitter_channels=jittered,
            brightness=cfg.brightness,
            contrast=tuple(cfg.contrast),
            noise_std=cfg.noise_std,
            drop_channels=terrain,
            drop_prob=cfg.drop_terrain,
        )

        def named(idx: list[int]) -> list[Any]:
            return [names[i] for i in idx] if names else idx

        train = {
            "variant": spec["name"],
            "batch_size": cfg.batch_size,
            "tiles": len(data.sample_indices(self.pretrain_groups(data))),
            "queue_size": K,
            "momentum": m,
            "temperature": T,
            "jitter_channels": named(jittered),
            "drop_terrain": cfg.drop_terrain,
            "dropped_channels": named(terrain) if cfg.drop_terrain > 0 else [],
        }
        record = {"stage": "pretrain", "method": "hpcl-ssl", "pretrained": ["encoder.", "decoder."], "train": train}
        return net, spec, strategy, record

    def _baseline_setup(
        self, data: PreparedData, cfg: RSPretrainConfig
    ) -> tuple[SegmentationNetwork, dict[str, Any], PretrainStrategy, dict[str, Any]]:
        """A generic baseline (docs/ssl_baselines.md) on tiles: hpcl's views (crop, flips and quarter
        turns, per-channel gain/shift/noise on the --jitter channels, optional terrain dropout);
        DetCon's masks the stored superpixels unless --masks says otherwise."""
        names = list(data.manifest.get("channels") or [])
        jittered, terrain = self.view_channels(data, cfg)
        spec = network_spec(data, cfg.network)
        net = build_network(spec)
        views = ViewOptions(
            crop_scale=tuple(cfg.crop_scale),
            dihedral=cfg.dihedral,
            jitter_channels=jittered,
            brightness=cfg.brightness,
            contrast=tuple(cfg.contrast),
            noise_std=cfg.noise_std,
            extra={"drop_channels": terrain, "drop_prob": float(cfg.drop_terrain)},
        )
        settings = settings_from_config(cfg, cfg.batch_size, views, auto_masks="stored")
        strategy, train, pretrained = build_baseline(net, data.manifest["image_size"], settings)
        train.update(
            variant=spec["name"],
            tiles=len(data.sample_indices(self.pretrain_groups(data))),
            jitter_channels=[names[i] for i in jittered] if names else jittered,
        )
        record = {"stage": f"pretrain-{cfg.method}", "method": cfg.method, "pretrained": pretrained, "train": train}
        return net, spec, strategy, record

    # --------------------------------------------------------------------------- evaluation, prediction

    def evaluate(
        self, net: SegmentationNetwork, ckpt: dict[str, Any], data: PreparedData, cfg: EvaluateConfig, tmp: Path
    ) -> dict[str, Any]:
        from rs.evaluate import score_tiles_and_scenes

        assert isinstance(cfg, RSEvaluateConfig)
        return score_tiles_and_scenes(net, data, cfg, tmp)

    def predict(self, net: SegmentationNetwork, preprocessing: dict[str, Any], cfg: PredictConfig, tmp: Path) -> None:
        from rs.predict import predict_scenes

        assert isinstance(cfg, RSPredictConfig)
        predict_scenes(net, preprocessing, cfg, tmp)
