"""Full-scene prediction by sliding window, back to a GeoTIFF on the input's grid, in memory
bounded by a strip of windows, not by the scene.

The scene is read and aligned exactly as ``rs preprocess`` built the training tiles (the
channels of :func:`rs.scene_channels.load_scene_channels`, read strip by strip by
:class:`rs.scene_strips.SceneStrips`) and standardised with the training statistics of the
model's preprocessing record (or the prepared data's manifest); nodata pixels read as 0, like the
filled training pixels. Tiles of the training size slide with overlap, one row of windows at a
time; overlapping predictions are averaged with a weight that is 1 inside the tile and ramps down
linearly over the overlap towards the tile border, which hides tile seams (the border pixels of a
tile have the least context). The weighted sums are float32 and span one tile's height: once the
windows of the next row start below a row, that row is final and leaves
(:func:`stream_scene_prediction`). Nodata pixels get probability 0 for every class and label 255.

:func:`predict_scene_detailed` collects the rows in memory (evaluation, scenes of a few thousand
pixels); :func:`predict_scene_to_geotiff` writes them block by block into cloud-optimised
GeoTIFFs (:mod:`rs.cog`): the labels with a colour table, optionally the probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs.cog import BlockGeoTIFF, gdal_env
from rs.geotiff import RasterGrid, as_grid
from rs.scene_strips import SceneStrips
from rs.terrain import HILLSHADE_ALTITUDE, HILLSHADE_AZIMUTH
from rs.tiling import tile_offsets, window_from_list
from segcore.errors import InputError

PREDICTION_NODATA = 255
PredictFn = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]
# the labels' colour table: background transparent-free grey-black, landslide red, nodata transparent
CLASS_COLOURS = [(0, 0, 0, 255), (230, 25, 25, 255), (40, 120, 220, 255), (250, 200, 30, 255), (60, 180, 75, 255)]
NODATA_COLOUR = (0, 0, 0, 0)


def load_manifest(manifest: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A manifest given as a dict, a prepared-data folder, or a manifest.json path."""
    if isinstance(manifest, dict):
        return manifest
    path = Path(manifest)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise InputError(path, "no manifest.json of prepared training data here; run rs preprocess first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"manifest is not valid JSON ({err})") from err


def blend_weight(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float32 weight: 1 in the interior, linear ramp over ``overlap`` pixels
    toward each border, never 0 (border pixels of the scene have only one tile)."""
    ramp = np.minimum(np.arange(1, tile + 1), np.arange(tile, 0, -1)).astype(np.float64)
    w1 = np.minimum(ramp / max(overlap, 1), 1.0)
    return np.outer(w1, w1).astype(np.float32)


@dataclass
class ScenePrediction:
    """probabilities (K, H, W) float32 (0 at nodata), valid (H, W) bool, and the image grid."""

    probabilities: np.ndarray
    valid: np.ndarray
    grid: RasterGrid
    profile: dict[str, Any]

    def labels(self) -> np.ndarray:
        """Arg-max class per pixel, (H, W) uint8, 255 at nodata."""
        return labels_from_probabilities(self.probabilities, self.valid)


@dataclass
class RowBlock:
    """Final rows ``[row, row + n)`` of a scene prediction: probabilities (K, n, W) float32 (0 at
    nodata; None when no window has been predicted yet, i.e. every pixel uncovered) and valid (n, W)."""

    row: int
    probabilities: np.ndarray | None
    valid: np.ndarray

    def labels(self) -> np.ndarray:
        """(n, W) uint8 arg-max, 255 where invalid."""
        if self.probabilities is None:
            return np.full(self.valid.shape, PREDICTION_NODATA, dtype=np.uint8)
        return labels_from_probabilities(self.probabilities, self.valid)


def labels_from_probabilities(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(K, H, W) probabilities → (H, W) uint8 arg-max, :data:`PREDICTION_NODATA` where invalid."""
    return np.where(valid, probabilities.argmax(axis=0), PREDICTION_NODATA).astype(np.uint8)


def _as_numpy(y: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().to("cpu", torch.float32).numpy()
    return np.asarray(y, dtype=np.float32)


@dataclass(frozen=True)
class PredictionSettings:
    """What a scene prediction takes from the model's preprocessing: standardisation, tile,
    overlap, terrain settings, band count."""

    mean: np.ndarray  # (C, 1, 1) float32
    std: np.ndarray  # (C, 1, 1) float32
    tile: int
    overlap: int
    bands: int
    azimuth: float
    altitude: float


def prediction_settings(
    manifest: dict[str, Any] | str | Path, tile: int | None = None, overlap: int | None = None
) -> PredictionSettings:
    """The settings of a scene prediction from a preprocessing record or manifest; ``tile`` and
    ``overlap`` override the training's. InputError when the model was not trained on GeoTIFF scenes."""
    m = load_manifest(manifest)
    if m.get("domain") != "rs" or m.get("source") != "geotiff" or "normalization" not in m:
        raise InputError(
            None,
            "scene prediction needs a model trained on GeoTIFF scenes (domain 'rs', source 'geotiff', with "
            f"normalization); this one was trained on {m.get('source', 'unknown')!r} data",
        )
    terrain = m.get("terrain", {})
    tile = int(tile if tile is not None else m["image_size"][0])
    overlap = int(overlap if overlap is not None else m.get("overlap", tile // 4))
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    return PredictionSettings(
        mean=np.asarray(m["normalization"]["mean"], dtype=np.float32)[:, None, None],
        std=np.asarray(m["normalization"]["std"], dtype=np.float32)[:, None, None],
        tile=tile,
        overlap=overlap,
        bands=len(m["spectral_channels"]),
        azimuth=float(terrain.get("hillshade_azimuth", HILLSHADE_AZIMUTH)),
        altitude=float(terrain.get("hillshade_altitude", HILLSHADE_ALTITUDE)),
    )


def open_scene(image_path: str | Path, dem_path: str | Path, s: PredictionSettings) -> SceneStrips:
    """The scene as strips, checked against the training's band and channel counts."""
    strips = SceneStrips(image_path, dem_path, None, s.azimuth, s.altitude)
    if strips.bands != s.bands:
        strips.close()
        raise InputError(image_path, f"image has {strips.bands} band(s) but the model was trained on {s.bands}")
    if strips.channels != s.mean.shape[0]:
        strips.close()
        raise InputError(image_path, f"scene has {strips.channels} channels, the training data {s.mean.shape[0]}")
    return strips


def stream_scene_prediction(
    strips: SceneStrips,
    predict_fn: PredictFn,
    s: PredictionSettings,
    batch_size: int = 16,
    region: np.ndarray | None = None,
) -> Iterator[RowBlock]:
    """The blended prediction of the scene, row block by row block, top to bottom.

    One row of windows at a time: its input rows (C, tile, W) are read (only the rows the
    previous window row did not), standardised, cut into windows and predicted ``batch_size``
    windows per call; the float32 weighted sums (K, tile, W) are kept for the rows the next
    window row may still reach. Memory: O(tile × width), whatever the height.

    ``region`` (H, W) bool: predict only the windows that touch it; inside it the result is the
    whole-scene one (every window covering a pixel of the region touches it)."""
    h, w = strips.grid.shape
    tile, stride = s.tile, s.tile - s.overlap
    ph, pw = max(h, tile), max(w, tile)  # a scene smaller than a tile is padded with nodata
    padded_region = None
    if region is not None:
        if region.shape != (h, w):
            raise ValueError(f"region {region.shape} differs from the scene's {(h, w)}")
        padded_region = np.zeros((ph, pw), dtype=bool)
        padded_region[:h, :w] = region
    rows, cols = tile_offsets(ph, tile, stride), tile_offsets(pw, tile, stride)
    weight = blend_weight(tile, s.overlap)
    c = s.mean.shape[0]
    x = np.zeros((c, tile, pw), dtype=np.float32)  # standardised input of rows [base, base + tile)
    valid = np.zeros((tile, pw), dtype=bool)
    acc: np.ndarray | None = None  # (K, tile, pw) weighted probability sums of the same rows
    wsum = np.zeros((tile, pw), dtype=np.float32)
    base, loaded = 0, 0  # x holds scene rows [base, loaded)
    for k, r in enumerate(rows):
        shift = r - base
        if shift:  # rows above r are final and gone: move the rest up
            for buf in (x, valid, wsum) + ((acc,) if acc is not None else ()):
                buf[..., : tile - shift, :] = buf[..., shift:, :].copy()
                buf[..., tile - shift :, :] = 0
            base = r
        top, bottom = max(loaded, r), min(r + tile, h)
        if bottom > top:  # the rows of this window row not read yet
            raw, ok = strips.read(top, bottom)
            x[:, top - r : bottom - r, :w] = np.where(ok[None], (raw - s.mean) / s.std, 0.0)
            valid[top - r : bottom - r, :w] = ok
        loaded = max(loaded, r + tile)
        starts = [cc for cc in cols if padded_region is None or padded_region[r : r + tile, cc : cc + tile].any()]
        with torch.inference_mode():
            for b in range(0, len(starts), batch_size):
                chunk = starts[b : b + batch_size]
                xb = torch.from_numpy(np.stack([x[:, :, cc : cc + tile] for cc in chunk]))  # (B, C, t, t)
                yb = _as_numpy(predict_fn(xb))  # (B, K, t, t)
                if yb.ndim != 4 or yb.shape[0] != len(chunk) or yb.shape[2:] != (tile, tile):
                    raise ValueError(f"predict_fn must return (B, K, {tile}, {tile}), got {yb.shape}")
                if acc is None:
                    acc = np.zeros((yb.shape[1], tile, pw), dtype=np.float32)
                for cc, y in zip(chunk, yb, strict=True):
                    acc[:, :, cc : cc + tile] += y * weight
                    wsum[:, cc : cc + tile] += weight
        stop = min(rows[k + 1] if k + 1 < len(rows) else ph, h)
        if stop <= r:
            continue  # padding rows below a scene smaller than a tile
        n = stop - r
        covered = wsum[:n, :w] > 0
        ok = valid[:n, :w] & covered
        probs = None
        if acc is not None:
            probs = np.divide(
                acc[:, :n, :w], wsum[:n, :w], out=np.zeros((acc.shape[0], n, w), np.float32), where=covered
            )
            probs[:, ~ok] = 0.0
        yield RowBlock(r, probs, ok)
    strips.check_dem_coverage()


def predict_scene_detailed(
    image_path: str | Path,
    dem_path: str | Path,
    predict_fn: PredictFn,
    manifest: dict[str, Any] | str | Path,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 16,
    region: np.ndarray | None = None,
) -> ScenePrediction:
    """Slide ``predict_fn`` over the scene; see :func:`predict_scene`. Also returns the mask.
    The whole result is held in memory: for scenes of evaluation size (use
    :func:`predict_scene_to_geotiff` for large ones).

    ``region`` (H, W) bool: predict only the windows that touch it (e.g. the held-out area that
    evaluation scores). Inside it the result is exactly the whole-scene one, since every window
    covering a pixel of the region touches the region; pixels no window covered are invalid."""
    s = prediction_settings(manifest, tile, overlap)
    with gdal_env(), open_scene(image_path, dem_path, s) as strips:
        h, w = strips.grid.shape
        probs: np.ndarray | None = None
        valid = np.zeros((h, w), dtype=bool)
        for block in stream_scene_prediction(strips, predict_fn, s, batch_size, region):
            n = block.valid.shape[0]
            valid[block.row : block.row + n] = block.valid
            if block.probabilities is not None:
                if probs is None:
                    probs = np.zeros((block.probabilities.shape[0], h, w), dtype=np.float32)
                probs[:, block.row : block.row + n] = block.probabilities
        if probs is None:  # no window touched the region
            probs = np.zeros((1, h, w), dtype=np.float32)
        return ScenePrediction(probs, valid, strips.grid, strips.profile)


def labels_writer(path: str | Path, grid: RasterGrid, classes: list[str], block: int | None = None) -> BlockGeoTIFF:
    """The writer of a labels GeoTIFF: uint8, 255 nodata, a colour per class, nearest overviews."""
    names = ", ".join(f"{i} {c}" for i, c in enumerate(classes))
    return BlockGeoTIFF(
        path,
        grid,
        1,
        "uint8",
        nodata=PREDICTION_NODATA,
        descriptions=["class"],
        tags={"classes": f"{names}, {PREDICTION_NODATA} nodata"},
        colormap=class_colormap(len(classes)),
        overview_resampling="NEAREST",
        **({"block": block} if block else {}),
    )


def class_colormap(n_classes: int) -> dict[int, tuple[int, int, int, int]]:
    """The labels' colour table: a colour per class, nodata (255) transparent."""
    cmap = {k: CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(n_classes)}
    cmap[PREDICTION_NODATA] = NODATA_COLOUR
    return cmap


def predict_scene_to_geotiff(
    image_path: str | Path,
    dem_path: str | Path,
    predict_fn: PredictFn,
    manifest: dict[str, Any] | str | Path,
    labels_path: str | Path,
    probabilities_path: str | Path | None = None,
    classes: list[str] | None = None,
    overlap: int | None = None,
    batch_size: int = 16,
    block: int | None = None,
) -> dict[str, Any]:
    """Predict a scene of any size into cloud-optimised GeoTIFFs on the image grid, streamed:
    ``labels_path`` (uint8 classes, 255 nodata, colour table, nearest overviews) and, when given,
    ``probabilities_path`` (float32, one band per class, NaN nodata, average overviews). Memory
    is bounded by one strip of windows and one block row of the outputs. Returns the number of
    valid pixels and of pixels per class."""
    s = prediction_settings(manifest, None, overlap)
    classes = list(classes or load_manifest(manifest).get("classes") or ["background", "landslide"])
    k = len(classes)
    blocks = {"block": block} if block else {}
    counts = np.zeros(k, dtype=np.int64)
    n_valid = 0
    with gdal_env(), open_scene(image_path, dem_path, s) as strips, ExitStack() as outputs:
        labels_out = outputs.enter_context(labels_writer(labels_path, strips.grid, classes, **blocks))
        probs_out = None
        if probabilities_path is not None:
            probs_out = outputs.enter_context(
                BlockGeoTIFF(
                    probabilities_path,
                    strips.grid,
                    k,
                    "float32",
                    nodata=float("nan"),
                    descriptions=[f"p({c})" for c in classes],
                    overview_resampling="AVERAGE",
                    predictor=3,
                    **blocks,
                )
            )
        for part in stream_scene_prediction(strips, predict_fn, s, batch_size):
            labels = part.labels()
            labels_out.write_rows(labels)
            counts += np.bincount(labels[part.valid].ravel(), minlength=k)[:k]
            n_valid += int(part.valid.sum())
            if probs_out is not None:
                p = np.full((k, *part.valid.shape), np.nan, dtype=np.float32)
                if part.probabilities is not None:
                    if part.probabilities.shape[0] != k:
                        raise ValueError(f"the model predicts {part.probabilities.shape[0]} classes, not {k}")
                    p = np.where(part.valid[None], part.probabilities, np.float32(np.nan))
                probs_out.write_rows(p)
    return {"valid_pixels": n_valid, "class_pixels": counts.tolist()}


def predict_scene(
    image_path: str | Path,
    dem_path: str | Path,
    predict_fn: PredictFn,
    manifest: dict[str, Any] | str | Path,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Class probabilities (K, H, W) float32 over the whole image grid.

    ``predict_fn`` takes standardised tiles (B, C, tile, tile) float32 (a CPU tensor: move it to
    the model's device inside) and returns probabilities (B, K, tile, tile) (tensor or array);
    it is called under ``torch.inference_mode()``. ``manifest``: the training data's manifest (dict,
    folder or path): channels, normalisation, terrain options, default tile and overlap.
    Nodata pixels are 0 in every class. InputError naming the image if its band count differs
    from training, and the usual read/alignment errors (no CRS, DEM not overlapping...).
    """
    return predict_scene_detailed(image_path, dem_path, predict_fn, manifest, tile, overlap, batch_size).probabilities


def write_prediction_geotiff(
    path: str | Path,
    labels: np.ndarray,
    profile: dict[str, Any] | RasterGrid,
    classes: list[str] | None = None,
    block: int | None = None,
) -> None:
    """Write class labels (H, W) uint8 with the input's CRS, transform and shape; 255 = nodata;
    a cloud-optimised GeoTIFF with a colour table, as :func:`predict_scene_to_geotiff` writes.

    ``profile``: the input image's rasterio profile (``crs``, ``transform``, ``width``,
    ``height``) or its :class:`RasterGrid`. Written atomically.
    """
    grid = as_grid(profile)
    if labels.shape != grid.shape:
        raise ValueError(f"labels {labels.shape} do not match the input grid {grid.shape}")
    with gdal_env(), labels_writer(path, grid, classes or ["background", "landslide"], block) as out:
        out.write_rows(labels.astype(np.uint8))


def split_mask(manifest: dict[str, Any] | str | Path, scene: str, split: str) -> np.ndarray:
    """(H, W) bool: pixels of ``scene`` covered by its tiles of ``split`` ("train", "val",
    "test"), to score a full-scene prediction on the held-out area only."""
    m = load_manifest(manifest)
    if scene not in m.get("scenes", {}):
        raise InputError(
            None,
            f"scene '{scene}' is not in the prepared data (have {sorted(m.get('scenes', {}))[:5]}...)",
        )
    rec = m["scenes"][scene]
    h, w = int(rec["height"]), int(rec["width"])
    tile = int(m["image_size"][0])
    mask = np.zeros((max(h, tile), max(w, tile)), dtype=bool)
    for g in m["groups"].values():
        if g["scene"] == scene and g["split"] == split:
            rs, cs = window_from_list(g["window"]).toslices()
            mask[rs, cs] = True
    return mask[:h, :w]


__all__ = [
    "PREDICTION_NODATA",
    "ScenePrediction",
    "blend_weight",
    "labels_from_probabilities",
    "load_manifest",
    "predict_scene",
    "predict_scene_detailed",
    "predict_scene_to_geotiff",
    "split_mask",
    "stream_scene_prediction",
    "write_prediction_geotiff",
]
