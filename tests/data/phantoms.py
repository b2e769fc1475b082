"""Prepared MRI phantoms for the tests of the training stages (``medseg demo-data`` subjects of
8 slices, prepared at 3 mm and 32², 4 partitions; 2 test, 1 validation and 3 labeled-pool
subjects, the rest unlabeled)."""

from __future__ import annotations

from pathlib import Path


def prepared_phantoms(root: Path, n_subjects: int, seed: int, size: int) -> Path:
    """Generate ``n_subjects`` phantoms of ``size``² voxels (``seed``) under ``root/raw`` and
    prepare them into ``root/prep``; returns the prepared folder."""
    from medseg.phantoms import generate_dataset
    from medseg.preprocess import preprocess

    generate_dataset(root / "raw", n_subjects=n_subjects, seed=seed, n_slices=8, size=size)
    return preprocess(
        root / "raw",
        root / "prep",
        target_spacing=(3.0, 3.0),
        image_size=(32, 32),
        partitions=4,
        n_test=2,
        n_val=1,
        n_labeled=3,
        seed=0,
    )
