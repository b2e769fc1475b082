"""Metrics against answers worked out by hand, and their empty-class conventions."""

import json
import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from segcore.metrics import (
    confusion_matrix,
    dice_per_class_3d,
    hd95_per_class_3d,
    json_float,
    score_volume,
    segmentation_scores,
    summarise_mri,
    summarise_segmentation,
)

# 4x4 example: 255 marks one ignored pixel (its prediction, 1, must not count as a FP).
TARGET = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [0, 0, 0, 1],
        [255, 0, 0, 0],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
        [1, 0, 0, 0],
    ],
    dtype=np.uint8,
)
# By hand: 5 landslide pixels, 4 found (TP 4, FN 1); 10 valid background pixels, 1 called
# landslide (FP 1, TN 9).
EXPECTED_CM = np.array([[9, 1], [1, 4]])


def test_confusion_matrix_hand_example():
    cm = confusion_matrix(PRED, TARGET, num_classes=2)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, EXPECTED_CM)


def test_ignored_pixels_are_excluded():
    # Without the ignore index the pixel would be an error (255 is no class) ...
    with pytest.raises(ValueError, match="255"):
        confusion_matrix(PRED, TARGET, num_classes=2, ignore_index=None)
    # ... and as true background it would be a second false positive.
    as_background = np.where(TARGET == 255, 0, TARGET)
    assert confusion_matrix(PRED, as_background, 2)[0, 1] == 2
    # A validity mask (nodata) removes pixels too: drop the one FP pixel at (0, 1).
    valid = np.ones_like(TARGET, dtype=bool)
    valid[0, 1] = False
    np.testing.assert_array_equal(confusion_matrix(PRED, TARGET, 2, valid=valid), [[9, 0], [1, 4]])


def test_confusion_matrix_torch_equals_numpy_and_brute_force():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, size=(3, 17, 19))
    target[rng.random(target.shape) < 0.1] = 255
    pred = rng.integers(0, 4, size=target.shape)
    cm = confusion_matrix(pred, target, 4)
    brute = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != 255:
            brute[t, p] += 1
    np.testing.assert_array_equal(cm, brute)
    cm_torch = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 4)
    assert isinstance(cm_torch, torch.Tensor) and cm_torch.dtype == torch.int64
    np.testing.assert_array_equal(cm_torch.numpy(), brute)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="pred holds class 2"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)


def test_segmentation_scores_hand_example():
    s = segmentation_scores(EXPECTED_CM, positive_class=1)
    assert s["iou"] == pytest.approx([9 / 11, 4 / 6])
    assert s["miou"] == pytest.approx((9 / 11 + 2 / 3) / 2)  # = 49/66
    assert s["iou_positive"] == pytest.approx(2 / 3)
    assert s["precision"] == pytest.approx(4 / 5)
    assert s["recall"] == pytest.approx(4 / 5)
    assert s["f1"] == pytest.approx(0.8)
    assert s["overall_accuracy"] == pytest.approx(13 / 15)


def test_miou_skips_classes_absent_from_both_but_counts_false_positive_classes():
    cm3 = confusion_matrix(PRED, TARGET, num_classes=3)  # class 2 nowhere
    s = segmentation_scores(cm3)
    assert math.isnan(s["iou"][2])
    assert s["miou"] == pytest.approx(49 / 66)
    pred = PRED.copy()
    pred[2, 0] = 2  # class 2 predicted once, never true: IoU 0, and it counts in the mean
    s = segmentation_scores(confusion_matrix(pred, TARGET, 3))
    assert s["iou"] == pytest.approx([8 / 11, 4 / 6, 0.0])
    assert s["miou"] == pytest.approx((8 / 11 + 2 / 3 + 0) / 3)


def test_positive_class_zero_division_conventions():
    # Landslides in the target, none predicted: precision 0/0 -> 0, recall 0, F1 0.
    s = segmentation_scores(np.array([[10, 0], [3, 0]]))
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    # Only predicted: recall 0/0 -> 0.
    s = segmentation_scores(np.array([[8, 2], [0, 0]]))
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    # Landslide nowhere: undefined, NaN (and left out of mIoU).
    s = segmentation_scores(np.array([[10, 0], [0, 0]]))
    assert all(math.isnan(s[k]) for k in ("precision", "recall", "f1", "iou_positive"))
    assert s["miou"] == 1.0
    assert math.isnan(segmentation_scores(np.zeros((2, 2)))["overall_accuracy"])


def test_summarise_segmentation_is_strict_json():
    out = summarise_segmentation(confusion_matrix(PRED, TARGET, 3), class_names=["background", "landslide", "road"])
    text = json.dumps(out, allow_nan=False)  # NaN would raise here
    back = json.loads(text)
    assert back["summary"]["iou_landslide"] == pytest.approx(2 / 3)
    assert back["summary"]["iou_road"] is None
    assert back["summary"]["f1"] == pytest.approx(0.8)
    assert back["n_pixels"] == 15
    assert back["confusion_matrix"] == [[9, 1, 0], [1, 4, 0], [0, 0, 0]]
    assert all(isinstance(v, float) or v is None for v in back["summary"].values())


def _cube(shape, start, side, label=1):
    vol = np.zeros(shape, dtype=np.int64)
    sl = tuple(slice(s, s + side) for s in start)
    vol[sl] = label
    return vol


def test_dice_of_two_overlapping_cubes():
    target = _cube((10, 10, 10), (2, 2, 2), 4)
    pred = _cube((10, 10, 10), (3, 2, 2), 4)  # shifted one voxel: overlap 3x4x4 = 48
    assert dice_per_class_3d(pred, target, 2) == pytest.approx({1: 2 * 48 / (64 + 64)})
    assert dice_per_class_3d(pred, target, 2, include_background=True)[0] == pytest.approx(
        2 * (1000 - 64 - 16) / (936 + 936)
    )


def test_dice_matches_monai_including_empty_target_convention():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 3, size=(6, 8, 8))
    pred = rng.integers(0, 4, size=(6, 8, 8))  # class 3 predicted but never true
    ours = dice_per_class_3d(pred, target, 4, include_background=True)

    def oh(v):
        return one_hot(torch.from_numpy(v)[None, None], 4, dim=1)  # (1, 4, D, H, W)

    theirs = compute_dice(oh(pred), oh(target), include_background=True, ignore_empty=True)[0]
    for k in range(3):
        assert ours[k] == pytest.approx(float(theirs[k]))
    assert math.isnan(ours[3]) and math.isnan(float(theirs[3]))  # empty target -> NaN


@pytest.mark.parametrize(
    ("axis", "k", "spacing"), [(2, 2, (1.0, 0.5, 3.0)), (0, 3, (2.5, 1.0, 1.0)), (1, 1, (1.0, 0.7, 1.0))]
)
def test_hd95_of_shifted_cubes_is_shift_times_spacing(axis, k, spacing):
    start = [4, 4, 4]
    target = _cube((18, 18, 18), start, 6)
    start[axis] += k
    pred = _cube((18, 18, 18), start, 6)
    assert hd95_per_class_3d(pred, target, 2, spacing) == pytest.approx({1: k * spacing[axis]})
    assert hd95_per_class_3d(target, target, 2, spacing) == {1: 0.0}


def test_hd95_empty_conventions():
    vol = _cube((8, 8, 8), (2, 2, 2), 3)
    empty = np.zeros_like(vol)
    spacing = (1.0, 1.0, 1.0)
    assert hd95_per_class_3d(empty, vol, 3, spacing)[1] == math.inf  # missed structure
    assert hd95_per_class_3d(vol, empty, 3, spacing)[1] == math.inf  # hallucinated one
    assert math.isnan(hd95_per_class_3d(vol, vol, 3, spacing)[2])  # class 2 in neither
    with pytest.raises(ValueError, match="spacing"):
        hd95_per_class_3d(vol, vol, 2, (1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        hd95_per_class_3d(vol[0], vol[0], 2, spacing)


def test_score_volume_and_summarise_mri():
    target = _cube((12, 12, 12), (2, 2, 2), 4) + _cube((12, 12, 12), (7, 7, 7), 3, label=2)
    pred_a = _cube((12, 12, 12), (3, 2, 2), 4) + _cube((12, 12, 12), (7, 7, 7), 3, label=2)
    pred_b = _cube((12, 12, 12), (2, 2, 2), 4)  # class 2 missed entirely
    names = ["bg", "lv", "rv"]
    a = score_volume(pred_a, target, 3, (2.0, 1.0, 1.0), class_names=names)
    b = score_volume(pred_b, target, 3, (2.0, 1.0, 1.0), class_names=names)
    assert a["dice"] == pytest.approx({"lv": 0.75, "rv": 1.0})
    assert a["hd95"] == pytest.approx({"lv": 2.0, "rv": 0.0})
    assert b["dice"] == pytest.approx({"lv": 1.0, "rv": 0.0})
    assert b["hd95"]["rv"] == math.inf

    out = summarise_mri({"s1": a, "s2": b})
    json.dumps(out, allow_nan=False)
    s = out["summary"]
    assert out["n_subjects"] == 2
    # Over classes first (s1: 0.875, s2: 0.5), then over subjects.
    assert s["dice_mean"] == pytest.approx((0.875 + 0.5) / 2)
    assert s["dice_std"] == pytest.approx(np.std([0.875, 0.5], ddof=1))
    assert s["dice_lv"] == pytest.approx(0.875) and s["dice_rv"] == pytest.approx(0.5)
    # The infinite HD95 is left out of the means and counted.
    assert out["per_subject"]["s2"]["hd95_mean"] == pytest.approx(0.0)
    assert out["per_subject"]["s2"]["hd95"]["rv"] is None
    assert s["hd95_rv"] == pytest.approx(0.0)
    assert s["hd95_per_class"]["rv"] == {"mean": 0.0, "std": None, "n": 1, "n_nan": 0, "n_inf": 1}
    assert s["hd95_mean"] == pytest.approx((1.0 + 0.0) / 2)


def test_summarise_mri_skips_nan_classes():
    scores = {"dice": {"lv": 0.8, "rv": math.nan}, "hd95": {"lv": 3.0, "rv": math.nan}}
    out = summarise_mri({"s1": scores})
    assert out["summary"]["dice_mean"] == pytest.approx(0.8)
    assert out["summary"]["dice_rv"] is None
    assert out["summary"]["dice_per_class"]["rv"]["n_nan"] == 1
    with pytest.raises(ValueError):
        summarise_mri({})


def test_json_float():
    assert json_float(np.float32(0.5)) == 0.5 and type(json_float(np.float64(1))) is float
    assert json_float(math.nan) is None and json_float(-math.inf) is None
