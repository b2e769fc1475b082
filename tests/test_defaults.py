"""One source of defaults: the workflow schema's defaults equal the stage CLIs' defaults, and the
demo config (workflows/config/config.yaml) differs from them only where a comment on the line
says why."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from segcore.cli import _resolve

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflows/config/config.schema.yaml").read_text())
CONFIG_TEXT = (ROOT / "workflows/config/config.yaml").read_text()

# schema key (dotted path) -> (cli, stage, option dest) of the option the workflow passes it to
MAPPED: dict[str, tuple[str, str, str]] = {
    "threads": ("medseg", "finetune", "threads"),
    "mri.layout": ("medseg", "preprocess", "layout"),
    **{f"mri.demo.{k}": ("medseg", "demo-data", k) for k in ("n_subjects", "n_slices", "size", "seed")},
    **{
        f"mri.preprocess.{k}": ("medseg", "preprocess", k)
        for k in (
            "target_spacing",
            "image_size",
            "partitions",
            "n_test",
            "n_val",
            "n_labeled",
            "seed",
            "subject_pattern",
            "subject_csv",
            "test_subjects",
            "val_subjects",
            "splits_from",
            "splits_fold",
            "n4",
        )
    },
    "mri.network.channels": ("medseg", "finetune", "channels"),
    "mri.pretrain.seed": ("medseg", "pretrain", "seed"),
    **{
        f"mri.pretrain.global.{k}": ("medseg", "pretrain", k)
        for k in ("steps", "volumes_per_batch", "lr", "temperature")
    },
    **{
        f"mri.pretrain.local.{k}": ("medseg", "pretrain", k)
        for k in ("steps", "volumes_per_batch", "lr", "temperature")
    },
    "mri.pretrain.local.negatives": ("medseg", "pretrain", "local_negatives"),
    "mri.pretrain.local.noise_std": ("medseg", "pretrain", "noise_std"),
    **{
        f"mri.pretrain.hpcl.{k}": ("medseg", "pretrain", k)
        for k in ("steps", "lr", "queue_size", "momentum", "temperature")
    },
    **{f"mri.finetune.{k}": ("medseg", "finetune", k) for k in ("steps", "batch_size", "lr", "val_every")},
    **{f"rs.demo.{k}": ("rs", "demo-data", k) for k in ("n_scenes", "size", "seed")},
    **{f"rs.preprocess.{k}": ("rs", "preprocess", k) for k in ("block_tiles", "val_fraction", "test_fraction", "seed")},
    **{f"rs.network.{k}": ("rs", "finetune", k) for k in ("encoder", "encoder_depth", "decoder_channels")},
    **{
        f"rs.pretrain.{k}": ("rs", "pretrain", k)
        for k in ("steps", "batch_size", "lr", "queue_size", "momentum", "temperature", "crop_scale", "seed")
    },
    **{
        f"rs.hpcl.{k}": ("rs", "finetune", f"hpcl_{k}")
        for k in ("warmup", "queue", "temperature", "mochi", "unlabeled", "pseudo_threshold", "unlabeled_anchors")
    },
    **{f"rs.finetune.{k}": ("rs", "finetune", k) for k in ("steps", "batch_size", "lr", "val_every")},
}
# schema keys that reach a CLI option but are not its default, and why
NOT_THE_CLI_DEFAULT = {
    "mri.pretrain.hpcl.batch_size": "the CLI's 0 means 16 slices (and the global/local stages' --volumes-per-batch)",
    "mri.pretrain.hpcl.crop_scale": "one --crop-scale serves the global views (default 0.5-0.75) and the hpcl views",
    "rs.preprocess.tile": "the CLI's default is chosen by the input (64 for GeoTIFF scenes, 128 for Landslide4Sense)",
    "rs.preprocess.overlap": "the CLI's default is chosen by the input (16 for GeoTIFF scenes, 0 for Landslide4Sense)",
    "rs.hpcl.weight": "the weight the hpcl-sup methods use; the CLI's default 0 means the term is off",
}


def _method_default(path: str) -> Any:
    """The value a method takes where the CLI's default is None ("the method's"): the default of
    the strategy parameter the option feeds."""
    from segcore.strategies import hyperpixel_ssl
    from segcore.strategies.global_contrastive import GlobalContrastiveStrategy
    from segcore.strategies.local_contrastive import LocalContrastiveStrategy

    hpcl = {"queue_size": "HPCL_QUEUE", "momentum": "HPCL_MOMENTUM", "temperature": "HPCL_TEMPERATURE"}
    key = path.rsplit(".", 1)[1]
    if path.startswith(("mri.pretrain.hpcl.", "rs.pretrain.")):
        return getattr(hyperpixel_ssl, hpcl[key])
    cls = GlobalContrastiveStrategy if path.startswith("mri.pretrain.global.") else LocalContrastiveStrategy
    return inspect.signature(cls.__init__).parameters[key].default


def _stage_defaults(cli: str, stage: str) -> dict[str, Any]:
    stages = {s[0]: s for s in _resolve(f"{cli}.cli:STAGES")}
    options = _resolve(stages[stage][2])
    parser = argparse.ArgumentParser()
    from segcore.config import add_options

    add_options(parser, options)
    return {a.dest: a.default for a in parser._actions}


def _normal(value: Any) -> Any:
    """Comma lists and sequences of numbers compare as lists of numbers."""
    if isinstance(value, str) and re.fullmatch(r"\d+(,\d+)+", value):
        return [int(v) for v in value.split(",")]
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _schema_node(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    return node


def _config_line(path: str) -> str | None:
    """The line of the demo config that sets ``path``: a block key at its depth, or the parent's
    line when the value sits in a flow mapping (``local: {steps: 100, ...}``)."""
    lines = CONFIG_TEXT.splitlines()
    start, end, indent = 0, len(lines), -1
    parts = path.split(".")
    for depth, part in enumerate(parts):
        for i in range(start, end):
            m = re.match(rf"^(\s*){re.escape(part)}:(.*)$", lines[i])
            if m and len(m.group(1)) > indent:
                rest = m.group(2)
                if rest.strip().startswith("{") and depth < len(parts) - 1:
                    return lines[i]  # the rest of the path is inside this flow mapping
                j = i + 1
                while j < end and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(m.group(1))):
                    j += 1
                start, end, indent = i, j, len(m.group(1))
                break
        else:
            return None
    return lines[start]


def _config_value(path: str) -> tuple[Any, str | None]:
    """The demo config's value of ``path`` and the comment on its line (None without one)."""
    data: Any = yaml.safe_load(CONFIG_TEXT)
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None, None
        data = data[part]
    line = _config_line(path) or ""
    return data, (line.split("#", 1)[1].strip() if "#" in line else None)


@pytest.mark.parametrize("path", sorted(MAPPED))
def test_schema_default_is_the_cli_default(path):
    cli, stage, dest = MAPPED[path]
    cli_default = _stage_defaults(cli, stage)[dest]
    if cli_default is None and _schema_node(path)["default"] is not None:  # "default: the method's"
        cli_default = _method_default(path)
    assert _normal(_schema_node(path)["default"]) == _normal(cli_default), f"{path} vs `{cli} {stage}` --{dest}"


@pytest.mark.parametrize("path", sorted(MAPPED) + sorted(NOT_THE_CLI_DEFAULT))
def test_demo_config_overrides_only_with_a_reason(path):
    value, comment = _config_value(path)
    if value is None:
        return  # the demo takes the default
    if _normal(value) != _normal(_schema_node(path)["default"]):
        default = _schema_node(path)["default"]
        assert comment, f"config.yaml sets {path} = {value!r} (default {default!r}) without a comment saying why"


def test_the_mapping_names_real_options():
    for path, (cli, stage, dest) in MAPPED.items():
        assert dest in _stage_defaults(cli, stage), f"{path}: `{cli} {stage}` has no option {dest}"
        _schema_node(path)
    for path in NOT_THE_CLI_DEFAULT:
        _schema_node(path)
