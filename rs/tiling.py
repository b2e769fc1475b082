"""Tiles of a scene with overlap, their georeference, reassembly, and a spatial-block split.

Tile offsets along an axis are ``0, stride, 2*stride, ...`` with ``stride = tile - overlap``,
plus one last tile flush with the far edge, so every pixel is covered and no tile leaves the
scene. A tile's geotransform is ``rasterio.windows.transform(window, scene_transform)``: its
pixel (0, 0) is the scene pixel (row_off, col_off).

Why blocks: neighbouring tiles overlap and are spatially correlated, so a random tile split
would put copies of the same pixels in training and test. Tiles are grouped into blocks of
``k x k`` tile positions; whole blocks go to one split; tiles that would still overlap a tile of
another split (at block borders) are dropped as buffer, in favour of the split ranked higher
(test > val > train).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from affine import Affine
from rasterio.windows import Window

SPLIT_PRIORITY = ("test", "val", "train")


def tile_offsets(size: int, tile: int, stride: int) -> list[int]:
    """Offsets of the tiles along one axis of ``size`` pixels (see the module docstring): the
    rows (or columns) where the windows of :func:`tile_windows` start, ascending."""
    if size <= tile:
        return [0]
    offs = list(range(0, size - tile + 1, stride))
    if offs[-1] != size - tile:
        offs.append(size - tile)
    return offs


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """Windows of ``tile x tile`` pixels covering a ``height x width`` scene, row-major.

    Consecutive tiles share ``overlap`` pixels (more for the last one, which is flush with the
    edge). The scene must be at least one tile in each direction (pad smaller scenes first).
    """
    if tile < 1:
        raise ValueError(f"tile size must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    if height < tile or width < tile:
        raise ValueError(f"scene {height}x{width} is smaller than one {tile}x{tile} tile")
    stride = tile - overlap
    return [
        Window(col_off=c, row_off=r, width=tile, height=tile)
        for r in tile_offsets(height, tile, stride)
        for c in tile_offsets(width, tile, stride)
    ]


def tile_transform(scene_transform: Affine, window: Window) -> Affine:
    """Geotransform of a tile: maps the tile's pixel (col, row) to scene CRS coordinates.

    Equal to ``rasterio.windows.transform(window, scene_transform)``.
    """
    return scene_transform @ Affine.translation(float(window.col_off), float(window.row_off))


def window_to_list(window: Window) -> list[int]:
    """[row_off, col_off, height, width] as ints (the manifest's form)."""
    return [int(window.row_off), int(window.col_off), int(window.height), int(window.width)]


def window_from_list(values: Sequence[int]) -> Window:
    r, c, h, w = (int(v) for v in values)
    return Window(col_off=c, row_off=r, width=w, height=h)


def cut_tiles(array: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """Stack of tiles (N, ..., h, w) cut from ``array`` (..., H, W)."""
    return np.stack([array[..., w.toslices()[0], w.toslices()[1]] for w in windows])


def reassemble(tiles: np.ndarray, windows: Sequence[Window], shape: tuple[int, ...], fill: float = 0) -> np.ndarray:
    """Rebuild a scene (..., H, W) from tiles (N, ..., h, w) cut at ``windows``.

    Overlapping pixels take the value of the last tile written; for tiles cut from one scene
    all overlapping copies agree. Pixels no tile covers keep ``fill``.
    """
    out = np.full(shape, fill, dtype=tiles.dtype)
    for t, w in zip(tiles, windows, strict=True):
        rs, cs = w.toslices()
        out[..., rs, cs] = t
    return out


def windows_overlap(a: Window, b: Window) -> bool:
    """True if the two windows share at least one pixel."""
    return (
        a.row_off < b.row_off + b.height
        and b.row_off < a.row_off + a.height
        and a.col_off < b.col_off + b.width
        and b.col_off < a.col_off + a.width
    )


def block_ids(windows: Sequence[Window], tile: int, overlap: int, block_tiles: int) -> list[tuple[int, int]]:
    """Block (row, col) of each window: its top-left offset divided by ``block_tiles`` strides."""
    stride = tile - overlap
    span = stride * block_tiles
    return [(int(w.row_off) // span, int(w.col_off) // span) for w in windows]


def assign_blocks(
    blocks: Sequence[tuple[int, int]],
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
) -> dict[tuple[int, int], str]:
    """Split label per distinct block: a seeded shuffle, then the first ``round(test_fraction
    * n)`` blocks to test and the next ``round(val_fraction * n)`` to val (at least one each when
    the fraction is positive and more than two blocks exist), the rest to train."""
    distinct = sorted(set(blocks))
    n = len(distinct)
    order = [distinct[i] for i in rng.permutation(n)]
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    if n > 2:
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
    n_test = min(n_test, n)
    n_val = min(n_val, n - n_test)
    out: dict[tuple[int, int], str] = {}
    for k, b in enumerate(order):
        out[b] = "test" if k < n_test else ("val" if k < n_test + n_val else "train")
    return out


def resolve_overlaps(windows: Sequence[Window], splits: Sequence[str | None]) -> list[str | None]:
    """Drop (set to None) every tile overlapping a tile of a higher-ranked split.

    Ranking is :data:`SPLIT_PRIORITY` (test first), so test and validation areas stay whole and
    training loses the buffer tiles at their borders. Afterwards no two tiles of different
    splits overlap.
    """
    out = list(splits)
    rank = {s: i for i, s in enumerate(SPLIT_PRIORITY)}
    order = sorted(range(len(windows)), key=lambda i: rank.get(out[i], len(rank)) if out[i] else len(rank))
    # spatial hash of kept windows on cells of the largest tile size: overlapping windows share a cell
    cell = max((max(int(w.height), int(w.width)) for w in windows), default=1)
    buckets: dict[tuple[int, int], list[int]] = {}

    def cells(w: Window) -> list[tuple[int, int]]:
        r0, c0 = int(w.row_off) // cell, int(w.col_off) // cell
        r1, c1 = (int(w.row_off + w.height) - 1) // cell, (int(w.col_off + w.width) - 1) // cell
        return [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    for i in order:
        if out[i] is None:
            continue
        mine = cells(windows[i])
        candidates = {j for key in mine for j in buckets.get(key, ())}
        if any(out[j] != out[i] and windows_overlap(windows[i], windows[j]) for j in candidates):
            out[i] = None
            continue
        for key in mine:
            buckets.setdefault(key, []).append(i)
    return out


def spatial_block_split(
    windows: Sequence[Window],
    tile: int,
    overlap: int,
    block_tiles: int,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
) -> list[str | None]:
    """Split label ("train", "val", "test", or None for a dropped buffer tile) per window of one
    scene, by blocks of ``block_tiles x block_tiles`` tile positions."""
    if block_tiles < 1:
        raise ValueError(f"block_tiles must be >= 1, got {block_tiles}")
    blocks = block_ids(windows, tile, overlap, block_tiles)
    by_block = assign_blocks(blocks, val_fraction, test_fraction, rng)
    return resolve_overlaps(windows, [by_block[b] for b in blocks])


def split_cross_overlaps(windows: Sequence[Window], splits: Sequence[str | None]) -> list[tuple[int, int]]:
    """Pairs (i, j) of overlapping windows in different (non-None) splits; empty when clean."""
    bad = []
    for i in range(len(windows)):
        for j in range(i + 1, len(windows)):
            if splits[i] and splits[j] and splits[i] != splits[j] and windows_overlap(windows[i], windows[j]):
                bad.append((i, j))
    return bad
