"""Wall time of the default demo DAG and of its stages.

    .venv/bin/python bench/dag_walltime.py [--cores 2] [--results DIR]
    .venv/bin/python bench/dag_walltime.py --parse .snakemake/log/<run>.snakemake.log [--results DIR]

Target: the default DAG (``make demo``) in ≤ 10 minutes on 2 cores.

Runs ``snakemake --cores N --config results=<DIR>`` (with the workflow profile profiles/default,
which Snakemake applies by itself) from the repository root with the venv's ``bin/`` first on
PATH (what ``make demo`` runs, into a fresh results folder), and parses Snakemake's log: each job's
start (the timestamp above its
``rule NAME:`` block) and end (above ``Finished jobid: N``), 1-second resolution. Per rule:
jobs, total and mean job seconds, and for training stages the seconds inside the stage
(``wall_seconds`` of each ``train.json``: model building, the training loop, validation; summed
over the seeds a fine-tuning job trains); the rest of a job is process start-up, imports and
writing outputs. "busy" is the sum of job
seconds over (cores × wall): how well the scheduler kept the cores busy.

Timings depend on what else runs on the machine: the load average is sampled every 5 s during
the run and printed beside the numbers. ``--parse`` reads the log of an earlier run instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from _demo_data import BIN, REPO
from _machine import load_average, machine_description

TARGET_SECONDS = 600
_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?(?:check)?rule (\S+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\S+)\)$")


@dataclass
class Job:
    rule: str
    start: datetime
    end: datetime | None = None

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.end else float("nan")


def parse_log(text: str) -> dict[int, Job]:
    """Jobs of a Snakemake (8/9) log by job id: rule, start and end time."""
    jobs: dict[int, Job] = {}
    stamp: datetime | None = None
    rule: str | None = None
    for line in text.splitlines():
        if m := _STAMP.match(line):
            stamp, rule = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"), None
        elif (m := _RULE.match(line)) and stamp is not None:
            rule = m.group(1)
        elif (m := _JOBID.match(line)) and rule is not None and stamp is not None:
            jobs[int(m.group(1))] = Job(rule, stamp)
            rule = None
        elif (m := _FINISHED.match(line)) and stamp is not None:
            job = jobs.get(int(m.group(1)))
            if job is not None:
                job.end = stamp
    return jobs


def stage_seconds(results: Path) -> dict[str, list[float]]:
    """``wall_seconds`` of every ``train.json`` under ``results``, keyed by the rule that wrote it
    (a fine-tuning job trains every seed of its cell: several train.json per job)."""
    import yaml

    cfg = yaml.safe_load((REPO / "workflows" / "config" / "config.yaml").read_text())
    all_dirs = {
        f"budget_{cfg['mri']['finetune'].get('all_budget', 'all')}",
        f"pct_{cfg['rs']['finetune'].get('all_budget', '100')}",
    }
    out: dict[str, list[float]] = {}
    for path in sorted(results.rglob("train.json")):
        record = json.loads(path.read_text())
        rel = path.relative_to(results).parts
        if rel[:2] in (("mri", "finetune"), ("rs", "finetune")):
            rule = f"{rel[0]}_finetune" + ("_all_labels" if all_dirs & set(rel) else "")
        elif rel[:2] == ("mri", "pretrain"):
            rule = "mri_pretrain_global" if record.get("stage") == "global" else "mri_pretrain_local"
        else:
            rule = "_".join(rel[:2])
        out.setdefault(rule, []).append(float(record.get("wall_seconds", float("nan"))))
    return out


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples = every, []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(os.getloadavg()[0])
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_dag(results: Path, cores: int, log: Path) -> tuple[float, float, int]:
    """Run the default DAG into ``results`` (Snakemake's output to ``log``): its wall seconds, the
    CPU seconds (user + sys) of Snakemake and every job, and Snakemake's exit status."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(BIN / "snakemake"), "--cores", str(cores), "--config", f"results={results}"]
    # RUSAGE_CHILDREN covers every waited-for descendant: snakemake waits for its jobs' shells,
    # the shells for the stages. CPU seconds hardly depend on what else runs; wall seconds do.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.returncode


def report(jobs: dict[int, Job], stages: dict[str, list[float]], wall: float, cores: int) -> None:
    by_rule: dict[str, list[float]] = {}
    unfinished = sorted(job.rule for job in jobs.values() if job.end is None)
    for job in jobs.values():
        if job.rule != "all" and job.end is not None:
            by_rule.setdefault(job.rule, []).append(job.seconds)
    busy = sum(sum(v) for v in by_rule.values())
    print(f"{'rule':22s} {'jobs':>4s} {'total s':>8s} {'mean s':>7s} {'in stage s':>10s} {'start-up etc. s':>15s}")
    for rule, secs in sorted(by_rule.items(), key=lambda kv: -sum(kv[1])):
        inside = stages.get(rule)
        mean_inside = sum(inside) / len(secs) if inside else None  # per job: a job may train several seeds
        inside_txt = f"{mean_inside:10.1f}" if mean_inside is not None else f"{'':10s}"
        other_txt = f"{sum(secs) / len(secs) - mean_inside:15.1f}" if mean_inside is not None else ""
        print(f"{rule:22s} {len(secs):4d} {sum(secs):8.0f} {sum(secs) / len(secs):7.1f} {inside_txt} {other_txt}")
    print(
        f"{'all jobs':22s} {sum(len(v) for v in by_rule.values()):4d} {busy:8.0f}   "
        f"(busy {100 * busy / (cores * wall):.0f} % of {cores} cores × wall; 'in stage' and 'start-up' are "
        "means per job)"
    )
    if unfinished:
        print(f"unfinished jobs (left out above): {', '.join(unfinished)}")
    verdict = "meets" if wall <= TARGET_SECONDS else "misses"
    print(
        f"DAG wall time {wall:.0f} s = {wall / 60:.1f} min on {cores} cores; target {TARGET_SECONDS // 60} min: "
        f"{verdict} it (ratio {wall / TARGET_SECONDS:.2f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument(
        "--results", type=Path, default=None, help="results folder (default: a temporary one, deleted after)"
    )
    ap.add_argument(
        "--parse", type=Path, default=None, help="parse this Snakemake log of an earlier run instead of running the DAG"
    )
    args = ap.parse_args()
    if args.parse is not None:
        jobs = parse_log(args.parse.read_text())
        starts = [j.start for j in jobs.values()]
        ends = [j.end for j in jobs.values() if j.end]
        wall = (max(ends) - min(starts)).total_seconds()
        print(f"machine (now, not at the time of that run): {machine_description()}")
        print(f"parsed {args.parse}")
        report(jobs, stage_seconds(args.results) if args.results else {}, wall, args.cores)
        return
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as tmp:
        results = (args.results or Path(tmp) / "results").resolve()
        log = Path(tmp) / "snakemake.log" if args.results is None else results.parent / f"{results.name}.snakemake.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        before = load_average()
        sampler = LoadSampler()
        sampler.start()
        wall, cpu, status = run_dag(results, args.cores, log)
        sampler.stop()
        jobs = parse_log(log.read_text())
        stages = stage_seconds(results)
        mean_load = sum(sampler.samples) / max(1, len(sampler.samples))
        print(f"machine: {machine_description()}")
        print(
            f"load average before the run {before}; 1-min load during the run: mean {mean_load:.2f}, "
            f"max {max(sampler.samples):.2f} ({len(sampler.samples)} samples; the DAG itself adds up to {args.cores})"
        )
        report(jobs, stages, wall, args.cores)
        print(
            f"CPU time of Snakemake and all jobs: {cpu:.0f} s (user + sys); on an idle machine the DAG needs at least "
            f"{cpu / args.cores:.0f} s = {cpu / args.cores / 60:.1f} min on {args.cores} cores (CPU time / cores)"
        )
        if status:
            sys.exit(f"snakemake failed (exit {status}): the numbers above cover the jobs that finished; see {log}")


if __name__ == "__main__":
    main()
