"""The official Landslide4Sense protocol (Landslide4Sense 2022, iarai/Landslide4Sense-2022):
train on ``TrainData``, select on ``ValidData``, score on ``TestData``; patches as delivered.

``rs preprocess --input`` on a folder with the release's folders (:func:`rs.landslide4sense.is_release`):

* the folders are the splits (:data:`rs.landslide4sense.RELEASE_FOLDERS`): TrainData → training
  (the labeled pool ``labeled`` and the self-supervised pool ``unlabeled``), ValidData → ``val``,
  TestData → ``test``; nothing is drawn;
* a folder without masks (the validation and test masks came later, Zenodo record 10463239)
  is unlabeled data for self-supervised pretraining only: its patches join ``unlabeled``, its
  split stays empty, and the manifest says so (``official_splits``, ``notes``);
* patches are used as delivered: 128x128, 14 channels, one tile per patch (tile 128, overlap 0;
  another ``--tile``/``--overlap`` is an error);
* the per-channel standardisation comes from the TrainData patches only;
* a label budget (``rs finetune --percent``) is a percentage of the labeled TrainData patches.

``rs evaluate`` scores such data per split (:func:`split_scores`): landslide precision, recall,
F1, IoU and mIoU for ``val`` and ``test``, each pooled over every pixel of the split's patches
(the competition's ranking, by the landslide F1); patches have no georeference, so there is no
scene stitching.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rs.landslide4sense import L4S_SIZE, RELEASE_FOLDERS, VALID_TEST_MASKS, L4SPatch
from segcore.errors import InputError
from segcore.metrics import summarise_segmentation
from segcore.prepared import PreparedData

PROTOCOL = "landslide4sense"
PATCH_OVERLAP = 0
SCORED_SPLITS = ("val", "test")
_ROLE = {
    "train": "labeled pool (label budgets in percent of its labeled patches), self-supervised pool, "
    "normalisation statistics",
    "val": "model selection",
    "test": "held-out scoring",
}


def release_tiling(folder: str | Path, tile: int | None, overlap: int | None) -> tuple[int, int]:
    """(tile, overlap) for the release: 128 and 0 by default; any other value is an error."""
    tile = L4S_SIZE if tile is None else tile
    overlap = PATCH_OVERLAP if overlap is None else overlap
    if (tile, overlap) != (L4S_SIZE, PATCH_OVERLAP):
        raise InputError(
            folder,
            f"Landslide4Sense release patches are used as delivered ({L4S_SIZE}x{L4S_SIZE}, no re-tiling): "
            f"need --tile {L4S_SIZE} --overlap {PATCH_OVERLAP} (or neither), got --tile {tile} --overlap {overlap}",
        )
    return tile, overlap


def _folder_entry(name: str, patches: list[L4SPatch] | None) -> tuple[dict[str, Any], str | None]:
    """A release folder's manifest entry and, where it is not used as its split, the note why."""
    split = RELEASE_FOLDERS[name]
    if patches is None:
        entry = {"split": split, "patches": 0, "labeled": 0, "used_as": "absent"}
        return entry, f"{name} is absent: the {split} split is empty"
    n, labeled = len(patches), sum(p.mask is not None for p in patches)
    entry = {"split": split, "patches": n, "labeled": labeled, "used_as": _ROLE[split]}
    if labeled == n:
        return entry, None
    unlabeled = n - labeled
    if split == "train":
        entry["used_as"] = f"{_ROLE[split]}; {unlabeled} patches without masks: self-supervised pool only"
        return entry, f"{name}: {unlabeled} of {n} patches have no mask; they are in the self-supervised pool only"
    if labeled == 0:
        entry["used_as"] = "unlabeled: self-supervised pretraining only"
        return entry, (
            f"{name} has no masks (published later: {VALID_TEST_MASKS}): its {n} patches are used only "
            f"as unlabeled data for self-supervised pretraining (images, never labels); the {split} split is empty"
        )
    entry["used_as"] = (
        f"{_ROLE[split]} ({labeled} patches with masks); {unlabeled} without masks: self-supervised pool only"
    )
    return entry, (
        f"{name}: {unlabeled} of {n} patches have no mask; they are used only as unlabeled data for "
        f"self-supervised pretraining, the {split} split holds the other {labeled}"
    )


def protocol_manifest(patches: dict[str, list[L4SPatch]]) -> dict[str, Any]:
    """The manifest entries of the protocol for the release folders found
    (:func:`rs.landslide4sense.release_patches`): ``protocol``, ``dataset``, ``official_splits``
    (per folder: split, patches, labeled, used_as) and ``notes`` (each folder not used as its
    split, and why)."""
    folders: dict[str, Any] = {}
    notes: list[str] = []
    for name in RELEASE_FOLDERS:
        entry, note = _folder_entry(name, patches.get(name))
        folders[name] = entry
        if note is not None:
            entry["note"] = note
            notes.append(note)
    return {
        "protocol": PROTOCOL,
        "dataset": PROTOCOL,
        "official_splits": folders,
        "notes": notes,
        "label_budget": "percent of the labeled TrainData patches (split 'labeled')",
    }


def empty_split_reason(manifest: dict[str, Any], split: str) -> str:
    """``" (<note>)"`` when the protocol left ``split`` empty (e.g. TestData without masks), else ""."""
    for entry in (manifest.get("official_splits") or {}).values():
        if entry.get("split") == split and entry.get("note"):
            return f" ({entry['note']})"
    return ""


def split_scores(
    data: PreparedData, known: dict[str, np.ndarray], confusion: Callable[[np.ndarray], np.ndarray]
) -> dict[str, Any]:
    """Scores of every non-empty split of :data:`SCORED_SPLITS` for data prepared under the
    protocol: ``{"protocol": "landslide4sense", "per_split": {split: {"n_tiles", "summary",
    "class_names", "n_pixels", "confusion_matrix"}}}`` (``summary``: miou, iou_<class>, precision,
    recall, f1 of the landslide class, overall_accuracy), each pooled over every pixel of the
    split's patches. ``known``: confusion matrices already computed, by split; ``confusion``: the
    (K, K) confusion matrix of the given sample indices. ``{}`` for other data."""
    if data.manifest.get("protocol") != PROTOCOL:
        return {}
    per_split: dict[str, Any] = {}
    for split in SCORED_SPLITS:
        groups = data.split_groups(split)
        if not groups:
            continue  # the manifest's notes say why (a folder without masks)
        cm = known[split] if split in known else confusion(data.sample_indices(groups))
        scores = summarise_segmentation(cm, class_names=data.manifest["classes"], positive_class=1)
        per_split[split] = {"n_tiles": len(groups), **scores}
    return {"protocol": PROTOCOL, "per_split": per_split}
