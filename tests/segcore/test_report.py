"""The results report: tidy table, statistics over seeds, paired gains, tables, the page.

Fixture results come from tests/data/report/make.py, whose run values are chosen so that
means, SDs and paired statistics can be worked out by hand (written out below).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from segcore.cli import run_cli
from segcore.errors import InputError
from segcore.report.domains import HEADLINE, semi_baseline, semi_parts
from segcore.report.logs import describe_log, expand_paths, read_selection, select_finetune_logs
from segcore.report.overlays import find_overlays, pick_overlays, read_overlay
from segcore.report.pretext import (
    collapse_step,
    pretext_status,
    pretext_table,
    read_pretrain_record,
)
from segcore.report.resources import resource_summary, resources_table
from segcore.report.statistics import (
    leave_best_set_out,
    paired_comparison,
    paired_stats,
    seed_summary,
    variance_split,
)
from segcore.report.tables import gains_table, headline_table, per_class_table
from segcore.report.tidy import TIDY_COLUMNS, load_metrics, read_runs
from tests.data.report import make

STAGE = [("report", "the report", "segcore.report.config:ReportConfig", "segcore.report.cli:run_report")]


def run_stage(*argv: str) -> int:
    return run_cli("medseg", "test", STAGE, ["report", *argv])


@pytest.fixture(scope="module")
def fixture_results(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("results")
    files = make.make_all(root)
    files["root"] = [root]
    return files


@pytest.fixture(scope="module")
def tidy(fixture_results) -> pd.DataFrame:
    return load_metrics(fixture_results["mri"] + fixture_results["rs"])


@pytest.fixture(scope="module")
def seed_stats(tidy) -> pd.DataFrame:
    return seed_summary(tidy)


@pytest.fixture(scope="module")
def report_dir(fixture_results, tmp_path_factory) -> Path:
    """The full stage (plots included) on every fixture file, run once for the module."""
    root = fixture_results["root"][0]
    out = tmp_path_factory.mktemp("report") / "report"
    rc = run_stage(
        "--input",
        *map(str, fixture_results["mri"] + fixture_results["rs"]),
        "--out",
        str(out),
        "--logs",
        str(root / "*" / "finetune" / "**" / "logs" / "metrics.csv"),
        str(root / "*" / "pretrain" / "**" / "logs" / "metrics.csv"),
        "--overlay-budgets",
        "1",
        "5",  # fewer overlay rows keep the test quick; the default choice is tested alone
    )
    assert rc == 0
    return out


def cell(
    stats: pd.DataFrame, domain: str, method: str, budget: str, metric: str, cls: str = "", variant: str = ""
) -> dict:
    sel = stats[
        (stats.domain == domain)
        & (stats.method == method)
        & (stats.budget == budget)
        & (stats.metric == metric)
        & (stats["class"] == cls)
        & (stats.variant == variant)
    ]
    assert len(sel) == 1, f"{len(sel)} rows for {domain} {method} {budget} {metric} {cls} {variant}"
    return sel.iloc[0].to_dict()


# --------------------------------------------------------------------------------- tidy table


def test_tidy_table_has_every_number_of_an_mri_file(tidy):
    run = tidy[(tidy.domain == "mri") & (tidy.method == "none") & (tidy.budget == "1") & (tidy.seed == 0)]
    # per subject: 3 Dice + 3 HD95 + 2 subject means; run level: dice/hd95 mean and std, 3 classes,
    # 4 per-class stats (std, n, n_nan, n_inf) × 3 classes, for both metrics; n_subjects
    assert len(run[run.scope == "s01"]) == 8 and len(run[run.scope == "s02"]) == 8
    assert len(run[run.scope == "all"]) == 2 * (2 + 3 + 12) + 1
    # fixture: s01 gets (-0.1, 0, +0.1) around the run value 0.60 for RV, MYO, LV
    s01_rv = run[(run.scope == "s01") & (run["class"] == "RV") & (run.metric == "dice")]
    assert s01_rv.value.item() == pytest.approx(0.50)
    s02_myo_hd = run[(run.scope == "s02") & (run["class"] == "MYO") & (run.metric == "hd95")]
    assert s02_myo_hd.value.item() == pytest.approx(10.0 - 0.5)
    # summary keys named <metric>_<class> are split; class-free keys keep their name
    assert run[(run.scope == "all") & (run["class"] == "LV") & (run.metric == "dice")].value.item() == pytest.approx(
        0.65
    )
    assert run[(run.scope == "all") & (run["class"] == "") & (run.metric == "dice_mean")].value.item() == pytest.approx(
        0.60
    )
    assert run[(run.scope == "all") & (run.metric == "n_subjects")].value.item() == 2
    assert set(run.dataset) == {"phantom"} and set(run.split) == {"test"} and set(run.variant) == {""}


def test_tidy_table_rs_rows(tidy):
    run = tidy[(tidy.domain == "rs") & (tidy.method == "hpcl") & (tidy.variant == "dual") & (tidy.seed == 0)]
    got = {(r["class"], r["metric"]): r["value"] for r in run.to_dict("records")}
    # TP 40, FP 10, FN 10, TN 900
    assert got["landslide", "iou"] == pytest.approx(40 / 60)
    assert got["background", "iou"] == pytest.approx(900 / 920)
    assert got["", "f1"] == pytest.approx(0.8)
    assert got["", "precision"] == pytest.approx(0.8) and got["", "recall"] == pytest.approx(0.8)
    assert got["", "n_pixels"] == 960 and got["", "n_tiles"] == 3
    assert set(run.scope) == {"all"} and set(run.budget) == {"5"}


def test_null_values_become_nan_and_are_left_out_of_means(tmp_path):
    files = []
    for seed, dice in ((0, 0.5), (1, None), (2, 0.7)):
        path = tmp_path / f"s{seed}" / "metrics.json"
        path.parent.mkdir()
        path.write_text(
            json.dumps(
                {
                    "domain": "mri",
                    "method": "none",
                    "budget": 1,
                    "seed": seed,
                    "summary": {"dice_mean": dice},
                    "per_subject": {"a": {"dice": {"RV": None}}},
                }
            )
        )
        files.append(path)
    tidy = load_metrics(files)
    assert tidy.budget.unique().tolist() == ["1"]  # numbers become budget text
    assert tidy[(tidy.scope == "a")].value.isna().all()
    row = cell(seed_summary(tidy), "mri", "none", "1", "dice_mean")
    assert (
        row["mean"] == pytest.approx(0.6)
        and row["sd"] == pytest.approx(math.sqrt(0.02))
        and row["n"] == 2
        and row["n_runs"] == 3
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a readable metrics.json"),
        (json.dumps({"domain": "mri", "method": "none", "budget": "1", "summary": {}}), "lacks 'seed'"),
        (
            json.dumps({"domain": "mri", "method": "none", "budget": "1", "seed": "x", "summary": {}}),
            "is not an integer",
        ),
        (
            json.dumps({"domain": "mri", "method": "none", "budget": "1", "seed": 0, "summary": [1]}),
            "'summary' is not a mapping",
        ),
        (
            json.dumps(
                {
                    "domain": "mri",
                    "method": "none",
                    "budget": "1",
                    "seed": 0,
                    "summary": {},
                    "per_subject": {"a": {"dice": {"RV": "high"}}},
                }
            ),
            "per_subject.a.dice.RV is not a number",
        ),
    ],
)
def test_bad_metrics_file_names_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "metrics.json"
    path.write_text(content)
    with pytest.raises(InputError, match=problem) as err:
        load_metrics([path])
    assert err.value.path == str(path)


def test_two_files_for_one_cell_and_seed_are_an_error(fixture_results, tmp_path):
    copy = tmp_path / "metrics.json"
    shutil.copy(fixture_results["mri"][0], copy)
    with pytest.raises(InputError, match="same method, budget, seed and split") as err:
        load_metrics([fixture_results["mri"][0], copy])
    assert err.value.path == str(copy)


# ---------------------------------------------------------------------- statistics over seeds


def test_seed_means_and_sds_match_hand_computed_values(seed_stats):
    # Dice none@1: 0.60, 0.70, 0.65 → 0.65 ± 0.05; GD@1: 0.70, 0.74, 0.78 → 0.74 ± 0.04
    row = cell(seed_stats, "mri", "none", "1", "dice_mean")
    assert (row["mean"], row["sd"], row["n"], row["n_runs"]) == (pytest.approx(0.65), pytest.approx(0.05), 3, 3)
    row = cell(seed_stats, "mri", "GD", "1", "dice_mean")
    assert (row["mean"], row["sd"], row["n"], row["seeds"]) == (pytest.approx(0.74), pytest.approx(0.04), 3, "0 1 2")
    # none@all: 0.90, 0.92 → 0.91 ± 0.01·√2
    row = cell(seed_stats, "mri", "none", "all", "dice_mean")
    assert (row["mean"], row["sd"], row["n"]) == (pytest.approx(0.91), pytest.approx(0.01 * math.sqrt(2)), 2)
    # HD95 GD@1: 8, 9, 13 → 10 ± √7
    row = cell(seed_stats, "mri", "GD", "1", "hd95_mean")
    assert (row["mean"], row["sd"]) == (pytest.approx(10.0), pytest.approx(math.sqrt(7)))
    # per class RV none@1: each run's RV = run value − 0.025 (mean of −0.1 and +0.05)
    row = cell(seed_stats, "mri", "none", "1", "dice", "RV")
    assert (row["mean"], row["sd"], row["n"]) == (pytest.approx(0.625), pytest.approx(0.05), 3)
    # landslide F1 none/early@5: 0.6, 0.8 → 0.7 ± 0.1·√2; hpcl/dual@5 one seed: sd NaN
    row = cell(seed_stats, "rs", "none", "5", "f1", variant="early")
    assert (row["mean"], row["sd"], row["n"]) == (pytest.approx(0.7), pytest.approx(0.1 * math.sqrt(2)), 2)
    row = cell(seed_stats, "rs", "hpcl", "5", "f1", variant="dual")
    assert row["mean"] == pytest.approx(0.8) and math.isnan(row["sd"]) and row["n"] == 1


def test_missing_combinations_are_absent_not_zero(seed_stats):
    mri = seed_stats[(seed_stats.domain == "mri") & (seed_stats.metric == "dice_mean")]
    assert set(zip(mri.method, mri.budget, strict=True)) == {("none", "1"), ("GD", "1"), ("none", "all")}


def test_paired_stats_known_values():
    got = paired_stats({0: 0.70, 1: 0.74, 2: 0.78}, {0: 0.60, 1: 0.70, 2: 0.65})
    # differences 0.10, 0.04, 0.13: mean 0.09, sd √((0.01² + 0.05² + 0.04²)/2) = √0.0021
    assert got["mean_diff"] == pytest.approx(0.09)
    assert got["sd_diff"] == pytest.approx(math.sqrt(0.0021))
    assert (got["n_pairs"], got["wins"], got["seeds"]) == (3, 3, "0 1 2")
    # t = 0.09 / (√0.0021 / √3) = 3.4017, two-sided with 2 degrees of freedom
    t = 0.09 / (math.sqrt(0.0021) / math.sqrt(3))
    assert got["p_value"] == pytest.approx(2 * scipy_stats.t.sf(t, 2))
    assert got["p_value"] == pytest.approx(0.07662, abs=1e-5)


def test_paired_stats_direction_pairing_and_degenerate_cases():
    # lower is better: the method wins where its distance is smaller
    got = paired_stats({0: 8.0, 1: 9.0, 2: 13.0}, {0: 10.0, 1: 12.0, 2: 14.0}, higher_better=False)
    assert (got["mean_diff"], got["sd_diff"], got["wins"]) == (pytest.approx(-2.0), pytest.approx(1.0), 3)
    # only seeds on both sides with finite values pair
    got = paired_stats({0: 0.5, 1: 0.9, 3: math.nan}, {0: 0.4, 2: 0.1, 3: 0.2})
    assert (got["n_pairs"], got["seeds"], got["mean_diff"], got["wins"]) == (1, "0", pytest.approx(0.1), 1)
    assert math.isnan(got["sd_diff"]) and math.isnan(got["p_value"])
    # identical differences: sd 0, t undefined → p NaN (scipy would return a float-noise value)
    got = paired_stats({0: 0.7, 1: 0.9}, {0: 0.6, 1: 0.8})
    assert got["sd_diff"] == pytest.approx(0.0, abs=1e-12) and math.isnan(got["p_value"]) and got["wins"] == 2
    # a tie is not a win
    assert paired_stats({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.5})["wins"] == 1
    got = paired_stats({}, {0: 0.5})
    assert got["n_pairs"] == 0 and math.isnan(got["mean_diff"])


def test_paired_comparison_pairs_within_variant_and_budget(tidy):
    mri = paired_comparison(tidy[tidy.domain == "mri"], "dice_mean")
    assert len(mri) == 1  # GD has no 'all' run, so no pair there
    row = mri.iloc[0]
    assert (row.method, row.baseline, row.budget, row.n_pairs, row.wins) == ("GD", "none", "1", 3, 3)
    assert (
        row.mean_diff == pytest.approx(0.09)
        and row.mean_method == pytest.approx(0.74)
        and row.mean_baseline == pytest.approx(0.65)
    )
    rs = paired_comparison(tidy[tidy.domain == "rs"], "f1").set_index("variant")
    # early: 0.7 − 0.6 and 0.9 − 0.8; dual: only seed 0 (0.8 − 0.75)
    assert rs.loc["early", "mean_diff"] == pytest.approx(0.1) and rs.loc["early", "n_pairs"] == 2
    assert rs.loc["dual", "mean_diff"] == pytest.approx(0.05) and rs.loc["dual", "n_pairs"] == 1
    assert set(rs.budget) == {"5"}


# ---------------------------------------------------------------------------------- tables


def test_variance_split_known_values():
    # balanced: sets A (0.1, 0.3), B (0.5, 0.7); set means 0.2, 0.6, mean 0.4
    # MS_within = 4 × 0.01 / (4 − 2) = 0.02; MS_between = 2 × (0.04 + 0.04) / 1 = 0.16; n0 = 2
    # var_between = (0.16 − 0.02) / 2 = 0.07; share 0.07 / 0.09
    got = variance_split([0.1, 0.3, 0.5, 0.7], ["A", "A", "B", "B"])
    assert (
        got["n_sets"] == 2
        and got["sd_within"] == pytest.approx(math.sqrt(0.02))
        and got["sd_between"] == pytest.approx(math.sqrt(0.07))
    )
    assert got["share_between"] == pytest.approx(0.07 / 0.09)
    # unbalanced: A (1, 2, 3), B (5): MS_within = 2 / 2 = 1; MS_between = 3 × 0.75² + 2.25² = 6.75;
    # n0 = (4 − 10/4) / 1 = 1.5
    got = variance_split([1.0, 2.0, 3.0, 5.0], [0, 0, 0, 1])
    assert got["sd_within"] == pytest.approx(1.0) and got["sd_between"] ** 2 == pytest.approx((6.75 - 1.0) / 1.5)
    # equal set means: the between estimate (MS_between − MS_within) / n0 is negative, taken as 0
    got = variance_split([0.0, 1.0, 0.0, 1.0], [0, 0, 1, 1])
    assert (
        got["sd_between"] == 0.0 and got["share_between"] == 0.0 and got["sd_within"] == pytest.approx(math.sqrt(0.5))
    )
    # one run per set (set and run confounded), or one set: not defined
    for diffs, sets in (([0.1, 0.2, 0.4], [0, 1, 2]), ([0.1, 0.2], [0, 0])):
        got = variance_split(diffs, sets)
        assert math.isnan(got["sd_between"]) and math.isnan(got["sd_within"]) and math.isnan(got["share_between"])
    assert variance_split([0.1, 0.2, 0.4], [0, 1, 2])["n_sets"] == 3


def test_leave_best_set_out_marks_a_gain_one_set_carries():
    # gain 0.1333 carried by set 0 (0.5): without it −0.05, a change of sign
    got = leave_best_set_out([0.5, 0.0, -0.1], [0, 1, 2])
    assert got == {"best_set": "0", "mean_without_best": pytest.approx(-0.05), "single_set": True}
    # the fixture's Dice gains 0.10, 0.04, 0.13: without set 2 (0.13) 0.07 ≥ 0.09 / 2
    got = leave_best_set_out([0.10, 0.04, 0.13], [0, 1, 2])
    assert got == {"best_set": "2", "mean_without_best": pytest.approx(0.07), "single_set": False}
    # exactly half is not below half: gain 1, without set 0 (2.0) 0.5
    assert not leave_best_set_out([2.0, 1.0, 0.0], [0, 1, 2])["single_set"]
    # lower is better (HD95): the best set has the most negative difference
    got = leave_best_set_out([-3.0, 0.2, 0.1], ["a", "b", "c"], higher_better=False)
    assert got == {"best_set": "a", "mean_without_best": pytest.approx(0.15), "single_set": True}
    # sets of several runs: set means decide, every pair of the best set leaves; a loss is never marked
    got = leave_best_set_out([0.4, 0.2, 0.0, 0.1], [1, 1, 2, 2])
    assert got == {"best_set": "1", "mean_without_best": pytest.approx(0.05), "single_set": True}
    assert not leave_best_set_out([-0.5, 0.0, 0.1], [0, 1, 2])["single_set"]
    assert leave_best_set_out([0.5, 0.4], [0, 0]) == {
        "best_set": "",
        "mean_without_best": pytest.approx(math.nan, nan_ok=True),
        "single_set": False,
    }


def _repeat_runs(
    root: Path, diffs: dict[int, tuple[int, float]], base_label_seed: dict[int, int] | None = None
) -> list[Path]:
    """MRI runs of 'none' and 'GD' at budget 1: seed → (label_seed, GD − none); none's Dice 0.5."""
    files = []
    for seed, (label_seed, diff) in diffs.items():
        for method, value, ls in (
            ("none", 0.5, (base_label_seed or {}).get(seed, label_seed)),
            ("GD", 0.5 + diff, label_seed),
        ):
            path = root / method / f"seed_{seed}" / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(
                json.dumps(
                    {
                        "domain": "mri",
                        "method": method,
                        "budget": "1",
                        "seed": seed,
                        "label_seed": ls,
                        "summary": {"dice_mean": value},
                    }
                )
            )
            files.append(path)
    return files


def test_gains_split_the_spread_by_labeled_set(tmp_path):
    # two labeled sets, two training seeds each: differences 0.1, 0.3 (set 0) and 0.5, 0.7 (set 1)
    files = _repeat_runs(tmp_path / "a", {0: (0, 0.1), 1: (0, 0.3), 2: (1, 0.5), 3: (1, 0.7)})
    tidy = load_metrics(files)
    assert tidy.groupby("seed")["label_seed"].first().tolist() == [0, 0, 1, 1]
    row = paired_comparison(tidy, "dice_mean").iloc[0]
    assert (row.n_sets, row.best_set, bool(row.single_set)) == (2, "1", False)
    assert row.sd_between == pytest.approx(math.sqrt(0.07)) and row.sd_within == pytest.approx(math.sqrt(0.02))
    assert row.mean_without_best == pytest.approx(0.2)  # 0.2 ≥ 0.4 / 2: not carried by set 1 alone
    p = scipy_stats.ttest_1samp([0.1, 0.3, 0.5, 0.7], 0.0).pvalue
    cell = gains_table(paired_comparison(tidy, "dice_mean"), "mri", HEADLINE["mri"][0]).rows[0][1][0]
    assert (
        cell
        == f"+0.400 ± 0.258 (n=4, p={p:.3g}, wins 4/4; 2 labeled sets: sd 0.265 between, 0.141 within (78% between))"
    )
    # one labeled set carries the gain: set 1 is +0.6 and +0.7, the others about 0
    files = _repeat_runs(
        tmp_path / "b", {0: (0, 0.0), 1: (0, 0.02), 2: (1, 0.6), 3: (1, 0.7), 4: (2, -0.02), 5: (2, 0.0)}
    )
    row = paired_comparison(load_metrics(files), "dice_mean").iloc[0]
    assert bool(row.single_set) and row.best_set == "1" and row.mean_without_best == pytest.approx(0.0)
    cell = gains_table(paired_comparison(load_metrics(files), "dice_mean"), "mri", HEADLINE["mri"][0]).rows[0][1][0]
    assert cell.endswith("‡ one labeled set carries it: +0.000 without set 1") and "3 labeled sets" in cell
    # a method trained on other labeled sets than its baseline: a pair's set is the two of them
    files = _repeat_runs(tmp_path / "c", {0: (0, 0.1), 1: (0, 0.3), 2: (0, 0.5)}, base_label_seed={0: 0, 1: 0, 2: 5})
    row = paired_comparison(load_metrics(files), "dice_mean").iloc[0]
    assert row.n_sets == 2 and row.sd_within == pytest.approx(math.sqrt(0.02))


def test_semi_supervised_runs_are_paired_with_the_same_init(tmp_path):
    """none+fixmatch against none, GD+LR+fixmatch against GD+LR (and, in the usual gains table,
    every method against none); the report writes the semi gains table where such runs are."""
    dice = {"none": 0.50, "GD+LR": 0.55, "none+fixmatch": 0.60, "GD+LR+fixmatch": 0.70, "GD": 0.52}
    offsets = {0: 0.0, 1: 0.02, 2: -0.01}
    files = []
    for method, base in dice.items():
        for seed, off in offsets.items():
            # the semi runs gain 0.1 / 0.15 plus a seed-dependent part, so the differences vary
            value = base + off + (0.01 * seed if "+fixmatch" in method else 0.0)
            path = tmp_path / method / f"seed_{seed}" / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(
                json.dumps(
                    {"domain": "mri", "method": method, "budget": "1", "seed": seed, "summary": {"dice_mean": value}}
                )
            )
            files.append(path)
    assert semi_parts("GD+LR+fixmatch") == ("GD+LR", "fixmatch") and semi_parts("GD+LR") == ("GD+LR", None)
    assert semi_parts("hpcl-ssl+sup+self-training") == ("hpcl-ssl+sup", "self-training")
    assert semi_baseline("none+unimatch") == "none" and semi_baseline("hpcl-ssl+sup") is None
    tidy = load_metrics(files)
    semi = paired_comparison(tidy, "dice_mean", baseline_of=semi_baseline)
    assert sorted(zip(semi["method"], semi["baseline"], strict=True)) == [
        ("GD+LR+fixmatch", "GD+LR"),
        ("none+fixmatch", "none"),
    ]
    row = semi.set_index("method").loc["GD+LR+fixmatch"]
    assert row.mean_diff == pytest.approx(0.16) and row.n_pairs == 3 and row.wins == 3
    assert row.sd_diff == pytest.approx(0.01)
    plain = paired_comparison(tidy, "dice_mean")
    assert set(plain["baseline"]) == {"none"} and len(plain) == 4
    table = gains_table(semi, "mri", HEADLINE["mri"][0], semi=True)
    assert "semi-supervised" in table.title and [r[0][0] for r in table.rows] == ["GD+LR+fixmatch", "none+fixmatch"]
    assert table.rows[1][1][0].startswith("+0.110 ± 0.010 (n=3")
    out = tmp_path / "report"
    assert run_stage("--input", *map(str, files), "--out", str(out), "--no-plots") == 0
    frame = pd.read_csv(out / "mri_semi_gains.csv")
    assert frame["method"].tolist() == ["GD+LR+fixmatch", "none+fixmatch"]
    pairs = pd.read_csv(out / "paired_stats.csv")
    assert ("GD+LR+fixmatch", "GD+LR") in set(zip(pairs["method"], pairs["baseline"], strict=True))
    assert "gain of semi-supervised fine-tuning over the same init" in (out / "tables.md").read_text()


def test_headline_table_cells_and_best_per_column(seed_stats):
    dice = headline_table(seed_stats, "mri", HEADLINE["mri"][0])
    assert dice.columns == ["1", "all"]
    assert dice.rows == [
        (("none",), ["0.650 ± 0.050 (n=3)", "0.910 ± 0.014 (n=2)"]),
        (("GD",), ["0.740 ± 0.040 (n=3)", ""]),
    ]
    assert dice.bold == {(1, 0), (0, 1)}
    hd95 = headline_table(seed_stats, "mri", HEADLINE["mri"][1])
    assert hd95.rows[0][1][0] == "12.00 ± 2.00 (n=3)"
    assert (1, 0) in hd95.bold and (0, 0) not in hd95.bold  # lower is better
    f1 = headline_table(seed_stats, "rs", HEADLINE["rs"][2])
    labels = [r[0][0] for r in f1.rows]
    assert labels == ["none [dual]", "none [early]", "hpcl [dual]", "hpcl [early]"]
    assert f1.rows[2][1][0] == "0.800 ± – (n=1)"
    assert {i for i, j in f1.bold if j == 0} == {2, 3}  # a tie: both marked


def test_rising_mark_where_most_seeds_kept_their_last_validation(tmp_path):
    """metrics.json "selection" (fine-tuning's weight selection) reaches the tidy table as run
    numbers, and a cell where most seeds kept the weights of their last validation gets the mark
    and the note; a cell where one seed of three did stays unmarked."""
    files = []
    for method, ends in (("none", (True, True, False)), ("GD", (False, True, False))):
        for seed, at_end in enumerate(ends):
            path = tmp_path / method / f"s{seed}" / "metrics.json"
            path.parent.mkdir(parents=True)
            selection = {"steps": 200, "best_step": 200 if at_end else 120, "last_val_step": 200}
            selection["at_last_validation"] = at_end
            record = {"domain": "mri", "method": method, "budget": 1, "seed": seed, "selection": selection}
            path.write_text(json.dumps({**record, "summary": {"dice_mean": 0.5 + seed / 10}}))
            files.append(path)
    tidy = load_metrics(files)
    steps = tidy[(tidy.metric == "best_step") & (tidy.method == "none")].sort_values("seed")
    assert steps.value.tolist() == [200.0, 200.0, 120.0] and set(steps.scope) == {"all"}
    stats = seed_summary(tidy)
    assert cell(stats, "mri", "none", "1", "at_last_validation")["mean"] == pytest.approx(2 / 3)
    table = headline_table(stats, "mri", HEADLINE["mri"][0])
    assert table.rows == [
        (("none",), ["0.600 ± 0.100 (n=3) ↗"]),
        (("GD",), ["0.600 ± 0.100 (n=3)"]),
    ]
    assert "↗: in most seeds the best validation score came at the last validation" in table.note
    without = headline_table(stats[stats.metric != "at_last_validation"], "mri", HEADLINE["mri"][0])
    assert "↗" not in without.note and without.rows[0][1] == ["0.600 ± 0.100 (n=3)"]


def test_selection_record_of_a_fine_tuning_run():
    from segcore.stages.finetune import selection_record

    history = [{"step": 50, "val_dice": 0.5}, {"step": 100, "val_dice": 0.6}, {"step": 150, "val_dice": 0.7}]
    assert selection_record(history, 150, 150) == {
        "steps": 150,
        "best_step": 150,
        "last_val_step": 150,
        "validations": 3,
        "at_last_validation": True,
    }
    assert selection_record(history, 100, 150)["at_last_validation"] is False
    assert selection_record(history[:1], 50, 150)["at_last_validation"] is False  # one validation says nothing


def test_per_class_and_gains_tables(seed_stats, tidy):
    per_class = per_class_table(seed_stats, "mri", "dice")
    assert [r[0] for r in per_class.rows] == [(c, m) for c in ("RV", "MYO", "LV") for m in ("none", "GD")]
    assert per_class.rows[4] == (("LV", "none"), ["0.700 ± 0.050 (n=3)", "0.960 ± 0.014 (n=2)"])
    pairs = paired_comparison(tidy[tidy.domain == "mri"], "dice_mean")
    gains = gains_table(pairs, "mri", HEADLINE["mri"][0])
    assert gains.rows == [(("GD",), ["+0.090 ± 0.046 (n=3, p=0.0766, wins 3/3)"])]


def test_markdown_and_html_mark_the_best(seed_stats):
    table = headline_table(seed_stats, "mri", HEADLINE["mri"][0])
    md = table.to_markdown()
    assert "| GD | **0.740 ± 0.040 (n=3)** |  |" in md
    assert "| none | 0.650 ± 0.050 (n=3) | **0.910 ± 0.014 (n=2)** |" in md
    page = table.to_html()
    assert "<td><strong>0.740 ± 0.040 (n=3)</strong></td>" in page and "<td>0.650 ± 0.050 (n=3)</td>" in page


# ------------------------------------------------------------------------------ logs, overlays


def test_describe_log_from_path_and_train_json(fixture_results):
    logs = {str(p): describe_log(p) for p in fixture_results["logs"]}
    mri = next(lg for p, lg in logs.items() if "mri/finetune/GD/budget_1/seed_2" in p)
    assert (mri.domain, mri.stage, mri.method, mri.variant, mri.budget, mri.seed) == (
        "mri",
        "finetune",
        "GD",
        "",
        "1",
        2,
    )
    rs = next(lg for p, lg in logs.items() if "rs/finetune/hpcl/dual/pct_5/seed_0" in p)  # no train.json
    assert (rs.domain, rs.method, rs.variant, rs.budget, rs.seed) == ("rs", "hpcl", "dual", "5", 0)
    pre = next(lg for p, lg in logs.items() if "pretrain" in p)
    assert (pre.domain, pre.stage, pre.label, pre.seed) == ("mri", "pretrain", "GD", None)


def test_only_logs_of_evaluated_runs_are_drawn(fixture_results):
    runs, _ = read_runs(fixture_results["mri"])
    logs = [describe_log(p) for p in fixture_results["logs"]]
    chosen = select_finetune_logs(logs, runs, "mri")
    assert [(lg.method, lg.budget, lg.seed) for lg in chosen] == [
        ("none", "1", 0),
        ("none", "1", 1),
        ("none", "1", 2),
        ("none", "all", 0),
        ("none", "all", 1),
        ("GD", "1", 0),
        ("GD", "1", 1),
        ("GD", "1", 2),
    ]  # the stray LR log is not among them


def test_expand_paths_globs_and_missing_files(fixture_results, tmp_path):
    root = fixture_results["root"][0]
    found = expand_paths([str(root / "rs" / "finetune" / "**" / "metrics.csv"), str(root / "nothing" / "*.csv")])
    assert len(found) == 10 and all(p.name == "metrics.csv" for p in found)  # one per RS run
    with pytest.raises(InputError, match="log file does not exist"):
        expand_paths([str(tmp_path / "absent.csv")])


def test_overlay_picks_smallest_and_largest_budget_at_lowest_seed(fixture_results):
    runs, _ = read_runs(fixture_results["mri"] + fixture_results["rs"])
    found = find_overlays(runs)
    assert len(found) == len(runs)
    picked = [(r.method, r.variant, r.budget, r.seed) for r, _ in pick_overlays(found, "rs", None)]
    assert picked == [
        ("none", "dual", "5", 0),
        ("none", "early", "5", 0),
        ("hpcl", "dual", "5", 0),
        ("hpcl", "early", "5", 0),
        ("none", "dual", "100", 0),
        ("none", "early", "100", 0),
    ]
    assert [r.budget for r, _ in pick_overlays(found, "mri", ["all"])] == ["all"]
    # given explicitly, an overlay belongs to the --input metrics.json in its folder
    one = fixture_results["mri"][0].parent / "overlay.npz"
    assert list(find_overlays(runs, [one]).values()) == [one]
    with pytest.raises(InputError, match="no --input metrics.json in the same folder"):
        find_overlays(runs[1:], [one])


def test_bad_overlay_is_an_input_error(tmp_path):
    path = tmp_path / "overlay.npz"
    np.savez(
        path,
        image=np.zeros((1, 3, 4, 4)),
        truth=np.zeros((1, 3, 4, 5), np.uint8),
        pred=np.zeros((1, 3, 4, 4), np.uint8),
        subject=np.array(["a"]),
    )
    with pytest.raises(InputError, match="one shape"):
        read_overlay(path, "mri")
    with pytest.raises(InputError, match="lacks arrays"):
        read_overlay(path, "rs")


def test_selection_history_and_best_step_from_train_json(tmp_path):
    log = make.lightning_log(
        tmp_path / "mri" / "finetune" / "GD" / "budget_1" / "seed_3" / "logs" / "metrics.csv", "val/dice", 3
    )
    make.finetune_record(log.parents[1], "GD", "1", 3, [(40, 0.5), (80, 0.7), (120, None), (160, 0.7)], best_step=80)
    sel = read_selection(describe_log(log))
    assert (sel.metric, sel.steps, sel.best_step, sel.best_value) == ("val_dice", (40, 80, 120, 160), 80, 0.7)
    assert sel.values[:2] == (0.5, 0.7) and math.isnan(sel.values[2])  # null: a NaN score
    # an older train.json without a history, and a run without train.json: nothing to draw
    (log.parents[1] / "train.json").write_text(json.dumps({"method": "GD", "budget": "1", "seed": 3}))
    assert read_selection(describe_log(log)) is None
    bare = make.lightning_log(
        tmp_path / "rs" / "finetune" / "none" / "early" / "pct_5" / "seed_0" / "logs" / "metrics.csv", "val/miou", 0
    )
    assert describe_log(bare).train is None and read_selection(describe_log(bare)) is None
    (log.parents[1] / "train.json").write_text(
        json.dumps({"history": [{"step": 1, "val_dice": 0.5}, {"step": 2, "val_miou": 0.5}]})
    )
    with pytest.raises(InputError, match="'history' is not a list") as err:
        read_selection(describe_log(log))
    assert err.value.path == str(log.parents[1] / "train.json")
    # numbers recorded beside the score (a semi-supervised run's pseudo-label coverage) are not scores
    history = [{"step": 1, "val_dice": 0.5, "semi_coverage": 0.0}, {"step": 2, "val_dice": 0.6, "semi_coverage": 0.9}]
    (log.parents[1] / "train.json").write_text(json.dumps({"history": history, "best_step": 2}))
    sel = read_selection(describe_log(log))
    assert (sel.metric, sel.steps, sel.values, sel.best_value) == ("val_dice", (1, 2), (0.5, 0.6), 0.6)


def test_pretext_status_against_chance(tmp_path):
    chance = math.log(4097)  # InfoNCE with a queue of 4096 negatives and one positive: 8.318
    # 8 steps, window 0.25 → steps 0 and 1; 5 % of chance = 0.416
    collapsed = make.pretrain_record(
        tmp_path / "rs" / "pretrain" / "hpcl-ssl" / "dual",
        "hpcl-ssl",
        "pretrain",
        [8.3, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],
        chance,
        variant="dual",
    )
    run = read_pretrain_record(collapsed)
    assert (run.domain, run.method, run.stage, run.chance) == (
        "rs",
        "hpcl-ssl [dual]",
        "pretrain",
        pytest.approx(chance),
    )
    assert collapse_step(run.losses, chance) == 1
    assert pretext_status(run) == "collapsed: the pretext task is trivially solved (loss 0.3 < 5% of chance at step 1)"
    # the same fall after the first quarter is learning, not collapse; a stricter fraction does not fire either
    late = make.pretrain_record(tmp_path / "late", "GD", "global", [8.3, 6.0, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1], chance)
    assert collapse_step(read_pretrain_record(late).losses, chance) is None
    assert pretext_status(read_pretrain_record(late)) == "below chance"
    assert pretext_status(run, fraction=0.01) == "below chance"
    assert collapse_step(run.losses, chance, window=0.125) is None  # only step 0 (8.3)
    stuck = make.pretrain_record(
        tmp_path / "mri" / "pretrain" / "GD", "GD", "global", [3.5, 3.48, 3.47], 3.4657
    )  # log(32)
    assert pretext_status(read_pretrain_record(stuck)) == "not below chance"
    old = make.pretrain_record(tmp_path / "mri" / "pretrain" / "GD+LR", "GD+LR", "local", [2.0, 1.5])  # no chance_loss
    assert read_pretrain_record(old).chance is None and pretext_status(read_pretrain_record(old)) == ""
    table = pretext_table([read_pretrain_record(p) for p in (stuck, old, collapsed)], "mri")
    assert table.rows == [
        (("GD", "global"), ["3.500", "3.470", "3.466", "1.00", "not below chance"]),
        (("GD+LR", "local"), ["2.000", "1.500", "–", "–", ""]),
    ]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"method": "GD", "stage": "global"}, "needs 'loss_history'"),
        ({"loss_history": [1.0, "x"]}, "not a number"),
        ({"loss_history": [1.0], "chance_loss": -1.0}, "'chance_loss' must be a positive number"),
    ],
)
def test_bad_pretraining_record_names_file_and_problem(tmp_path, record, problem):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=problem) as err:
        read_pretrain_record(path)
    assert err.value.path == str(path)


def test_resources_per_rule_from_benchmark_files(tmp_path):
    bench = tmp_path / "results" / "benchmarks"
    files = [
        make.benchmark_tsv(bench / "mri_finetune" / "GD_budget_1.tsv", [100.0], [812.5]),
        make.benchmark_tsv(
            bench / "mri_finetune" / "none_budget_1.tsv", [60.0, 80.0], [700.0, 750.0]
        ),  # repeat(2): mean 70
        make.benchmark_tsv(bench / "report" / "report.tsv", [0.4], [None]),  # ended before the first sample
        make.benchmark_tsv(
            tmp_path / "elsewhere" / "job.tsv", [5.0], [100.0]
        ),  # no benchmarks folder: the file's folder
    ]
    summary = resource_summary(files)
    assert summary.to_dict("records")[:2] == [
        {
            "rule": "mri_finetune",
            "jobs": 2,
            "total_s": pytest.approx(170.0),
            "max_s": pytest.approx(100.0),
            "max_rss_mib": pytest.approx(812.5),
        },
        {
            "rule": "elsewhere",
            "jobs": 1,
            "total_s": pytest.approx(5.0),
            "max_s": pytest.approx(5.0),
            "max_rss_mib": pytest.approx(100.0),
        },
    ]
    assert summary.iloc[2]["rule"] == "report" and math.isnan(summary.iloc[2]["max_rss_mib"])
    assert resources_table(summary).rows[0] == (("mri_finetune",), ["2", "170.0", "100.0", "812"])
    assert resources_table(summary).rows[2] == (("report",), ["1", "0.4", "0.4", "–"])
    bad = tmp_path / "bad.tsv"
    bad.write_text("seconds\n1\n")
    with pytest.raises(InputError, match="columns s and max_rss") as err:
        resource_summary([bad])
    assert err.value.path == str(bad)


def test_stage_with_selection_pretraining_and_benchmarks(fixture_results, tmp_path):
    """The new inputs end to end: model selection figure, pretext table, compute table."""
    root = tmp_path / "results"
    inputs = []
    for method, budget in (("none", "1"), ("GD", "1"), ("none", "all")):
        for seed in make.MRI_DICE[method, budget]:
            inputs.append(make.mri_run(root, method, budget, seed, overlay=False))
            run_dir = root / "mri" / "finetune" / method / f"budget_{budget}" / f"seed_{seed}"
            make.lightning_log(run_dir / "logs" / "metrics.csv", "val/dice", seed)
            make.finetune_record(
                run_dir, method, budget, seed, [(20, 0.5), (40, 0.6 + 0.01 * seed), (60, 0.55)], best_step=40
            )
    chance = math.log(65)
    make.pretrain_record(
        root / "mri" / "pretrain" / "GD", "GD", "global", [4.0] + [0.1] * 7, chance
    )  # steps 0, 1 in the window
    make.benchmark_tsv(root / "benchmarks" / "mri_finetune" / "GD_budget_1.tsv", [30.0], [512.0])
    out = tmp_path / "report"
    rc = run_stage(
        "--input",
        *map(str, inputs),
        "--out",
        str(out),
        "--logs",
        str(root / "mri" / "finetune" / "**" / "metrics.csv"),
        "--pretrain",
        str(root / "mri" / "pretrain" / "*" / "train.json"),
        "--benchmarks",
        str(root / "benchmarks" / "**" / "*.tsv"),
    )
    assert rc == 0
    page = (out / "index.html").read_text()
    assert (out / "plots" / "mri_selection.png").stat().st_size > 1000 and "MRI: model selection in fine-tuning" in page
    pretrain = pd.read_csv(out / "mri_pretrain.csv", keep_default_na=False, dtype=str)
    assert pretrain.columns.tolist() == [
        "method",
        "stage",
        "first loss",
        "last loss",
        "chance",
        "last/chance",
        "status",
    ]
    assert pretrain.iloc[0].tolist() == [
        "GD",
        "global",
        "4.000",
        "0.100",
        "4.174",
        "0.02",
        "collapsed: the pretext task is trivially solved (loss 0.1 < 5% of chance at step 1)",
    ]
    assert "collapsed: the pretext task is trivially solved" in page and '<section id="compute">' in page
    assert pd.read_csv(out / "resources.csv").to_dict("records") == [
        {"rule": "mri_finetune", "jobs": 1, "total_s": 30.0, "max_s": 30.0, "max_rss_mib": 512.0}
    ]
    assert "| mri_finetune | 1 | 30.0 | 30.0 | 512 |" in (out / "tables.md").read_text()
    # the options are checked before anything is written
    assert run_stage("--input", *map(str, inputs), "--out", str(tmp_path / "x"), "--collapse-fraction", "1.5") == 2
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------- the stage


class _TableReader(HTMLParser):
    """Cells of the table with a given id, row by row."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_stage_writes_every_output(report_dir):
    for name in (
        "index.html",
        "tables.md",
        "tables.html",
        "metrics_tidy.csv",
        "metrics_tidy.parquet",
        "seed_stats.csv",
        "paired_stats.csv",
        "config.yaml",
    ):
        assert (report_dir / name).stat().st_size > 0, name
    for domain in ("mri", "rs"):
        for table in ("summary", "per_class", "gains"):
            assert (report_dir / f"{domain}_{table}.csv").is_file()
        for plot in ("budget", "overlays", "finetune_curves", "pretrain_curves"):
            for ext in ("png", "svg"):
                assert (report_dir / "plots" / f"{domain}_{plot}.{ext}").stat().st_size > 1000
    assert report_dir.stat().st_mode & 0o777 == 0o755  # readable by whoever opens the report
    summary = pd.read_csv(report_dir / "mri_summary.csv", keep_default_na=False)
    assert summary.columns.tolist() == ["metric", "method", "1", "all"]
    assert summary.iloc[1].tolist() == ["Dice", "GD", "0.740 ± 0.040 (n=3)", ""]
    md = (report_dir / "tables.md").read_text()
    assert "| GD | +0.090 ± 0.046 (n=3, p=0.0766, wins 3/3) |" in md


def test_tidy_files_round_trip(report_dir, tidy):
    from_parquet = pd.read_parquet(report_dir / "metrics_tidy.parquet")
    pd.testing.assert_frame_equal(from_parquet.drop(columns="source"), tidy.drop(columns="source"))
    from_csv = pd.read_csv(
        report_dir / "metrics_tidy.csv",
        keep_default_na=False,
        dtype={"budget": str, "class": str, "variant": str, "scope": str},
    )
    assert np.allclose(from_csv.value.astype(float), tidy.value, equal_nan=True)
    assert (
        from_csv[["method", "budget", "class", "metric"]].to_numpy()
        == tidy[["method", "budget", "class", "metric"]].to_numpy()
    ).all()


def test_every_tidy_cell_appears_in_the_page(report_dir, tidy):
    reader = _TableReader("tidy")
    reader.feed((report_dir / "index.html").read_text())
    header, *rows = reader.rows
    assert header == TIDY_COLUMNS
    assert len(rows) == len(tidy)
    for row, expected in zip(rows, tidy.to_dict("records"), strict=True):
        got = dict(zip(header, row, strict=True))
        for col, value in expected.items():
            if col == "value":
                assert float(got[col]) == value or (math.isnan(value) and math.isnan(float(got[col])))
            else:
                assert got[col] == str(value)


def test_page_is_self_contained(report_dir):
    page = (report_dir / "index.html").read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page
    srcs = [s.split('"', 1)[0] for s in page.split(' src="')[1:]]
    # 4 MRI figures + 3 RS figures (no RS pretraining logs in the fixture: a note instead)
    assert "Remote sensing: pretraining curves (Lightning logs), one line per run: no data." in page
    assert len(srcs) == 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    hrefs = [h.split('"', 1)[0] for h in page.split(' href="')[1:]]
    for href in hrefs:
        assert href.startswith("#") or (report_dir / href).is_file(), href
    assert "<strong>0.740 ± 0.040 (n=3)</strong>" in page  # the best per column, bold


def test_tables_only_and_domains_without_results(fixture_results, tmp_path):
    out = tmp_path / "tables"
    assert (
        run_stage(
            "--input", *map(str, fixture_results["mri"]), "--out", str(out), "--no-plots", "--domains", "mri", "rs"
        )
        == 0
    )
    assert (out / "tables.md").is_file() and not (out / "plots").exists()
    assert pd.read_csv(out / "rs_summary.csv").empty  # asked for, nothing to show: header only
    assert "(no results)" in (out / "tables.md").read_text()
    out = tmp_path / "placeholders"
    assert run_stage("--input", str(fixture_results["mri"][0]), "--out", str(out), "--domains", "rs") == 0
    assert (out / "plots" / "rs_overlays.png").is_file() and (out / "plots" / "mri_budget.png").is_file()


def test_one_report_stage_under_three_names(fixture_results, tmp_path):
    """`segpretrain report` (console script, `python -m segcore`), `medseg report` and `rs report`
    are one stage: the same functions, the same outputs."""
    import medseg.cli
    import rs.cli
    from segcore import cli

    assert (
        cli.REPORT_STAGE in medseg.cli.STAGES and cli.REPORT_STAGE in rs.cli.STAGES and cli.STAGES == [cli.REPORT_STAGE]
    )
    scripts = (
        (Path(__file__).resolve().parents[2] / "pyproject.toml")
        .read_text()
        .split("[project.scripts]", 1)[1]
        .split("\n[", 1)[0]
    )
    assert '\nsegpretrain = "segcore.cli:main"' in scripts
    inputs = [str(p) for p in fixture_results["mri"]]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segcore",
            "report",
            "--input",
            *inputs,
            "--out",
            str(tmp_path / "neutral"),
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[segpretrain report]" in proc.stderr
    for name, main in (("medseg", medseg.cli.main), ("rs", rs.cli.main)):
        assert main(["report", "--input", *inputs, "--out", str(tmp_path / name), "--no-plots"]) == 0
        for table in ("tables.md", "mri_summary.csv", "mri_gains.csv", "paired_stats.csv"):
            assert (tmp_path / name / table).read_bytes() == (tmp_path / "neutral" / table).read_bytes(), (name, table)


def test_bad_input_exits_2_and_leaves_no_output(tmp_path, capsys):
    bad = tmp_path / "metrics.json"
    bad.write_text("[]")
    out = tmp_path / "report"
    assert run_stage("--input", str(bad), "--out", str(out)) == 2
    assert f"error: {bad}: metrics file is not a JSON object" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_browser_renders_the_page(report_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run the browser check (.ci/run installs it)")
        pytest.skip("chromium not installed (Debian: apt-get install chromium); CI installs it and runs this check")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            (report_dir / "index.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    # rendered text, tables and figures: many distinct colours and real contrast, not a blank page
    assert pixels.std() > 0.1
    assert len(np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 200
    assert (pixels.mean(axis=2) < 0.3).mean() > 0.01  # dark ink (text, axes) on a light page
