"""Segmentation metrics shared by both domains, and metrics.json-ready summaries.

Conventions (each one is tested):

- Confusion matrices have rows = true class, columns = predicted class. Pixels whose target
  equals ``ignore_index`` (nodata, unlabeled) or that ``valid`` marks False are left out.
- IoU of a class absent from both target and prediction is 0/0 = NaN, and mIoU is the mean
  over the other classes (those present in the target or the prediction). A class present in
  either has a defined IoU (0 when it is only predicted, or only in the target).
- Positive-class (landslide) precision, recall, F1: F1 = 2TP / (2TP + FP + FN). A ratio whose
  denominator is 0 while the other counts are not all zero is 0 (no positive predicted:
  precision 0; no positive in the target: recall 0), as scikit-learn's default
  ``zero_division=0``. When TP = FP = FN = 0 (no positive anywhere) all three are NaN.
- Volume Dice follows MONAI's ``DiceMetric(ignore_empty=True)``: NaN when the class is absent
  from the target, whatever the prediction (false positives in a volume without the class
  are not scored); NaN values are left out of every mean.
- HD95 (mm, MONAI ``compute_hausdorff_distance`` with ``percentile=95``, symmetric): NaN
  when the class is absent from both volumes; ``inf`` when it is absent from exactly one (a
  missed or hallucinated structure has no finite distance; MONAI itself returns NaN there,
  which would hide the miss). Summaries average finite values and count the infinite ones.
- JSON summaries hold plain floats; NaN and inf become ``None`` (strict JSON has neither).

Spacing is given in the array's own axis order, e.g. ``(dz, dy, dx)`` for a ``(D, H, W)``
volume (a NIfTI's ``(dx, dy, dz)`` must be reordered to match the array).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from segcore.labels import IGNORE_INDEX

ArrayLike = np.ndarray | torch.Tensor


def confusion_matrix(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    ignore_index: int | None = IGNORE_INDEX,
    valid: ArrayLike | None = None,
) -> ArrayLike:
    """``(K, K)`` int64 counts, rows = true class, columns = predicted class.

    ``pred`` and ``target`` are integer label maps of one shape (any number of dims). Pixels
    with ``target == ignore_index`` or ``valid == False`` are excluded. Any other target or
    prediction outside ``0..K-1`` raises ``ValueError``. NumPy inputs give a NumPy matrix;
    torch inputs give a torch matrix on their device (sums across processes stay on device).
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if valid is not None and tuple(valid.shape) != tuple(target.shape):
        raise ValueError(f"valid shape {tuple(valid.shape)} != target shape {tuple(target.shape)}")
    if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
        return _confusion_matrix_torch(pred, target, num_classes, ignore_index, valid)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    keep = np.ones_like(target, dtype=bool) if ignore_index is None else target != ignore_index
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool).reshape(-1)
    pred, target = pred[keep], target[keep]
    _check_range(pred, target, num_classes)
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)  # (K true, K pred)


def _confusion_matrix_torch(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    ignore_index: int | None,
    valid: ArrayLike | None,
) -> torch.Tensor:
    target = torch.as_tensor(target)
    pred = torch.as_tensor(pred, device=target.device).reshape(-1).long()
    target = target.reshape(-1).long()
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    if valid is not None:
        keep &= torch.as_tensor(valid, device=target.device).reshape(-1).bool()
    pred, target = pred[keep], target[keep]
    _check_range(pred, target, num_classes)
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)  # (K true, K pred)


def _check_range(pred: ArrayLike, target: ArrayLike, num_classes: int) -> None:
    for name, values in (("target", target), ("pred", pred)):
        if values.numel() if isinstance(values, torch.Tensor) else values.size:
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= num_classes:
                raise ValueError(
                    f"{name} holds class {low if low < 0 else high} outside 0..{num_classes - 1} "
                    "(and it is not the ignore index)"
                )


def _ratio(num: float, den: float, zero_if_den_zero: bool) -> float:
    if den > 0:
        return num / den
    return 0.0 if zero_if_den_zero else math.nan


def segmentation_scores(cm: ArrayLike, positive_class: int = 1) -> dict[str, Any]:
    """Scores from a ``(K, K)`` confusion matrix (rows = true class).

    Returns ``iou`` (list of K floats, NaN for a class absent from target and prediction),
    ``miou`` (mean over the non-NaN IoUs), and for ``positive_class``: ``precision``,
    ``recall``, ``f1``, ``iou_positive``; plus ``overall_accuracy`` (NaN for an empty matrix).
    See the module docstring for the 0/0 conventions.
    """
    cm = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (K, K), got {cm.shape}")
    if not 0 <= positive_class < cm.shape[0]:
        raise ValueError(f"positive_class {positive_class} outside 0..{cm.shape[0] - 1}")
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    true_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    union = true_count + pred_count - tp
    iou = [float(t / u) if u > 0 else math.nan for t, u in zip(tp, union, strict=True)]
    defined = [v for v in iou if not math.isnan(v)]
    tp_p = tp[positive_class]
    fp = pred_count[positive_class] - tp_p
    fn = true_count[positive_class] - tp_p
    anything = tp_p + fp + fn > 0  # positive class occurs in target or prediction
    total = cm.sum()
    return {
        "iou": iou,
        "miou": float(np.mean(defined)) if defined else math.nan,
        "iou_positive": iou[positive_class],
        "precision": _ratio(tp_p, tp_p + fp, anything),
        "recall": _ratio(tp_p, tp_p + fn, anything),
        "f1": _ratio(2 * tp_p, 2 * tp_p + fp + fn, anything),
        "overall_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
    }


def json_float(value: float) -> float | None:
    """A plain float for JSON; NaN and +-inf become ``None``."""
    value = float(value)
    return value if math.isfinite(value) else None


def summarise_segmentation(
    cm: ArrayLike, class_names: Sequence[str] | None = None, positive_class: int = 1
) -> dict[str, Any]:
    """metrics.json-ready remote-sensing scores from a ``(K, K)`` confusion matrix.

    Returns ``{"summary": {...}, "class_names": [...], "n_pixels": int,
    "confusion_matrix": [[...]]}``. ``summary`` holds only scalars (what ``segcore.report``
    tables): ``miou``, ``iou_<name>`` per class (e.g. ``iou_landslide``), ``precision``,
    ``recall``, ``f1`` (of ``positive_class``) and ``overall_accuracy``; NaN becomes ``None``.
    """
    cm_np = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    names = [str(c) for c in range(cm_np.shape[0])] if class_names is None else [str(n) for n in class_names]
    if len(names) != cm_np.shape[0]:
        raise ValueError(f"{len(names)} class names for a {cm_np.shape[0]}-class confusion matrix")
    scores = segmentation_scores(cm_np, positive_class)
    summary: dict[str, float | None] = {"miou": json_float(scores["miou"])}
    summary.update({f"iou_{n}": json_float(v) for n, v in zip(names, scores["iou"], strict=True)})
    for key in ("precision", "recall", "f1", "overall_accuracy"):
        summary[key] = json_float(scores[key])
    return {
        "summary": summary,
        "class_names": names,
        "n_pixels": int(cm_np.sum()),
        "confusion_matrix": cm_np.astype(np.int64).tolist(),
    }


def _foreground(num_classes: int, include_background: bool) -> range:
    return range(0 if include_background else 1, num_classes)


def _as_volume(a: ArrayLike, name: str) -> np.ndarray:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.ndim != 3:
        raise ValueError(f"{name} must be a (D, H, W) label volume, got shape {a.shape}")
    return a


def dice_per_class_3d(
    pred: ArrayLike, target: ArrayLike, num_classes: int, include_background: bool = False
) -> dict[int, float]:
    """Dice of each class over whole ``(D, H, W)`` label volumes: ``2|P∩T| / (|P| + |T|)``.

    Same values as MONAI ``compute_dice(..., ignore_empty=True)`` on one-hot volumes: NaN when
    the class is absent from ``target``. Classes 1..K-1 unless ``include_background``.
    """
    pred, target = _as_volume(pred, "pred"), _as_volume(target, "target")
    cm = confusion_matrix(pred, target, num_classes, ignore_index=None)
    true_count, pred_count = cm.sum(axis=1), cm.sum(axis=0)
    return {
        k: float(2 * cm[k, k] / (true_count[k] + pred_count[k])) if true_count[k] > 0 else math.nan
        for k in _foreground(num_classes, include_background)
    }


def hd95_per_class_3d(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    spacing: Sequence[float],
    include_background: bool = False,
) -> dict[int, float]:
    """Symmetric 95th-percentile Hausdorff distance in mm per class of ``(D, H, W)`` volumes.

    ``spacing`` is the voxel size in mm along the array's axes (D, H, W). Computed by MONAI
    ``compute_hausdorff_distance(percentile=95, spacing=spacing)`` on each class's binary
    masks; NaN when the class is in neither volume, ``inf`` when in exactly one.
    """
    pred, target = _as_volume(pred, "pred"), _as_volume(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3:
        raise ValueError(f"spacing needs 3 values (D, H, W axes), got {spacing}")
    out: dict[int, float] = {}
    for k in _foreground(num_classes, include_background):
        p, t = pred == k, target == k
        has_p, has_t = bool(p.any()), bool(t.any())
        if not has_p and not has_t:
            out[k] = math.nan
        elif has_p != has_t:
            out[k] = math.inf
        else:
            with warnings.catch_warnings():  # MONAI deprecation chatter about its own internals
                warnings.simplefilter("ignore")
                # imported here: MONAI's import costs ~3 s per process, needed only for HD95
                from monai.metrics import compute_hausdorff_distance

                hd = compute_hausdorff_distance(
                    torch.from_numpy(p)[None, None],  # (1, 1, D, H, W)
                    torch.from_numpy(t)[None, None],
                    include_background=True,  # the single channel is this class
                    percentile=95,
                    spacing=spacing,
                )
            out[k] = float(hd.reshape(-1)[0])
    return out


def score_volume(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    spacing: Sequence[float],
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Dice and HD95 of the foreground classes of one subject, keyed by class name.

    ``class_names`` names classes 0..K-1 (background first); default ``"1"``, ``"2"``, ...
    Returns ``{"dice": {name: v}, "hd95": {name: v}}`` with raw floats (NaN / inf kept).
    """
    names = [str(c) for c in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    dice = dice_per_class_3d(pred, target, num_classes)
    hd95 = hd95_per_class_3d(pred, target, num_classes, spacing)
    return {
        "dice": {names[k]: v for k, v in dice.items()},
        "hd95": {names[k]: v for k, v in hd95.items()},
    }


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample SD (ddof=1) of the finite values; counts of NaN and inf left out."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "mean": json_float(finite.mean()) if finite.size else None,
        "std": json_float(finite.std(ddof=1)) if finite.size > 1 else None,
        "n": int(finite.size),
        "n_nan": int(np.isnan(arr).sum()),
        "n_inf": int(np.isinf(arr).sum()),
    }


def summarise_mri(subject_scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """metrics.json-ready summary of :func:`score_volume` results keyed by subject id.

    Per subject: each metric's mean over its classes (NaN left out; for HD95 inf left out too,
    and counted per class). ``dice_mean`` / ``hd95_mean``: mean over subjects of those subject
    means (the paper's order: over classes, then over subjects), ``dice_std`` / ``hd95_std``
    their sample SD (ddof=1; ``None`` for one subject). ``dice_<class>`` / ``hd95_<class>``:
    per-class means over subjects; ``dice_per_class`` / ``hd95_per_class``: per-class
    ``{mean, std, n, n_nan, n_inf}``. Returns ``{"summary": {...}, "n_subjects": N,
    "per_subject": {id: {"dice": {...}, "hd95": {...}, "dice_mean": .., "hd95_mean": ..}}}``;
    every number is a plain float or ``None``.
    """
    if not subject_scores:
        raise ValueError("summarise_mri needs at least one subject")
    metrics = ("dice", "hd95")
    per_subject: dict[str, Any] = {}
    subject_means: dict[str, list[float]] = {m: [] for m in metrics}
    per_class: dict[str, dict[str, list[float]]] = {m: {} for m in metrics}
    for subject, scores in subject_scores.items():
        entry: dict[str, Any] = {}
        for m in metrics:
            values = dict(scores.get(m, {}))
            finite = [v for v in values.values() if math.isfinite(v)]
            mean = float(np.mean(finite)) if finite else math.nan
            subject_means[m].append(mean)
            entry[m] = {c: json_float(v) for c, v in values.items()}
            entry[f"{m}_mean"] = json_float(mean)
            for c, v in values.items():
                per_class[m].setdefault(c, []).append(v)
        per_subject[str(subject)] = entry
    summary: dict[str, Any] = {}
    for m in metrics:
        overall = _stats(subject_means[m])
        summary[f"{m}_mean"] = overall["mean"]
        summary[f"{m}_std"] = overall["std"]
        class_stats = {c: _stats(v) for c, v in per_class[m].items()}
        summary.update({f"{m}_{c}": s["mean"] for c, s in class_stats.items()})
        summary[f"{m}_per_class"] = class_stats
    return {"summary": summary, "n_subjects": len(subject_scores), "per_subject": per_subject}
