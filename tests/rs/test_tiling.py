"""Tile windows, per-tile georeference, reassembly and the spatial-block split."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from rs.tiling import (
    cut_tiles,
    reassemble,
    resolve_overlaps,
    spatial_block_split,
    split_cross_overlaps,
    tile_transform,
    tile_windows,
    window_from_list,
    window_to_list,
    windows_overlap,
)


@pytest.mark.parametrize("h,w,tile,overlap", [(64, 64, 64, 16), (100, 70, 32, 8), (96, 144, 32, 0), (33, 200, 16, 15)])
def test_windows_cover_the_scene_flush_with_the_edge(h: int, w: int, tile: int, overlap: int) -> None:
    wins = tile_windows(h, w, tile, overlap)
    cover = np.zeros((h, w), dtype=int)
    for win in wins:
        assert (win.height, win.width) == (tile, tile)
        assert 0 <= win.row_off <= h - tile and 0 <= win.col_off <= w - tile
        rs, cs = win.toslices()
        cover[rs, cs] += 1
    assert (cover >= 1).all()
    assert max(wn.row_off for wn in wins) == h - tile and max(wn.col_off for wn in wins) == w - tile
    # interior neighbours share exactly `overlap` pixels
    rows = sorted({int(wn.row_off) for wn in wins})
    if len(rows) > 2:
        assert rows[1] - rows[0] == tile - overlap


def test_window_errors() -> None:
    with pytest.raises(ValueError):
        tile_windows(10, 10, 16, 0)
    with pytest.raises(ValueError):
        tile_windows(64, 64, 16, 16)


@pytest.mark.parametrize("h,w", [(100, 70), (64, 64), (81, 130)])
def test_tiles_reassemble_into_the_scene(h: int, w: int) -> None:
    scene = np.random.default_rng(0).normal(size=(3, h, w)).astype(np.float32)
    wins = tile_windows(h, w, 32, 8)
    tiles = cut_tiles(scene, wins)  # (N, 3, 32, 32)
    assert tiles.shape == (len(wins), 3, 32, 32)
    np.testing.assert_array_equal(reassemble(tiles, wins, scene.shape), scene)


def test_tile_transform_maps_tile_pixels_to_scene_coordinates() -> None:
    scene_t = Affine(10.0, 0.0, 500_000.0, 0.0, -20.0, 5_100_000.0)
    for win in tile_windows(90, 120, 32, 8):
        t = tile_transform(scene_t, win)
        for col, row in [(0, 0), (5, 3), (31, 31)]:
            assert t @ (col, row) == pytest.approx(scene_t @ (win.col_off + col, win.row_off + row))
        assert window_from_list(window_to_list(win)) == win


def test_windows_overlap_matches_pixel_masks() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = Window(*rng.integers(0, 20, 2), *rng.integers(1, 10, 2))
        b = Window(*rng.integers(0, 20, 2), *rng.integers(1, 10, 2))
        ma = np.zeros((40, 40), bool)
        mb = np.zeros((40, 40), bool)
        ma[a.toslices()] = True
        mb[b.toslices()] = True
        assert windows_overlap(a, b) == bool((ma & mb).any())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("h,w,tile,overlap,block", [(512, 512, 64, 16, 4), (300, 200, 32, 8, 2), (200, 260, 32, 0, 3)])
def test_block_split_never_overlaps_across_splits(
    seed: int, h: int, w: int, tile: int, overlap: int, block: int
) -> None:
    wins = tile_windows(h, w, tile, overlap)
    splits = spatial_block_split(wins, tile, overlap, block, 0.15, 0.25, np.random.default_rng(seed))
    assert set(splits) - {None} == {"train", "val", "test"}
    assert split_cross_overlaps(wins, splits) == []
    # brute force on pixels: no pixel belongs to two splits
    owner = np.full((h, w), "", dtype=object)
    for win, s in zip(wins, splits, strict=True):
        if s is None:
            continue
        region = owner[win.toslices()]
        assert ((region == "") | (region == s)).all()
        region[...] = s


def test_resolve_overlaps_keeps_higher_ranked_split() -> None:
    wins = [Window(0, 0, 10, 10), Window(5, 0, 10, 10), Window(30, 0, 10, 10)]
    assert resolve_overlaps(wins, ["train", "test", "train"]) == [None, "test", "train"]
    assert resolve_overlaps(wins, ["val", "train", "val"]) == ["val", None, "val"]
    # same split: overlapping tiles are fine
    assert resolve_overlaps(wins, ["train", "train", "test"]) == ["train", "train", "test"]


def test_tile_transform_equals_rasterio_window_transform() -> None:
    import warnings

    from rasterio.windows import transform as window_transform

    scene_t = Affine(10.0, 0.5, 500_000.0, 0.2, -20.0, 5_100_000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # rasterio uses Affine `*`
        for win in tile_windows(90, 120, 32, 8):
            assert tile_transform(scene_t, win) == window_transform(win, scene_t)
