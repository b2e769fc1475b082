"""``rs preprocess``: scenes (GeoTIFF image + DEM [+ labels]) or Landslide4Sense patches → tiles.

Inputs, one of:

* ``--input FOLDER`` with ``scenes.json`` (written by ``rs demo-data``);
* ``--input FOLDER`` in the Landslide4Sense layout (auto-detected, see :mod:`rs.landslide4sense`);
* ``--image A.tif --dem A_dem.tif [--label A_label.tif]``, repeatable or comma-separated for
  several scenes (``--label none`` for an unlabeled scene).

Per scene: the DEM is reprojected onto the image grid (:mod:`rs.align`), terrain channels are
derived (:mod:`rs.terrain`), labels are resampled to the image grid (nearest), and a pixel is
valid where the image is not nodata and every terrain channel is defined. Channels::

    B, G, R, NIR (the image bands, named by their band descriptions), elevation, slope,
    aspect_sin, aspect_cos, hillshade

Tiles (``--tile`` with ``--overlap``) are split by spatial blocks (:mod:`rs.tiling`) or by
whole scenes; tiles with no valid pixel are skipped and counted (``skipped_nodata_tiles``);
tiles dropped at block borders so that no two splits overlap are counted as ``buffer_tiles``.

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
  ``unlabeled`` = all training tiles (for self-supervised pretraining; includes the labeled
  pool and the tiles of unlabeled scenes), ``val`` and ``test`` = labeled tiles of validation
  and test blocks. ``tiles`` = {"window": [[row_off, col_off, h, w], ...], "transform":
  [[a, b, c, d, e, f], ...]} per sample.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window
from skimage.segmentation import slic

from rs import landslide4sense as l4s
from rs.align import LABEL_NODATA, align_dem_to_image, align_label_to_image
from rs.geotiff import RasterGrid, pixel_size_metres, read_raster, transform_to_list
from rs.terrain import TERRAIN_CHANNELS, terrain_channels
from rs.tiling import (
    assign_blocks,
    spatial_block_split,
    tile_transform,
    tile_windows,
    window_to_list,
)
from segcore.cli import resolved_args
from segcore.errors import InputError
from segcore.outputs import atomic_dir, write_yaml
from segcore.prepared import create_arrays, write_manifest

log = logging.getLogger(__name__)

CLASSES = ["background", "landslide"]
DEFAULT_TILE = {"geotiff": 64, "landslide4sense": 128}
DEFAULT_OVERLAP = {"geotiff": 16, "landslide4sense": 0}
_SCENE_TILES = "_scene_tiles"  # pass 1's per-scene raw tiles, inside the temporary output folder


# --------------------------------------------------------------------------- scene channels


@dataclass
class SceneChannels:
    """A scene ready for tiling: raw channels (C, H, W) float32 (NaN/any value where invalid),
    valid (H, W) bool, labels (H, W) uint8 with 255 unknown (None if unlabeled)."""

    channels: np.ndarray
    valid: np.ndarray
    label: np.ndarray | None
    transform: Affine
    band_names: list[str] = field(default_factory=list)


def load_scene_channels(
    image_path: str | Path,
    dem_path: str | Path,
    expected_bands: int | None = None,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    label_path: str | Path | None = None,
) -> tuple[SceneChannels, RasterGrid, dict[str, Any]]:
    """Read an image and its DEM and build the channels exactly as training data are built.

    Returns (scene, image grid, image profile). InputError naming the offending file for a
    missing/corrupt file, a missing CRS, a band count other than ``expected_bands``, a rotated
    image grid, or a DEM/label that does not overlap the image.
    """
    image = read_raster(image_path, expected_bands=expected_bands, what="image")
    if not image.grid.is_north_up():
        raise InputError(
            image_path, "image grid is rotated or not north-up; warp it to a north-up grid first"
        )
    valid = image.valid_mask()
    dem, dem_valid = align_dem_to_image(dem_path, image.grid)
    xres, yres = pixel_size_metres(image.grid)
    terrain = terrain_channels(dem, xres, yres, azimuth, altitude)  # (5, H, W)
    valid &= dem_valid & np.isfinite(terrain).all(axis=0)
    channels = np.concatenate([image.data.astype(np.float32), terrain])  # (C, H, W)
    names = [d if d else f"band_{i + 1}" for i, d in enumerate(image.descriptions)]
    label = None
    if label_path is not None:
        label = align_label_to_image(label_path, image.grid)
        label = np.where(valid, label, LABEL_NODATA).astype(np.uint8)
    return (
        SceneChannels(channels, valid, label, image.grid.transform, names),
        image.grid,
        image.profile,
    )


def _pad_to(scene: SceneChannels, tile: int) -> SceneChannels:
    """Pad a scene smaller than one tile with invalid pixels (bottom/right)."""
    c, h, w = scene.channels.shape
    ph, pw = max(h, tile), max(w, tile)
    if (ph, pw) == (h, w):
        return scene
    channels = np.full((c, ph, pw), np.nan, dtype=np.float32)
    channels[:, :h, :w] = scene.channels
    valid = np.zeros((ph, pw), dtype=bool)
    valid[:h, :w] = scene.valid
    label = None
    if scene.label is not None:
        label = np.full((ph, pw), LABEL_NODATA, dtype=np.uint8)
        label[:h, :w] = scene.label
    return SceneChannels(channels, valid, label, scene.transform, scene.band_names)


# --------------------------------------------------------------------------- sources


@dataclass
class SceneSource:
    """One scene to prepare: an id, its manifest record, and how to load it."""

    id: str
    record: dict[str, Any]
    labeled: bool
    load: Callable[[], SceneChannels]


def _split_list(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return out


def geotiff_sources(
    scenes: Sequence[tuple[str, Path, Path, Path | None]], azimuth: float, altitude: float
) -> tuple[list[SceneSource], list[str], int]:
    """Sources for (id, image, dem, label) tuples; checks every file up front.

    Returns (sources, band names, band count). All images must have the band count of the first.
    """
    sources: list[SceneSource] = []
    names: list[str] | None = None
    count: int | None = None
    for sid, image, dem, label in scenes:
        meta = read_raster(image, what="image", read_data=False)
        if count is None:
            count, names = (
                meta.count,
                [d if d else f"band_{i + 1}" for i, d in enumerate(meta.descriptions)],
            )
        elif meta.count != count:
            raise InputError(
                image,
                f"image has {meta.count} bands but {scenes[0][1]} has {count}; all scenes need the same bands",
            )
        record = {
            "image": str(image),
            "dem": str(dem),
            "label": None if label is None else str(label),
            "crs": meta.grid.crs.to_wkt(),
            "transform": transform_to_list(meta.grid.transform),
            "width": meta.grid.width,
            "height": meta.grid.height,
            "nodata": meta.nodata,
            "pixel_size_m": list(pixel_size_metres(meta.grid)),
            "georeferenced": True,
        }

        def load(image=image, dem=dem, label=label, count=count) -> SceneChannels:
            return load_scene_channels(image, dem, count, azimuth, altitude, label)[0]

        sources.append(SceneSource(sid, record, label is not None, load))
    return sources, list(names or []), int(count or 0)


def demo_scenes(folder: Path) -> list[tuple[str, Path, Path, Path | None]]:
    """(id, image, dem, label) from ``folder/scenes.json`` (paths relative to the folder)."""
    index_path = folder / "scenes.json"
    try:
        index = json.loads(index_path.read_text())
        out = []
        for s in index["scenes"]:
            label = s.get("label")
            out.append(
                (
                    str(s["id"]),
                    folder / s["image"],
                    folder / s["dem"],
                    None if not label else folder / label,
                )
            )
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(
            index_path,
            f"not a valid scene index ({err}); expected {{'scenes': [{{'id', 'image', 'dem', 'label'}}]}}",
        ) from err
    if not out:
        raise InputError(index_path, "scene index lists no scene")
    return out


def explicit_scenes(
    images: list[str], dems: list[str], labels: list[str]
) -> list[tuple[str, Path, Path, Path | None]]:
    if len(dems) != len(images):
        raise InputError(
            None, f"need one --dem per --image (got {len(images)} images, {len(dems)} DEMs)"
        )
    if labels and len(labels) != len(images):
        raise InputError(
            None,
            f"need one --label per --image or none at all (got {len(images)} images, {len(labels)} labels; use 'none' for an unlabeled scene)",
        )
    out = []
    seen: set[str] = set()
    for k, (img, dem) in enumerate(zip(images, dems, strict=True)):
        lab = labels[k] if labels else None
        sid = Path(img).name.split(".")[0]
        if sid in seen:
            sid = f"{sid}_{k}"
        seen.add(sid)
        out.append(
            (sid, Path(img), Path(dem), None if lab is None or lab.lower() == "none" else Path(lab))
        )
    return out


def landslide4sense_sources(folder: Path) -> list[SceneSource]:
    patches = l4s.find_patches(folder)
    size = l4s.patch_size(patches)
    sources = []
    for p in patches:
        record = {
            "image": str(p.image),
            "dem": None,
            "label": None if p.mask is None else str(p.mask),
            "crs": None,
            "transform": transform_to_list(Affine.identity()),
            "width": size,
            "height": size,
            "nodata": None,
            "georeferenced": False,
        }

        def load(p=p) -> SceneChannels:
            channels = l4s.read_image(p.image, size)
            valid = np.isfinite(channels).all(axis=0)
            label = None
            if p.mask is not None:
                label = np.where(valid, l4s.read_mask(p.mask, size), LABEL_NODATA).astype(np.uint8)
            return SceneChannels(
                channels, valid, label, Affine.identity(), list(l4s.L4S_CHANNELS[:12])
            )

        sources.append(SceneSource(p.id, record, p.mask is not None, load))
    return sources


# --------------------------------------------------------------------------- statistics


class ChannelStatistics:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self, channels: int) -> None:
        self.n = np.zeros(channels)
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def add(self, values: np.ndarray) -> None:
        """Add samples ``values`` (C, M)."""
        if values.shape[1] == 0:
            return
        x = values.astype(np.float64)
        nb = x.shape[1]
        mb = x.mean(axis=1)
        m2b = ((x - mb[:, None]) ** 2).sum(axis=1)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        std = np.sqrt(self.m2 / np.maximum(self.n, 1))
        std = np.where(std > 1e-6, std, 1.0)  # a constant channel stays as is
        return self.mean.astype(np.float32), std.astype(np.float32)


def training_statistics(scene: SceneChannels, windows: Sequence[Window]) -> np.ndarray:
    """Valid pixel values (C, M) of the union of ``windows`` of one scene (each pixel once)."""
    cover = np.zeros(scene.valid.shape, dtype=bool)
    for w in windows:
        rs, cs = w.toslices()
        cover[rs, cs] = True
    cover &= scene.valid
    return scene.channels[:, cover]


# --------------------------------------------------------------------------- writing


@dataclass
class TileRecord:
    scene: str
    index: int
    window: Window
    transform: Affine
    split: str  # "train", "val" or "test"
    labeled: bool


def superpixels(x: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC labels (H, W) int32 from 0 of a standardised tile ``x`` (C, H, W)."""
    labels = slic(
        np.moveaxis(x, 0, -1).astype(np.float64),  # (H, W, C)
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=-1,
        start_label=0,
        convert2lab=False,
    )
    return labels.astype(np.int32)


def _write_scene_tiles(stem: Path, scene: SceneChannels, windows: Sequence[Window], tile: int) -> None:
    """Pass 1's scratch of one scene: raw channels (m, C, t, t), validity and labels (m, t, t)
    of its kept tiles, labels already LABEL_NODATA outside valid pixels."""
    m, c = len(windows), scene.channels.shape[0]
    raw = np.lib.format.open_memmap(f"{stem}_raw.npy", mode="w+", dtype=np.float32, shape=(m, c, tile, tile))
    valid = np.lib.format.open_memmap(f"{stem}_valid.npy", mode="w+", dtype=np.uint8, shape=(m, tile, tile))
    label = np.lib.format.open_memmap(f"{stem}_label.npy", mode="w+", dtype=np.uint8, shape=(m, tile, tile))
    for q, win in enumerate(windows):
        rs, cs = win.toslices()
        ok = scene.valid[rs, cs]
        raw[q] = scene.channels[:, rs, cs]
        valid[q] = ok
        label[q] = LABEL_NODATA if scene.label is None else np.where(ok, scene.label[rs, cs], LABEL_NODATA)
    for a in (raw, valid, label):
        a.flush()


def _read_scene_tiles(stem: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.load(f"{stem}_{part}.npy", mmap_mode="r") for part in ("raw", "valid", "label"))


def prepare(
    sources: Sequence[SceneSource],
    out: Path,
    channel_names: Sequence[str],
    spectral: Sequence[int],
    terrain: Sequence[int],
    tile: int,
    overlap: int,
    split_by: str,
    block_tiles: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    n_segments: int,
    compactness: float,
    terrain_weight: float,
    extra_manifest: dict[str, Any],
    input_name: str | Path | None = None,
) -> dict[str, Any]:
    """Tile, split, normalise and write ``sources`` into the (temporary) folder ``out``.

    Returns the manifest.
    """
    c = len(channel_names)
    # Two passes, one scene in memory at a time (peak memory flat in the number of scenes):
    # pass 1 loads each scene once, keeps its tiles' raw channels, validity and labels in a
    # memory-mapped scratch file and adds its training pixels to the statistics; pass 2 reads
    # the scratch files back, normalises, computes superpixels and writes the final arrays.
    scratch = Path(out) / _SCENE_TILES
    scratch.mkdir(parents=True, exist_ok=True)
    records: list[TileRecord] = []
    skipped = 0
    buffer = 0
    stats = ChannelStatistics(c)
    # scene-level split: one "block" per labeled scene
    scene_split: dict[str, str] = {}
    if split_by == "scene":
        labeled_ids = [s.id for s in sources if s.labeled]
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B17]))
        by_block = assign_blocks(
            [(k, 0) for k in range(len(labeled_ids))], val_fraction, test_fraction, rng
        )
        scene_split = {sid: by_block[(k, 0)] for k, sid in enumerate(labeled_ids)}

    for k, src in enumerate(sources):
        scene = _pad_to(src.load(), tile)
        if scene.channels.shape[0] != c:
            raise InputError(
                src.record["image"], f"scene has {scene.channels.shape[0]} channels, expected {c}"
            )
        h, w = scene.valid.shape
        windows = tile_windows(h, w, tile, overlap)
        if not src.labeled:
            splits: list[str | None] = ["train"] * len(windows)
        elif split_by == "scene":
            splits = [scene_split[src.id]] * len(windows)
        else:
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), k, 0x5B17]))
            splits = spatial_block_split(
                windows, tile, overlap, block_tiles, val_fraction, test_fraction, rng
            )
        train_windows = []
        first = len(records)
        for i, (win, split) in enumerate(zip(windows, splits, strict=True)):
            rs, cs = win.toslices()
            if not scene.valid[rs, cs].any():
                skipped += 1
                continue
            if split is None:
                buffer += 1
                continue
            labeled = scene.label is not None and bool((scene.label[rs, cs] != LABEL_NODATA).any())
            records.append(
                TileRecord(src.id, i, win, tile_transform(scene.transform, win), split, labeled)
            )
            if split == "train":
                train_windows.append(win)
        stats.add(training_statistics(scene, train_windows))
        _write_scene_tiles(scratch / f"{k}", scene, [r.window for r in records[first:]], tile)
        del scene

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
    arrays = create_arrays(
        out, n, c, tile, tile, extras={"superpixels": np.int32, "valid": np.uint8}
    )
    names = list(arrays)
    del arrays  # reopened per scene: pages written through a mapping stay resident until it is closed
    j = 0  # records are in scene order: scene k's tiles are the next rows
    for k in range(len(sources)):
        raw_tiles, valid_tiles, label_tiles = _read_scene_tiles(scratch / f"{k}")
        arrays = {name: np.load(Path(out) / f"{name}.npy", mmap_mode="r+") for name in names}
        for q in range(len(raw_tiles)):
            raw = np.array(raw_tiles[q])  # (C, t, t)
            valid = valid_tiles[q].astype(bool)
            raw[:, ~valid] = mean[:, None]
            arrays["images"][j] = raw
            arrays["valid"][j] = valid
            arrays["labels"][j] = label_tiles[q]
            standard = (raw - mean[:, None, None]) / std[:, None, None] * weights[:, None, None]
            arrays["superpixels"][j] = superpixels(standard, n_segments, compactness)
            j += 1
        for a in arrays.values():
            a.flush()
        del raw_tiles, valid_tiles, label_tiles, arrays
    assert j == n, (j, n)
    shutil.rmtree(scratch)

    tile_ids = [f"{r.scene}/t{r.index:04d}" for r in records]
    splits_out = {
        "unlabeled": [t for t, r in zip(tile_ids, records, strict=True) if r.split == "train"],
        "labeled": [
            t for t, r in zip(tile_ids, records, strict=True) if r.split == "train" and r.labeled
        ],
        "val": [
            t for t, r in zip(tile_ids, records, strict=True) if r.split == "val" and r.labeled
        ],
        "test": [
            t for t, r in zip(tile_ids, records, strict=True) if r.split == "test" and r.labeled
        ],
    }
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
        # a scene's split: its own under the scene split, "blocks" when its tiles are split by blocks
        "scenes": {
            s.id: {
                **s.record,
                "labeled": s.labeled,
                "split": "train" if not s.labeled else scene_split.get(s.id, "blocks"),
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
        "split": {
            "by": split_by,
            "block_tiles": block_tiles,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "seed": seed,
        },
        "skipped_nodata_tiles": skipped,
        "buffer_tiles": buffer,
        "superpixels": {
            "n_segments": n_segments,
            "compactness": compactness,
            "terrain_weight": terrain_weight,
            "start_label": 0,
        },
        "extras": ["superpixels", "valid"],
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
    return manifest


# --------------------------------------------------------------------------- CLI


def add_preprocess_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        type=Path,
        default=None,
        help="raw folder: a demo-data folder (scenes.json) or a Landslide4Sense folder (img/, mask/)",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=None,
        help="scene image GeoTIFF (repeatable or comma-separated)",
    )
    parser.add_argument(
        "--dem",
        action="append",
        default=None,
        help="DEM GeoTIFF per --image (any CRS/resolution overlapping the image)",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=None,
        help="label GeoTIFF (0/1) per --image, 'none' for an unlabeled scene",
    )
    parser.add_argument("--out", type=Path, required=True, help="prepared-data folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the block/scene split")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size in pixels (default 64 for GeoTIFF scenes, 128 for Landslide4Sense)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="overlap between neighbouring tiles in pixels (default 16 for GeoTIFF, 0 for Landslide4Sense)",
    )
    parser.add_argument(
        "--split-by",
        choices=("block", "scene"),
        default="block",
        help="assign splits by spatial blocks of tiles or by whole scenes (Landslide4Sense: always per patch)",
    )
    parser.add_argument(
        "--block-tiles", type=int, default=4, help="block side in tile strides for the block split"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="fraction of blocks (scenes) for validation",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.25,
        help="fraction of blocks (scenes) for the held-out test",
    )
    parser.add_argument(
        "--n-segments",
        type=int,
        default=None,
        help="SLIC superpixels per tile (default: one per 8x8 pixels)",
    )
    parser.add_argument(
        "--compactness",
        type=float,
        default=0.5,
        help="SLIC compactness on standardised channels (higher = more regular)",
    )
    parser.add_argument(
        "--superpixel-terrain-weight",
        type=float,
        default=0.5,
        help="weight of the terrain channels in the SLIC distance",
    )
    parser.add_argument(
        "--hillshade-azimuth",
        type=float,
        default=315.0,
        help="sun azimuth of the hillshade channel (degrees from north)",
    )
    parser.add_argument(
        "--hillshade-altitude",
        type=float,
        default=45.0,
        help="sun altitude of the hillshade channel (degrees)",
    )


def run_preprocess(args: argparse.Namespace) -> None:
    images, dems, labels = _split_list(args.image), _split_list(args.dem), _split_list(args.label)
    if args.input is not None and images:
        raise InputError(args.input, "give either --input or --image/--dem, not both")
    if args.input is None and not images:
        raise InputError(None, "no input: give --input FOLDER or --image/--dem")
    kind = "geotiff"
    if args.input is not None:
        folder = Path(args.input)
        if not folder.is_dir():
            raise InputError(folder, "input folder does not exist")
        if (folder / "scenes.json").is_file():
            scenes = demo_scenes(folder)
        elif l4s.is_landslide4sense(folder):
            kind = "landslide4sense"
        else:
            raise InputError(
                folder,
                "neither a scene folder (scenes.json) nor a Landslide4Sense folder (img/image_N.h5)",
            )
    else:
        scenes = explicit_scenes(images, dems, labels)
    tile = args.tile if args.tile is not None else DEFAULT_TILE[kind]
    overlap = args.overlap if args.overlap is not None else DEFAULT_OVERLAP[kind]
    if tile < 8 or not 0 <= overlap < tile:
        raise InputError(
            None, f"need --tile >= 8 and 0 <= --overlap < --tile (got {tile}, {overlap})"
        )
    n_segments = args.n_segments if args.n_segments is not None else max(1, (tile // 8) ** 2)

    if kind == "landslide4sense":
        sources = landslide4sense_sources(Path(args.input))
        channel_names = list(l4s.L4S_CHANNELS)
        spectral, terrain = l4s.L4S_SPECTRAL, l4s.L4S_TERRAIN
        split_by = "scene"
        extra: dict[str, Any] = {"source": "landslide4sense"}
    else:
        sources, band_names, count = geotiff_sources(
            scenes, args.hillshade_azimuth, args.hillshade_altitude
        )
        channel_names = band_names + list(TERRAIN_CHANNELS)
        spectral, terrain = list(range(count)), list(range(count, count + len(TERRAIN_CHANNELS)))
        split_by = args.split_by
        extra = {
            "source": "geotiff",
            "terrain": {
                "hillshade_azimuth": args.hillshade_azimuth,
                "hillshade_altitude": args.hillshade_altitude,
            },
        }

    with atomic_dir(args.out) as tmp:
        prepare(
            sources,
            tmp,
            channel_names,
            spectral,
            terrain,
            tile,
            overlap,
            split_by,
            args.block_tiles,
            args.val_fraction,
            args.test_fraction,
            args.seed,
            n_segments,
            args.compactness,
            args.superpixel_terrain_weight,
            extra,
            input_name=args.input if args.input is not None else ", ".join(images),
        )
        write_yaml(
            tmp / "config.yaml",
            {
                **resolved_args(args),
                "resolved": {
                    "kind": kind,
                    "tile": tile,
                    "overlap": overlap,
                    "n_segments": n_segments,
                    "split_by": split_by,
                },
            },
        )
