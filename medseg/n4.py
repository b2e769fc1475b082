"""N4 bias-field correction (Tustison et al., IEEE TMI 2010) of one MRI volume, with SimpleITK.

MRI intensities carry a smooth multiplicative field from the coil sensitivities: the same
tissue is brighter near a receive coil. N4 fits that field as a B-spline in the log domain
over a foreground mask (Otsu threshold) and divides it out. ``medseg preprocess --n4`` runs it
on each volume before the percentile normalisation; it is off by default.

The fit runs on a copy shrunk in-plane (at most 4x, as is usual for N4: the field is smooth,
so a coarse grid resolves it and the fit is ~10x faster); the field is then evaluated on the
full grid and the full-resolution volume is divided by it. Only voxels > 0 take part in the
fit (the log of zero or negative values is undefined); the field is applied everywhere.

The fit runs on one ITK thread: with several, its reductions add in another order and the field
differs in the last digits (up to 2.5e-3 of the intensity on a 128 x 128 x 10 test volume), so
the result would depend on the machine's core count and on ``medseg preprocess --workers``.
Volumes are corrected in parallel by ``--workers`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_SHRINK = 4


def shrink_factors(shape: Sequence[int]) -> list[int]:
    """Per-axis shrink of the fitting grid: up to :data:`MAX_SHRINK`, keeping >= 16 voxels per
    axis, so thick-slice stacks (ACDC: ~10 slices) are not shrunk through-plane."""
    return [max(1, min(MAX_SHRINK, int(n) // 16)) for n in shape]


def n4_correct(data: np.ndarray, spacing: Sequence[float], iterations: Sequence[int] = (50, 50, 50, 50)) -> np.ndarray:
    """Divide the N4-estimated bias field out of ``data``.

    ``data``: (X, Y, Z) intensities; ``spacing``: voxel sizes (mm) of those axes;
    ``iterations``: maximum iterations per fitting level (its length is the number of levels,
    each doubling the B-spline grid). Returns float32 (X, Y, Z), the corrected intensities
    (their overall scale follows the field's normalisation, which the percentile scaling after
    it removes). A volume with no positive voxel is returned unchanged.
    """
    import SimpleITK as sitk  # imported here: preprocessing without --n4 does not need it

    data = np.asarray(data, dtype=np.float32)
    if not (data > 0).any():
        return data.copy()
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))  # SimpleITK arrays are (Z, Y, X)
    image.SetSpacing([float(s) for s in spacing])
    mask = sitk.OtsuThreshold(image, 0, 1, 200)
    positive = sitk.GetImageFromArray(np.ascontiguousarray((data > 0).T).astype(np.uint8))
    positive.CopyInformation(image)
    mask = sitk.And(mask, positive)
    if not sitk.GetArrayViewFromImage(mask).any():  # Otsu found nothing above its threshold
        mask = positive
    factors = shrink_factors(data.shape)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # deterministic: see the module docstring
    try:
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
        corrector.Execute(sitk.Shrink(image, factors), sitk.Shrink(mask, factors))
        log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image)).T
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return (data / np.exp(log_field)).astype(np.float32)
