"""The tile arrays of ``rs preprocess``, written in two passes with one scene in memory at a time.

Pass 1 (:class:`SceneTileScratch`) keeps each scene's kept tiles (raw channels, validity,
labels) in memory-mapped scratch files; once the training statistics are known, pass 2
(:func:`write_prepared_tiles`) reads them back, fills invalid pixels with the channel mean,
computes the superpixels on the standardised channels and writes the prepared arrays
(segcore.prepared format plus the extras ``superpixels`` and ``valid``), scene by scene, in
parallel with ``--workers`` (SLIC is most of the stage's time)::

    images.npy       (N, C, t, t) float32, RAW values (standardised on read)
    labels.npy       (N, t, t) uint8, 0/1, 255 at invalid or unlabeled pixels
    valid.npy        (N, t, t) uint8, 1 where the pixel is valid
    superpixels.npy  (N, t, t) int32, SLIC labels from 0
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from rs.align import LABEL_NODATA
from rs.scene_channels import SceneChannels
from rs.superpixels import superpixels
from segcore.prepared import create_arrays
from segcore.runtime.pool import ordered_map

EXTRAS = {"superpixels": np.int32, "valid": np.uint8}
ARRAY_NAMES = ("images", "labels", *EXTRAS)
_PARTS = ("raw", "valid", "label")


class SceneTileScratch:
    """Pass 1's per-scene raw tiles in ``folder`` (inside the temporary output folder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, k: int, scene: SceneChannels, windows: Sequence[Window], tile: int) -> None:
        """Scene ``k``'s kept tiles: raw channels (m, C, t, t), validity and labels (m, t, t),
        labels already LABEL_NODATA outside valid pixels."""
        stem = self.folder / f"{k}"
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

    def count(self, k: int) -> int:
        """Number of tiles scene ``k`` kept (from the scratch file's header)."""
        return int(np.load(f"{self.folder / str(k)}_raw.npy", mmap_mode="r").shape[0])

    def read(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scene ``k``'s (raw, valid, label) tiles, memory-mapped read-only."""
        return tuple(np.load(f"{self.folder / str(k)}_{part}.npy", mmap_mode="r") for part in _PARTS)

    def remove(self) -> None:
        shutil.rmtree(self.folder)


@dataclass(frozen=True)
class SceneTilesJob:
    """Pass 2 of one scene: its scratch tiles ``k`` go to rows ``start:start + m`` of the arrays
    in ``out``; the statistics and superpixel settings of :func:`write_prepared_tiles`."""

    out: Path
    scratch: Path
    k: int
    start: int
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    n_segments: int
    compactness: float


def write_scene_tiles(job: SceneTilesJob) -> int:
    """Normalise, compute the superpixels of and write one scene's tiles (in this process or a
    worker); the arrays are opened for this scene alone (pages written through a mapping stay
    resident until it is closed). Returns the number of tiles written."""
    raw_tiles, valid_tiles, label_tiles = SceneTileScratch(job.scratch).read(job.k)
    arrays = {name: np.load(Path(job.out) / f"{name}.npy", mmap_mode="r+") for name in ARRAY_NAMES}
    mean, std, weights = job.mean, job.std, job.weights
    for q in range(len(raw_tiles)):
        j = job.start + q
        raw = np.array(raw_tiles[q])  # (C, t, t)
        valid = valid_tiles[q].astype(bool)
        raw[:, ~valid] = mean[:, None]
        arrays["images"][j] = raw
        arrays["valid"][j] = valid
        arrays["labels"][j] = label_tiles[q]
        standard = (raw - mean[:, None, None]) / std[:, None, None] * weights[:, None, None]
        arrays["superpixels"][j] = superpixels(standard, job.n_segments, job.compactness)
    for a in arrays.values():
        a.flush()
    n = len(raw_tiles)
    del raw_tiles, valid_tiles, label_tiles, arrays
    return n


def write_prepared_tiles(
    out: Path,
    scratch: SceneTileScratch,
    n_scenes: int,
    n_tiles: int,
    tile: int,
    mean: np.ndarray,
    std: np.ndarray,
    weights: np.ndarray,
    n_segments: int,
    compactness: float,
    workers: int = 1,
) -> None:
    """Pass 2: the prepared arrays of ``n_tiles`` tiles of side ``tile`` in scene order from the
    scratch of ``n_scenes`` scenes. ``mean``, ``std``, ``weights`` (C,): the training statistics
    and the per-channel weights of the superpixel distance. ``workers`` processes write scenes in
    parallel (each scene its own rows: the arrays are the same for any count)."""
    c = len(mean)
    arrays = create_arrays(out, n_tiles, c, tile, tile, extras=EXTRAS)
    for a in arrays.values():
        a.flush()
    del arrays  # reopened per scene
    jobs = []
    start = 0  # tiles are in scene order: scene k's tiles are the next rows
    for k in range(n_scenes):
        jobs.append(SceneTilesJob(Path(out), scratch.folder, k, start, mean, std, weights, n_segments, compactness))
        start += scratch.count(k)
    assert start == n_tiles, (start, n_tiles)
    # many small scenes (Landslide4Sense: one patch each) go to a worker in chunks
    chunk = max(1, min(64, n_scenes // (8 * max(workers, 1))))
    written = sum(ordered_map(write_scene_tiles, jobs, workers, chunksize=chunk))
    assert written == n_tiles, (written, n_tiles)
