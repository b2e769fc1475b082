"""The unlabeled stream of semi-supervised fine-tuning: which samples, read without labels.

The stream is every training sample whose label the run does not use: the ``unlabeled`` split
(MRI: subjects without stored labels; remote sensing: every training tile) together with the
labeled pool (``labeled``) minus the groups the run's labeled set holds. The ``val`` and
``test`` groups are never in it (val selects the model, test scores it). The dataset is read with
``with_label=False``: a pseudo-label can only come from a prediction on an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segcore.errors import InputError
from segcore.prepared import PreparedData, PreparedDataset


def unlabeled_groups(data: PreparedData, labeled: Sequence[str]) -> list[str]:
    """Groups of the unlabeled stream (module docstring), in stored order of the splits; an
    :class:`InputError` when the prepared data put a validation or test group among them."""
    chosen = set(labeled)
    groups = [
        g for g in dict.fromkeys(data.split_groups("unlabeled") + data.split_groups("labeled")) if g not in chosen
    ]
    held_out = set(data.split_groups("val")) | set(data.split_groups("test"))
    leaked = sorted(held_out.intersection(groups))
    if leaked:
        raise InputError(
            data.folder,
            f"validation/test groups {leaked[:5]} are also in the unlabeled or labeled pool; they cannot be "
            "unlabeled data (re-run preprocess)",
        )
    return groups


def unlabeled_dataset(data: PreparedData, labeled: Sequence[str]) -> PreparedDataset:
    """The unlabeled stream as a dataset of images without labels; :class:`InputError` when empty."""
    groups = unlabeled_groups(data, labeled)
    indices = data.sample_indices(groups)
    if len(indices) == 0:
        raise InputError(
            data.folder, "semi-supervised fine-tuning needs unlabeled samples: the unlabeled pool is empty"
        )
    return PreparedDataset(data, indices, with_label=False)


def label_prior(data: PreparedData, labeled: Sequence[str]) -> list[float]:
    """Class frequencies (K,) of the labeled pixels of the groups ``labeled`` (the run's labeled
    set, nothing else), ignored pixels left out, with one pseudo-count per class (Laplace), so a
    class absent from the labeled set keeps a small positive frequency."""
    k = data.num_classes
    counts = np.ones(k, dtype=np.float64)
    for i in data.sample_indices(labeled):
        y = np.asarray(data.labels[i]).ravel()
        counts += np.bincount(y[(y != data.ignore_index) & (y < k)], minlength=k)[:k]
    return (counts / counts.sum()).tolist()
