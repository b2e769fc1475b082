"""What the report shows of each domain, and how it names and orders budgets and methods."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from segcore.config import SEMI_MODES


@dataclass(frozen=True)
class Headline:
    """A table and plot metric: ``metric`` of ``cls`` ("" = not per class), shown as ``label``."""

    metric: str
    cls: str
    label: str

    @property
    def key(self) -> str:
        return self.metric if not self.cls else f"{self.metric}_{self.cls}"


# the headline metrics of each domain, in table order
HEADLINE: dict[str, list[Headline]] = {
    "mri": [Headline("dice_mean", "", "Dice"), Headline("hd95_mean", "", "HD95 (mm)")],
    "rs": [
        Headline("miou", "", "mIoU"),
        Headline("iou", "landslide", "landslide IoU"),
        Headline("f1", "", "landslide F1"),
    ],
}
# more headline metrics where a dataset's benchmark reports them: Landslide4Sense ranks by the
# landslide F1 and reports precision and recall beside it (docs/landslide4sense.md)
DATASET_HEADLINE: dict[tuple[str, str], list[Headline]] = {
    ("rs", "landslide4sense"): [
        Headline("precision", "", "landslide precision"),
        Headline("recall", "", "landslide recall"),
    ],
}
# metrics broken down by class in the per-class tables
PER_CLASS: dict[str, list[str]] = {"mri": ["dice", "hd95"], "rs": ["iou"]}
BUDGET_AXIS = {"mri": "label budget (labeled volumes)", "rs": "label budget (% of tiles labeled)"}
DOMAIN_TITLE = {"mri": "MRI", "rs": "Remote sensing"}


def higher_is_better(metric: str) -> bool:
    """Distances (HD95, in mm) and losses improve downwards; overlaps and scores upwards."""
    return not (metric.startswith("hd") or "loss" in metric)


def budget_text(value: Any) -> str:
    """A label budget as text: ``2`` and ``2.0`` → ``"2"``, ``"all"`` stays."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def budget_order(budget: str) -> tuple[int, float, str]:
    """Sort key: numbers ascending, then other names, ``"all"`` last."""
    try:
        return (0, float(budget), "")
    except ValueError:
        return (2, math.inf, "") if budget == "all" else (1, math.inf, budget)


def method_order(methods: Iterable[str], baseline: str = "none") -> list[str]:
    """The baseline first, then the other methods alphabetically."""
    unique = sorted(set(methods))
    return [m for m in unique if m == baseline] + [m for m in unique if m != baseline]


def row_label(method: str, variant: str = "", dataset: str = "") -> str:
    text = method if not variant else f"{method} [{variant}]"
    return text if not dataset else f"{dataset}: {text}"


def semi_parts(method: str) -> tuple[str, str | None]:
    """``"GD+LR+fixmatch"`` → ``("GD+LR", "fixmatch")``: the init method and the semi-supervised
    mode of a fine-tuned run (segcore.config.SEMI_MODES), ``(method, None)`` without one."""
    init, _, last = method.rpartition("+")
    return (init, last) if init and last in SEMI_MODES else (method, None)


def semi_baseline(method: str) -> str | None:
    """The run a semi-supervised method is paired with: the same init without the mode
    (``none+fixmatch`` → ``none``, ``GD+LR+unimatch`` → ``GD+LR``); None for other methods."""
    init, mode = semi_parts(method)
    return init if mode is not None else None
