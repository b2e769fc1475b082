"""The real workflow through the SLURM profile on a real (single-node) SLURM cluster.

`make slurm-up` (scripts/slurm/up.sh) brings the cluster up and installs the executor plugin
beside the venv (`.venv/slurm-plugin`, put on PYTHONPATH only for these runs: loaded by every
snakemake start, the plugin probes `scontrol`, which local runs must not need). Outside CI the
test is skipped when no cluster answers; in CI (CI=true) `.ci/run` brings one up, so a missing
cluster fails.

A tiny experiment (MRI only, 8 phantom subjects, 1 seed, budget 1, no pretraining) runs twice:
with `profiles/slurm` (every job but the local rules through sbatch) and with the workflow's
default profile alone (`profiles/default`, which Snakemake applies to both runs). Training
is deterministic on CPU with one thread, so the prepared arrays, the training records and the
evaluation metrics must be equal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / ".venv" / "slurm-plugin"
BIN = Path(sys.executable).parent

CONFIG = {
    "threads": 1,
    "mri": {
        "enabled": True,
        "input": None,
        "demo": {"n_subjects": 8, "n_slices": 8, "size": 48, "seed": 0},
        "preprocess": {
            "target_spacing": [3.0, 3.0],
            "image_size": [32, 32],
            "partitions": 4,
            "n_test": 2,
            "n_val": 1,
            "n_labeled": 2,
            "seed": 0,
        },
        "network": {"channels": [4, 8, 16]},
        "methods": ["none"],
        "finetune": {
            "budgets": ["1"],
            "all_labels_methods": [],
            "seeds": [0],
            "steps": 10,
            "batch_size": 4,
            "lr": 0.01,
            "val_every": 5,
        },
    },
    "rs": {"enabled": False},
}
# the slurm profile asks for 4 cores per training job; this node may have 2, and one thread
# per job is what makes the two runs bit-comparable
ONE_THREAD = ["mri_pretrain_global=1", "mri_pretrain_local=1", "mri_finetune=1", "mri_evaluate=1"]

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "no SLURM client (run make slurm-up)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo failed: {err}"
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no SLURM node is up (sinfo: {states or 'nothing'}; run make slurm-up)"
    if not (PLUGIN_DIR / "snakemake_executor_plugin_slurm").is_dir():
        return f"the SLURM executor plugin is not in {PLUGIN_DIR} (run make slurm-up)"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI brings a SLURM cluster up (.ci/run), but: {problem}")
    pytest.skip(problem)


def _snakemake(workdir: Path, config: Path, profile: str, extra: list[str], env: dict[str, str], timeout: int) -> str:
    """Run the workflow with ``--profile profiles/<profile>`` ("local": no --profile, only the
    workflow profile profiles/default, which applies to every run)."""
    workdir.mkdir(parents=True, exist_ok=True)
    chosen = [] if profile == "local" else ["--profile", str(ROOT / "profiles" / profile)]
    cmd = [
        "timeout",
        "-k",
        "10",
        str(timeout),
        str(BIN / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *chosen,
        "--configfile",
        str(config),
        *extra,
    ]
    # timeout -k: the SLURM executor ignores SIGTERM while it waits on a job it cannot query
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (workdir / "snakemake.log").write_text(log)
    assert proc.returncode == 0, f"snakemake ({profile}) exited {proc.returncode}:\n{log[-4000:]}"
    return log


def _outputs(results: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(results)): p
        for p in results.rglob("*")
        if p.is_file() and "logs" not in p.relative_to(results).parts
    }


def test_workflow_through_slurm_equals_a_local_run(cluster, tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    runs = {}
    for name in ("slurm", "local"):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"results": str(tmp_path / name / "results"), **CONFIG}))
        runs[name] = cfg

    t0 = time.perf_counter()
    slurm_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_DIR), env.get("PYTHONPATH")]))}
    log = _snakemake(
        tmp_path / "slurm" / "wd",
        runs["slurm"],
        "slurm",
        # no accounting database on the test cluster: squeue answers (MinJobAge=300 keeps
        # finished jobs listed); the first status check after 1 s instead of 20
        [
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--slurm-no-account",
            "--slurm-keep-successful-logs",
            "--set-threads",
            *ONE_THREAD,
        ],
        slurm_env,
        timeout=420,
    )
    slurm_seconds = time.perf_counter() - t0

    # every job of the DAG but the local rules (Snakefile localrules) went through sbatch and
    # completed; asked before the local run: squeue forgets finished jobs after MinJobAge = 300 s
    run_id = re.search(r"SLURM run ID: ([0-9a-f-]+)", log).group(1)
    planned = sorted(re.findall(r"^rule (\w+):", log, flags=re.M))
    assert planned and "all" not in planned
    assert set(re.findall(r"^localrule (\w+):", log, flags=re.M)) == {"all", "mri_demo_data", "report_tables", "report"}
    queue = subprocess.run(
        ["squeue", "-h", "-t", "all", "--name", run_id, "-o", "%k|%T"], capture_output=True, text=True, check=True
    ).stdout
    jobs = [line.split("|") for line in queue.splitlines()]
    submitted = sorted(re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment).group(1) for comment, _ in jobs)
    assert submitted == planned
    assert {state for _, state in jobs} == {"COMPLETED"}
    slurm_logs = list((tmp_path / "slurm" / "wd" / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(slurm_logs) == len(planned)

    t1 = time.perf_counter()
    _snakemake(tmp_path / "local" / "wd", runs["local"], "local", ["--cores", "2"], env, timeout=420)
    print(f"SLURM run: {slurm_seconds:.0f} s; local run: {time.perf_counter() - t1:.0f} s")

    # the same files with the same contents, up to wall-clock times
    a, b = (_outputs(tmp_path / name / "results") for name in ("slurm", "local"))
    assert a.keys() == b.keys() and "mri/evaluate/none/budget_1/seed_0/metrics.json" in a
    for rel in a:
        if rel.endswith(".npy"):
            assert np.array_equal(np.load(a[rel]), np.load(b[rel])), rel
        elif rel.endswith(("metrics.json", "train.json")):
            ja, jb = (json.loads(p.read_text()) for p in (a[rel], b[rel]))
            for j in (ja, jb):
                j.pop("wall_seconds", None)
            assert ja == jb, rel
    assert json.loads(a["mri/finetune/none/budget_1/seed_0/train.json"].read_text())["history"]
