"""``rs preprocess``: scenes (GeoTIFF image + DEM [+ labels]) or Landslide4Sense patches → tiles.

Inputs, one of:

* ``--input FOLDER`` with ``scenes.json`` (written by ``rs demo-data``);
* ``--input FOLDER`` in the Landslide4Sense layout (auto-detected, see :mod:`rs.landslide4sense`):
  the release's folders (``TrainData``, ``ValidData``, ``TestData``) follow the official protocol
  (:mod:`rs.landslide4sense_protocol`: the folders are the splits, patches as delivered); a plain
  folder of patches is split per patch;
* ``--image A.tif --dem A_dem.tif [--label A_label.tif]``, repeatable or comma-separated for
  several scenes (``--label none`` for an unlabeled scene).

This module is the stage: options and orchestration. The parts, one concern each:
:mod:`rs.scene_sources` (the inputs as scenes), :mod:`rs.scene_channels` (a GeoTIFF scene's
channels: DEM reprojected onto the image grid, terrain channels, labels resampled, validity),
:mod:`rs.split_assignment` (which split a tile is in, the split lists),
:mod:`rs.channel_statistics` (normalisation statistics), :mod:`rs.tile_arrays` (the two-pass tile
writing) and :mod:`rs.superpixels`.

Tiles (``--tile`` with ``--overlap``) are split by spatial blocks (:mod:`rs.tiling`), by whole
scenes, or by the release folders; tiles with no valid pixel are skipped and counted
(``skipped_nodata_tiles``); tiles dropped at block borders so that no two splits overlap are
counted as ``buffer_tiles``.

Output (segcore.prepared format) and the choices made here:

* ``images.npy`` holds RAW values (reflectance/DN, metres, degrees...). ``normalization`` in the
  manifest holds per-channel mean/std over the valid pixels of the TRAINING tiles only (each
  pixel of the union of a scene's training tiles counted once); ``PreparedData`` applies them
  on read. Invalid pixels are filled with the channel mean, so they read as 0.
* ``labels.npy``: 0/1, 255 at invalid pixels and for unlabeled scenes or pixels.
* ``valid.npy`` (N, H, W) uint8: 1 where the pixel is valid (nodata masks for unlabeled tiles).
* ``superpixels.npy`` (N, H, W) int32: SLIC over the standardised channels (terrain channels
  scaled by ``--superpixel-terrain-weight``), labels from 0, computed once here.
* Groups are TILES: ``samples.group`` is the tile id ``"<scene>/t<index>"`` (so that the
  split lists of group ids are lists of tiles and a label budget in percent of tiles is drawn
  with ``segcore.budget.select_percent(data.split_groups("labeled"), pct, seed)``);
  ``samples.scene`` names the scene, ``samples.index`` the tile's index among the scene's
  windows. ``groups[tile_id]`` = {scene, index, split, window, transform};
  ``scenes[scene]`` = {image, dem, label, crs (WKT), transform, width, height, nodata, split
  ("blocks" under the block split), labeled, georeferenced, ...}.
* ``splits``: ``labeled`` = labeled training tiles (the pool a label budget is drawn from),
  ``unlabeled`` = the self-supervised pool (all training tiles, including the labeled pool and
  the tiles of unlabeled scenes; under the release also the patches of a folder without masks),
  ``val`` and ``test`` = labeled tiles of validation and test blocks (or folders). ``tiles`` =
  {"window": [[row_off, col_off, h, w], ...], "transform": [[a, b, c, d, e, f], ...]} per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rs import landslide4sense as l4s
from rs.align import LABEL_NODATA
from rs.channel_statistics import ChannelStatistics, batch_moments, training_statistics
from rs.config import RSPreprocessConfig
from rs.geotiff import transform_to_list
from rs.landslide4sense_protocol import protocol_manifest, release_tiling
from rs.scene_channels import load_scene_channels, pad_to_tile
from rs.scene_sources import (
    SceneSource,
    demo_scenes,
    explicit_scenes,
    geotiff_sources,
    landslide4sense_sources,
    release_sources,
)
from rs.split_assignment import (
    SplitSettings,
    TileRecord,
    in_pool,
    scene_splits,
    split_lists,
    tile_splits,
)
from rs.superpixels import default_n_segments
from rs.terrain import TERRAIN_CHANNELS
from rs.tile_arrays import EXTRAS, SceneTileScratch, write_prepared_tiles
from rs.tiling import tile_transform, tile_windows, window_to_list
from segcore.config import to_record
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml
from segcore.prepared import write_manifest
from segcore.runtime.pool import ordered_map

# the names other modules and the tests import from the stage
__all__ = [
    "ChannelStatistics",
    "load_scene_channels",
    "prepare",
    "run_preprocess",
]

log = logging.getLogger(__name__)

CLASSES = ["background", "landslide"]
DEFAULT_TILE = {"geotiff": 64, "landslide4sense": 128}
DEFAULT_OVERLAP = {"geotiff": 16, "landslide4sense": 0}
MIN_TILE = 8
_SCENE_TILES = "_scene_tiles"  # pass 1's per-scene raw tiles, inside the temporary output folder


@dataclass(frozen=True)
class Pass1:
    """What pass 1 of every scene needs (shared with forked workers, not pickled)."""

    sources: Sequence[SceneSource]
    scratch: SceneTileScratch
    channels: int
    tile: int
    overlap: int
    split: SplitSettings
    scene_split: dict[str, str]


@dataclass
class Pass1Result:
    """Pass 1 of one scene: its kept tiles, the tiles skipped (no valid pixel) and dropped
    (buffer), and the moments of its training pixels."""

    records: list[TileRecord]
    skipped: int
    buffer: int
    moments: tuple[int, np.ndarray, np.ndarray] | None


_PASS1: dict[str, Pass1] = {}  # the context of ``scene_pass1``, set around the pass


def scene_pass1(k: int) -> Pass1Result:
    """Load scene ``k``, split its tiles, write its kept tiles to the scratch and return their
    records and the moments of its training pixels (in this process or a forked worker)."""
    ctx = _PASS1["context"]
    src = ctx.sources[k]
    scene = pad_to_tile(src.load(), ctx.tile)
    if scene.channels.shape[0] != ctx.channels:
        raise InputError(src.record["image"], f"scene has {scene.channels.shape[0]} channels, expected {ctx.channels}")
    h, w = scene.valid.shape
    windows = tile_windows(h, w, ctx.tile, ctx.overlap)
    splits = tile_splits(src, k, windows, ctx.tile, ctx.overlap, ctx.split, ctx.scene_split)
    records: list[TileRecord] = []
    train_windows = []
    skipped = buffer = 0
    for i, (win, tile_split) in enumerate(zip(windows, splits, strict=True)):
        rs, cs = win.toslices()
        if not scene.valid[rs, cs].any():
            skipped += 1
            continue
        if tile_split is None:
            buffer += 1
            continue
        labeled = scene.label is not None and bool((scene.label[rs, cs] != LABEL_NODATA).any())
        pool = in_pool(tile_split, labeled, fixed=src.split is not None)
        records.append(TileRecord(src.id, i, win, tile_transform(scene.transform, win), tile_split, labeled, pool))
        if tile_split == "train":
            train_windows.append(win)
    moments = batch_moments(training_statistics(scene, train_windows))
    ctx.scratch.write(k, scene, [r.window for r in records], ctx.tile)
    return Pass1Result(records, skipped, buffer, moments)


def _split_list(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return out


def prepare(
    sources: Sequence[SceneSource],
    out: Path,
    channel_names: Sequence[str],
    spectral: Sequence[int],
    terrain: Sequence[int],
    tile: int,
    overlap: int,
    split: SplitSettings,
    n_segments: int,
    compactness: float,
    terrain_weight: float,
    extra_manifest: dict[str, Any],
    input_name: str | Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Tile, split, normalise and write ``sources`` into the (temporary) folder ``out``;
    ``workers`` processes load and tile the scenes (pass 1) and compute the superpixels and
    write the tiles (pass 2) in parallel, with the same output for any count.

    Returns the manifest.
    """
    c = len(channel_names)
    # Two passes, one scene in memory at a time (peak memory flat in the number of scenes):
    # pass 1 loads each scene once, keeps its tiles' raw channels, validity and labels in a
    # memory-mapped scratch file and adds its training pixels to the statistics; pass 2 reads
    # the scratch files back, normalises, computes superpixels and writes the final arrays.
    # Both passes run scene by scene in ``workers`` processes; the statistics merge in scene order.
    scratch = SceneTileScratch(Path(out) / _SCENE_TILES)
    records: list[TileRecord] = []
    skipped = 0
    buffer = 0
    stats = ChannelStatistics(c)
    scene_split = scene_splits(sources, split)
    context = Pass1(sources, scratch, c, tile, overlap, split, scene_split)
    chunk = max(1, min(64, len(sources) // (8 * max(workers, 1))))
    for found in ordered_map(scene_pass1, range(len(sources)), workers, chunk, context=(_PASS1, context)):
        records += found.records
        skipped += found.skipped
        buffer += found.buffer
        stats.merge(found.moments)

    if not records:
        raise InputError(
            input_name,
            "no tile has a valid pixel (every tile is nodata); check the image nodata value and the DEM coverage",
        )
    if stats.n.min() == 0:
        raise InputError(
            input_name,
            "no training tile with valid pixels; lower --val-fraction/--test-fraction or --block-tiles, or add scenes",
        )
    mean, std = stats.mean_std()
    weights = np.ones(c, dtype=np.float32)
    weights[list(terrain)] = terrain_weight
    n = len(records)
    write_prepared_tiles(out, scratch, len(sources), n, tile, mean, std, weights, n_segments, compactness, workers)
    scratch.remove()

    tile_ids = [f"{r.scene}/t{r.index:04d}" for r in records]
    splits_out = split_lists(tile_ids, records)
    manifest: dict[str, Any] = {
        "domain": "rs",
        "channels": list(channel_names),
        "spectral_channels": list(spectral),
        "terrain_channels": list(terrain),
        "classes": CLASSES,
        "image_size": [tile, tile],
        "samples": {
            "group": tile_ids,
            "index": [r.index for r in records],
            "partition": [-1] * n,
            "labeled": [r.labeled for r in records],
            "scene": [r.scene for r in records],
        },
        "groups": {
            t: {
                "scene": r.scene,
                "index": r.index,
                "split": r.split,
                "labeled": r.labeled,
                "window": window_to_list(r.window),
                "transform": transform_to_list(r.transform),
            }
            for t, r in zip(tile_ids, records, strict=True)
        },
        # a scene's split: its folder's, its own under the scene split, "blocks" when its tiles
        # are split by blocks
        "scenes": {
            s.id: {
                **s.record,
                "labeled": s.labeled,
                "split": s.split or ("train" if not s.labeled else scene_split.get(s.id, "blocks")),
            }
            for s in sources
        },
        "splits": splits_out,
        "normalization": {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "source": "valid pixels of training tiles",
        },
        "tiles": {
            "window": [window_to_list(r.window) for r in records],
            "transform": [transform_to_list(r.transform) for r in records],
        },
        "tile": tile,
        "overlap": overlap,
        "split": split.manifest(),
        "skipped_nodata_tiles": skipped,
        "buffer_tiles": buffer,
        "superpixels": {
            "n_segments": n_segments,
            "compactness": compactness,
            "terrain_weight": terrain_weight,
            "start_label": 0,
        },
        "extras": list(EXTRAS),
        **extra_manifest,
    }
    write_manifest(out, manifest)
    counts = {k: len(v) for k, v in splits_out.items()}
    log.info(
        "%d tiles from %d scenes; splits %s; %d nodata tiles skipped, %d buffer tiles dropped",
        n,
        len(sources),
        counts,
        skipped,
        buffer,
    )
    for note in extra_manifest.get("notes", []):
        log.warning("%s", note)
    return manifest


# --------------------------------------------------------------------------- CLI


def run_preprocess(cfg: RSPreprocessConfig) -> None:
    """Run ``rs preprocess`` with its typed options."""
    images, dems, labels = _split_list(cfg.image), _split_list(cfg.dem), _split_list(cfg.label)
    if cfg.input is not None and images:
        raise InputError(cfg.input, "give either --input or --image/--dem, not both")
    if cfg.input is None and not images:
        raise InputError(None, "no input: give --input FOLDER or --image/--dem")
    kind = "geotiff"
    release = False
    if cfg.input is not None:
        folder = Path(cfg.input)
        if not folder.is_dir():
            raise InputError(folder, "input folder does not exist")
        if (folder / "scenes.json").is_file():
            scenes = demo_scenes(folder)
        elif l4s.is_landslide4sense(folder):
            kind = "landslide4sense"
            release = l4s.is_release(folder)
        else:
            raise InputError(
                folder,
                "neither a scene folder (scenes.json) nor a Landslide4Sense folder (img/image_N.h5)",
            )
    else:
        scenes = explicit_scenes(images, dems, labels)
    if release:
        tile, overlap = release_tiling(cfg.input, cfg.tile, cfg.overlap)
    else:
        tile = cfg.tile if cfg.tile is not None else DEFAULT_TILE[kind]
        overlap = cfg.overlap if cfg.overlap is not None else DEFAULT_OVERLAP[kind]
    if tile < MIN_TILE or not 0 <= overlap < tile:
        raise InputError(None, f"need --tile >= {MIN_TILE} and 0 <= --overlap < --tile (got {tile}, {overlap})")
    n_segments = cfg.n_segments if cfg.n_segments is not None else default_n_segments(tile)

    split_by = cfg.split_by
    folders: dict[str, str] = {}
    if kind == "landslide4sense":
        channel_names = list(l4s.L4S_CHANNELS)
        spectral, terrain = l4s.L4S_SPECTRAL, l4s.L4S_TERRAIN
        extra: dict[str, Any] = {"source": "landslide4sense"}
        if release:
            patches = l4s.release_patches(Path(cfg.input))
            sources = release_sources(patches)
            split_by, folders = "folders", dict(l4s.RELEASE_FOLDERS)
            extra.update(protocol_manifest(patches))
        else:
            sources = landslide4sense_sources(Path(cfg.input))
            split_by = "scene"
    else:
        sources, band_names, count = geotiff_sources(scenes, cfg.hillshade_azimuth, cfg.hillshade_altitude)
        channel_names = band_names + list(TERRAIN_CHANNELS)
        spectral, terrain = list(range(count)), list(range(count, count + len(TERRAIN_CHANNELS)))
        extra = {
            "source": "geotiff",
            "terrain": {
                "hillshade_azimuth": cfg.hillshade_azimuth,
                "hillshade_altitude": cfg.hillshade_altitude,
            },
        }
    split = SplitSettings(split_by, cfg.block_tiles, cfg.val_fraction, cfg.test_fraction, cfg.seed, folders)

    with atomic_dir(cfg.out) as tmp:
        prepare(
            sources,
            tmp,
            channel_names,
            spectral,
            terrain,
            tile,
            overlap,
            split,
            n_segments,
            cfg.compactness,
            cfg.superpixel_terrain_weight,
            extra,
            input_name=cfg.input if cfg.input is not None else ", ".join(images),
            workers=cfg.workers,
        )
        write_yaml(
            tmp / "config.yaml",
            {
                **to_record(cfg),
                "resolved": {
                    "kind": kind,
                    "tile": tile,
                    "overlap": overlap,
                    "n_segments": n_segments,
                    "split_by": split_by,
                    **({"protocol": extra["protocol"]} if release else {}),
                },
            },
        )
