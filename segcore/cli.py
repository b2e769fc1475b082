"""Shared command-line conventions of the stage CLIs (``medseg <stage>``, ``rs <stage>``), and
``segpretrain <stage>``: the stages of neither domain (today the report).

* Option names are shared across both packages: ``--input``, ``--data``, ``--out``, ``--init``,
  ``--model``, ``--seed``, ``--config``.
* ``--config FILE`` is a YAML mapping of the same options (dashes or underscores); values on
  the command line win. Unknown keys are an error. Nothing in it is evaluated.
* Every stage prints ``error: <file>: <problem>`` and exits 2 on bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from segcore.errors import InputError

# (stage name, one-line help, "module:add_options_function", "module:run_function");
# modules are imported only for the stage being run, so `--help` stays quick.
Stage = tuple[str, str, str, str]


def _resolve(ref: str) -> Callable[..., None]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _load_config_defaults(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
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
        out[dest] = value
    return out


def parse_stage_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` with ``--config`` YAML values as defaults beneath the command line."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    cfg = pre.parse_known_args(argv)[0].config
    if cfg:
        defaults = _load_config_defaults(parser, cfg)
        parser.set_defaults(**defaults)
        # options given in the config satisfy "required"
        for action in parser._actions:
            if action.dest in defaults:
                action.required = False
    return parser.parse_args(argv)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file of these options (command line wins)")


def run_cli(prog: str, description: str, stages: list[Stage], argv: list[str] | None = None) -> int:
    """Dispatch ``prog <stage> [options]``; map :class:`InputError` to exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {name: (help_text, add_ref, run_ref) for name, help_text, add_ref, run_ref in stages}
    width = max(len(n) for n in names)
    listing = "\n".join(f"  {n.ljust(width)}  {h}" for n, (h, _, _) in names.items())
    usage = f"usage: {prog} <stage> [options]\n\n{description}\n\nstages:\n{listing}\n\nRun `{prog} <stage> --help` for a stage's options and their defaults."
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 1
    name = argv[0]
    if name not in names:
        print(usage, file=sys.stderr)
        print(f"{prog}: error: unknown stage '{name}' (choose from {', '.join(names)})", file=sys.stderr)
        return 2
    help_text, add_ref, run_ref = names[name]
    parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=help_text, formatter_class=_Formatter)
    _resolve(add_ref)(parser)
    add_config_option(parser)
    run = _resolve(run_ref)
    logging.basicConfig(level=logging.INFO, format=f"[{prog} {name}] %(message)s")
    try:
        args = parse_stage_args(parser, argv[1:])
        run(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # an internal failure, not bad input: keep the traceback
        traceback.print_exc()
        return 1
    return 0


def resolved_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments of a stage as a plain mapping, for the stage's ``config.yaml``."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "config"}


# the report reads results of any domain: `segpretrain report`, with `medseg report` and
# `rs report` as aliases of the same stage
REPORT_STAGE: Stage = (
    "report", "tidy metrics, tables (CSV, Markdown, HTML), plots and the HTML report over all metrics.json",
    "segcore.report.cli:add_report_options", "segcore.report.cli:run_report",
)
STAGES: list[Stage] = [REPORT_STAGE]


def main(argv: list[str] | None = None) -> int:
    """``segpretrain <stage>`` (console script; also ``python -m segcore <stage>``)."""
    return run_cli("segpretrain", "Stages of the pipeline that are not of one domain (MRI: medseg, remote sensing: rs).", STAGES, argv)
