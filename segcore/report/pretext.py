"""Pretraining against chance: the pretext loss of each pretraining stage next to the loss of a
model that has learned nothing, and the mark of a stage whose pretext task was trivially solved.

Input: the ``train.json`` of each pretraining stage (``medseg pretrain``, ``rs pretrain``):
``method``, ``stage``, optionally ``variant`` and ``domain``, ``loss_history`` (the loss of every
optimisation step, in order) and ``chance_loss`` (the loss when every similarity is equal, e.g.
``log(number of candidates)`` for InfoNCE), optionally ``chance_history`` (the chance loss of
every step: a queue's chance grows while it fills, and is 0 at an empty queue's first step). A
file without ``chance_loss`` (written before it was recorded) is shown without chance and status.

Collapse rule (docs/report.md): with n losses, chance c (c_i, the chance of step i, where the
record has it), fraction f (default 0.05) and window w (default 0.25), the stage has *collapsed*
when some step i < w·n has loss_i < f·c_i: the loss fell
to a small fraction of chance within the first part of training, so the views' positives are
found by something trivial (e.g. identical terrain values). The reported step is the first such
i (0-based: the ``step`` column of the stage's Lightning log). Otherwise the status says whether
the last loss is below chance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segcore.errors import InputError
from segcore.report.config import COLLAPSE_FRACTION, COLLAPSE_WINDOW
from segcore.report.domains import DOMAIN_TITLE
from segcore.report.tables import TextTable

COLLAPSED = "collapsed: the pretext task is trivially solved"


@dataclass(frozen=True)
class PretextRun:
    """One pretraining stage's record: who it is and its per-step losses."""

    path: Path
    domain: str
    method: str  # with the variant, e.g. "hpcl-ssl [dual]"
    stage: str
    losses: tuple[float, ...]
    chance: float | None  # None: the record has no chance_loss
    chances: tuple[float, ...] | None = None  # the chance of every step (chance_history); None: not recorded


def _domain_from_path(path: Path) -> str:
    """``<results>/<domain>/pretrain/.../train.json`` → ``<domain>``; "" when no ``pretrain`` folder."""
    parts = path.parts[:-1]
    at = max((i for i, p in enumerate(parts) if p == "pretrain"), default=-1)
    return parts[at - 1] if at >= 1 else ""


def read_pretrain_record(path: str | Path) -> PretextRun:
    """One pretraining ``train.json`` (see the module docstring)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a readable train.json ({err})") from err
    if not isinstance(record, dict):
        raise InputError(path, "train.json is not a JSON object")
    history = record.get("loss_history")
    if not isinstance(history, list) or not history:
        raise InputError(path, "a pretraining train.json needs 'loss_history', a non-empty list of per-step losses")
    try:
        losses = tuple(math.nan if v is None else float(v) for v in history)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"'loss_history' holds something that is not a number ({err})") from err
    chance = record.get("chance_loss")
    if chance is not None and (isinstance(chance, bool) or not isinstance(chance, (int, float)) or not chance > 0):
        raise InputError(path, f"'chance_loss' must be a positive number, got {chance!r}")
    chances = record.get("chance_history")
    if chances is not None:
        if not isinstance(chances, list) or len(chances) != len(losses):
            raise InputError(path, "'chance_history' must be a list with one value per step of 'loss_history'")
        try:
            chances = tuple(math.nan if v is None else float(v) for v in chances)
        except (TypeError, ValueError) as err:
            raise InputError(path, f"'chance_history' holds something that is not a number ({err})") from err
    method = str(record.get("method") or path.parent.name)
    variant = str(record.get("variant") or "")
    return PretextRun(
        path=path,
        domain=str(record.get("domain") or _domain_from_path(path)),
        method=method if not variant else f"{method} [{variant}]",
        stage=str(record.get("stage") or ""),
        losses=losses,
        chance=None if chance is None else float(chance),
        chances=chances,
    )


def collapse_step(
    losses: Sequence[float],
    chance: float,
    fraction: float = COLLAPSE_FRACTION,
    window: float = COLLAPSE_WINDOW,
    chances: Sequence[float] | None = None,
) -> int | None:
    """The first step i < ``window``·n whose loss is below ``fraction`` × its chance (``chances[i]``
    where given and finite, else ``chance``); None if none. A step whose chance is 0 (an empty
    queue: one candidate) never counts."""
    for i, loss in enumerate(losses):
        if i >= window * len(losses):
            break
        c = chances[i] if chances is not None and math.isfinite(chances[i]) else chance
        if loss < fraction * c:
            return i
    return None


def pretext_status(run: PretextRun, fraction: float = COLLAPSE_FRACTION, window: float = COLLAPSE_WINDOW) -> str:
    """``"collapsed: ... (loss 0.12 < 5% of chance at step 30)"``, ``"below chance"``,
    ``"not below chance"``; "" without a chance loss."""
    if run.chance is None:
        return ""
    step = collapse_step(run.losses, run.chance, fraction, window, run.chances)
    if step is not None:
        return f"{COLLAPSED} (loss {run.losses[step]:.3g} < {fraction:.0%} of chance at step {step})"
    return "below chance" if run.losses[-1] < run.chance else "not below chance"


def pretext_table(
    runs: Sequence[PretextRun], domain: str, fraction: float = COLLAPSE_FRACTION, window: float = COLLAPSE_WINDOW
) -> TextTable:
    """The domain's stages (method, stage; in method then file order): first, last and chance
    loss, last / chance, status."""
    table = TextTable(
        title=f"{DOMAIN_TITLE.get(domain, domain)}: pretraining, pretext loss against chance",
        index_names=["method", "stage"],
        columns=["first loss", "last loss", "chance", "last/chance", "status"],
        note=(
            "Loss of the first and the last optimisation step; chance = the loss when every similarity is "
            "equal (chance_loss "
            f"in train.json; – when not recorded). Collapsed: the loss fell below {fraction:.0%} of chance "
            "within the first "
            f"{window:.0%} of the steps, so the pretext task is trivially solved (docs/report.md)."
        ),
    )
    chosen = sorted((r for r in runs if r.domain == domain), key=lambda r: r.method)
    for run in chosen:
        ratio = run.losses[-1] / run.chance if run.chance else math.nan
        table.rows.append(
            (
                (run.method, run.stage),
                [
                    f"{run.losses[0]:.3f}",
                    f"{run.losses[-1]:.3f}",
                    "–" if run.chance is None else f"{run.chance:.3f}",
                    "–" if not math.isfinite(ratio) else f"{ratio:.2f}",
                    pretext_status(run, fraction, window),
                ],
            )
        )
    return table
