"""Seeded cardiac short-axis MRI phantoms written as an nnU-Net raw dataset (``medseg demo-data``).

Labels follow ACDC: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity (papillary
muscles included, as in ACDC, although they are as dark as myocardium). Slice 0 is the base,
the last slice the apex, and anatomy changes along the stack so that a slice's position carries
information (the global contrastive loss G^D relies on it):

* LV: a ring whose cavity shrinks like a half-ellipsoid and closes in the last 5-20% of slices,
  leaving a small solid myocardial cap at the apex;
* RV: a crescent against the septum that shrinks faster and vanishes at 55-80% of the stack;
* an aorta-like bright blob (label 0) on basal slices, epicardial fat, 3-5 textured organs
  (some as bright as blood, some lung-dark) and a body ellipse with a bright fat rim.

Per subject: centre +-8 px, in-plane rotation +-45 deg, LV radius 11-16 px, aspect 0.75-1.3,
wall 3.5-7 px, blur, a +-10-25% smooth bias field, a global intensity scale 0.6-1.4 and Rician
noise. Geometry on disk: 1.4-1.6 mm in-plane, 8-10 mm between slices, an oblique rotation of
10-30 deg, a non-zero origin, and for half of the subjects a different voxel axis order or
flipped axes (same anatomy in world space, so canonical reorientation makes them agree).

Everything is vectorised over (Z, X, Y); each subject has its own random stream derived from
(seed, subject index), so a subject does not depend on how many are generated.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from medseg.config import MRIDemoDataConfig
from segcore.config import to_record
from segcore.outputs import atomic_dir, write_json, write_yaml
from segcore.salts import PHANTOM_SALT

log = logging.getLogger(__name__)

CLASSES = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}

# Storage variants as nibabel orientation arrays (row i: output axis and flip of input axis i),
# applied to the (X, Y, Z) phantom; the pattern repeats every 6 subjects.
STORAGE_VARIANTS: dict[str, list[list[int]]] = {
    "as_generated": [[0, 1], [1, 1], [2, 1]],
    "slice_flipped": [[0, 1], [1, 1], [2, -1]],
    "slice_first": [[1, 1], [2, 1], [0, 1]],
    "inplane_swapped_x_flipped": [[1, -1], [0, 1], [2, 1]],
}
_VARIANT_CYCLE = (
    "as_generated",
    "slice_flipped",
    "as_generated",
    "slice_first",
    "as_generated",
    "inplane_swapped_x_flipped",
)


def _profile(t: np.ndarray, t_end: float, power: float) -> np.ndarray:
    """Half-ellipsoid-like radius profile: 1 at t=0, falling to 0 at ``t_end`` (0 beyond)."""
    return np.sqrt(np.clip(1.0 - (t / t_end) ** power, 0.0, 1.0))


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma: tuple[float, float, float]
) -> np.ndarray:
    """Zero-mean, unit-std smooth random field of ``shape`` (Z, X, Y)."""
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def _rotation(rng: np.random.Generator, min_deg: float, max_deg: float) -> np.ndarray:
    """3x3 rotation by an angle in [min_deg, max_deg] about a random axis (Rodrigues)."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(min_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def phantom_volume(rng: np.random.Generator, n_slices: int = 12, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """One subject: ``(image, labels)``, both (X, Y, Z) = (size, size, n_slices), Z=0 the base.

    image float32 (arbitrary units, blood ~0.8-1.0 before the global scale), labels uint8.
    """
    shape = (n_slices, size, size)  # (Z, X, Y) while drawing
    t = np.linspace(0.0, 1.0, n_slices)[:, None, None]  # (Z, 1, 1) base -> apex
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    gx, gy = gx[None], gy[None]  # (1, X, Y)

    # --- heart pose and shape -------------------------------------------------------------
    centre = size / 2 + rng.uniform(-8, 8, size=2)
    drift = rng.uniform(-3, 3, size=2)  # the long axis is not exactly through-plane
    theta = rng.uniform(-math.pi / 4, math.pi / 4)
    r0 = rng.uniform(11, 16)
    aspect = rng.uniform(0.75, 1.3)
    wall = rng.uniform(3.5, 7)
    t_close = rng.uniform(0.80, 0.95)  # cavity closes in the last 5-20% of the stack
    t_apex = rng.uniform(1.05, 1.2)  # outer wall still a small cap at the last slice
    t_rv = rng.uniform(0.55, 0.80)  # RV gone from here on

    dx = gx - (centre[0] + drift[0] * t)
    dy = gy - (centre[1] + drift[1] * t)
    u = math.cos(theta) * dx + math.sin(theta) * dy  # heart frame, (Z, X, Y)
    v = -math.sin(theta) * dx + math.cos(theta) * dy
    phi = np.arctan2(v, u)
    bumps = (
        1
        + rng.uniform(0, 0.06) * np.cos(phi - rng.uniform(0, 2 * math.pi))
        + rng.uniform(0, 0.05) * np.cos(2 * phi - rng.uniform(0, 2 * math.pi))
    )
    rho = np.sqrt(u**2 / aspect + v**2 * aspect) / bumps  # elliptical radius, px

    r_cav = r0 * _profile(t, t_close, 2.5)  # (Z, 1, 1)
    r_out = np.maximum(np.where(r_cav > 0, r_cav + wall, 0.0), (r0 + wall) * _profile(t, t_apex, 2.5))
    lv_cavity = rho < r_cav
    lv_outer = rho < r_out

    # RV: crescent whose far edge lies `thick` beyond the LV epicardium, on the -u side
    s_rv = _profile(t, t_rv, 2.0)
    rv_dir = math.pi + rng.uniform(-0.35, 0.35)
    p = math.cos(rv_dir) * u + math.sin(rv_dir) * v  # along the RV direction
    q = -math.sin(rv_dir) * u + math.cos(rv_dir) * v
    r_out0 = r0 + wall
    thick = r_out0 * rng.uniform(0.4, 0.7) * s_rv
    half_p = r_out0 * rng.uniform(0.8, 1.1) * np.maximum(s_rv, 1e-3)
    half_q = r_out0 * rng.uniform(1.1, 1.5) * (0.6 + 0.4 * s_rv)
    c_p = r_out + thick - half_p
    e_rv = ((p - c_p) / half_p) ** 2 + (q / half_q) ** 2
    rv_cavity = (e_rv < 1) & ~lv_outer & (s_rv > 0)
    rv_wall_px = rng.uniform(1.0, 2.0)
    e_rv_outer = ((p - c_p) / (half_p + rv_wall_px)) ** 2 + (q / (half_q + rv_wall_px)) ** 2
    rv_wall = (e_rv_outer < 1) & ~rv_cavity & ~lv_outer & (s_rv > 0)

    # papillary muscles: dark blobs touching the LV wall, labelled LV (ACDC convention)
    papillary = np.zeros(shape, dtype=bool)
    mid = (t > 0.15) & (t < t_close - 0.08)
    for _ in range(2):
        ang = rng.uniform(-1.2, 1.2)  # opposite the RV
        rad = rng.uniform(1.5, 2.5)
        dist = np.maximum(r_cav - rad * 0.9, 0)
        pu, pv = dist * math.cos(ang), dist * math.sin(ang)
        papillary |= ((u - pu) ** 2 + (v - pv) ** 2 < rad**2) & mid & (r_cav > 3 * rad) & lv_cavity

    # epicardial fat: a bright band over part of the epicardium, outside the RV
    fat_start = rng.uniform(0, 2 * math.pi)
    fat_width = rng.uniform(0.8, 2.0)
    in_sector = np.mod(phi - fat_start, 2 * math.pi) < fat_width
    epi_fat = (
        in_sector
        & (rho >= r_out + 0.5)
        & (rho < r_out + 0.5 + rng.uniform(1.5, 3.0))
        & ~rv_cavity
        & ~rv_wall
        & (r_out > 0)
    )

    # aorta-like blob on basal slices: as bright as blood, label background
    t_aorta = rng.uniform(0.12, 0.3)
    a_rad = rng.uniform(5, 8) * _profile(t, t_aorta, 2.0)
    a_ang = math.pi / 2 + rng.uniform(-0.4, 0.4)
    a_dist = r_out0 + rng.uniform(6, 9)
    aorta = (
        ((u - a_dist * math.cos(a_ang)) ** 2 + (v - a_dist * math.sin(a_ang)) ** 2 < a_rad**2)
        & ~lv_outer
        & ~rv_cavity
        & ~rv_wall
    )

    # --- body, organs, intensities ----------------------------------------------------------
    blood = rng.uniform(0.8, 1.0)
    myo = rng.uniform(0.25, 0.4)
    tissue = rng.uniform(0.3, 0.45)
    fat = rng.uniform(0.9, 1.1)
    texture = _smooth_noise(rng, shape, (0.7, 3.0, 3.0))
    fine = _smooth_noise(rng, shape, (0.3, 1.0, 1.0))

    bc = size / 2 + rng.uniform(-3, 3, size=2)
    b_ang = rng.uniform(-0.2, 0.2)
    b_a, b_b = size * rng.uniform(0.44, 0.5), size * rng.uniform(0.34, 0.42)
    bx, by = gx - bc[0], gy - bc[1]
    bu = math.cos(b_ang) * bx + math.sin(b_ang) * by
    bv = -math.sin(b_ang) * bx + math.cos(b_ang) * by
    body_r = np.sqrt((bu / b_a) ** 2 + (bv / b_b) ** 2)  # 1 on the skin, (1, X, Y)
    rim = rng.uniform(2.0, 4.0) / min(b_a, b_b)
    image = np.where(body_r < 1, tissue * (1 + 0.12 * texture), 0.0)
    image = np.where((body_r < 1) & (body_r > 1 - rim), fat * (1 + 0.05 * fine), image)

    n_organs = int(rng.integers(3, 6))
    organ_levels = [rng.uniform(0.8, 1.0), rng.uniform(0.03, 0.12)]  # one blood-bright, one lung-dark
    organ_levels += [rng.uniform(0.03, 1.0) for _ in range(n_organs - 2)]
    heart_c = centre
    for level in organ_levels:
        semi_a, semi_b = rng.uniform(6, 14), rng.uniform(4, 10)
        ang = rng.uniform(0, 2 * math.pi)
        dist = r_out0 * rng.uniform(1.3, 1.8) + semi_a * rng.uniform(0.5, 0.9)  # abutting the heart
        oc = heart_c + dist * np.array([math.cos(ang), math.sin(ang)])
        o_ang = rng.uniform(0, math.pi)
        t_c, half = rng.uniform(0, 1), rng.uniform(0.5, 1.5)
        scale = np.sqrt(np.clip(1 - ((t - t_c) / half) ** 2, 0, 1)) + 1e-6  # organs come and go along the stack
        ox, oy = gx - oc[0], gy - oc[1]
        ou = math.cos(o_ang) * ox + math.sin(o_ang) * oy
        ov = -math.sin(o_ang) * ox + math.cos(o_ang) * oy
        organ = ((ou / (semi_a * scale)) ** 2 + (ov / (semi_b * scale)) ** 2 < 1) & (body_r < 1 - rim)
        image = np.where(organ, level * (1 + rng.uniform(0.05, 0.25) * texture + 0.05 * fine), image)

    heart_bg = (rho < r_out + 0.5 + 3.0) | (e_rv_outer < 1.2)  # clear organs from around the heart
    image = np.where(heart_bg & ~epi_fat, tissue * (1 + 0.1 * texture), image)
    image = np.where(epi_fat, fat * (1 + 0.05 * fine), image)
    image = np.where(rv_wall, myo * (1 + 0.05 * fine), image)
    image = np.where(rv_cavity, blood * (1 + 0.06 * texture), image)
    image = np.where(lv_outer, myo * (1 + 0.06 * fine), image)
    image = np.where(lv_cavity, blood * (1 + 0.06 * texture), image)
    image = np.where(papillary, myo * (1 + 0.05 * fine), image)
    image = np.where(aorta, blood * rng.uniform(0.95, 1.1), image)

    labels = np.zeros(shape, dtype=np.uint8)
    labels[rv_cavity] = 1
    labels[lv_outer] = 2
    labels[lv_cavity] = 3

    # --- acquisition: blur, bias field, scale, Rician noise ---------------------------------
    image = gaussian_filter(image, (0.0, *(rng.uniform(0.5, 1.0),) * 2))
    nx, ny = (gx - size / 2) / (size / 2), (gy - size / 2) / (size / 2)
    coef = rng.standard_normal(5)
    bias = coef[0] * nx + coef[1] * ny + coef[2] * nx**2 + coef[3] * ny**2 + coef[4] * nx * ny  # (1, X, Y)
    bias = bias - bias.mean()
    bias = 1 + rng.uniform(0.10, 0.25) * bias / (np.abs(bias).max() + 1e-12)
    image = image * bias * rng.uniform(0.6, 1.4)
    sigma = rng.uniform(0.02, 0.06)
    image = np.sqrt((image + sigma * rng.standard_normal(shape)) ** 2 + (sigma * rng.standard_normal(shape)) ** 2)

    # (Z, X, Y) -> (X, Y, Z)
    return np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.float32), np.ascontiguousarray(
        labels.transpose(1, 2, 0)
    )


def phantom_affine(
    rng: np.random.Generator, spacing_inplane: tuple[float, float], spacing_through: tuple[float, float]
) -> np.ndarray:
    """4x4 voxel-to-world affine (mm): anisotropic spacing, 10-30 deg oblique, non-zero origin.

    The third (slice) axis points roughly along +S for every subject, so after canonical
    reorientation slice 0 is the base for all of them.
    """
    s = rng.uniform(*spacing_inplane)
    sz = rng.uniform(*spacing_through)
    affine = np.eye(4)
    affine[:3, :3] = _rotation(rng, 10.0, 30.0) @ np.diag([s, s, sz])
    affine[:3, 3] = rng.uniform(-120, 120, size=3)
    # NIfTI stores the sform as float32: round now so the file and this matrix agree exactly
    return affine.astype(np.float32).astype(np.float64)


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


def _write_dataset(
    tmp: Path,
    n_subjects: int,
    seed: int,
    n_slices: int,
    size: int,
    spacing_inplane: tuple[float, float],
    spacing_through: tuple[float, float],
    vary_storage: bool,
) -> None:
    (tmp / "imagesTr").mkdir()
    (tmp / "labelsTr").mkdir()
    variants: dict[str, str] = {}
    for i in range(n_subjects):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), i, PHANTOM_SALT]))
        image, labels = phantom_volume(rng, n_slices, size)
        affine = phantom_affine(rng, spacing_inplane, spacing_through)
        variant = _VARIANT_CYCLE[i % len(_VARIANT_CYCLE)] if vary_storage else "as_generated"
        ornt = np.array(STORAGE_VARIANTS[variant])
        name = f"case_{i:03d}"
        img = _nifti(image, affine).as_reoriented(ornt)
        lab = _nifti(labels, affine).as_reoriented(ornt)
        nib.save(
            _nifti(np.asarray(img.dataobj, dtype=np.float32), img.affine), tmp / "imagesTr" / f"{name}_0000.nii.gz"
        )
        lab_img = _nifti(np.asarray(lab.dataobj, dtype=np.uint8), lab.affine)
        lab_img.set_data_dtype(np.uint8)
        nib.save(lab_img, tmp / "labelsTr" / f"{name}.nii.gz")
        variants[name] = variant
    write_json(
        tmp / "dataset.json",
        {
            "name": "CardiacPhantoms",
            "description": "Seeded cardiac short-axis MRI phantoms (medseg demo-data); labels follow ACDC",
            "channel_names": {"0": "MRI"},
            "labels": CLASSES,
            "numTraining": n_subjects,
            "file_ending": ".nii.gz",
            "seed": int(seed),
            "storage_variants": variants,
        },
    )


def generate_dataset(
    out: str | Path,
    n_subjects: int = 60,
    seed: int = 0,
    n_slices: int = 12,
    size: int = 96,
    spacing_inplane: tuple[float, float] = (1.4, 1.6),
    spacing_through: tuple[float, float] = (8.0, 10.0),
    vary_storage: bool = True,
    config: dict[str, Any] | None = None,
) -> None:
    """Write ``n_subjects`` phantoms as an nnU-Net v2 raw dataset into ``out`` (atomically).

    Files: ``imagesTr/case_XXX_0000.nii.gz`` (float32), ``labelsTr/case_XXX.nii.gz`` (uint8),
    ``dataset.json``. ``vary_storage`` stores subjects 1, 3, 5 (mod 6) with permuted or
    flipped voxel axes (see :data:`STORAGE_VARIANTS`). ``config`` (the stage's resolved
    arguments) is written as ``config.yaml``. Same seed, same arrays.
    """
    if n_subjects < 1 or n_slices < 2 or size < 32:
        raise ValueError("need n_subjects >= 1, n_slices >= 2 and size >= 32")
    with atomic_dir(out) as tmp:
        _write_dataset(tmp, n_subjects, seed, n_slices, size, spacing_inplane, spacing_through, vary_storage)
        if config is not None:
            write_yaml(tmp / "config.yaml", config)
    log.info("wrote %d phantom subjects to %s", n_subjects, out)


def run_demo_data(cfg: MRIDemoDataConfig) -> None:
    """Run ``medseg demo-data``: the dataset plus ``config.yaml`` of its options."""
    generate_dataset(
        Path(cfg.out),
        n_subjects=cfg.n_subjects,
        seed=cfg.seed,
        n_slices=cfg.n_slices,
        size=cfg.size,
        vary_storage=cfg.vary_storage,
        config=to_record(cfg),
    )
