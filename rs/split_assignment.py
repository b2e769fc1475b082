"""Which split each tile of ``rs preprocess`` belongs to, and the split lists of the manifest.

Three ways (``SplitSettings.by``):

* ``block``: the tiles of each labeled scene are split by spatial blocks of ``block_tiles`` tile
  strides (:func:`rs.tiling.spatial_block_split`; tiles straddling two splits are dropped as
  buffer, split None);
* ``scene``: whole labeled scenes are drawn into train / val / test (one "block" per scene);
  Landslide4Sense patches in a plain folder are split this way, per patch;
* ``folders``: the input fixes each scene's split (the Landslide4Sense release folders,
  :mod:`rs.landslide4sense_protocol`); nothing is drawn.

Tiles of unlabeled scenes are training tiles (the self-supervised pool) under ``block`` and
``scene``. Under ``folders`` a tile keeps its folder's split; an unlabeled tile (a folder released
without masks) joins the self-supervised pool without being a training tile, so it is neither
in the normalisation statistics (training tiles only) nor scored.

Split lists (group ids = tile ids): ``labeled`` = labeled training tiles (the pool a label budget
is drawn from), ``unlabeled`` = the self-supervised pool (every training tile, plus the unlabeled
tiles of fixed val/test folders), ``val`` and ``test`` = labeled tiles of those splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from rs.scene_sources import SceneSource
from rs.tiling import assign_blocks, spatial_block_split
from segcore.salts import SPLIT_SALT

SPLIT_BY = ("block", "scene", "folders")


@dataclass(frozen=True)
class SplitSettings:
    """How the splits are assigned (see the module docstring)."""

    by: str
    block_tiles: int
    val_fraction: float
    test_fraction: float
    seed: int
    folders: dict[str, str] = field(default_factory=dict)  # folder → split, under "folders"

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``split`` entry."""
        if self.by == "folders":
            return {"by": "folders", "folders": dict(self.folders)}
        return {
            "by": self.by,
            "block_tiles": self.block_tiles,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
        }


@dataclass
class TileRecord:
    """A kept tile: its scene, index among the scene's windows, window, georeference, split
    ("train", "val" or "test"), whether it has a known label, and whether it is in the
    self-supervised (``unlabeled``) pool."""

    scene: str
    index: int
    window: Window
    transform: Affine
    split: str
    labeled: bool
    pool: bool


def scene_splits(sources: Sequence[SceneSource], settings: SplitSettings) -> dict[str, str]:
    """Split of each labeled scene under ``by == "scene"`` (empty otherwise)."""
    if settings.by != "scene":
        return {}
    labeled_ids = [s.id for s in sources if s.labeled]
    rng = np.random.default_rng(np.random.SeedSequence([int(settings.seed), SPLIT_SALT]))
    by_block = assign_blocks(
        [(k, 0) for k in range(len(labeled_ids))], settings.val_fraction, settings.test_fraction, rng
    )
    return {sid: by_block[(k, 0)] for k, sid in enumerate(labeled_ids)}


def tile_splits(
    source: SceneSource,
    k: int,
    windows: Sequence[Window],
    tile: int,
    overlap: int,
    settings: SplitSettings,
    scene_split: dict[str, str],
) -> list[str | None]:
    """Split of each window of the ``k``-th scene ``source`` (None: a buffer tile, dropped)."""
    if source.split is not None:
        return [source.split] * len(windows)
    if not source.labeled:
        return ["train"] * len(windows)
    if settings.by == "scene":
        return [scene_split[source.id]] * len(windows)
    rng = np.random.default_rng(np.random.SeedSequence([int(settings.seed), k, SPLIT_SALT]))
    return spatial_block_split(
        windows,
        tile,
        overlap,
        settings.block_tiles,
        settings.val_fraction,
        settings.test_fraction,
        rng,
    )


def in_pool(split: str, labeled: bool, fixed: bool) -> bool:
    """Whether a tile is in the self-supervised pool: every training tile, and under a fixed
    (folder) split also an unlabeled validation or test tile."""
    return split == "train" or (fixed and not labeled)


def split_lists(tile_ids: Sequence[str], records: Sequence[TileRecord]) -> dict[str, list[str]]:
    """The manifest's ``splits`` (see the module docstring)."""
    pairs = list(zip(tile_ids, records, strict=True))
    return {
        "unlabeled": [t for t, r in pairs if r.pool],
        "labeled": [t for t, r in pairs if r.split == "train" and r.labeled],
        "val": [t for t, r in pairs if r.split == "val" and r.labeled],
        "test": [t for t, r in pairs if r.split == "test" and r.labeled],
    }
