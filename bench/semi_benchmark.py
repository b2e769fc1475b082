"""Benchmark of semi-supervised fine-tuning (docs/semi_supervised.md) on the demo data of both
domains, over paired seeds: test Dice at 1 and 2 labeled volumes (MRI) and test mIoU and landslide
F1 at the smallest label percentage (remote sensing) for random init (none), the best pretraining
init, each semi-supervised mode from random init, the best init with the best mode, and all labels.

    python bench/semi_benchmark.py --work DIR [--seeds 0 1 ... 9] [--jobs 2] [--domains mri rs]
        [--mri-steps 600] [--rs-steps 600] [--mri-modes ...] [--rs-modes ...] [--best-mode fixmatch]
        [--mri-budgets 1 2] [--methods none none+fixmatch ...]
        [--semi-args "--semi-threshold-mode adaptive"] [--variant NAME]

Runs the real stage CLIs with the demo config's settings (workflows/config/config.yaml: network,
batch, learning rate; bench/_demo_data.py generates and prepares the data): ``medseg pretrain``
G^D (1000 steps) then L^R (100 steps) and ``rs pretrain --method hpcl`` (200 steps, early fusion),
once each and shared by every seed; ``medseg/rs finetune`` per (method, budget), the seeds of a
cell in one process (each trains exactly as alone); ``medseg/rs evaluate``. Finished runs are
reused, so a second call only prints the table. Every run uses one torch thread; on one machine a
run is bit-identical for a given seed (same weights, same scores), so the table is reproducible
there. Another processor (other SIMD kernels) gives other numbers for the same seed, at the level
of seed noise: pair rows only with runs of the same machine, i.e. of one work folder.

Seeds are paired: seed s labels the same volumes / tiles for every method (balanced nested draws,
segcore/budget.py). Δ none: difference to random init per seed (mean ± sd, wins, paired t-test
p); Δ init: a semi-supervised method against the same init without it; gap closed: (method −
none) / (all labels − none). Below the table, the mean validation score of none and of each
semi-supervised method at every validation step, to show that the supervised baseline has flattened
by the last step. The table goes to ``WORK/table[_VARIANT].md`` and ``.json``. ``--variant``
keeps the semi-supervised runs of another option set apart from the defaults' (``<method>@NAME``)
while they pair with the same supervised runs.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _demo_data import (
    demo_config,
    mri_network_args,
    mri_pretrain_commands,
    prepare_demo,
    rs_hpcl_pretrain_command,
    rs_network_args,
)
from _machine import machine_description
from _stage_runs import run_logged

BIN = Path(sys.executable).parent
SEMI_MODES = ("self-training", "fixmatch", "unimatch")


def run(cmd: list[str], log: Path) -> float:
    """Run a stage CLI with one thread; its output into ``log``; seconds taken."""
    return run_logged(cmd, log, f"{Path(cmd[0]).name} {cmd[1]}")


def split_semi(method: str) -> tuple[str, str | None]:
    init, _, last = method.rpartition("+")
    return (init, last) if init and last in SEMI_MODES else (method, None)


class Domain:
    """The commands of one domain with the demo config's settings."""

    def __init__(
        self,
        name: str,
        work: Path,
        steps: int,
        semi_args: list[str],
        mri_budgets: tuple[str, ...] = ("1", "2"),
        variant: str = "",
    ) -> None:
        self.name, self.work, self.steps, self.semi_args = name, work / name, steps, semi_args
        self.variant = variant
        cfg = demo_config()[name]
        self.cfg = cfg
        self.cli = str(BIN / ("medseg" if name == "mri" else "rs"))
        self.prepared = prepare_demo(name, self.work)
        ft = cfg["finetune"]
        self.common = ["--batch-size", str(ft["batch_size"]), "--lr", str(ft["lr"]), "--val-every", "50"]
        if name == "mri":
            self.best_init = "GD+LR"
            self.net = mri_network_args()
            self.budgets = list(mri_budgets)
            self.all_budget = "all"
            self.metric = "dice"
        else:
            self.best_init = "hpcl-ssl"
            self.net = rs_network_args("early")  # a third cheaper per step than dual on a CPU (bench/README.md)
            self.budgets = [str(min(float(b) for b in ft["budgets"])).removesuffix(".0")]
            self.all_budget = "100"
            self.metric = "miou"

    # ------------------------------------------------------------------ pretraining

    def pretrained(self) -> Path:
        return self.work / "pretrain" / self.best_init / "model.pt"

    def pretrain(self) -> None:
        if self.pretrained().is_file():
            return
        if self.name == "mri":
            gd = self.work / "pretrain" / "GD"
            cmds = mri_pretrain_commands(self.prepared, gd, self.pretrained().parent, threads=1)
            if not (gd / "model.pt").is_file():
                run(cmds["MRI pretrain global GD"], self.work / "logs" / "pretrain_GD.log")
            run(cmds["MRI pretrain local LR"], self.work / "logs" / "pretrain_GD+LR.log")
        else:
            cmd = rs_hpcl_pretrain_command(self.prepared, self.pretrained().parent, self.net, threads=1)
            run(cmd, self.work / "logs" / "pretrain_hpcl-ssl.log")

    # ------------------------------------------------------------------ fine-tuning and evaluation

    def run_dir(self, method: str, budget: str, seed: int) -> Path:
        """A run's folder; a semi-supervised method's runs of a ``--variant`` in ``<method>@<variant>``."""
        if self.variant and split_semi(method)[1] is not None:
            method = f"{method}@{self.variant}"
        return self.work / "finetune" / method / f"budget_{budget}" / f"seed_{seed}"

    def cell(self, method: str, budget: str, seeds: list[int]) -> None:
        """Fine-tune and evaluate the missing seeds of one (method, budget) cell, in one process each."""
        todo = [s for s in seeds if not (self.run_dir(method, budget, s) / "eval" / "metrics.json").is_file()]
        if not todo:
            return
        train = [s for s in todo if not (self.run_dir(method, budget, s) / "model.pt").is_file()]
        init, mode = split_semi(method)
        tag = f"{self.run_dir(method, budget, 0).parent.parent.name}_budget_{budget}_seeds_{'-'.join(map(str, todo))}"
        if train:
            cmd = [
                self.cli,
                "finetune",
                "--data",
                str(self.prepared),
                "--out",
                *[str(self.run_dir(method, budget, s)) for s in train],
                "--seed",
                *[str(s) for s in train],
                "--budget" if self.name == "mri" else "--percent",
                budget,
                "--method",
                init,
                *self.net,
                *self.common,
                "--steps",
                str(self.steps),
                "--threads",
                "1",
            ]
            if init != "none":
                cmd += ["--init", str(self.pretrained())]
            if mode is not None:
                cmd += ["--semi", mode, *self.semi_args]
            run(cmd, self.work / "logs" / f"finetune_{tag}.log")
        cmd = [
            self.cli,
            "evaluate",
            "--data",
            str(self.prepared),
            "--model",
            *[str(self.run_dir(method, budget, s) / "model.pt") for s in todo],
            "--out",
            *[str(self.run_dir(method, budget, s) / "eval") for s in todo],
            "--threads",
            "1",
        ]
        if self.name == "mri":
            cmd.append("--no-save-predictions")
        run(cmd, self.work / "logs" / f"evaluate_{tag}.log")

    def scores(self, method: str, budget: str, seeds: list[int]) -> dict[int, dict[str, Any]]:
        """The finished seeds' test summaries and train records (a seed not finished is left out)."""
        out = {}
        for s in seeds:
            d = self.run_dir(method, budget, s)
            if not (d / "eval" / "metrics.json").is_file():
                continue
            summary = json.loads((d / "eval" / "metrics.json").read_text())["summary"]
            train = json.loads((d / "train.json").read_text())
            out[s] = {"summary": summary, "train": train}
        return out


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds])
    if len(d) < 2:
        return "—"
    from scipy.stats import ttest_1samp

    p = ttest_1samp(d, 0.0).pvalue if d.std() > 0 else math.nan
    return f"{d.mean():+.3f} ± {d.std(ddof=1):.3f} ({int((d > 0).sum())}/{len(d)}, p={p:.2g})"


def mean_sd(v: list[float]) -> str:
    if not v:
        return "—"
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, runs, tables)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--all-seeds", type=int, nargs="+", default=None, help="seeds of all labels (default --seeds)")
    ap.add_argument("--domains", nargs="+", default=["mri", "rs"], choices=["mri", "rs"])
    ap.add_argument("--jobs", type=int, default=2, help="processes side by side (one thread each)")
    ap.add_argument("--mri-steps", type=int, default=600, help="fine-tuning steps of every MRI run")
    ap.add_argument("--rs-steps", type=int, default=600, help="fine-tuning steps of every remote-sensing run")
    ap.add_argument("--mri-modes", nargs="*", default=list(SEMI_MODES), help="semi modes from random init (MRI)")
    ap.add_argument("--rs-modes", nargs="*", default=list(SEMI_MODES), help="semi modes from random init (RS)")
    ap.add_argument("--best-mode", default="fixmatch", help="the mode also run from the best pretraining init")
    ap.add_argument("--semi-args", default="", help="extra --semi-* options of every semi-supervised run")
    ap.add_argument("--mri-semi-args", default="", help="extra --semi-* options of the MRI semi-supervised runs")
    ap.add_argument("--rs-semi-args", default="", help="extra --semi-* options of the RS semi-supervised runs")
    ap.add_argument(
        "--variant",
        default="",
        help="name of this call's semi options: its semi-supervised runs go to <method>@<variant>, beside the "
        "supervised runs they pair with, which are shared (the same work folder for several option sets)",
    )
    ap.add_argument("--mri-budgets", nargs="+", default=["1", "2"], help="labeled volumes of the MRI cells")
    ap.add_argument(
        "--methods", nargs="+", default=None, help="run and tabulate only these methods (e.g. none none+fixmatch)"
    )
    ap.add_argument("--chunk", type=int, default=5, help="seeds per fine-tuning process")
    ap.add_argument("--pretrain-only", action="store_true", help="prepare the data and pretrain, nothing else")
    ap.add_argument(
        "--report-only", action="store_true", help="train nothing: the table of the runs finished so far (seeds paired)"
    )
    args = ap.parse_args()
    work = args.work.resolve()
    semi_args = shlex.split(args.semi_args)
    all_seeds = args.all_seeds or args.seeds
    t0 = time.perf_counter()
    per_domain = {"mri": shlex.split(args.mri_semi_args), "rs": shlex.split(args.rs_semi_args)}
    domains = {
        name: Domain(
            name,
            work,
            args.mri_steps if name == "mri" else args.rs_steps,
            semi_args + per_domain[name],
            tuple(args.mri_budgets),
            args.variant,
        )
        for name in args.domains
    }
    plans: dict[str, list[tuple[str, str, list[int]]]] = {}
    for name, d in domains.items():
        modes = args.mri_modes if name == "mri" else args.rs_modes
        methods = ["none", d.best_init, *[f"none+{m}" for m in modes], f"{d.best_init}+{args.best_mode}"]
        if args.methods:
            methods = [m for m in methods if m in args.methods]
        plans[name] = [(m, b, args.seeds) for b in d.budgets for m in methods] + [("none", d.all_budget, all_seeds)]
    # pretraining only where a method of the plan starts from it (all with --pretrain-only)
    pretrain = [
        d
        for name, d in domains.items()
        if args.pretrain_only or any(split_semi(m)[0] != "none" for m, _, _ in plans[name])
    ]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda d: d.pretrain(), pretrain))
    if args.pretrain_only:
        return
    jobs = []
    for name, plan in plans.items():
        for method, budget, seeds in plan:
            for i in range(0, len(seeds), args.chunk):
                jobs.append((domains[name], method, budget, seeds[i : i + args.chunk]))

    def priority(job: tuple[Domain, str, str, list[int]]) -> tuple[int, int, float]:
        """Tiers, so that a run cut short has the headline comparisons first: (0) the smallest
        budget's none, best init, best mode from both and all labels; (1) the larger MRI budget of
        those; (2) the other modes at the smallest budget; (3) at the larger. Within a tier the
        first chunk of seeds of every cell before the second, longest first (fewer idle cores)."""
        d, method, budget, seeds = job
        mode = split_semi(method)[1]
        headline = mode in (None, args.best_mode)
        smallest = budget in (d.budgets[0], d.all_budget)
        tier = (0 if smallest else 1) if headline else (2 if smallest else 3)
        cost = {"unimatch": 4.0, "self-training": 2.6, "fixmatch": 2.3, None: 1.0}[mode]
        chunk = args.seeds.index(seeds[0]) // args.chunk if seeds[0] in args.seeds else 0
        return tier, chunk, -cost * (2.0 if d.name == "rs" else 1.0)

    jobs.sort(key=priority)
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda j: j[0].cell(j[1], j[2], j[3]), jobs))
    wall = time.perf_counter() - t0

    lines = [
        "Semi-supervised fine-tuning benchmark (bench/semi_benchmark.py)",
        f"seeds {args.seeds} (paired), all labels: seeds {all_seeds}; semi options: {args.semi_args or 'defaults'}"
        f"; MRI: {args.mri_semi_args or '-'}; RS: {args.rs_semi_args or '-'}"
        + (f"; semi runs of variant {args.variant!r} (<method>@{args.variant})" if args.variant else ""),
        f"machine: {machine_description(1)}; {wall:.0f}s for the missing runs",
        "",
    ]
    record: dict[str, Any] = {"seeds": args.seeds, "semi_args": args.semi_args, "domains": {}}
    for name, d in domains.items():
        keys = ("dice_mean",) if name == "mri" else ("miou", "f1")
        all_scores = d.scores("none", d.all_budget, all_seeds)
        all_mean = {k: float(np.mean([r["summary"][k] or 0.0 for r in all_scores.values()])) for k in keys}
        record["domains"][name] = {"steps": d.steps, "all_labels": all_mean, "budgets": {}}
        for budget in d.budgets:
            methods = [m for m, b, _ in plans[name] if b == budget]
            scores = {m: d.scores(m, budget, args.seeds) for m in methods}
            values = {m: {k: {s: r["summary"][k] or 0.0 for s, r in scores[m].items()} for k in keys} for m in methods}
            head = (
                "| method | n | "
                + " | ".join(f"test {k} | Δ none (wins, p) | Δ same init (wins, p) | gap closed" for k in keys)
                + " | best val | best step | steps/s |"
            )
            lines += [
                f"### {name}: budget {budget} ({d.steps} fine-tuning steps; all labels: "
                + ", ".join(f"{k} {all_mean[k]:.3f}" for k in keys)
                + f" over {len(all_scores)} seeds)",
                "",
                head,
                "|---|---|" + "---|---|---|---|" * len(keys) + "---|---|---|",
            ]
            for m in methods:
                init, mode = split_semi(m)
                if not scores[m]:
                    lines.append(f"| {m} | 0 | not run |")
                    continue
                cells = []
                for k in keys:
                    v, base = values[m][k], values["none"][k]
                    gap = (np.mean(list(v.values())) - np.mean(list(base.values()))) / (
                        all_mean[k] - np.mean(list(base.values()))
                    )
                    cells += [
                        mean_sd(list(v.values())),
                        "—" if m == "none" else paired(v, base),
                        "—" if mode is None or init == "none" else paired(v, values[init][k]),
                        "—" if m == "none" else f"{gap:+.0%}",
                    ]
                runs = list(scores[m].values())
                val = [r["train"][f"best_val_{d.metric}"] for r in runs]
                step = [r["train"]["best_step"] for r in runs]
                speed = [r["train"]["steps"] / r["train"]["wall_seconds"] for r in runs]
                lines.append(
                    f"| {m} | {len(runs)} | "
                    + " | ".join(cells)
                    + f" | {mean_sd(val)} | {np.mean(step):.0f} | {np.mean(speed):.2f} |"
                )
            # the supervised baseline's mean validation curve: flat by the end?
            for m in methods:
                curve: dict[int, list[float]] = {}
                for r in scores[m].values():
                    for h in r["train"]["history"]:
                        curve.setdefault(h["step"], []).append(h[f"val_{d.metric}"])
                if curve and (m == "none" or split_semi(m)[1] is not None):
                    lines.append(
                        f"{m}: mean validation {d.metric} by step: "
                        + ", ".join(f"{step}: {np.mean(v):.3f}" for step, v in sorted(curve.items()))
                    )
                if split_semi(m)[1] is not None and scores[m]:
                    cov: dict[int, list[float]] = {}
                    for r in scores[m].values():
                        for h in r["train"]["history"]:
                            cov.setdefault(h["step"], []).append(h.get("semi_coverage", math.nan))
                    lines.append(
                        f"{m}: mean pseudo-label coverage by step: "
                        + ", ".join(f"{step}: {np.nanmean(v):.2f}" for step, v in sorted(cov.items()))
                    )
            lines.append("")
            record["domains"][name]["budgets"][budget] = {m: values[m] for m in methods}
    text = "\n".join(lines)
    print(text)
    stem = f"table_{args.variant}" if args.variant else "table"
    (work / f"{stem}.md").write_text(text + "\n")
    (work / f"{stem}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
