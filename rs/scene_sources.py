"""The inputs of ``rs preprocess`` as scene sources: what to prepare, its manifest record, and how
to load it (one scene in memory at a time).

* GeoTIFF scenes, listed in ``scenes.json`` (:func:`demo_scenes`, as ``rs demo-data`` writes it)
  or given as ``--image/--dem/--label`` (:func:`explicit_scenes`), become
  :func:`geotiff_sources` (image bands + terrain channels, :mod:`rs.scene_channels`);
* Landslide4Sense patches (:mod:`rs.landslide4sense`) become one source per patch
  (:func:`landslide4sense_sources`); under the release's folders each source carries its official
  split (:func:`release_sources`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from rs import landslide4sense as l4s
from rs.align import LABEL_NODATA
from rs.geotiff import pixel_size_metres, read_raster, transform_to_list
from rs.scene_channels import SceneChannels, band_names, load_scene_channels
from segcore.errors import InputError

GeoTiffScene = tuple[str, Path, Path, Path | None]  # (id, image, dem, label or None)


@dataclass
class SceneSource:
    """One scene to prepare: an id, its manifest record, and how to load it. ``split`` is the
    split every tile of the scene belongs to when the input fixes it (the Landslide4Sense release
    folders); None when the splits are drawn (:mod:`rs.split_assignment`)."""

    id: str
    record: dict[str, Any]
    labeled: bool
    load: Callable[[], SceneChannels]
    split: str | None = None


def geotiff_sources(
    scenes: Sequence[GeoTiffScene], azimuth: float, altitude: float
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
            count, names = meta.count, band_names(meta.descriptions)
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


def demo_scenes(folder: Path) -> list[GeoTiffScene]:
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


def explicit_scenes(images: list[str], dems: list[str], labels: list[str]) -> list[GeoTiffScene]:
    """(id, image, dem, label) of ``--image/--dem/--label``; ids from the image file names."""
    if len(dems) != len(images):
        raise InputError(None, f"need one --dem per --image (got {len(images)} images, {len(dems)} DEMs)")
    if labels and len(labels) != len(images):
        raise InputError(
            None,
            f"need one --label per --image or none at all (got {len(images)} images, {len(labels)} labels; "
            "use 'none' for an unlabeled scene)",
        )
    out = []
    seen: set[str] = set()
    for k, (img, dem) in enumerate(zip(images, dems, strict=True)):
        lab = labels[k] if labels else None
        sid = Path(img).name.split(".")[0]
        if sid in seen:
            sid = f"{sid}_{k}"
        seen.add(sid)
        out.append((sid, Path(img), Path(dem), None if lab is None or lab.lower() == "none" else Path(lab)))
    return out


def _patch_source(p: l4s.L4SPatch, size: int, split: str | None) -> SceneSource:
    """One Landslide4Sense patch as a scene: no georeference (identity transform)."""
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

    def load() -> SceneChannels:
        channels = l4s.read_image(p.image, size)
        valid = np.isfinite(channels).all(axis=0)
        label = None
        if p.mask is not None:
            label = np.where(valid, l4s.read_mask(p.mask, size), LABEL_NODATA).astype(np.uint8)
        return SceneChannels(channels, valid, label, Affine.identity(), list(l4s.L4S_CHANNELS[:12]))

    return SceneSource(p.id, record, p.mask is not None, load, split)


def landslide4sense_sources(folder: Path) -> list[SceneSource]:
    """One source per patch of a plain Landslide4Sense folder; the patch size is the first one's."""
    patches = l4s.find_patches(folder)
    size = l4s.patch_size(patches)
    return [_patch_source(p, size, None) for p in patches]


def release_sources(patches: dict[str, list[l4s.L4SPatch]]) -> list[SceneSource]:
    """One source per patch of the release's folders (:func:`rs.landslide4sense.release_patches`),
    each with its folder's official split; every patch must be 128x128 (used as delivered)."""
    return [_patch_source(p, l4s.L4S_SIZE, l4s.RELEASE_FOLDERS[name]) for name, found in patches.items() for p in found]
