import argparse

import pytest

from segcore.budget import label_seed, parse_budget, select_count, select_percent

IDS = [f"case_{i:03d}" for i in range(10)]


def test_same_budget_and_seed_gives_same_subset_regardless_of_input_order():
    assert select_count(IDS, 2, seed=3) == select_count(list(reversed(IDS)), 2, seed=3)


def test_budgets_nest_for_one_seed():
    one, two, eight = (select_count(IDS, n, seed=5) for n in (1, 2, 8))
    assert set(one) <= set(two) <= set(eight)
    assert len(set(eight)) == 8


def test_seeds_differ():
    subsets = {tuple(select_count(IDS, 2, seed=s)) for s in range(6)}
    assert len(subsets) > 1


def test_all_and_errors():
    assert select_count(IDS, "all", seed=0) == sorted(IDS)
    assert parse_budget("ALL") is None
    with pytest.raises(ValueError, match="exceeds"):
        select_count(IDS, 11, seed=0)
    with pytest.raises(ValueError):
        parse_budget(0)


def test_percent_rounds_up_and_keeps_one():
    assert len(select_percent(IDS, 5, seed=0)) == 1
    assert len(select_percent(IDS, 25, seed=0)) == 3
    assert len(select_percent(IDS, 100, seed=0)) == 10
    assert set(select_percent(IDS, 10, seed=1)) <= set(select_percent(IDS, 50, seed=1))
    with pytest.raises(ValueError):
        select_percent(IDS, 0, seed=0)


def test_label_seed_defaults_to_the_run_seed():
    assert label_seed(argparse.Namespace(seed=4, label_seed=None)) == 4
    assert label_seed(argparse.Namespace(seed=4)) == 4
    assert label_seed(argparse.Namespace(seed=4, label_seed=0)) == 0  # 0 is a seed, not "unset"
