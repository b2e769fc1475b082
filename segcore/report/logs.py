"""Training logs: Lightning ``metrics.csv`` files, the run each belongs to (from its path and
the ``train.json`` beside it), the validation history that chose a fine-tuned model, and files
given as paths or glob patterns."""

from __future__ import annotations

import glob
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from segcore.errors import InputError
from segcore.report.domains import budget_order, budget_text, method_order
from segcore.report.tidy import RunRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogRun:
    """One Lightning ``metrics.csv`` and the run it belongs to (from its path and train.json)."""

    path: Path
    domain: str
    stage: str  # finetune, pretrain, or "" when the path does not say
    method: str
    variant: str
    budget: str
    seed: int | None
    label: str  # the run folder below the stage folder, e.g. "GD/budget_1/seed_0"
    train: Path | None = None  # the run's train.json, when there is one


STAGE_FOLDERS = ("finetune", "pretrain")


def describe_log(path: str | Path) -> LogRun:
    """Who wrote a log: ``<domain>/<stage>/<method>[/<variant>]/(budget_|pct_)<B>/seed_<S>/logs/metrics.csv``
    (finetune) or ``<domain>/<stage>/<name...>/logs/metrics.csv`` (pretrain); a ``train.json``
    in the run folder, when present, overrides method, variant, budget, seed and domain."""
    path = Path(path)
    parts = path.parts
    logs_at = max((i for i, p in enumerate(parts[:-1]) if p == "logs"), default=len(parts) - 1)
    run_dir = Path(*parts[:logs_at]) if logs_at > 0 else path.parent
    stage_at = max((i for i, p in enumerate(parts[:logs_at]) if p in STAGE_FOLDERS), default=-1)
    stage = parts[stage_at] if stage_at >= 0 else ""
    domain = parts[stage_at - 1] if stage_at >= 1 else ""
    run_parts = list(parts[stage_at + 1 : logs_at]) if stage_at >= 0 else [run_dir.name]
    method, variant, budget, seed = (run_parts[0] if run_parts else ""), "", "", None
    for i, p in enumerate(run_parts):
        if p.startswith(("budget_", "pct_")):
            budget = p.split("_", 1)[1]
            variant = "/".join(run_parts[1:i])
        elif p.startswith("seed_") and p[5:].isdigit():
            seed = int(p[5:])
    train = run_dir / "train.json"
    if train.is_file():
        try:
            record = json.loads(train.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if isinstance(record, dict):
            method = str(record.get("method") or method)
            variant = str(record.get("variant") or variant)
            budget = budget_text(record["budget"]) if record.get("budget") is not None else budget
            seed = int(record["seed"]) if isinstance(record.get("seed"), int) and stage != "pretrain" else seed
            domain = str(record.get("domain") or domain)
    return LogRun(
        path, domain, stage, method, variant, budget, seed, "/".join(run_parts), train if train.is_file() else None
    )


def select_finetune_logs(
    logs: Sequence[LogRun], runs: Sequence[RunRecord], domain: str, baseline: str = "none"
) -> list[LogRun]:
    """The fine-tuning logs of the evaluated runs of ``domain`` (same method, variant, budget
    and seed), in table order; logs of runs that were never evaluated are left out."""
    cells = {(r.method, r.variant, r.budget, r.seed) for r in runs if r.domain == domain}
    chosen = [
        lg
        for lg in logs
        if lg.domain == domain and lg.stage == "finetune" and (lg.method, lg.variant, lg.budget, lg.seed) in cells
    ]
    order = method_order({lg.method for lg in chosen}, baseline)
    return sorted(chosen, key=lambda lg: (order.index(lg.method), lg.variant, budget_order(lg.budget), lg.seed or 0))


@dataclass(frozen=True)
class Selection:
    """How a fine-tuning run chose its weights: the validation score at each validation
    (``train.json`` ``history``: ``[{"step": s, "val_<metric>": score, ...}, ...]``) and the step
    whose weights were kept (``best_step``: the first best score)."""

    run: LogRun
    metric: str  # the history's score key, e.g. "val_dice"
    steps: tuple[int, ...]
    values: tuple[float, ...]  # NaN where the score was not finite (null in train.json)
    best_step: int | None  # None when train.json has no best_step
    best_value: float  # the score at best_step; NaN when best_step is not among the steps


def _score(value: Any) -> float:
    return math.nan if value is None else float(value)


def read_selection(lg: LogRun) -> Selection | None:
    """The validation history and the selected step of a fine-tuning run, from its train.json;
    ``None`` without train.json or without ``history`` (outputs of older versions)."""
    if lg.train is None:
        return None
    try:
        record = json.loads(lg.train.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(lg.train, f"not a readable train.json ({err})") from err
    history = record.get("history") if isinstance(record, dict) else None
    if history is None:
        return None
    # the score is the one val_<metric> key; other keys are numbers a run records beside it
    # (semi-supervised runs: semi_coverage, docs/semi_supervised.md)
    keys = (
        {k for entry in history if isinstance(entry, dict) for k in entry if k.startswith("val_")}
        if isinstance(history, list)
        else set()
    )
    if (
        not history
        or len(keys) != 1
        or not all(isinstance(e, dict) and "step" in e and keys <= set(e) for e in history)
    ):
        raise InputError(lg.train, "'history' is not a list of {step, val_<metric>} records of one metric")
    (metric,) = keys
    try:
        steps = tuple(int(e["step"]) for e in history)
        values = tuple(_score(e[metric]) for e in history)
        best = record.get("best_step")
        best_step = None if best is None or int(best) < 0 else int(best)
    except (TypeError, ValueError) as err:
        raise InputError(lg.train, f"'history' or 'best_step' holds something that is not a number ({err})") from err
    best_value = values[steps.index(best_step)] if best_step in steps else math.nan
    return Selection(lg, metric, steps, values, best_step, best_value)


def read_lightning_log(path: str | Path) -> pd.DataFrame:
    """A Lightning ``CSVLogger`` file: one row per logging call, ``step`` plus metric columns
    (``train/loss``, ``val/dice`` ...); a column is empty on rows that logged other metrics."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(path, f"not a readable Lightning metrics.csv ({err})") from err
    if "step" not in frame.columns:
        raise InputError(path, f"Lightning log lacks a 'step' column (has {list(frame.columns)})")
    return frame


def expand_paths(patterns: Sequence[str | Path], what: str = "log file") -> list[Path]:
    """Files and glob patterns (``**`` allowed) → existing files, sorted within each pattern.

    A pattern that matches nothing only logs a warning (a workflow may have run no such stage);
    a plain path that does not exist is an error. An existing file is taken as it is, even when
    its name has pattern characters (``[``, ``*``, ``?``); for such characters in a pattern's
    fixed part, ``glob.escape`` it.
    """
    out: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if Path(text).is_file():
            out.append(Path(text))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                log.warning("no file matches %s", text)
            out += matches
        else:
            raise InputError(text, f"{what} does not exist")
    return list(dict.fromkeys(out))
