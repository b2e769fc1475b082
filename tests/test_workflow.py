"""The Snakemake workflow: the default DAG builds (dry run), lint is clean, bad configs are refused,
paths and config strings reach the shell quoted, every training and evaluation job is benchmarked."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _snakemake(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _job_counts(stdout: str) -> dict[str, int]:
    """Jobs per rule from a dry run's "Job stats" table."""
    stats = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0].splitlines()
    return {ln.split()[0]: int(ln.split()[1]) for ln in stats if len(ln.split()) == 2 and ln.split()[1].isdigit()}


def _shell_commands(stdout: str, stage: str) -> list[str]:
    """The shell commands of a dry run (-p) that start with ``stage`` (e.g. "medseg evaluate")."""
    return [ln.split(": ", 1)[1] for ln in stdout.splitlines() if ln.startswith(f"Shell command: {stage}")]


def _jobs(stdout: str) -> list[tuple[str, str]]:
    """(rule, the job's lines) of each job of a dry run."""
    jobs, current = [], None
    for line in stdout.splitlines():
        head = re.match(r"^(?:local)?rule (\w+):$", line)
        if head:
            current = [head.group(1), []]
            jobs.append(current)
        elif line.startswith("Job stats:"):
            current = None
        elif current is not None:
            current[1].append(line)
    return [(rule, "\n".join(lines)) for rule, lines in jobs]


def _write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_default_dag_dry_run_lists_every_stage(tmp_path):
    res = _snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}/results")
    assert res.returncode == 0, res.stderr + res.stdout
    out = res.stdout
    for rule in (
        "mri_demo_data",
        "mri_preprocess",
        "mri_pretrain_global",
        "mri_pretrain_local",
        "mri_finetune",
        "mri_evaluate",
        "rs_demo_data",
        "rs_preprocess",
        "rs_finetune",
        "rs_evaluate",
        "rs_predict_scene",
        "report",
    ):
        assert rule in out, f"{rule} missing from the default DAG"
    cfg = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())
    ft = cfg["mri"]["finetune"]
    n_all = len(ft.get("all_labels_seeds") or ft["seeds"])
    n_runs = sum(
        len(ft["budgets"]) * len(ft["seeds"]) + (m in ft["all_labels_methods"]) * n_all for m in cfg["mri"]["methods"]
    )
    n_cells = sum(len(ft["budgets"]) + (m in ft["all_labels_methods"]) for m in cfg["mri"]["methods"])
    # the semi-supervised cells: every mode from every init method (semi.methods) at semi.budgets
    semi = cfg["mri"]["semi"]
    n_semi = len(semi["modes"]) * len(semi.get("methods") or cfg["mri"]["methods"]) * len(semi["budgets"])
    assert n_semi >= 1  # the demo: fixmatch from the best pretraining init
    n_cells += n_semi
    n_runs += n_semi * len(ft["seeds"])
    counts = _job_counts(out)
    # one fine-tuning job per cell trains every seed of it (finetune_jobs: cell, the default); one
    # evaluation job per cell scores them
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
    cfg.write_text(
        yaml.safe_dump(
            {
                "rs": {"enabled": False},
                "mri": {
                    "methods": ["none"],
                    "finetune": {
                        "budgets": ["1"],
                        "all_labels_methods": ["none"],
                        "seeds": [3, 5, 7],
                        "all_labels_seeds": [5],
                    },
                },
            }
        )
    )
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
    cfg.write_text(
        yaml.safe_dump(
            {
                "rs": {"enabled": False},
                "mri": {
                    "methods": ["none"],
                    "finetune": {
                        "budgets": ["1"],
                        "all_labels_methods": ["none"],
                        "seeds": [7, 3, 5],
                        "all_labels_seeds": [5],
                    },
                },
            }
        )
    )
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
    res = _snakemake(
        "-n", "-p", "--cores", "1", "--configfile", str(cfg), "--config", f"results={tmp_path}/r", "finetune_jobs=seed"
    )
    assert res.returncode == 0, res.stderr + res.stdout
    shells = _shell_commands(res.stdout, "medseg finetune")
    assert len(shells) == 4 and all(s.count("/seed_") == 1 for s in shells)


def _lint(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lint_workflow.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lint_is_clean():
    # every Snakemake lint but "a conda environment or container per rule" (README "Software environment")
    res = _lint()
    assert res.returncode == 0 and "snakemake --lint: " in res.stdout, res.stdout + res.stderr


def test_lint_check_fails_on_any_other_lint(tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        'rule a:\n    output:\n        "a.txt",\n    shell:\n        "touch {output}"\n'
    )  # no log directive
    res = _lint("--snakefile", str(snakefile))
    assert res.returncode == 1 and "rule a" in res.stderr and "No log directive defined" in res.stderr, (
        res.stdout + res.stderr
    )
    snakefile.write_text("rule a:\n    output\n")  # not even a Snakefile: Snakemake's own error fails the check
    assert _lint("--snakefile", str(snakefile)).returncode != 0


# a results folder and an input folder whose names a shell would run or split: quoted, they are
# one word each and nothing in them runs
SHELL_NAME = 'my results $(touch INJECTED); it\'s "q" `touch INJECTED2` & x'


def test_rules_quote_every_path_and_config_string(tmp_path):
    results, data = tmp_path / SHELL_NAME, tmp_path / "mri in; touch INJECTED3 |"
    data.mkdir()
    cfg = _write_config(tmp_path / "cfg.yaml", {"results": str(results), "mri": {"input": str(data)}})
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr + res.stdout
    shells = [s for s in _shell_commands(res.stdout, "") if s != "None"]  # rule all runs nothing
    stages = {shlex.split(s)[0] + " " + shlex.split(s)[1] for s in shells}
    assert {
        "medseg preprocess",
        "medseg pretrain",
        "medseg finetune",
        "medseg evaluate",
        "rs demo-data",
        "rs preprocess",
        "rs pretrain",
        "rs finetune",
        "rs evaluate",
        "rs predict",
        "segpretrain report",
    } <= stages
    for shell in shells:
        words = shlex.split(shell)  # as the shell splits it: each path is one word
        for word in words:
            if "INJECTED" in word or "my results" in word or "mri in;" in word:
                assert word.startswith((str(results), str(data))), (word, shell)
        assert ">" in words and words[words.index(">") + 1].startswith(f"{results}/logs/")
    pre = shlex.split(_shell_commands(res.stdout, "medseg preprocess")[0])
    assert pre[pre.index("--input") + 1] == str(data) and pre[pre.index("--out") + 1] == f"{results}/mri/prepared"
    report = shlex.split(next(s for s in _shell_commands(res.stdout, "segpretrain report") if "--domains" in s))
    assert report[report.index("--out") + 1] == f"{results}/report"
    assert f"{results}/mri/finetune/**/logs/metrics.csv" in report and f"{results}/benchmarks/**/*.tsv" in report
    assert (
        f"{results}/mri/pretrain/GD+LR/train.json" in report
        and f"{results}/rs/pretrain/hpcl-ssl/dual/train.json" in report
    )
    ft = shlex.split(next(s for s in _shell_commands(res.stdout, "rs finetune") if "hpcl-ssl" in s))
    assert ft[ft.index("--init") + 1] == f"{results}/rs/pretrain/hpcl-ssl/dual/model.pt"
    # a results folder with glob characters: escaped in the patterns the report expands itself
    cfg = _write_config(tmp_path / "cfg2.yaml", {"results": str(tmp_path / "run [v2]"), "rs": {"enabled": False}})
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(cfg))
    report = shlex.split(next(s for s in _shell_commands(res.stdout, "segpretrain report") if "--domains" in s))
    assert f"{tmp_path}/run [[]v2]/benchmarks/**/*.tsv" in report


def test_a_job_runs_in_a_results_folder_named_with_shell_characters(tmp_path):
    """For real: a quoting slip would split the path or run $(...), `...` or ; as commands."""
    results, workdir = tmp_path / SHELL_NAME, tmp_path / "wd"
    workdir.mkdir()
    cfg = _write_config(
        tmp_path / "cfg.yaml",
        {
            "results": str(results),
            "rs": {"enabled": False},
            "mri": {"demo": {"n_subjects": 4, "n_slices": 4, "size": 32}},
        },
    )
    # the target first: --configfile takes every argument after it
    res = _snakemake(
        f"{results}/mri/raw",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "1",
        "--configfile",
        str(cfg),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert (results / "mri" / "raw" / "dataset.json").is_file() and (results / "logs" / "mri_demo_data.log").is_file()
    assert not [p for p in tmp_path.rglob("INJECTED*")] and not list(ROOT.glob("INJECTED*"))


def test_schema_rejects_a_path_with_a_line_break(tmp_path):
    for config, key in (
        ({"results": "a\nb"}, "results"),
        ({"mri": {"input": "/data/x\r"}}, "input"),
        ({"rs": {"input": "x\ny"}}, "input"),
    ):
        res = _snakemake("-n", "--cores", "1", "--configfile", str(_write_config(tmp_path / "bad.yaml", config)))
        assert res.returncode != 0 and "On instance" in res.stderr + res.stdout and key in res.stderr + res.stdout, (
            config
        )
    res = _snakemake(
        "-n",
        "--cores",
        "1",
        "--configfile",
        str(_write_config(tmp_path / "ok.yaml", {"results": str(tmp_path / "a b")})),
    )
    assert res.returncode == 0, res.stderr + res.stdout  # spaces are fine


# the rules Snakemake measures (benchmark:); the others are cheap, and all but rs_predict_scene
# run in Snakemake's own process under a cluster executor (Snakefile localrules; a dry run does
# not tell local rules apart, tests/test_slurm.py checks them on a cluster)
BENCHMARKED = {
    "mri_preprocess",
    "rs_preprocess",
    "mri_pretrain_global",
    "mri_pretrain_local",
    "mri_pretrain_hpcl",
    "rs_pretrain",
    "mri_finetune",
    "mri_finetune_all_labels",
    "rs_finetune",
    "rs_finetune_all_labels",
    "mri_evaluate",
    "mri_evaluate_all_labels",
    "rs_evaluate",
    "rs_evaluate_all_labels",
}
UNMEASURED = {"all", "mri_demo_data", "rs_demo_data", "report_tables", "report", "rs_predict_scene"}


def test_benchmarks_and_the_default_profile(tmp_path):
    for extra in ([], ["finetune_jobs=seed"]):
        # no --profile and no -p: profiles/default applies by itself (printshellcmds)
        res = _snakemake(
            "-n", "--cores", "2", "--config", f"results={tmp_path}/r", "mri={methods: [none, GD+LR, hpcl]}", *extra
        )
        assert res.returncode == 0, res.stderr + res.stdout
        assert "workflow specific profile profiles/default" in res.stderr and "Shell command: medseg" in res.stdout
        jobs = _jobs(res.stdout)
        assert {rule for rule, _ in jobs} == BENCHMARKED | UNMEASURED
        files = []
        for rule, text in jobs:
            found = re.findall(r"^    benchmark: (.+)$", text, flags=re.M)
            assert len(found) == (rule in BENCHMARKED), (rule, text)
            files += [(rule, f) for f in found]
            if rule in BENCHMARKED:
                assert found[0].startswith(f"{tmp_path}/r/benchmarks/{rule}/") and found[0].endswith(".tsv")
        assert len({f for _, f in files}) == len(files)  # one file per job
    # finetune_jobs=seed: methods × budgets × seeds, and the demo's semi cell (GD+LR+fixmatch, budget 1)
    # methods x the demo's budgets x its seeds, and its semi cell (GD+LR+fixmatch at budget 1)
    ft = yaml.safe_load((ROOT / "workflows/config/config.yaml").read_text())["mri"]["finetune"]
    n_seeds = len(ft["seeds"])
    assert sum(rule == "mri_finetune" for rule, _ in files) == 3 * len(ft["budgets"]) * n_seeds + 1 * 1 * n_seeds


def test_semi_axis_cells_arguments_and_steps(tmp_path):
    """semi.modes × init methods at semi.budgets: cells <init>+<mode>, the stage gets the init
    method, its checkpoint, --semi and the options as words, and semi.steps."""
    cfg = _write_config(
        tmp_path / "cfg.yaml",
        {
            "rs": {"enabled": False},
            "mri": {
                "methods": ["none", "GD+LR"],
                "semi": {
                    "modes": ["fixmatch", "self-training"],
                    "methods": ["GD+LR"],
                    "budgets": ["1"],
                    "steps": 77,
                    "options": {"threshold": 0.9, "cutmix_area": [0.1, 0.3]},
                },
                "finetune": {"budgets": ["1", "2"], "all_labels_methods": [], "seeds": [0, 1]},
            },
        },
    )
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(cfg), "--config", f"results={tmp_path}/r")
    assert res.returncode == 0, res.stderr + res.stdout
    shells = _shell_commands(res.stdout, "medseg finetune")
    semi = [s for s in shells if "--semi " in s]
    assert len(shells) == 6 and len(semi) == 2  # 2 methods x 2 budgets + 2 modes x 1 init x 1 budget
    for mode in ("fixmatch", "self-training"):
        (one,) = [s for s in semi if f"GD+LR+{mode}/budget_1/seed_0" in s]
        words = shlex.split(one.split(" > ")[0])
        assert words[words.index("--method") + 1] == "GD+LR" and words[words.index("--semi") + 1] == mode
        assert words[words.index("--init") + 1].endswith("/mri/pretrain/GD+LR/model.pt")
        assert words[words.index("--steps") + 1] == "77" and words[words.index("--semi-threshold") + 1] == "0.9"
        i = words.index("--semi-cutmix-area")
        assert words[i + 1 : i + 3] == ["0.1", "0.3"]
    plain = [s for s in shells if "--semi" not in s]
    assert all(
        shlex.split(s.split(" > ")[0])[shlex.split(s.split(" > ")[0]).index("--steps") + 1] != "77" for s in plain
    )
    assert len(_shell_commands(res.stdout, "medseg evaluate")) == 6
    bad = _write_config(tmp_path / "bad.yaml", {"mri": {"semi": {"modes": ["mean-teacher"]}}})
    res = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0 and "mean-teacher" in (res.stderr + res.stdout)
    bad = _write_config(tmp_path / "bad.yaml", {"mri": {"semi": {"options": {"treshold": 0.9}}}})
    res = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert res.returncode != 0 and "treshold" in (res.stderr + res.stdout)


def test_pretrained_method_fine_tunes_from_the_configured_encoder_weights(tmp_path):
    """Method `pretrained` (docs/pretrained_encoders.md): no pretraining job, its cells (and their
    semi-supervised cells) get --encoder-weights from <domain>.encoder_weights, a file is a job
    input; without weights, or with a named source the MRI U-Net has none of, the DAG is refused."""
    weights = tmp_path / "my encoder.pt"
    weights.write_bytes(b"")  # a dry run only needs it to exist
    cfg = {
        "mri": {
            "methods": ["none", "pretrained"],
            "encoder_weights": str(weights),
            "semi": {"modes": ["fixmatch"], "methods": ["pretrained"], "budgets": ["1"]},
            "finetune": {"budgets": ["1"], "all_labels_methods": [], "seeds": [0]},
        },
        "rs": {
            "methods": ["none", "pretrained"],
            "encoder_weights": "imagenet",
            "fusions": ["early"],
            "semi": {"modes": []},
            "finetune": {"budgets": ["5"], "all_labels_methods": [], "seeds": [0]},
        },
    }
    path = _write_config(tmp_path / "cfg.yaml", cfg)
    res = _snakemake("-n", "-p", "--cores", "1", "--configfile", str(path), "--config", f"results={tmp_path}/r")
    assert res.returncode == 0, res.stderr + res.stdout
    counts = _job_counts(res.stdout)
    assert not any(rule.startswith(("mri_pretrain", "rs_pretrain")) for rule in counts), counts
    mri = _shell_commands(res.stdout, "medseg finetune")
    assert len(mri) == 3  # none, pretrained, pretrained+fixmatch at budget 1
    for shell in mri:
        words = shlex.split(shell.split(" > ")[0])
        pretrained = "/pretrained" in words[words.index("--out") + 1]
        assert ("--encoder-weights" in words) == pretrained and "--init" not in words
        if pretrained:
            assert words[words.index("--encoder-weights") + 1] == str(weights)
            assert words[words.index("--method") + 1] == "pretrained"
    rs = _shell_commands(res.stdout, "rs finetune")
    (one,) = [s for s in rs if "/pretrained/" in s]
    words = shlex.split(one.split(" > ")[0])
    assert words[words.index("--encoder-weights") + 1] == "imagenet"
    assert not any("--encoder-weights" in s for s in rs if "/none/" in s)
    # the weights file is an input of its cells: a missing file stops the DAG before any job
    weights.unlink()
    res = _snakemake("-n", "--cores", "1", "--configfile", str(path), "--config", f"results={tmp_path}/r")
    assert res.returncode != 0 and "my encoder.pt" in (res.stderr + res.stdout)
    for domain, weights_value, message in (
        ("mri", None, "mri.encoder_weights is not set"),
        ("mri", "imagenet", "no weights for the MRI U-Net"),
        ("rs", None, "rs.encoder_weights is not set"),
    ):
        bad = {**cfg, domain: {**cfg[domain], "encoder_weights": weights_value}}
        res = _snakemake("-n", "--cores", "1", "--configfile", str(_write_config(tmp_path / "bad.yaml", bad)))
        assert res.returncode != 0 and message in (res.stderr + res.stdout), res.stderr[-2000:]


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
    scaled.write_text(
        yaml.safe_dump(
            {
                "results": str(results),
                "threads": 1,
                "rs": {
                    "input": str(raw),
                    "network": {"encoder": "tu-regnetx_002", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
                    "pretrain": {"steps": 2, "batch_size": 4, "queue_size": 64},
                    "semi": {"modes": ["fixmatch"], "options": {"batch_size": 2}},  # one of the preset's modes
                    "finetune": {
                        "budgets": ["5"],
                        "all_labels_methods": [],
                        "steps": 2,
                        "batch_size": 2,
                        "val_every": 2,
                        "seeds": [0],
                    },
                },
            }
        )
    )
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
    assert cells == [
        ("hpcl-ssl", "early", "pct_5"),
        ("hpcl-ssl+fixmatch", "early", "pct_5"),
        ("none", "early", "pct_5"),
        ("none+fixmatch", "early", "pct_5"),
    ]
    for path in evaluated.rglob("metrics.json"):
        m = json.loads(path.read_text())
        assert set(m["per_split"]) == {"val", "test"} and m["per_split"]["test"]["summary"] == m["summary"]
    # the competition's numbers in the tables: every run's test precision, recall and F1
    tidy = pd.read_csv(results / "report/metrics_tidy.csv")
    runs = tidy[(tidy["class"].isna()) & tidy["metric"].isin(["precision", "recall", "f1"])]
    assert set(runs["dataset"]) == {"landslide4sense"} and set(runs["split"]) == {"test"}
    by_method = runs.groupby("method")["metric"].apply(sorted).to_dict()
    assert by_method == {
        m: ["f1", "precision", "recall"] for m in ("hpcl-ssl", "none", "hpcl-ssl+fixmatch", "none+fixmatch")
    }
    semi = pd.read_csv(results / "report/rs_semi_gains.csv")  # each semi cell against its init
    assert set(semi["method"]) == {"hpcl-ssl+fixmatch [early]", "none+fixmatch [early]"}  # RS rows name their fusion
    summary = pd.read_csv(results / "report/rs_summary.csv")
    assert {"landslide precision", "landslide recall", "landslide F1"} <= set(summary["metric"])
    for md in (results / "tables/tables.md", results / "report/tables.md"):
        text = md.read_text()
        assert all(f"landslide {k} by label budget" in text for k in ("precision", "recall", "F1"))


@pytest.mark.slow
def test_acdc_preset_end_to_end(tmp_path):
    """The ACDC preset on a generated 100-patient ACDC folder, step counts, batches and seeds
    scaled down by a second config file; its splits, spacing, size, N4, methods and budgets are
    the preset's own."""
    from tests.data.acdc.make import make_acdc

    make_acdc(tmp_path / "ACDC", n_train=100, n_test=0, with_4d=False)
    results = tmp_path / "results"
    scaled = tmp_path / "scaled_down.yaml"
    steps = {"steps": 2, "volumes_per_batch": 2}
    scaled.write_text(
        yaml.safe_dump(
            {
                "results": str(results),
                "threads": 1,
                "finetune_jobs": "cell",
                "mri": {
                    "input": str(tmp_path / "ACDC" / "training"),
                    "pretrain": {"global": steps, "local": steps},
                    "finetune": {"steps": 2, "batch_size": 2, "val_every": 2, "seeds": [0], "all_labels_seeds": [0]},
                    # one of the preset's semi-supervised cells (every mode x init x budget would add 54)
                    "semi": {
                        "modes": ["fixmatch"],
                        "methods": ["none"],
                        "budgets": ["1"],
                        "options": {"batch_size": 2},
                    },
                },
            }
        )
    )
    preset = ROOT / "workflows/config/acdc.yaml"
    res = _snakemake("--cores", "2", "--configfile", str(preset), str(scaled), timeout=3600)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    manifest = json.loads((results / "mri/prepared/manifest.json").read_text())
    subjects = manifest["subject_splits"]
    assert sorted(subjects["test"]) == sorted(yaml.safe_load(preset.read_text())["mri"]["preprocess"]["test_subjects"])
    assert sorted(subjects["val"]) == ["patient011", "patient071"] and len(subjects["labeled"]) == 78
    assert manifest["target_spacing"] == [1.36719, 1.36719] and manifest["image_size"] == [192, 192]
    tidy = pd.read_csv(results / "report/metrics_tidy.csv")
    cells = set(zip(tidy["method"], tidy["budget"].astype(str), strict=True))
    methods = ["none", "GR", "GD-", "GD", "GD+LR", "GD+LD"]
    assert {(m, b) for m in methods for b in ("1", "2", "8")} | {("none", "all"), ("none+fixmatch", "1")} == cells
    # the paper's table: methods x budgets, Dice mean ± sd
    summary = pd.read_csv(results / "report/mri_summary.csv")
    assert "Dice" in set(summary["metric"]) and {"1", "2", "8"} <= set(summary.columns)


def _own_data_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Your own data", 1)[1].split("\n## ", 1)[0]


def test_readme_own_data_commands_plan_their_runs(tmp_path):
    """Every command of the README's own-data section, dry-run in a folder holding the data where
    the README says: the presets and the config files it shows build their whole DAG."""
    from tests.data.acdc.make import make_acdc
    from tests.data.l4s.make import release

    section = _own_data_section()
    (tmp_path / "workflows").symlink_to(ROOT / "workflows")
    make_acdc(tmp_path / "data" / "ACDC", n_train=100, n_test=0, with_4d=False)
    release(tmp_path / "data" / "Landslide4Sense", n_train=4, n_val=2, n_test=2)
    make_acdc(tmp_path / "data" / "my_scans_src", n_train=5, n_test=0, with_4d=False)
    shutil.move(str(tmp_path / "data" / "my_scans_src" / "training"), str(tmp_path / "data" / "my_scans"))
    scenes = tmp_path / "data" / "my_scenes"
    scenes.mkdir(parents=True)
    (scenes / "scenes.json").write_text(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        name = block.splitlines()[0].lstrip("# ").strip()
        (tmp_path / name).write_text(block)
    commands = [
        line.split("snakemake", 1)[1].split()
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if "snakemake" in line
    ]
    assert len(commands) == 5
    for words in commands:
        res = _snakemake("-n", "--snakefile", str(ROOT / "Snakefile"), *words, cwd=tmp_path)
        assert res.returncode == 0, " ".join(words) + "\n" + res.stderr[-2000:] + res.stdout[-2000:]
        assert "Job stats:" in res.stdout, " ".join(words)
