"""Typed stage configurations: the single source of every option, its default and its help.

A stage's options are a dataclass (:class:`FinetuneConfig`, :class:`PretrainConfig`, ...);
every field carries its help text and command-line spelling (:func:`option`). From the class:

* :func:`add_options` builds the argparse options (nested configs such as
  :class:`RuntimeConfig` or :class:`HyperPixelConfig` are flattened, with a flag prefix);
* :func:`from_namespace` turns parsed arguments into the typed config, so the stage code below
  the CLI never sees an ``argparse.Namespace``;
* :func:`coerce` type-checks a value from a ``--config`` YAML file against the field's type
  (``steps: 2.5`` is an error naming the file and the option, not a traceback).

This module imports nothing heavy: the CLI parses and checks every option before torch loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

_OPTION_KEYS = ("help", "flag", "choices", "metavar", "nargs", "action", "parse", "prefix", "required", "aliases")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002  (argparse's name)
    *,
    flag: str | None = None,
    metavar: str | Sequence[str] | None = None,
    nargs: str | int | None = None,
    action: str | type[argparse.Action] | None = None,
    parse: Callable[[str], Any] | None = None,
    prefix: str | None = None,
    required: bool = False,
    default_factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    aliases: Sequence[str] = (),
) -> Any:
    """A config field: its default, help text and command-line spelling.

    ``flag`` overrides the option name (default ``--<field-name>`` with dashes); ``parse``
    converts a command-line string (default: from the field's type); ``action`` is
    ``"store_true"``, ``"bool"`` (``--x/--no-x``), ``"extend"`` (a list option that can be repeated) or an
    argparse Action class; ``prefix`` marks a
    nested config whose flags get that prefix (``hpcl_`` → ``--hpcl-weight``); ``aliases`` are
    further spellings of the flag (``--accelerator`` for ``--device``). ``ge``/``gt``/``le``/``lt``
    bound a number (every element of a list): :func:`check_ranges`.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "nargs": nargs,
        "action": action,
        "parse": parse,
        "prefix": prefix,
        "required": required,
        "bounds": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None},
        "aliases": tuple(aliases),
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------------- types


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def type_name(tp: Any) -> str:
    tp, optional = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        text = " or ".join(repr(a) for a in typing.get_args(tp))
    elif origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            text = f"a list of {len(args)} {type_name(args[0])} values"
        else:
            text = f"a list of {type_name(args[0]) if args else 'values'}"
    elif tp is int:
        text = "an integer"
    elif tp is float:
        text = "a number"
    elif tp is bool:
        text = "true or false"
    elif tp in (str, Path):
        text = "a string"
    else:
        text = getattr(tp, "__name__", str(tp))
    return f"{text} (or null)" if optional else text


class ConfigTypeError(ValueError):
    """A value does not have its option's type."""


def coerce(value: Any, tp: Any) -> Any:
    """``value`` (from YAML or a default) as type ``tp``; :class:`ConfigTypeError` when it is not one.

    Integers are not taken for booleans nor floats with a fraction for integers; a number is
    taken for a float; a string for a Path; a scalar for a one-element list.
    """
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigTypeError(f"must be {type_name(tp)}, got null")
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[0]):
            return value
        raise ConfigTypeError(f"must be {type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        args = typing.get_args(tp)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigTypeError(f"must be {type_name(tp)}, got {value!r}")
            return tuple(coerce(v, a) for v, a in zip(items, args, strict=True))
        inner = args[0] if args else Any
        out = [coerce(v, inner) for v in items]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigTypeError(f"must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigTypeError(f"must be an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError as err:
            raise ConfigTypeError(f"must be an integer, got {value!r}") from err
        if not number.is_integer():
            raise ConfigTypeError(f"must be an integer, got {value!r}")
        return int(number)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigTypeError(f"must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError as err:
            raise ConfigTypeError(f"must be a number, got {value!r}") from err
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigTypeError(f"must be a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigTypeError(f"must be a path (a string), got {value!r}")
    if dataclasses.is_dataclass(tp):
        raise ConfigTypeError("is a group of options, not a value")
    return value


# --------------------------------------------------------------------------- argparse from dataclasses


@dataclass(frozen=True)
class _Leaf:
    dest: str  # the argparse dest (prefix + field name)
    path: tuple[str, ...]  # attribute path in the config
    tp: Any
    f: dataclasses.Field


def _leaves(cls: type, prefix: str = "", path: tuple[str, ...] = ()) -> list[_Leaf]:
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        inner, _ = _strip_optional(tp)
        if dataclasses.is_dataclass(inner):
            out += _leaves(inner, prefix + (f.metadata.get("prefix") or ""), (*path, f.name))
        else:
            out.append(_Leaf(prefix + f.name, (*path, f.name), tp, f))
    return out


def option_names(cls: type) -> list[str]:
    """The argparse dests of every option of ``cls`` (nested configs flattened)."""
    return [leaf.dest for leaf in _leaves(cls)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def defaults(cls: type) -> dict[str, Any]:
    """Every option's default, by argparse dest."""
    return {leaf.dest: _default(leaf.f) for leaf in _leaves(cls)}


def _scalar_parser(tp: Any) -> Callable[[str], Any] | None:
    if tp in (int, float, str, Path):
        return tp
    return None


def add_options(parser: argparse.ArgumentParser, cls: type, overrides: Mapping[str, Any] | None = None) -> None:
    """Add an argparse option for every field of ``cls`` (nested configs flattened).

    ``overrides`` replaces defaults by dest (a stage whose default differs from the shared
    config's, e.g. fine-tuning's 300 steps); help texts show the resulting default.
    """
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(option_names(cls))
    if unknown:
        raise ValueError(f"defaults for unknown options {sorted(unknown)}")
    for leaf in _leaves(cls):
        meta, f = leaf.f.metadata, leaf.f
        flag = meta.get("flag") or "--" + leaf.dest.replace("_", "-")
        default = overrides.get(leaf.dest, _default(f))
        kwargs: dict[str, Any] = {"dest": leaf.dest, "help": meta.get("help") or ""}
        if meta.get("required"):
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        tp, _ = _strip_optional(leaf.tp)
        origin = typing.get_origin(tp)
        action = meta.get("action")
        if isinstance(action, type) and issubclass(action, argparse.Action):  # a custom action
            kwargs["action"] = action
            for key in ("nargs", "metavar"):
                if meta.get(key):
                    kwargs[key] = meta[key]
        elif action == "store_true":
            kwargs["action"] = "store_true"
        elif action == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif action == "extend":  # repeatable, each with one value or more: --image a.tif --image b.tif
            kwargs["action"] = "extend"
            kwargs["nargs"] = "+"
            args = typing.get_args(tp)
            kwargs["type"] = meta.get("parse") or _scalar_parser(args[0] if args else str)
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        else:
            parse = meta.get("parse")
            if origin is Literal:
                kwargs["choices"] = list(typing.get_args(tp))
                parse = parse or type(typing.get_args(tp)[0])
            elif origin in (list, tuple):
                args = typing.get_args(tp)
                fixed = origin is tuple and args and args[-1] is not Ellipsis
                kwargs["nargs"] = meta.get("nargs") or (len(args) if fixed else "+")
                parse = parse or _scalar_parser(args[0] if args else str)
                inner_origin = typing.get_origin(_strip_optional(args[0])[0]) if args else None
                if inner_origin is Literal:
                    kwargs["choices"] = list(typing.get_args(_strip_optional(args[0])[0]))
            else:
                parse = parse or _scalar_parser(tp)
                if meta.get("nargs"):
                    kwargs["nargs"] = meta["nargs"]
            if parse is not None:
                kwargs["type"] = parse
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        parser.add_argument(flag, *(meta.get("aliases") or ()), **kwargs)


def from_namespace(cls: type[T], args: argparse.Namespace | Mapping[str, Any], prefix: str = "") -> T:
    """The config ``cls`` from parsed arguments (by dest; nested configs by their prefix)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        inner, _ = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(inner):
            kwargs[f.name] = from_namespace(inner, values, prefix + (f.metadata.get("prefix") or ""))
        elif prefix + f.name in values:
            kwargs[f.name] = _normalise(values[prefix + f.name], hints[f.name])
    return cls(**kwargs)


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_OK = {
    "ge": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "le": lambda v, b: v <= b,
    "lt": lambda v, b: v < b,
}


def parse_config(cls: type[T], argv: Sequence[str]) -> T:
    """The config ``cls`` from command-line words, as its stage's CLI parses them (for scripts and
    tests that run a stage function in-process; bounds are the CLI's to check)."""
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    return from_namespace(cls, parser.parse_args(list(argv)))


def range_problem(value: Any, bounds: Mapping[str, float]) -> str | None:
    """What is wrong with ``value`` (a number, None, or a list of numbers) under ``bounds``, or None."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        for kind, bound in bounds.items():
            if not _BOUND_OK[kind](v, bound):
                return f"must be {_BOUND_TEXT[kind]} {bound:g}, got {v:g}"
    return None


def check_ranges(cfg: Any) -> list[tuple[str, str]]:
    """Every option of ``cfg`` whose value breaks its bounds: (command-line flag, problem)."""
    problems = []
    for leaf in _leaves(type(cfg)):
        obj = cfg
        for name in leaf.path:
            obj = getattr(obj, name)
        problem = range_problem(obj, leaf.f.metadata.get("bounds") or {})
        if problem:
            flag = leaf.f.metadata.get("flag") or "--" + leaf.dest.replace("_", "-")
            problems.append((flag, problem))
    return problems


def _normalise(value: Any, tp: Any) -> Any:
    """argparse gives lists for nargs options; tuple-typed fields get tuples."""
    tp, _ = _strip_optional(tp)
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def typed_value(cls: type, dest: str, value: Any) -> Any:
    """``value`` (from a config file) checked and converted to the type of option ``dest``."""
    for leaf in _leaves(cls):
        if leaf.dest == dest:
            meta = leaf.f.metadata
            if meta.get("parse") is not None and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                try:
                    return meta["parse"](str(value))
                except (ValueError, argparse.ArgumentTypeError) as err:
                    raise ConfigTypeError(str(err)) from err
            return coerce(value, leaf.tp)
    raise KeyError(dest)


def to_record(cfg: Any) -> dict[str, Any]:
    """A config as the flat mapping of its options (by dest) for ``config.yaml``: exactly the
    arguments that rerun the stage."""
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            if not f.init:
                continue
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, prefix + (f.metadata.get("prefix") or ""))
            else:
                out[prefix + f.name] = _plain(value)

    walk(cfg, "")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- shared stage options


def parse_loader_workers(text: str | int) -> int | str:
    """``--workers`` of a training stage (data-loader processes): a count ≥ 0 or ``auto``; the
    preprocess stages' ``--workers`` (processes, ≥ 1) is :func:`segcore.runtime.pool.parse_workers`."""
    if str(text) == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a count or 'auto', got {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError(f"worker count must be >= 0, got {value}")
    return value


@dataclass
class RuntimeConfig:
    """Where and how fast a training stage runs, not what it computes: devices, precision,
    processes, threads and the resume checkpoint (a checkpoint made with other values of these
    is still resumed, e.g. on another node)."""

    threads: int = option(1, "torch intra-op threads (0: torch default)", ge=0)
    accelerator: str = option("auto", "Lightning accelerator: auto (a GPU when one is visible), cpu, gpu")
    devices: str = option("1", "devices per node: a count or a list of GPU ids (0,1); one process each")
    num_nodes: int = option(1, "machines of a multi-node DDP run (SLURM: one task per device)", ge=1)
    # not --strategy: the pretraining stages use that name for the contrastive strategy
    dist_strategy: Literal["auto", "ddp"] = option(
        "auto", "Lightning strategy; auto: one process, or DDP when devices × nodes > 1; ddp: distributed data parallel"
    )
    sync_batchnorm: bool = option(
        False, "BatchNorm statistics over the global batch of all processes (SyncBatchNorm)", action="store_true"
    )
    precision: str = option("auto", "Lightning precision; auto: bf16-mixed on a GPU that supports it, else 32-true")
    channels_last: bool | None = option(
        None,
        "channels-last (NHWC) memory format for weights and images; default on (tensor-core convolutions on a "
        "GPU, 13-29%% faster steps on CPU: bench/README.md)",
        action="bool",
    )
    workers: int | str = option(
        "auto", "data-loader worker processes per device; auto: 0 on CPU, up to 4 per GPU", parse=parse_loader_workers
    )
    compile: bool = option(
        False,
        "torch.compile the network (nn.Module.compile, in place: same weights, same checkpoint keys); pays a "
        "compilation of tens of seconds at the start, for faster steps on a GPU",
        action="store_true",
    )
    checkpoint_every: int = option(
        50, "write the resume checkpoint every N steps (0: never); a restarted run resumes from it", ge=0
    )
    progress: Literal["auto", "bar", "log", "none"] = option(
        "auto", "training progress: a bar on a terminal, a log line every --log-every steps otherwise (auto picks)"
    )
    log_every: int = option(50, "steps between progress lines (--progress log)", ge=1)


# options that do not change what a run computes (sync_batchnorm does: not among them)
RUNTIME_OPTIONS = (frozenset(option_names(RuntimeConfig)) - {"sync_batchnorm"}) | {"out", "config", "overwrite"}


@dataclass
class HyperPixelConfig:
    """The class-aware hyper-pixel term of fine-tuning (the HPCL setting, docs/hpcl.md); off at
    weight 0. Command-line flags carry the prefix ``--hpcl-``."""

    weight: float = option(0.0, "weight of the class-aware hyper-pixel contrastive term (0: off)", ge=0)
    warmup: int = option(0, "steps of linear warm-up of --hpcl-weight (0: none)", ge=0)
    queue: int = option(1024, "keys per class queue (every class, background included)", gt=0)
    temperature: float = option(0.1, "T of the hyper-pixel InfoNCE", gt=0)
    mochi: int = option(0, "MoCHi synthetic hard negatives per anchor (0: none)", ge=0)
    momentum: float = option(0.99, "EMA momentum of the key encoder", ge=0, le=1)
    anchors: int = option(256, "labeled hyper-pixels per step in the term", gt=0)
    boundary_fraction: float = option(
        0.5, "share of anchors drawn among hyper-pixels touching another class", ge=0, le=1
    )
    unlabeled: int = option(
        0,
        "unlabeled tiles per step whose confidently pseudo-labeled hyper-pixels (momentum network) also fill the "
        "class queues (0: labeled tiles only)",
        ge=0,
    )
    pseudo_threshold: float = option(0.9, "min mean softmax probability of a pseudo-labeled hyper-pixel", ge=0, le=1)
    unlabeled_anchors: int = option(
        0,
        "pseudo-labeled hyper-pixels of the --hpcl-unlabeled tiles per class and step that are anchors too, seen by "
        "the online network in a second view (dihedral, spectral jitter): the unlabeled pool then trains the "
        "network, not only fills the queues (0: labeled anchors only)",
        ge=0,
    )

    @property
    def enabled(self) -> bool:
        return self.weight > 0


# the semi-supervised modes of fine-tuning (segcore/semi/, docs/semi_supervised.md); "none": supervised only.
# A run with a mode records its method as "<init method>+<mode>" (none+fixmatch, GD+LR+unimatch).
SEMI_MODES = ("self-training", "fixmatch", "unimatch")


@dataclass
class SemiConfig:
    """Semi-supervised fine-tuning with the unlabeled pool (docs/semi_supervised.md): the mode is
    ``--semi``, its options carry the prefix ``--semi-``; off with ``--semi none``."""

    mode: Literal["none", "self-training", "fixmatch", "unimatch"] = option(
        "none",
        "semi-supervised mode: none (labeled set only); self-training (a teacher's confident pseudo-labels on "
        "unlabeled samples + the label-guided local contrastive term); fixmatch (weak-view pseudo-labels train a "
        "strong view); unimatch (fixmatch with two strong views and a feature-perturbed view)",
        flag="--semi",
    )
    batch_size: int = option(0, "unlabeled samples per step (0: the labeled --batch-size)", ge=0)
    weight: float = option(1.0, "lambda: weight of the unlabeled loss", ge=0)
    warmup: int = option(0, "steps of linear warm-up of --semi-weight (0: none)", ge=0)
    threshold: float = option(
        0.95, "tau: a pixel is pseudo-labeled where the teacher's top softmax probability >= tau", ge=0, le=1
    )
    threshold_mode: Literal["fixed", "adaptive"] = option(
        "adaptive",
        "adaptive: per-class thresholds tau x p_c / max_k p_k from a moving average p_c of the teacher's mean "
        "class probabilities (FreeMatch's class scaling with tau fixed: the dominant class keeps tau, rare "
        "classes get lower thresholds; on the MRI demo fixed tau pseudo-labeled mostly background); fixed: tau "
        "for every class (the textbook FixMatch)",
    )
    align: Literal["none", "distribution"] = option(
        "none",
        "distribution: align the teacher's class probabilities with the class frequencies of the labeled pixels "
        "before the argmax and threshold (ReMixMatch's distribution alignment: p x prior / moving mean of the "
        "teacher's probabilities, renormalised), against a teacher that under-predicts a rare class; none: off",
    )
    balance: Literal["none", "class"] = option(
        "none",
        "class: the cross-entropy on pseudo-labels weighs every pseudo-class present in the step equally (the mean "
        "over classes of each class's mean over its confident pixels, times the share of confident pixels for ce), "
        "as if equal numbers of pixels of each class were sampled, against a background that makes up nearly every "
        "pseudo-label; none: every confident pixel weighs the same",
    )
    loss: Literal["auto", "ce", "dice-ce"] = option(
        "auto",
        "unlabeled loss: ce (cross-entropy summed over confident pixels / all in-image pixels, as UniMatch); "
        "dice-ce (soft Dice of the foreground classes that have confident pixels + CE over the confident "
        "pixels); auto: dice-ce for self-training, ce for fixmatch and unimatch",
    )
    strong_bn: Literal["batch", "running"] = option(
        "batch",
        "BatchNorm in the forward passes of unlabeled views: batch (normalised by their own batch statistics) or "
        "running (the running statistics, eval-mode BN); never updating the running statistics, which only the "
        "labeled forward does",
    )
    jitter_shift: float = option(
        0.3, "strong view: max intensity shift per jittered channel, in units of the channel's std in the sample", ge=0
    )
    jitter_gain: float = option(
        0.3, "strong view: contrast gain per jittered channel drawn from 1 - g .. 1 + g", ge=0, lt=1
    )
    jitter_prob: float = option(0.8, "strong view: probability of the intensity jitter per sample", ge=0, le=1)
    blur_prob: float = option(0.5, "strong view: probability of a Gaussian blur per sample", ge=0, le=1)
    blur_sigma: tuple[float, float] = option(
        (0.1, 1.5), "strong view: blur sigma range in pixels", metavar=("LO", "HI"), gt=0
    )
    cutmix_prob: float = option(
        0.5, "strong view: probability, per sample, of pasting a box of another sample", ge=0, le=1
    )
    cutmix_area: tuple[float, float] = option(
        (0.02, 0.4), "strong view: area of the CutMix box as a fraction of the image", metavar=("LO", "HI"), gt=0, le=1
    )
    fp_dropout: float = option(
        0.5, "unimatch: channel dropout on every encoder feature map of the perturbed view", ge=0, lt=1
    )
    teacher: Literal["ema", "round"] = option(
        "ema",
        "self-training teacher: ema (an exponential moving average of the student) or round (a copy of the "
        "student taken every --semi-round-steps steps; no unlabeled loss before the first copy)",
    )
    teacher_momentum: float = option(
        0.99, "self-training: EMA momentum of the teacher (warm-up min(m, (1+t)/(10+t)))", ge=0, le=1
    )
    round_steps: int = option(100, "self-training with --semi-teacher round: steps per round", ge=1)
    contrast_weight: float | None = option(
        None,
        "weight of the label-guided local contrastive term on decoder pixel embeddings (positives: same "
        "(pseudo-)class, negatives: other classes); default 0.1 for self-training, 0 (off) for the others",
        ge=0,
    )
    contrast_temperature: float = option(0.1, "temperature of the local contrastive term", gt=0)
    contrast_pixels: int = option(64, "pixels sampled per class and step for the local contrastive term", ge=2)
    contrast_dim: int = option(64, "output width of the projection head of the local contrastive term", ge=1)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def unlabeled_loss(self) -> str:
        """The loss ``--semi-loss`` resolves to for this mode."""
        if self.loss != "auto":
            return self.loss
        return "dice-ce" if self.mode == "self-training" else "ce"

    @property
    def contrast(self) -> float:
        """The weight ``--semi-contrast-weight`` resolves to for this mode."""
        if self.contrast_weight is not None:
            return float(self.contrast_weight)
        return 0.1 if self.mode == "self-training" else 0.0


ENCODER_WEIGHTS_HELP = (
    "encoder weights from elsewhere: a named source (imagenet: smp/timm; ssl4eo-s12: TorchGeo; remote "
    "sensing only) or a weights file (a timm/smp/TorchGeo state dict, or of this pipeline's encoder); the "
    "first convolution is adapted to the band count; nothing is downloaded offline (docs/pretrained_encoders.md)"
)


@dataclass
class FinetuneConfig:
    """Options of fine-tuning shared by both domains (``medseg finetune``, ``rs finetune``)."""

    data: Path = option(None, "prepared data folder (from the preprocess stage)", required=True)
    out: list[Path] = option(
        None,
        "output folder (model.pt, train.json, config.yaml, logs/); one per --seed, in the same order",
        required=True,
    )
    seed: list[int] = option(
        default_factory=lambda: [0],
        help="random seed(s), trained one after the other in this process (each also picks the labeled set, unless "
        "--label-seed is given)",
        ge=0,
    )
    label_seed: int | None = option(
        None,
        "seed of the labeled-set draw alone (default: --seed); repeats of one labeled set with other training seeds",
        ge=0,
    )
    steps: int = option(300, "optimisation steps", ge=1)
    batch_size: int = option(8, "samples per batch", ge=1)
    lr: float = option(1e-3, "learning rate (AdamW)", gt=0)
    init: Path | None = option(None, "checkpoint to start from (pretrained or fine-tuned); none = random init")
    encoder_weights: str | None = option(None, ENCODER_WEIGHTS_HELP)
    method: str | None = option(
        None, "name of the pretraining method, recorded for the report (default: from --init, or 'none')"
    )
    val_every: int = option(50, "validate every N steps; best weights kept", ge=1)
    pretrained_lr_scale: float = option(
        1.0,
        "learning rate of the weights loaded by --init, as a multiple of --lr (e.g. 0.1: the pretrained backbone "
        "moves slower than the new head)",
        gt=0,
    )
    weight_ema: float = option(
        0.0,
        "validate and keep an exponential moving average of the weights with this momentum (e.g. 0.99; warm-up "
        "min(m, (1+t)/(10+t))) instead of the raw weights (0: off)",
        ge=0,
        lt=1,
    )
    val_batch_size: int = option(32, "samples per validation batch", ge=1)
    semi: SemiConfig = option(default_factory=SemiConfig, prefix="semi_")
    runtime: RuntimeConfig = option(default_factory=RuntimeConfig, prefix="")


@dataclass
class PretrainConfig:
    """Options of pretraining shared by both domains."""

    data: Path = option(None, "prepared data folder (from the preprocess stage)", required=True)
    out: Path = option(None, "output folder (model.pt, train.json, config.yaml, logs/)", required=True)
    seed: int = option(0, "random seed", ge=0)
    label_seed: int | None = option(None, "not used by pretraining (which reads no labels); accepted for compatibility")
    steps: int = option(300, "optimisation steps", ge=1)
    batch_size: int = option(16, "samples per batch", ge=1)
    lr: float = option(1e-3, "learning rate", gt=0)
    encoder_weights: str | None = option(None, ENCODER_WEIGHTS_HELP)
    runtime: RuntimeConfig = option(default_factory=RuntimeConfig, prefix="")


DEVICE_HELP = (
    "where the network runs: auto (the first CUDA GPU when one is visible, else the CPU), cpu, gpu / cuda, "
    "or cuda:N; float32 on every device, so the metrics are the CPU's"
)


@dataclass
class ContrastivePretrainConfig(PretrainConfig):
    """Options of the momentum / queue methods and the generic baselines, the same in both domains."""

    queue_size: int | None = option(
        None,
        "hpcl, mocov2, densecl: K, keys in the queue of negatives (default: hpcl 4096, mocov2/densecl 65536)",
        ge=1,
    )
    momentum: float | None = option(
        None,
        "hpcl, mocov2, densecl: m, EMA momentum of the key encoder (default: hpcl 0.99, mocov2/densecl 0.999); "
        "byol: base τ of the target network, rising to 1 by a cosine (default 0.99)",
        ge=0,
        le=1,
    )
    max_anchors: int = option(0, "hpcl: hyper-pixels per step in the loss (random subset; 0 = all)", ge=0)
    proj_hidden: int = option(256, "hpcl and the baselines: projection (and BYOL predictor) hidden width", ge=1)
    proj_dim: int = option(128, "hpcl and the baselines: projection output (queue) dimension D", ge=1)
    dense_weight: float = option(0.5, "densecl: λ, weight of the dense loss ((1 − λ)·global + λ·dense)", ge=0, le=1)
    dense_grid: int | None = option(
        None, "densecl: S, the dense grid (S×S cells of the last encoder map; default its own size)", ge=1
    )
    n_masks: int = option(16, "detcon: masks sampled per image and step", ge=1)
    fh_scale: float = option(100.0, "detcon --masks felzenszwalb: scale (larger: fewer, larger segments)", gt=0)


@dataclass
class EvaluateConfig:
    """Options of evaluation shared by both domains."""

    data: Path = option(None, "prepared data folder", required=True)
    model: list[Path] = option(
        None,
        "fine-tuned model checkpoint(s) (model.pt); several are scored in one process (one --out each)",
        required=True,
    )
    out: list[Path] = option(
        None, "output folder (metrics.json, ...); one per --model, in the same order", required=True
    )
    split: str = option("test", "which split to score: test or val")
    batch_size: int = option(32, "samples per inference batch", ge=1)
    threads: int = option(1, "torch intra-op threads (0: torch default)", ge=0)
    device: str = option("auto", DEVICE_HELP, aliases=("--accelerator",))


@dataclass
class PredictConfig:
    """Options of prediction shared by both domains."""

    model: Path = option(None, "fine-tuned model checkpoint (model.pt)", required=True)
    data: Path | None = option(
        None,
        "prepared data folder the model was trained on; only needed for a checkpoint written before models carried "
        "their preprocessing (the default: the model's own record)",
    )
    out: Path = option(None, "output folder", required=True)
    batch_size: int = option(32, "samples per inference batch", ge=1)
    threads: int = option(1, "torch intra-op threads (0: torch default)", ge=0)
    device: str = option("auto", DEVICE_HELP, aliases=("--accelerator",))
