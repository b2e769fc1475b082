"""Reading metrics.json files into the tidy table (one row per number).

The tidy table has one row per number: ``domain, dataset, split, method, variant, budget,
seed, label_seed, scope, class, metric, value, source``. ``label_seed`` names the labeled set
the run was fine-tuned on (``rs/medseg finetune --label-seed``); runs that share it are repeats
on one labeled set. A metrics.json without it (written before it was recorded) gets its
``seed``, which is what fine-tuning uses when ``--label-seed`` is not given. ``scope`` is a subject id (MRI per-subject
values) or ``"all"`` (a value over the whole evaluated split); ``class`` is ``""`` for values
that are not of one class (``dice_mean``, ``miou``, ``f1``). Summary keys named
``<metric>_<class>`` become ``metric=<metric>, class=<class>`` (``dice_RV`` → ``dice``/``RV``,
``iou_landslide`` → ``iou``/``landslide``); ``null`` (NaN or inf in the evaluate stage) becomes NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.errors import InputError
from segcore.report.domains import budget_text

TIDY_COLUMNS = [
    "domain",
    "dataset",
    "split",
    "method",
    "variant",
    "budget",
    "seed",
    "label_seed",
    "scope",
    "class",
    "metric",
    "value",
    "source",
]
# one evaluated cell, before seeds
CELL = ["domain", "dataset", "method", "variant", "budget"]
RUN_SCOPE = "all"
# top-level counts of a metrics file that are kept as numbers of the run
COUNT_FIELDS = ("n_subjects", "n_tiles", "n_pixels")
# the fine-tuning run's weight selection (metrics.json "selection"), kept as numbers of the run:
# at_last_validation is 1 where the best validation score came at the last validation
SELECTION_FIELDS = ("best_step", "at_last_validation")


@dataclass(frozen=True)
class RunRecord:
    """One evaluated run (one metrics.json): the cell keys, the seed, and where it came from."""

    domain: str
    dataset: str
    split: str
    method: str
    variant: str
    budget: str
    seed: int
    source: Path
    classes: tuple[str, ...] = ()
    label_seed: int = 0  # the labeled set (see the module docstring)

    @property
    def cell(self) -> tuple[str, str, str, str, str]:
        return (self.domain, self.dataset, self.method, self.variant, self.budget)


def _number(value: Any) -> float | None:
    """A metric value as float (``None`` → NaN); ``None`` for things that are not numbers."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _split_class(key: str, classes: Sequence[str]) -> tuple[str, str]:
    """``"dice_RV"`` → ``("dice", "RV")`` when RV is a class; other keys → ``(key, "")``."""
    for c in sorted(classes, key=len, reverse=True):
        if key.endswith(f"_{c}") and len(key) > len(c) + 1:
            return key[: -len(c) - 1], c
    return key, ""


def read_run(path: str | Path) -> tuple[RunRecord, list[dict[str, Any]]]:
    """One metrics.json: its run record and its tidy rows (see the module docstring)."""
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a readable metrics.json ({err})") from err
    if not isinstance(m, dict):
        raise InputError(path, "metrics file is not a JSON object")
    for key in ("domain", "method", "budget", "seed", "summary"):
        if m.get(key) is None:
            raise InputError(path, f"metrics file lacks '{key}'")
    if not isinstance(m["summary"], dict):
        raise InputError(path, "'summary' is not a mapping of metric names to values")
    try:
        seed = int(m["seed"])
    except (TypeError, ValueError) as err:
        raise InputError(path, f"seed {m['seed']!r} is not an integer") from err
    try:
        label_seed = seed if m.get("label_seed") is None else int(m["label_seed"])
    except (TypeError, ValueError) as err:
        raise InputError(path, f"label_seed {m['label_seed']!r} is not an integer") from err
    summary: dict[str, Any] = m["summary"]
    classes = [str(c) for c in (m.get("classes") or [])] + [str(c) for c in (m.get("class_names") or [])]
    for value in summary.values():
        if isinstance(value, dict):
            classes += [str(c) for c in value]
    run = RunRecord(
        domain=str(m["domain"]),
        dataset=str(m.get("dataset") or ""),
        split=str(m.get("split") or "test"),
        method=str(m["method"]),
        variant=str(m.get("variant") or ""),
        budget=budget_text(m["budget"]),
        seed=seed,
        source=path,
        classes=tuple(dict.fromkeys(classes)),
        label_seed=label_seed,
    )
    base = {
        "domain": run.domain,
        "dataset": run.dataset,
        "split": run.split,
        "method": run.method,
        "variant": run.variant,
        "budget": run.budget,
        "seed": run.seed,
        "label_seed": run.label_seed,
        "source": str(path),
    }
    rows: list[dict[str, Any]] = []

    def add(scope: str, cls: str, metric: str, value: float) -> None:
        rows.append({**base, "scope": scope, "class": cls, "metric": metric, "value": value})

    for key, value in summary.items():
        if isinstance(value, dict) and key.endswith("_per_class"):
            # {class: {mean, std, n, n_nan, n_inf}}; the mean is already the summary's <metric>_<class>
            metric = key[: -len("_per_class")]
            for cls, stats in value.items():
                if not isinstance(stats, dict):
                    raise InputError(path, f"summary.{key}.{cls} is not a mapping")
                for stat in ("std", "n", "n_nan", "n_inf"):
                    number = _number(stats.get(stat))
                    if number is not None and stat in stats:
                        add(RUN_SCOPE, str(cls), f"{metric}_{stat}", number)
            continue
        number = _number(value)
        if number is None:
            continue  # text or lists in a summary are not metrics
        metric, cls = _split_class(key, run.classes)
        add(RUN_SCOPE, cls, metric, number)
    for key in COUNT_FIELDS:
        number = _number(m.get(key, "absent"))
        if number is not None:
            add(RUN_SCOPE, "", key, number)
    selection = m.get("selection")
    if isinstance(selection, dict):  # how fine-tuning selected its weights (docs/report.md)
        for key in SELECTION_FIELDS:
            value = selection.get(key, "absent")
            number = _number(float(value) if isinstance(value, bool) else value)
            if number is not None:
                add(RUN_SCOPE, "", key, float(number))
    per_subject = m.get("per_subject") or {}
    if not isinstance(per_subject, dict):
        raise InputError(path, "'per_subject' is not a mapping of subject ids")
    for subject, entry in per_subject.items():
        if not isinstance(entry, dict):
            raise InputError(path, f"per_subject.{subject} is not a mapping")
        for key, value in entry.items():
            if isinstance(value, dict):
                for cls, v in value.items():
                    number = _number(v)
                    if number is None:
                        raise InputError(path, f"per_subject.{subject}.{key}.{cls} is not a number ({v!r})")
                    add(str(subject), str(cls), key, number)
            else:
                number = _number(value)
                if number is not None:
                    add(str(subject), "", key, number)
    return run, rows


def read_runs(paths: Iterable[str | Path]) -> tuple[list[RunRecord], pd.DataFrame]:
    """Every metrics file: run records and the tidy table (columns :data:`TIDY_COLUMNS`).

    Two files for the same cell and seed (and split) are an error: pairing by seed needs one.
    """
    runs: list[RunRecord] = []
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], Path] = {}
    for path in paths:
        run, run_rows = read_run(path)
        key = (*run.cell, run.seed, run.split)
        if key in seen:
            raise InputError(path, f"same method, budget, seed and split as {seen[key]}")
        seen[key] = run.source
        runs.append(run)
        rows += run_rows
    tidy = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    tidy["seed"] = tidy["seed"].astype(np.int64)
    tidy["label_seed"] = tidy["label_seed"].astype(np.int64)
    tidy["value"] = tidy["value"].astype(np.float64)
    return runs, tidy


def load_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The tidy table of every number in the given metrics files (see :func:`read_runs`)."""
    return read_runs(paths)[1]
