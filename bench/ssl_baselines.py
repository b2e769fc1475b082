"""Benchmark of every pretraining method of both domains against random init, with the generic
self-supervised baselines (MoCo v2, BYOL, DenseCL, DetCon; docs/ssl_baselines.md) among them.

    python bench/ssl_baselines.py --work DIR [--seeds 0 1 ... 9] [--budget-seconds 120] [--jobs 2]
        [--domains mri rs] [--mri-methods ...] [--rs-methods ...] [--mri-steps 600] [--rs-steps 200]

Runs the real stage CLIs on the demo data of workflows/config/config.yaml (``bench/_demo_data.py``):

1. **Calibration**: each pretraining method's time per optimisation step is measured in this
   process (one thread, the strategy's own loader, loss, backward and optimiser step; 2 warm-up
   steps, then the median of 6), and each method gets ``round(budget / step time)`` steps, so that
   every method trains for the same time budget (the runs' own wall time is recorded next to it).
   A two-stage method (G^D + L^R, G^D + L^D) spends the budget on both stages: the local stage its
   100 steps (the demo's), the global stage the rest. Setup before the first step (SLIC masks of
   hpcl and DetCon on MRI) is outside the budget.
2. **Pretraining**: one run per method (seed 0).
3. **Fine-tuning**, identical for every method: the smallest label budget of the demo config
   (MRI: 1 labeled subject, ``--mri-steps`` 600 steps, batch 8, lr 3e-3; scenes: 5 % of the labeled
   tiles, early fusion, ``--rs-steps`` 200 steps, batch 16, lr 2e-3), best of the validations every
   50 steps, 10 paired seeds (seed s labels the same data for every method); one process per method
   trains every seed. The step counts are past the point where the from-scratch validation curve
   is flat (docs/ssl_baselines.md), so the methods are compared converged; runs of other step
   counts live in their own folders (``finetune_<steps>``, ``evaluate_<steps>``).
4. **Evaluation** on the test split; the table: mean ± sd over seeds, paired differences against
   ``none`` and against the best generic baseline (mean ± sd, wins, paired t-test).

Finished runs are reused, so a second call only prints the table. CPU runs with the same seeds are
bit-identical on one machine (same code, threads and kernels), so each seed is trained once; another
processor's kernels give other numbers, so runs pair only within one machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _demo_data import mri_network_args, prepare_demo, rs_network_args
from _machine import machine_description
from _stage_runs import run_logged
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
CLI = {"mri": [sys.executable, "-m", "medseg.cli"], "rs": [sys.executable, "-m", "rs.cli"]}
GENERIC = ("mocov2", "byol", "densecl", "detcon")
MRI_METHODS = ["none", "GR", "GD-", "GD", "GD+LR", "GD+LD", "hpcl", *GENERIC]
RS_METHODS = ["none", "hpcl-ssl", *GENERIC]
LOCAL_STEPS = 100  # the demo's local stage
# fine-tuning steps: past the point where the from-scratch validation curve is flat (docs/ssl_baselines.md:
# MRI within 0.01 of its plateau from 500 steps, scenes past their peak at 100-150 steps)
FINETUNE_STEPS = {"mri": 600, "rs": 200}
MRI_FINETUNE = ["--budget", "1", "--batch-size", "8", "--lr", "0.003", "--val-every", "50"]
RS_FINETUNE = ["--percent", "5", "--batch-size", "16", "--lr", "0.002", "--val-every", "50"]
# the generic baselines and hpcl at demo size: queue 4096 (a run of a few hundred steps of 16 images
# never fills 65,536), EMA momentum 0.99 (0.999 barely moves the key encoder in a few hundred steps)
SSL = [
    "--batch-size",
    "16",
    "--lr",
    "0.001",
    "--queue-size",
    "4096",
    "--momentum",
    "0.99",
    "--crop-scale",
    "0.6",
    "1.0",
]


def network_args(domain: str) -> list[str]:
    """The demo network of ``domain`` (the scenes' in early fusion: cheaper per step than dual)."""
    return mri_network_args() if domain == "mri" else rs_network_args("early")


def pretrain_args(domain: str, method: str, data: Path, out: Path, init: Path | None = None) -> list[str]:
    """The pretraining options of ``method`` (no --steps): a stage name of the workflow (GR, GD+LR's
    local stage given ``init``, hpcl, hpcl-ssl) or a generic baseline."""
    common = ["pretrain", "--data", str(data), "--out", str(out), "--seed", "0", "--threads", "1"]
    if domain == "rs":
        name = "hpcl" if method == "hpcl-ssl" else method
        return [*common, "--method", name, *network_args("rs"), *SSL]
    if method in ("GR", "GD-", "GD"):
        return [*common, *network_args("mri"), "--stage", "global", "--strategy", method, "--volumes-per-batch", "4"]
    if "+" in method:
        local = method.split("+")[1]
        return [*common, "--stage", "local", "--strategy", local, "--init", str(init), "--volumes-per-batch", "4"]
    return [*common, *network_args("mri"), "--method", method, *SSL]


def run(cmd: list[str], log: Path) -> float:
    return run_logged(cmd, log, " ".join(cmd[2:4]))


def step_seconds(domain: str, argv: list[str], warmup: int = 2, timed: int = 6) -> float:
    """Median seconds of one pretraining step (loss, backward, optimiser step) of the run ``argv``
    would start, measured in this process with one thread."""
    from segcore.config import add_options, from_namespace
    from segcore.prepared import open_prepared
    from segcore.runtime.seeds import configure_runtime, step_generator

    if domain == "mri":
        from medseg.config import MRIPretrainConfig as Config
        from medseg.domain import MRIDomain as Domain
    else:
        from rs.config import RSPretrainConfig as Config
        from rs.domain import RSDomain as Domain
    parser = argparse.ArgumentParser()
    add_options(parser, Config)
    cfg = from_namespace(Config, parser.parse_args(argv[1:]))
    configure_runtime(1, 0)
    dom = Domain()
    data = open_prepared(cfg.data, dom.name, dom.title)
    net, _, strategy, _ = dom.pretrain_setup(data, cfg)
    net.train()
    strategy.train()
    strategy.set_train_mode(net, True)
    opt = strategy.optimizer(strategy.trained_parameters(net), cfg.lr)
    loader = strategy.loader(data, dom.pretrain_groups(data), warmup + timed, 0, 0, 1, 0, False)
    times = []
    for k, batch in enumerate(loader):
        t0 = time.perf_counter()
        loss, _ = strategy.loss(net, batch, step_generator(0, 0, k))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:])


def calibrate(work: Path, domains: dict[str, list[str]], data: dict[str, Path], budget: float) -> dict[str, Any]:
    """Seconds per step and the steps of every pretraining run (cached in calibration.json)."""
    path = work / "calibration.json"
    cal: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if cal.get("budget_seconds") not in (None, budget):
        raise SystemExit(f"{path} was made for a budget of {cal['budget_seconds']} s; use another --work")
    cal["budget_seconds"] = budget
    seconds = cal.setdefault("step_seconds", {})
    for domain, methods in domains.items():
        for method in methods:
            if method == "none" or f"{domain}/{method}" in seconds:
                continue
            stages = method.split("+")
            for stage in stages if "+" in method else [method]:
                key = f"{domain}/{stage}"
                if key in seconds:
                    continue
                init = None
                if stage in ("LR", "LD"):  # the local stage needs a global checkpoint: 5 steps of G^D
                    init = work / "calibration" / "GD_init"
                    if not (init / "model.pt").is_file():
                        run(
                            [*CLI["mri"], *pretrain_args("mri", "GD", data["mri"], init), "--steps", "5"],
                            work / "calibration" / "GD_init.log",
                        )
                    init = init / "model.pt"
                name = stage if stage not in ("LR", "LD") else f"GD+{stage}"
                argv = pretrain_args(domain, name, data[domain], work / "calibration" / "unused", init)
                seconds[key] = step_seconds(domain, argv)
                print(f"  {key}: {seconds[key]:.3f} s/step", flush=True)
                path.write_text(json.dumps(cal, indent=1))
    steps: dict[str, dict[str, int]] = {}
    for domain, methods in domains.items():
        for method in methods:
            if method == "none":
                continue
            if "+" in method:
                g, loc = method.split("+")
                rest = budget - LOCAL_STEPS * seconds[f"{domain}/{loc}"]
                steps[f"{domain}/{method}"] = {g: max(1, round(rest / seconds[f"{domain}/{g}"])), loc: LOCAL_STEPS}
            else:
                steps[f"{domain}/{method}"] = {method: max(1, round(budget / seconds[f"{domain}/{method}"]))}
    cal["steps"] = steps
    path.write_text(json.dumps(cal, indent=1))
    return cal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, runs, table)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--budget-seconds", type=float, default=60.0, help="pretraining time per method (s)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    ap.add_argument("--domains", nargs="+", default=["mri", "rs"], choices=["mri", "rs"])
    ap.add_argument("--mri-methods", nargs="+", default=MRI_METHODS)
    ap.add_argument("--rs-methods", nargs="+", default=RS_METHODS)
    ap.add_argument("--mri-steps", type=int, default=FINETUNE_STEPS["mri"], help="MRI fine-tuning steps")
    ap.add_argument("--rs-steps", type=int, default=FINETUNE_STEPS["rs"], help="scene fine-tuning steps")
    args = ap.parse_args()
    steps = {"mri": args.mri_steps, "rs": args.rs_steps}
    work = args.work.resolve()
    t_start = time.perf_counter()
    domains = {d: (args.mri_methods if d == "mri" else args.rs_methods) for d in args.domains}
    data = {d: prepare_demo(d, work / d) for d in domains}
    cal = calibrate(work, domains, data, args.budget_seconds)

    def pretrained(domain: str, method: str) -> Path:
        return work / domain / "pretrain" / method / "model.pt"

    locks = {m: threading.Lock() for m in ("GD", "GR", "GD-")}

    def pretrain(domain: str, method: str) -> None:
        plan = cal["steps"][f"{domain}/{method}"]
        out = pretrained(domain, method).parent
        if (out / "model.pt").is_file():
            return
        if "+" in method:
            g, loc = method.split("+")
            base = work / domain / "pretrain" / f"{g}_for_local_{plan[g]}"
            with locks[g]:  # G^D + L^R and G^D + L^D share their global run
                if not (base / "model.pt").is_file():
                    cmd = [*CLI[domain], *pretrain_args(domain, g, data[domain], base), "--steps", str(plan[g])]
                    run(cmd, base.parent / f"{base.name}.log")
            cmd = pretrain_args(domain, method, data[domain], out, base / "model.pt")
            run([*CLI[domain], *cmd, "--steps", str(plan[loc])], out.parent / f"{method}.log")
            return
        cmd = pretrain_args(domain, method, data[domain], out)
        run([*CLI[domain], *cmd, "--steps", str(plan[method])], out.parent / f"{method}.log")

    def cell(job: tuple[str, str]) -> None:
        """Pretraining (unless none), fine-tuning of every seed, evaluation: one method's chain."""
        domain, method = job
        if method != "none":
            pretrain(domain, method)
        ft = {s: finetuned(work, domain, steps[domain], method, s) for s in args.seeds}
        ev = {s: evaluated(work, domain, steps[domain], method, s) for s in args.seeds}
        todo = [s for s in args.seeds if not (ft[s] / "train.json").is_file()]  # seeds of an earlier call are kept
        if todo:
            cmd = [*CLI[domain], "finetune", "--data", str(data[domain]), "--out", *(str(ft[s]) for s in todo)]
            cmd += ["--seed", *map(str, todo), "--method", method, "--threads", "1", "--overwrite"]
            cmd += ["--steps", str(steps[domain])]
            cmd += [*network_args(domain), *(MRI_FINETUNE if domain == "mri" else RS_FINETUNE)]
            if method != "none":
                cmd += ["--init", str(pretrained(domain, method))]
            run(cmd, ft[todo[0]].parent.parent / f"{method}_{'_'.join(map(str, todo))}.log")
        todo = [s for s in args.seeds if not (ev[s] / "metrics.json").is_file()]
        if todo:
            cmd = [*CLI[domain], "evaluate", "--data", str(data[domain])]
            cmd += ["--model", *(str(ft[s] / "model.pt") for s in todo), "--out", *(str(ev[s]) for s in todo)]
            cmd += ["--threads", "1", "--overwrite"] + (["--no-save-predictions"] if domain == "mri" else [])
            run(cmd, ev[todo[0]].parent.parent / f"{method}_{'_'.join(map(str, todo))}.log")

    # in order of importance, so that a run cut short has the baselines' comparison first
    order = ["none", *GENERIC, "hpcl", "hpcl-ssl", "GD+LR", "GD", "GR", "GD-", "GD+LD"]
    cells = sorted(
        ((d, m) for d, ms in domains.items() for m in ms), key=lambda c: order.index(c[1]) if c[1] in order else 99
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(cell, c) for c in cells]
        for f in futures:
            try:
                f.result()
            except RuntimeError as err:
                print(f"FAILED: {err}", flush=True)
    report(work, domains, args.seeds, steps, cal, time.perf_counter() - t_start)


def finetuned(work: Path, domain: str, steps: int, method: str, seed: int) -> Path:
    """The fine-tuning run of (method, seed) at ``steps`` steps (runs of other step counts kept apart)."""
    return work / domain / f"finetune_{steps}" / method / f"seed_{seed}"


def evaluated(work: Path, domain: str, steps: int, method: str, seed: int) -> Path:
    return work / domain / f"evaluate_{steps}" / method / f"seed_{seed}"


def _ms(v: list[float]) -> str:
    v = [x for x in v if np.isfinite(x)]
    if not v:
        return "–"
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}"


def _paired(a: list[float], b: list[float], higher_better: bool = True) -> str:
    """a − b per seed (seeds where both are finite): mean ± sd (wins/n, paired t, two-sided p); a
    win is a seed where a is better (greater, or smaller with ``higher_better`` False)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if np.isfinite(x) and np.isfinite(y)]
    if len(pairs) < 2:
        return "–"
    d = [x - y for x, y in pairs]
    wins = sum((x > 0) if higher_better else (x < 0) for x in d)
    t = stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs])
    if not np.isfinite(t.statistic):
        return f"{np.mean(d):+.3f} ± {np.std(d, ddof=1):.3f} ({wins}/{len(d)})"
    return f"{np.mean(d):+.3f} ± {np.std(d, ddof=1):.3f} ({wins}/{len(d)}, t {t.statistic:+.2f}, p {t.pvalue:.2f})"


def report(
    work: Path,
    domains: dict[str, list[str]],
    seeds: list[int],
    steps: dict[str, int],
    cal: dict[str, Any],
    seconds: float,
) -> None:
    metrics = {"mri": ("dice_mean", "hd95_mean", "Dice", "HD95 (mm)"), "rs": ("miou", "f1", "mIoU", "landslide F1")}
    lines = [
        f"SSL baselines benchmark: seeds {seeds} (paired), pretraining budget {cal['budget_seconds']:g} s per method",
        f"machine: {machine_description(1)}; {seconds:.0f} s for the missing runs",
    ]
    table: dict[str, Any] = {"seeds": seeds, "finetune_steps": steps, "calibration": cal, "domains": {}}
    for domain, methods in domains.items():
        primary, secondary, p_name, s_name = metrics[domain]
        scores: dict[str, dict[str, list[float]]] = {}
        done = [
            m
            for m in methods
            if all((evaluated(work, domain, steps[domain], m, s) / "metrics.json").is_file() for s in seeds)
        ]
        if "none" not in done:
            continue
        missing = [m for m in methods if m not in done]
        methods = done
        for m in methods:
            rows = [
                json.loads((evaluated(work, domain, steps[domain], m, s) / "metrics.json").read_text())["summary"]
                for s in seeds
            ]
            scores[m] = {
                k: [float("nan") if r.get(k) is None else float(r[k]) for r in rows] for k in (primary, secondary)
            }
        generic = [m for m in methods if m in GENERIC]
        best = max(generic, key=lambda m: np.nanmean(scores[m][primary])) if generic else None
        lines += [
            "",
            f"### {domain} ({steps[domain]} fine-tuning steps): best generic baseline by mean {p_name}: {best}"
            + (f" (not finished: {', '.join(missing)})" if missing else ""),
            "",
            f"| method | pretraining steps | pretext loss last / chance | {p_name} | {s_name} | Δ {p_name} vs none "
            f"| Δ {s_name} vs none | Δ {p_name} vs {best} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            if m == "none":
                plan, pretext = "–", "–"
            else:
                plan = " + ".join(f"{v}" for v in cal["steps"][f"{domain}/{m}"].values())
                rec = json.loads((work / domain / "pretrain" / m / "train.json").read_text())
                tail = np.mean(rec["loss_history"][-20:])
                pretext = f"{tail:.3f} / {rec['chance_loss']:.3f}" if rec.get("chance_loss") else f"{tail:.3f} / –"
            p, s = scores[m][primary], scores[m][secondary]
            vs_none = "—" if m == "none" else _paired(p, scores["none"][primary])
            vs_none_s = "—" if m == "none" else _paired(s, scores["none"][secondary], domain != "mri")
            vs_best = "—" if best is None or m == best else _paired(p, scores[best][primary])
            lines.append(f"| {m} | {plan} | {pretext} | {_ms(p)} | {_ms(s)} | {vs_none} | {vs_none_s} | {vs_best} |")
        table["domains"][domain] = {"best_generic": best, "scores": scores}
    text = "\n".join(lines)
    print(text)
    (work / "table.md").write_text(text + "\n")
    (work / "table.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
