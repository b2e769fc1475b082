"""The MRI domain of the shared stage flow (:class:`segcore.domain.Domain`): volumes of
subjects, label budgets counted in volumes, the 2D U-Net, native-space 3D scoring and NIfTI
prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.config import MRIEvaluateConfig, MRIFinetuneConfig, MRIPredictConfig, MRIPretrainConfig
from segcore.augment import BatchSpatialAugment
from segcore.budget import draw_labeled
from segcore.checkpoints import checkpoint_network, read_checkpoint
from segcore.config import EvaluateConfig, FinetuneConfig, PredictConfig, PretrainConfig
from segcore.encoder_weights import load_encoder_weights, read_state_dict
from segcore.errors import InputError
from segcore.networks import SegmentationNetwork, build_network
from segcore.prepared import PreparedData
from segcore.strategies import strategy_class
from segcore.strategies.base import PretrainStrategy
from segcore.strategies.baselines import BASELINES, build_baseline, settings_from_config
from segcore.strategies.hyperpixel_ssl import queue_settings
from segcore.strategies.ssl_views import ViewOptions

# the fine-tuning augmentation of the MRI slices: small rotations, scaling, flips, elastic
AUGMENT = {"rotate_deg": 15, "scale": 0.1, "flip_axes": (0, 1), "elastic_prob": 0.3}
# the local stage trains the decoder blocks up to the H/4 map: all but the last two
FINE_DECODER_LEVELS = 3
HPCL_BATCH = 16  # hpcl slices per batch when --batch-size is 0
SUPERPIXEL_SIDE = 8  # hpcl: one SLIC superpixel per 8x8 pixels when --n-segments is not given
# the hpcl views' photometric jitter on MRI slices (intensities roughly in [0, 1]); also the baselines'
HPCL_BRIGHTNESS, HPCL_CONTRAST = 0.2, (0.8, 1.2)
# hpcl's K, m and T when the options are not given (the other methods' defaults live in their strategies)


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments whose value was given (not None): the others keep the strategy's default."""
    return {k: v for k, v in kwargs.items() if v is not None}


# the manifest entries of `medseg preprocess` that decide how a raw volume becomes network input
PREPROCESSING_KEYS = (
    "channels",
    "classes",
    "image_size",
    "target_spacing",
    "percentiles",
    "slice_axis",
    "channel",
    "n4",
)


def preprocessing_record(manifest: dict[str, Any]) -> dict[str, Any]:
    """The MRI preprocessing a model was trained with (:meth:`segcore.domain.Domain.preprocessing_record`):
    in-plane spacing (mm), slice size (px), intensity percentiles, slice axis, input channel, N4,
    channel and class names. Keys a manifest of an older preprocess stage lacks are left out."""
    return {"domain": "mri", **{k: manifest[k] for k in PREPROCESSING_KEYS if k in manifest}}


def parse_channels(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in str(text).replace(" ", "").split(",") if t)
    except ValueError:
        vals = ()
    if len(vals) < 2 or any(v < 1 for v in vals):
        raise InputError(None, f"--channels must be >= 2 positive integers, comma-separated, got {text!r}")
    return vals


def network_spec(in_channels: int, num_classes: int, channels: tuple[int, ...] | list[int]) -> dict[str, Any]:
    return {
        "name": "unet2d",
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
        "channels": list(channels),
    }


class MRIDomain:
    name = "mri"
    title = "MRI"
    cli = "medseg"
    groups = "subjects"
    val_metric = "dice"
    network_names = frozenset({"unet2d"})
    init_skip_prefixes = ("head.",)

    def empty_split_reason(self, data: PreparedData, split: str) -> str:
        return ""

    def preprocessing_record(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return preprocessing_record(manifest)

    # --------------------------------------------------------------------------- fine-tuning

    def select_labeled(
        self, data: PreparedData, cfg: FinetuneConfig, label_seed: int
    ) -> tuple[list[str], dict[str, Any]]:
        assert isinstance(cfg, MRIFinetuneConfig)
        try:  # the budget counts subjects (all volumes of a person); fixed lists win over the draw
            subjects, chosen = draw_labeled(
                data.split_subjects("labeled"), cfg.budget, label_seed, cfg.labeled_subjects, data.subject_split()
            )
        except ValueError as err:
            raise InputError(cfg.data, str(err)) from err
        return chosen, {"budget": str(cfg.budget), "labeled_subjects": subjects}

    def network_spec(self, data: PreparedData, cfg: Any) -> dict[str, Any]:
        return network_spec(data.in_channels, data.num_classes, parse_channels(cfg.channels))

    def check_init(self, spec: dict[str, Any], data: PreparedData, path: Path) -> None:
        if spec.get("in_channels") != data.in_channels or spec.get("num_classes") != data.num_classes:
            raise InputError(
                path,
                f"checkpoint is for {spec.get('in_channels')} channels / {spec.get('num_classes')} classes, "
                f"data has {data.in_channels} / {data.num_classes}",
            )

    def load_encoder_weights(self, net: SegmentationNetwork, spec: dict[str, Any], source: str) -> list[str]:
        if not Path(source).is_file():
            raise InputError(
                source,
                "the MRI U-Net has no published weights: give a weights file of its encoder (e.g. the "
                "encoder of a model pretrained elsewhere with the same widths)",
            )
        loaded = load_encoder_weights(net.encoder, read_state_dict(source), source)
        return [f"encoder.{k}" for k in loaded]

    def finetune_augment(self, data: PreparedData) -> BatchSpatialAugment:
        return BatchSpatialAugment(**AUGMENT, ignore_index=data.ignore_index)

    def run_record(self, spec: dict[str, Any], run: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    # --------------------------------------------------------------------------- pretraining

    def pretrain_groups(self, data: PreparedData) -> list[str]:
        groups = data.split_groups("unlabeled") + data.split_groups("labeled")
        if not groups:
            raise InputError(data.folder, "no unlabeled or labeled-pool subjects to pretrain on")
        return groups

    def pretrain_setup(
        self, data: PreparedData, cfg: PretrainConfig
    ) -> tuple[SegmentationNetwork, dict[str, Any], PretrainStrategy, dict[str, Any]]:
        assert isinstance(cfg, MRIPretrainConfig)
        if cfg.method == "hpcl":
            return self._hyperpixel_setup(data, cfg)
        if cfg.method in BASELINES:
            return self._baseline_setup(data, cfg)
        if cfg.stage == "global":
            name = cfg.strategy or "GD"
            if name not in ("GR", "GD-", "GD"):
                raise InputError(None, f"--stage global takes --strategy GR, GD- or GD, got {name!r}")
            spec = network_spec(data.in_channels, data.num_classes, parse_channels(cfg.channels))
            net = build_network(spec)
            if cfg.encoder_weights is not None:  # the global stage may start from an encoder trained elsewhere
                self.load_encoder_weights(net, spec, cfg.encoder_weights)
            strategy = strategy_class(name)(
                net,
                data.manifest["image_size"],
                volumes_per_batch=cfg.volumes_per_batch,
                crop_scale=cfg.crop_scale,
                **_given(temperature=cfg.temperature),
            )
            record = {"stage": "pretrain-global", "method": name, "pretrained": ["encoder."]}
            return net, spec, strategy, {**record, "train": {"batch": cfg.volumes_per_batch * _partitions(data)}}
        if cfg.init is None:
            raise InputError(None, "--stage local needs --init (the global stage's checkpoint)")
        if cfg.encoder_weights is not None:
            raise InputError(
                None, "--stage local starts from the global stage's checkpoint (--init), not --encoder-weights"
            )
        name = cfg.strategy or "LR"
        if name not in ("LR", "LD"):
            raise InputError(None, f"--stage local takes --strategy LR or LD, got {name!r}")
        init = read_checkpoint(cfg.init)
        spec = checkpoint_network(init, cfg.init, self)
        net = build_network(spec, cfg.init)
        net.load_state_dict(init["state_dict"])
        n_blocks = cfg.local_blocks or max(1, len(spec["channels"]) - FINE_DECODER_LEVELS)
        if not 1 <= n_blocks <= len(net.decoder):
            raise InputError(None, f"--local-blocks must be in 1..{len(net.decoder)}")
        strategy = strategy_class(name)(
            net,
            n_blocks,
            volumes_per_batch=cfg.volumes_per_batch,
            negatives=cfg.local_negatives,
            noise_std=cfg.noise_std,
            **_given(temperature=cfg.temperature),
        )
        record = {
            "stage": "pretrain-local",
            "method": f"{init.get('method', 'pretrained')}+{name}",
            "pretrained": sorted(set(init.get("pretrained", [])) | {f"decoder.{i}." for i in range(n_blocks)}),
            "heads": init.get("heads", {}),
            "train": {"batch": cfg.volumes_per_batch * _partitions(data)},
        }
        return net, spec, strategy, record

    def _hyperpixel_setup(
        self, data: PreparedData, cfg: MRIPretrainConfig
    ) -> tuple[SegmentationNetwork, dict[str, Any], PretrainStrategy, dict[str, Any]]:
        K, m, T = queue_settings(cfg)
        spec = network_spec(data.in_channels, data.num_classes, parse_channels(cfg.channels))
        net = build_network(spec)
        if cfg.encoder_weights is not None:
            self.load_encoder_weights(net, spec, cfg.encoder_weights)
        batch = cfg.batch_size if cfg.batch_size > 0 else HPCL_BATCH
        h, w = data.manifest["image_size"]
        n_segments = cfg.n_segments or max(1, (h // SUPERPIXEL_SIDE) * (w // SUPERPIXEL_SIDE))
        strategy = strategy_class("hpcl")(
            net,
            batch_size=batch,
            K=K,
            m=m,
            T=T,
            proj_hidden=cfg.proj_hidden,
            proj_dim=cfg.proj_dim,
            max_anchors=cfg.max_anchors,
            slic=(n_segments, cfg.compactness),
            crop_scale=cfg.crop_scale,
            brightness=HPCL_BRIGHTNESS,
            contrast=HPCL_CONTRAST,
            noise_std=cfg.noise_std,
        )
        train = {
            "batch": batch,
            "slices": len(data.sample_indices(self.pretrain_groups(data))),
            "n_segments": n_segments,
            "queue_size": K,
            "momentum": m,
            "temperature": T,
        }
        record = {"stage": "pretrain-hpcl", "method": "hpcl", "pretrained": ["encoder.", "decoder."], "train": train}
        return net, spec, strategy, record

    def _baseline_setup(
        self, data: PreparedData, cfg: MRIPretrainConfig
    ) -> tuple[SegmentationNetwork, dict[str, Any], PretrainStrategy, dict[str, Any]]:
        """A generic baseline (docs/ssl_baselines.md) on slices: the hpcl views (crop, flips and
        quarter turns, intensity gain/shift/noise), DetCon's masks SLIC computed at the start of
        the run unless --masks says otherwise."""
        spec = network_spec(data.in_channels, data.num_classes, parse_channels(cfg.channels))
        net = build_network(spec)
        batch = cfg.batch_size if cfg.batch_size > 0 else HPCL_BATCH
        views = ViewOptions(
            crop_scale=tuple(cfg.crop_scale),
            brightness=HPCL_BRIGHTNESS,
            contrast=HPCL_CONTRAST,
            noise_std=cfg.noise_std,
        )
        settings = settings_from_config(cfg, batch, views, auto_masks="slic")
        strategy, train, pretrained = build_baseline(net, data.manifest["image_size"], settings)
        train["slices"] = len(data.sample_indices(self.pretrain_groups(data)))
        record = {"stage": f"pretrain-{cfg.method}", "method": cfg.method, "pretrained": pretrained, "train": train}
        return net, spec, strategy, record

    # --------------------------------------------------------------------------- evaluation, prediction

    def evaluate(
        self, net: SegmentationNetwork, ckpt: dict[str, Any], data: PreparedData, cfg: EvaluateConfig, tmp: Path
    ) -> dict[str, Any]:
        from medseg.evaluate import score_subjects

        assert isinstance(cfg, MRIEvaluateConfig)
        return score_subjects(net, data, cfg, tmp)

    def predict(self, net: SegmentationNetwork, preprocessing: dict[str, Any], cfg: PredictConfig, tmp: Path) -> None:
        from medseg.predict import predict_files

        assert isinstance(cfg, MRIPredictConfig)
        predict_files(net, preprocessing, cfg, tmp)


def _partitions(data: PreparedData) -> int:
    return len({int(p) for p in data.partition if p >= 0})
