import argparse
import math

import pytest
import yaml

from segcore.budget import (
    FixedCombinations,
    _permutation,
    balanced_sets,
    draw_labeled,
    fixed_combinations,
    match_names,
    parse_budget,
    select_count,
    select_percent,
)
from segcore.cli import parse_stage_args

IDS = [f"case_{i:03d}" for i in range(10)]


def test_same_budget_and_seed_gives_same_subset_regardless_of_input_order():
    assert select_count(IDS, 2, seed=3) == select_count(list(reversed(IDS)), 2, seed=3)
    assert select_count(IDS, 3, seed=7) == select_count(IDS, 3, seed=7)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 10, 12, 17, 24, 31])
def test_disjoint_covering_and_nested_for_every_budget(n):
    rows = balanced_sets(n, n, n)  # every seed 0..n-1 at every budget (its prefixes)
    assert all(len(set(row)) == n for row in rows)
    for b in range(1, n + 1):
        sets = [set(row[:b]) for row in rows]
        first = sets[: n // b]
        assert sum(len(s) for s in first) == len(set().union(*first)) == b * (n // b)  # pairwise disjoint
        assert set().union(*sets[: math.ceil(n / b)]) == set(range(n))  # every candidate used
        for s in range(n):
            assert set(rows[s][:b]) <= set(rows[s][: b + 1])  # nested


def test_known_answer_budget_two_pairs_position_s_with_s_plus_half():
    # N = 2m: seed s < m labels permutation positions {s, s + m}; budget 1 is position s
    assert balanced_sets(6, 2, 3) == [[0, 3], [1, 4], [2, 5]]
    perm = _permutation(IDS)
    assert [select_count(IDS, 1, s) for s in range(10)] == [[p] for p in perm]
    assert [set(select_count(IDS, 2, s)) for s in range(5)] == [{perm[s], perm[s + 5]} for s in range(5)]
    assert select_count(IDS, 2, 13) == select_count(IDS, 2, 3)  # seeds repeat with period N


def test_seeds_past_the_first_round_spread_out():
    rows = balanced_sets(8, 2, 8)
    assert [sorted(r) for r in rows[4:]] == [[1, 4], [0, 5], [3, 6], [2, 7]]  # a second disjoint round
    assert len({tuple(sorted(r)) for r in rows}) == 8


def test_all_and_errors():
    assert select_count(IDS, "all", seed=0) == sorted(IDS)
    assert select_count(IDS, 10, seed=4) == sorted(IDS)
    assert parse_budget("ALL") is None
    with pytest.raises(ValueError, match="exceeds"):
        select_count(IDS, 11, seed=0)
    with pytest.raises(ValueError):
        parse_budget(0)
    with pytest.raises(ValueError, match="label seed must be >= 0"):
        select_count(IDS, 1, seed=-1)


def test_percent_rounds_up_keeps_one_and_is_balanced():
    assert len(select_percent(IDS, 5, seed=0)) == 1
    assert len(select_percent(IDS, 25, seed=0)) == 3
    assert len(select_percent(IDS, 100, seed=0)) == 10
    assert set(select_percent(IDS, 10, seed=1)) <= set(select_percent(IDS, 50, seed=1))
    tiles = [f"t{i:03d}" for i in range(40)]
    draws = [set(select_percent(tiles, 20, seed=s)) for s in range(5)]  # 8 tiles each
    assert set().union(*draws) == set(tiles) and sum(map(len, draws)) == 40
    with pytest.raises(ValueError):
        select_percent(IDS, 0, seed=0)


def test_large_pools_draw_in_reasonable_time():
    tiles = [f"t{i:05d}" for i in range(3000)]
    chosen = select_percent(tiles, 10, seed=2)
    assert len(chosen) == 300 and not set(chosen) & set(select_percent(tiles, 10, seed=3))


def test_label_seed_defaults_to_the_run_seed(tmp_path):
    from segcore.config import FinetuneConfig
    from segcore.stages.finetune import seed_runs

    def label_seed(seed: int, label_seed: int | None) -> int:
        cfg = FinetuneConfig(data=tmp_path, out=[tmp_path / "a"], seed=[seed], label_seed=label_seed)
        return seed_runs(cfg)[0].label_seed

    assert label_seed(4, None) == 4
    assert label_seed(4, 0) == 0  # 0 is a seed, not "unset"


def test_match_names_exact_or_by_number():
    known = ["patient002", "patient042", "patient062", "patient100"]
    assert match_names(["patient042", "2", "062", "0100"], known) == [
        "patient042",
        "patient002",
        "patient062",
        "patient100",
    ]
    with pytest.raises(ValueError, match=r"unknown subject '7' \(4 known: patient002"):
        match_names(["7"], known)
    with pytest.raises(ValueError, match="ambiguous: a2, b2"):
        match_names(["2"], ["a2", "b2"])
    with pytest.raises(ValueError, match="named twice"):
        match_names(["2", "patient002"], known)


def test_fixed_combinations_forms():
    assert fixed_combinations(None, 1) is None
    assert fixed_combinations(["002"], 1) == [["002"]]
    assert fixed_combinations("042 062", 2) == [["042", "062"]]
    assert fixed_combinations(["042", "062"], 2) == [["042", "062"]]
    assert fixed_combinations([["002"], ["042"]], 1) == [["002"], ["042"]]
    by_budget = yaml.safe_load("{1: [[patient002], [patient042]], 2: [[patient042, patient062]]}")
    assert fixed_combinations(by_budget, "1") == [["patient002"], ["patient042"]]
    assert fixed_combinations(by_budget, 2) == [["patient042", "patient062"]]
    assert fixed_combinations(by_budget, 5) is None  # no list for this budget: the draw
    with pytest.raises(ValueError):
        fixed_combinations([[]], 1)


POOL = {
    "patient002": ["patient002_frame01", "patient002_frame12"],
    "patient042": ["patient042_frame01", "patient042_frame09"],
    "patient062": ["patient062_frame01", "patient062_frame14"],
    "patient070": ["patient070_frame01", "patient070_frame10"],
}


def test_draw_labeled_counts_subjects_and_returns_their_volumes():
    subjects, volumes = draw_labeled(POOL, 1, seed=0)
    assert len(subjects) == 1 and volumes == POOL[subjects[0]]  # budget 1 = both frames of one patient
    picks = [draw_labeled(POOL, 1, seed=s)[0][0] for s in range(4)]
    assert sorted(picks) == sorted(POOL)  # four seeds, four different patients
    assert set(draw_labeled(POOL, 2, seed=1)[0]) >= set(draw_labeled(POOL, 1, seed=1)[0])


def test_draw_labeled_fixed_lists_take_precedence():
    elsewhere = {"patient007": "test", "patient011": "val"}
    assert draw_labeled(POOL, 1, seed=3, fixed=[["002"]]) == (
        ["patient002"],
        POOL["patient002"],
    )  # one list: every seed
    combos = [["042", "062"], ["2", "70"]]
    assert draw_labeled(POOL, 2, seed=1, fixed=combos, elsewhere=elsewhere)[0] == ["patient002", "patient070"]
    assert draw_labeled(POOL, "all", seed=0, fixed=combos)[0] == ["patient042", "patient062"]
    for fixed, seed, budget, problem in (
        (combos, 2, 2, "2 fixed labeled combinations are given; label seed 2 has none"),
        ([["patient099"]], 0, 1, "unknown subject 'patient099'"),
        ([["7"]], 0, 1, "'patient007' is in the test split"),
        (
            [["042", "062"]],
            0,
            1,
            r"label budget 1 but the fixed combination \['patient042', 'patient062'\] has 2 subjects",
        ),
    ):
        with pytest.raises(ValueError, match=problem):
            draw_labeled(POOL, budget, seed=seed, fixed=fixed, elsewhere=elsewhere)


def test_fixed_combinations_option_repeats_and_replaces_the_config(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--labeled-subjects", nargs="+", action=FixedCombinations, default=None)
    parser.add_argument("--config")
    assert parser.parse_args([]).labeled_subjects is None
    args = parser.parse_args(["--labeled-subjects", "042", "062", "--labeled-subjects", "002"])
    assert args.labeled_subjects == [["042", "062"], ["002"]]
    (tmp_path / "c.yaml").write_text("labeled_subjects: {1: [[patient002], [patient042]]}\n")
    assert parse_stage_args(parser, ["--config", str(tmp_path / "c.yaml")]).labeled_subjects == {
        1: [["patient002"], ["patient042"]]
    }
    assert parse_stage_args(
        parser, ["--config", str(tmp_path / "c.yaml"), "--labeled-subjects", "7"]
    ).labeled_subjects == [["7"]]
