"""Shared command-line conventions of the stage CLIs (``medseg <stage>``, ``rs <stage>``), and
``segpretrain <stage>``: the stages of neither domain (today the report).

* Option names are shared across both packages: ``--input``, ``--data``, ``--out``, ``--init``,
  ``--model``, ``--seed``, ``--config``.
* ``--config FILE`` is a YAML mapping of the same options (dashes or underscores); values on
  the command line win. Unknown keys are an error. Nothing in it is evaluated.
* Every stage prints ``error: <file>: <problem>`` and exits 2 on bad input.
* ``--out`` is checked and locked before any work (:func:`segcore.outputs.claim_outputs`): a
  stage never writes into its inputs or over a folder it did not write, unless ``--overwrite``.
* SIGTERM (``scancel``, a time limit) and Ctrl-C remove the stage's temporary outputs and locks;
  the exit status is 143 and 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from segcore.config import ConfigTypeError, add_options, check_ranges, from_namespace, option_names, typed_value
from segcore.errors import InputError, Terminated
from segcore.output_guard import claim_outputs
from segcore.provenance import StageRun

# (stage name, one-line help, options, "module:run_function"[, "module:DomainClass"]). With a
# domain, the run function is a shared stage of segcore.stages, called as run(config, domain).
# Options are a typed config class ("module:ConfigClass", a dataclass of segcore.config options):
# the run function gets the config, never an argparse.Namespace. Only the light options module is
# imported before the arguments are checked; the run function's module (torch, ...) after, so that a
# mistake is reported in well under two seconds.
Stage = tuple[str, ...]


def version_text() -> str:
    """The package version, and the git commit when run from a checkout (``+dirty`` with changes)."""
    from segcore.provenance import git_commit, package_versions

    version = package_versions().get("segpretrain", "unknown")
    commit = git_commit()
    return f"{version} (commit {commit})" if commit else version


def _resolve(ref: str) -> Callable[..., None]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _load_config_defaults(parser: argparse.ArgumentParser, path: str, config_cls: type | None = None) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "config file does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(p, f"config is not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise InputError(p, "config must be a mapping of option names to values")
    known = {a.dest for a in parser._actions}
    out: dict[str, Any] = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in known or dest in ("help", "config"):
            raise InputError(p, f"unknown option '{key}' (known: {sorted(known - {'help', 'config'})})")
        if config_cls is not None and dest in option_names(config_cls):
            try:
                value = typed_value(config_cls, dest, value)
            except ConfigTypeError as err:
                raise InputError(p, f"option '{key}' {err}") from err
        out[dest] = value
    return out


def parse_stage_args(
    parser: argparse.ArgumentParser, argv: list[str], config_cls: type | None = None
) -> argparse.Namespace:
    """Parse ``argv`` with ``--config`` YAML values as defaults beneath the command line (each
    checked against its option's type when the stage has a typed config)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    cfg = pre.parse_known_args(argv)[0].config
    if cfg:
        defaults = _load_config_defaults(parser, cfg, config_cls)
        parser.set_defaults(**defaults)
        # options given in the config satisfy "required"
        for action in parser._actions:
            if action.dest in defaults:
                action.required = False
    return parser.parse_args(argv)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file of these options (command line wins)")


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty --out folder that this stage did not write (inputs are never replaced)",
    )


# options that name files or folders a stage reads: an --out may never be, hold or lie in one
INPUT_OPTIONS = (
    "input",
    "data",
    "init",
    "model",
    "image",
    "dem",
    "label",
    "overlays",
    "config",
    "subject_csv",
    "splits_from",
    "encoder_weights",
)


def input_paths(args: argparse.Namespace) -> list[Path]:
    """The existing files and folders named by a stage's input options (comma lists split)."""
    found: list[Path] = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if item is None:
                continue
            for part in str(item).split(",") if isinstance(item, str) else [item]:
                path = Path(str(part).strip())
                if str(part).strip() and path.exists():
                    found.append(path)
    return found


def output_paths(args: argparse.Namespace) -> list[Path]:
    out = getattr(args, "out", None)
    if out is None:
        return []
    return [Path(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def run_cli(prog: str, description: str, stages: list[Stage], argv: list[str] | None = None) -> int:
    """Dispatch ``prog <stage> [options]``; map :class:`InputError` to exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {stage[0]: stage[1:] for stage in stages}
    width = max(len(n) for n in names)
    listing = "\n".join(f"  {n.ljust(width)}  {entry[0]}" for n, entry in names.items())
    usage = (
        f"usage: {prog} <stage> [options]\n\n{description}\n\nstages:\n{listing}\n\n"
        f"Run `{prog} <stage> --help` for a stage's options and their defaults."
    )
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 1
    if argv[0] in ("-V", "--version"):
        print(f"{prog} {version_text()}")
        return 0
    name = argv[0]
    if name not in names:
        print(usage, file=sys.stderr)
        print(f"{prog}: error: unknown stage '{name}' (choose from {', '.join(names)})", file=sys.stderr)
        return 2
    help_text, options_ref, run_ref, *domain_ref = names[name]
    parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=help_text, formatter_class=_Formatter)
    config_cls = _resolve(options_ref)
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{options_ref}: a stage's options are a typed config (a dataclass of segcore.config options)")
    add_options(parser, config_cls)
    add_config_option(parser)
    if any(a.dest == "out" for a in parser._actions):
        add_overwrite_option(parser)
    logging.basicConfig(level=logging.INFO, format=f"[{prog} {name}] %(message)s")
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args = parse_stage_args(parser, argv[1:], config_cls)
        problems = check_ranges(from_namespace(config_cls, args))
        if problems:
            flag, problem = problems[0]
            raise InputError(None, f"{flag} {problem}")
        stage = StageRun(
            f"{prog} {name}",
            overwrite=bool(getattr(args, "overwrite", False)),
            arg_keys=frozenset(resolved_args(args)),
            command=[prog, *argv],
        )
        with claim_outputs(stage, output_paths(args), input_paths(args)):
            run = _resolve(run_ref)  # the heavy imports, after every argument check
            cfg = from_namespace(config_cls, args)
            if domain_ref:
                run(cfg, _resolve(domain_ref[0])())
            else:
                run(cfg)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception:  # an internal failure, not bad input: keep the traceback
        traceback.print_exc()
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return 0


def resolved_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments of a stage as a plain mapping, for the stage's ``config.yaml``."""
    return {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("config", "overwrite")
    }


# the report reads results of any domain: `segpretrain report`, with `medseg report` and
# `rs report` as aliases of the same stage
REPORT_STAGE: Stage = (
    "report",
    "tidy metrics, tables (CSV, Markdown, HTML), plots and the HTML report over all metrics.json",
    "segcore.report.config:ReportConfig",
    "segcore.report.cli:run_report",
)
STAGES: list[Stage] = [REPORT_STAGE]


def main(argv: list[str] | None = None) -> int:
    """``segpretrain <stage>`` (console script; also ``python -m segcore <stage>``)."""
    return run_cli(
        "segpretrain",
        "Stages of the pipeline that are not of one domain (MRI: medseg, remote sensing: rs).",
        STAGES,
        argv,
    )
