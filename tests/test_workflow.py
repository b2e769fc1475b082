"""The Snakemake workflow: the default DAG builds (dry run), lint is clean, bad configs are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _job_counts(stdout: str) -> dict[str, int]:
    """Jobs per rule from a dry run's "Job stats" table."""
    stats = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0].splitlines()
    return {ln.split()[0]: int(ln.split()[1]) for ln in stats if len(ln.split()) == 2 and ln.split()[1].isdigit()}


def _shell_commands(stdout: str, stage: str) -> list[str]:
    """The shell commands of a dry run (-p) that start with ``stage`` (e.g. "medseg evaluate")."""
    return [ln.split(": ", 1)[1] for ln in stdout.splitlines() if ln.startswith(f"Shell command: {stage}")]


def test_default_dag_dry_run_lists_every_stage(tmp_path):
    res = _snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}/results")
    assert res.returncode == 0, res.stderr + res.stdout
    out = res.stdout
    for rule in ("mri_demo_data", "mri_preprocess", "mri_pretrain_global", "mri_pretrain_local", "mri_finetune", "mri_evaluate",
                 "rs_demo_data", "rs_preprocess", "rs_finetune", "rs_evaluate", "rs_predict_scene", "report"):
        assert rule in out, f"{rule} missing from the default DAG"
    cfg = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())
    ft = cfg["mri"]["finetune"]
    n_all = len(ft.get("all_labels_seeds") or ft["seeds"])
    n_runs = sum(len(ft["budgets"]) * len(ft["seeds"]) + (m in ft["all_labels_methods"]) * n_all for m in cfg["mri"]["methods"])
    n_cells = sum(len(ft["budgets"]) + (m in ft["all_labels_methods"]) for m in cfg["mri"]["methods"])
    counts = _job_counts(out)
    # one fine-tuning job per cell trains every seed of it (finetune_jobs: cell, the default); one evaluation job per cell scores them
    assert cfg["finetune_jobs"] == "cell"
    assert counts["mri_finetune"] + counts.get("mri_finetune_all_labels", 0) == n_cells
    assert counts["mri_evaluate"] + counts.get("mri_evaluate_all_labels", 0) == n_cells
    # finetune_jobs: seed, one job per seed
    res = _snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}/results", "finetune_jobs=seed")
    assert res.returncode == 0, res.stderr + res.stdout
    counts = _job_counts(res.stdout)
    assert counts["mri_finetune"] + counts.get("mri_finetune_all_labels", 0) == n_runs
    assert counts["mri_evaluate"] + counts.get("mri_evaluate_all_labels", 0) == n_cells


def test_evaluation_job_scores_every_seed_of_its_cell(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"rs": {"enabled": False}, "mri": {"methods": ["none"], "finetune": {
        "budgets": ["1"], "all_labels_methods": ["none"], "seeds": [3, 5, 7], "all_labels_seeds": [5]}}}))
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(cfg), "--config", f"results={tmp_path}/r")
    assert res.returncode == 0, res.stderr + res.stdout
    shells = _shell_commands(res.stdout, "medseg evaluate")
    assert len(shells) == 2
    one = next(s for s in shells if "budget_1/" in s)
    assert [f"budget_1/seed_{s}/model.pt" in one for s in (3, 5, 7)] == [True] * 3
    assert all(f"evaluate/none/budget_1/seed_{s} " in one + " " for s in (3, 5, 7))
    full = next(s for s in shells if "budget_all/" in s)
    assert "budget_all/seed_5/model.pt" in full and "seed_3" not in full and "seed_7" not in full


def test_finetuning_job_trains_every_seed_of_its_cell_in_order(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"rs": {"enabled": False}, "mri": {"methods": ["none"], "finetune": {
        "budgets": ["1"], "all_labels_methods": ["none"], "seeds": [7, 3, 5], "all_labels_seeds": [5]}}}))
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(cfg), "--config", f"results={tmp_path}/r")
    assert res.returncode == 0, res.stderr + res.stdout
    shells = _shell_commands(res.stdout, "medseg finetune")
    assert len(shells) == 2
    one = next(s for s in shells if "--budget 1 " in s)
    outs = one.split("--out ", 1)[1].split(" --budget", 1)[0].split()
    assert [o.rsplit("/", 2)[-2:] for o in outs] == [["budget_1", f"seed_{s}"] for s in (7, 3, 5)]
    assert "--seed 7 3 5 " in one
    full = next(s for s in shells if "--budget all " in s)
    assert "--seed 5 " in full and full.count("/seed_") == 1
    # one job per seed
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(cfg), "--config", f"results={tmp_path}/r", "finetune_jobs=seed")
    assert res.returncode == 0, res.stderr + res.stdout
    shells = _shell_commands(res.stdout, "medseg finetune")
    assert len(shells) == 4 and all(s.count("/seed_") == 1 for s in shells)


def test_lint_is_clean():
    res = _snakemake("--lint")
    assert res.returncode == 0 and "Congratulations" in res.stdout + res.stderr, res.stdout + res.stderr


def test_schema_rejects_unknown_keys_and_bad_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"mri": {"finetune": {"budgets": ["one"]}}}))
    res = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0 and "budgets" in (res.stderr + res.stdout)
    bad.write_text(yaml.safe_dump({"mri": {"finetuen": {}}}))
    res = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0 and "finetuen" in (res.stderr + res.stdout)


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_readme_quick_start_has_exactly_two_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in block.strip().splitlines() if ln.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci/run").read_text()


@pytest.mark.slow
def test_landslide4sense_preset_end_to_end(tmp_path):
    """The preset on a generated release, steps, batches, seeds and the network scaled down by a
    second config file (nested values given with --config reach the schema as strings)."""
    from tests.data.l4s import make

    raw = make.release(tmp_path / "raw", n_train=8, n_val=3, n_test=3)
    results = tmp_path / "results"
    scaled = tmp_path / "scaled_down.yaml"
    scaled.write_text(yaml.safe_dump({"results": str(results), "threads": 1, "rs": {
        "input": str(raw),
        "network": {"encoder": "tu-regnetx_002", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
        "pretrain": {"steps": 2, "batch_size": 4, "queue_size": 64},
        "finetune": {"budgets": ["5"], "all_labels_methods": [], "steps": 2, "batch_size": 2, "val_every": 2,
                     "seeds": [0]}}}))
    preset = ROOT / "workflows/config/landslide4sense.yaml"
    res = _snakemake("--cores", "2", "--configfile", str(preset), str(scaled))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    manifest = json.loads((results / "rs/prepared/manifest.json").read_text())
    assert manifest["protocol"] == "landslide4sense" and (manifest["tile"], manifest["overlap"]) == (128, 0)
    assert [len(manifest["splits"][s]) for s in ("labeled", "val", "test")] == [8, 3, 3]
    # MRI off; no whole-scene prediction of patches
    assert not (results / "mri").exists() and not (results / "rs/predict").exists()
    evaluated = results / "rs/evaluate"
    cells = sorted(p.relative_to(evaluated).parts[:3] for p in evaluated.rglob("metrics.json"))
    assert cells == [("hpcl-ssl", "early", "pct_5"), ("none", "early", "pct_5")]
    for path in evaluated.rglob("metrics.json"):
        m = json.loads(path.read_text())
        assert set(m["per_split"]) == {"val", "test"} and m["per_split"]["test"]["summary"] == m["summary"]
    # the competition's numbers in the tables: every run's test precision, recall and F1
    tidy = pd.read_csv(results / "report/metrics_tidy.csv")
    runs = tidy[(tidy["class"].isna()) & tidy["metric"].isin(["precision", "recall", "f1"])]
    assert set(runs["dataset"]) == {"landslide4sense"} and set(runs["split"]) == {"test"}
    by_method = runs.groupby("method")["metric"].apply(sorted).to_dict()
    assert by_method == {m: ["f1", "precision", "recall"] for m in ("hpcl-ssl", "none")}
    summary = pd.read_csv(results / "report/rs_summary.csv")
    assert {"landslide precision", "landslide recall", "landslide F1"} <= set(summary["metric"])
    for md in (results / "tables/tables.md", results / "report/tables.md"):
        text = md.read_text()
        assert all(f"landslide {k} by label budget" in text for k in ("precision", "recall", "F1"))
