import math

import torch

from segcore.tasks import class_counts, score_from_counts


def test_class_counts_known_answer_with_ignore():
    pred = torch.tensor([[0, 1], [1, 2]])
    target = torch.tensor([[0, 1], [2, 255]])
    c = class_counts(pred, target, 3, 255)
    # class 0: tp 1; class 1: tp 1, fp 1 (pixel (1,0)); class 2: fn 1 (pixel (1,0)); (1,1) ignored
    assert c.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_dice_score_is_mean_over_groups_of_mean_foreground_dice():
    counts = {
        "a": torch.tensor([[9, 0, 0], [2, 1, 1], [0, 0, 0]]),  # class 1 Dice 4/6; class 2 absent -> skipped
        "b": torch.tensor([[9, 0, 0], [1, 0, 0], [1, 1, 0]]),  # class 1 Dice 1; class 2 Dice 2/3
    }
    expected = (4 / 6 + (1 + 2 / 3) / 2) / 2
    assert math.isclose(score_from_counts(counts, "dice"), expected)


def test_miou_pools_counts():
    counts = {"a": torch.tensor([[3, 1, 0], [1, 0, 1]]), "b": torch.tensor([[1, 0, 1], [2, 1, 0]])}
    # pooled: class 0 tp 4 fp 1 fn 1 -> 4/6; class 1 tp 3 fp 1 fn 1 -> 3/5
    assert math.isclose(score_from_counts(counts, "miou"), (4 / 6 + 3 / 5) / 2)
    assert math.isnan(score_from_counts({}, "miou"))
