"""Demo benchmark of hyper-pixel contrastive learning (HPCL, docs/hpcl.md): mIoU and landslide
F1 of every HPCL mode against the supervised baseline at one label percentage, over paired seeds.

    python bench/hpcl_benchmark.py --work /tmp/hpcl_bench [--seeds 0 1 2 3 4] [--percent 5]
        [--fusion dual] [--methods none hpcl-ssl hpcl-sup hpcl-ssl+sup] [--jobs 2]
        [--pretrain-args "--steps 200"] [--finetune-args "..."] [--hpcl-args "--hpcl-weight 0.2"]
        [--tag NAME] [--repeats R]

Runs the real stage CLIs: ``rs demo-data`` and ``rs preprocess`` with their defaults (once, into
``WORK/raw`` and ``WORK/prepared``), ``rs pretrain --method hpcl`` once per fusion (shared by the
seeds, as in the workflow), ``rs finetune`` per method and seed and ``rs evaluate`` (whole-scene
scores of the held-out area). Finished runs are reused, so a second call only prints the table.
The network and fine-tuning settings are those of the demo config (workflows/config/config.yaml:
tu-regnetx_002, depth 4, decoder 32,16,16,8, 200 steps, batch 16, lr 0.002). Seeds are paired:
seed s picks the same labeled tiles for every method, and the table gives each method's
difference to ``none`` per seed (mean ± sd, wins).

``--repeats R`` trains every (method, labeled set) R times: repeat r > 0 keeps the labeled tiles of
seed s (``--label-seed s``) and trains with seed s + 100 r, and the hpcl-ssl methods start from a
pretraining run of seed r. A seed's score is then the mean over its repeats, which averages out
the run-to-run spread of training on a few tiles (docs/hpcl.md: two runs that differ only in
floating-point rounding differ by 0.035 mIoU rms) and the draw of the pretraining run; the table
adds that spread (sd of repeats around their seed's mean, pooled).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _machine import machine_description
from _stage_runs import run_logged

RS = [sys.executable, "-m", "rs.cli"]  # the stage CLI, also where the package is on PYTHONPATH rather than installed
NETWORK = ["--encoder", "tu-regnetx_002", "--encoder-depth", "4", "--decoder-channels", "32,16,16,8"]
FINETUNE = ["--steps", "200", "--batch-size", "16", "--lr", "0.002", "--val-every", "50"]
PRETRAIN = ["--steps", "200", "--batch-size", "16", "--lr", "0.001"]
HPCL = ["--hpcl-weight", "0.2", "--hpcl-warmup", "50"]


def run(cmd: list[str], log: Path) -> None:
    run_logged(cmd, log, f"rs {cmd[len(RS)]}")


def prepare(work: Path) -> Path:
    raw, prepared = work / "raw", work / "prepared"
    if not (raw / "scenes.json").is_file():
        run([*RS, "demo-data", "--out", str(raw)], work / "logs" / "demo-data.log")
    if not (prepared / "manifest.json").is_file():
        run([*RS, "preprocess", "--input", str(raw), "--out", str(prepared)], work / "logs" / "preprocess.log")
    return prepared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, runs, table)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--percent", default="5", help="labeled tiles in percent")
    ap.add_argument("--fusion", default="dual", choices=["early", "dual"])
    ap.add_argument("--methods", nargs="+", default=["none", "hpcl-ssl", "hpcl-sup", "hpcl-ssl+sup"])
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="training runs per (method, labeled set); repeat r: training seed s + 100 r, pretraining seed r",
    )
    ap.add_argument("--tag", default="default", help="name of this setting (folders of pretraining and hpcl runs)")
    ap.add_argument("--pretrain-args", default="", help="extra `rs pretrain` options (after the defaults)")
    ap.add_argument("--finetune-args", default="", help="extra `rs finetune` options for every method")
    ap.add_argument(
        "--hpcl-args",
        default="",
        help="extra `rs finetune` options of the *sup methods (after --hpcl-weight 0.2 --hpcl-warmup 50)",
    )
    args = ap.parse_args()
    work = args.work.resolve()
    prepared = prepare(work)

    def pretrained(r: int) -> Path:
        return work / "pretrain" / args.tag / (args.fusion if r == 0 else f"{args.fusion}_seed{r}")

    def pretrain(r: int) -> None:
        pre = pretrained(r)
        if not (pre / "model.pt").is_file():
            run(
                [
                    *RS,
                    "pretrain",
                    "--method",
                    "hpcl",
                    "--data",
                    str(prepared),
                    "--out",
                    str(pre),
                    "--fusion",
                    args.fusion,
                    *NETWORK,
                    *PRETRAIN,
                    *shlex.split(args.pretrain_args),
                    "--threads",
                    "1",
                    "--seed",
                    str(r),
                ],
                pre.parent / f"{pre.name}.log",
            )

    if any(m.startswith("hpcl-ssl") for m in args.methods):
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(pretrain, range(args.repeats)))

    def run_name(seed: int, r: int) -> str:
        return f"seed_{seed}" if r == 0 else f"seed_{seed}_r{r}"

    def cell(method: str, seed: int, r: int) -> Path:
        tag = "base" if method == "none" else args.tag
        ft = work / "finetune" / tag / method / args.fusion / run_name(seed, r)
        ev = work / "evaluate" / tag / method / args.fusion / run_name(seed, r)
        if not (ft / "model.pt").is_file():
            cmd = [
                *RS,
                "finetune",
                "--data",
                str(prepared),
                "--out",
                str(ft),
                "--percent",
                args.percent,
                "--seed",
                str(seed + 100 * r),
                "--label-seed",
                str(seed),
                "--method",
                method,
                "--fusion",
                args.fusion,
                *NETWORK,
                *FINETUNE,
                *shlex.split(args.finetune_args),
                "--threads",
                "1",
            ]
            if method.startswith("hpcl-ssl"):
                cmd += ["--init", str(pretrained(r) / "model.pt")]
            if method.endswith("sup"):
                cmd += [*HPCL, *shlex.split(args.hpcl_args)]
            run(cmd, ft.parent / f"{run_name(seed, r)}.log")
        if not (ev / "metrics.json").is_file():
            run(
                [
                    *RS,
                    "evaluate",
                    "--data",
                    str(prepared),
                    "--model",
                    str(ft / "model.pt"),
                    "--out",
                    str(ev),
                    "--threads",
                    "1",
                ],
                ev.parent / f"{run_name(seed, r)}.log",
            )
        return ev / "metrics.json"

    t0 = time.perf_counter()
    runs = [(m, s, r) for r in range(args.repeats) for s in args.seeds for m in args.methods]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        paths = dict(zip(runs, pool.map(lambda c: cell(*c), runs), strict=True))
    by_run = {c: json.loads(p.read_text())["summary"] for c, p in paths.items()}
    val_run = {}
    for m, s, r in runs:
        tag = "base" if m == "none" else args.tag
        val_run[(m, s, r)] = json.loads(
            (work / "finetune" / tag / m / args.fusion / run_name(s, r) / "train.json").read_text()
        )["best_val_miou"]
    cells = [(m, s) for s in args.seeds for m in args.methods]
    # a seed's score: the mean over its repeats
    scores = {
        (m, s): {
            k: float(np.mean([by_run[(m, s, r)][k] or 0.0 for r in range(args.repeats)]))
            for k in ("miou", "f1", "iou_landslide")
        }
        for m, s in cells
    }
    val = {(m, s): float(np.mean([val_run[(m, s, r)] for r in range(args.repeats)])) for m, s in cells}
    spread = {}  # pooled sd of the repeats around their seed's mean (run-to-run spread on one labeled set)
    if args.repeats > 1:
        for m in args.methods:
            dev = [by_run[(m, s, r)]["miou"] - scores[(m, s)]["miou"] for s in args.seeds for r in range(args.repeats)]
            spread[m] = float(np.sqrt(np.sum(np.square(dev)) / (len(args.seeds) * (args.repeats - 1))))

    lines = [
        f"HPCL demo benchmark: {args.fusion} fusion, {args.percent}% labeled tiles, seeds {args.seeds} "
        f"(paired), setting '{args.tag}'"
        + (f", {args.repeats} repeats per seed (scores: mean over repeats)" if args.repeats > 1 else ""),
        f"pretrain: {' '.join(PRETRAIN)} {args.pretrain_args}".rstrip(),
        f"finetune: {' '.join(FINETUNE)} {args.finetune_args}; *sup: {' '.join(HPCL)} {args.hpcl_args}".rstrip(),
        f"machine: {machine_description(1)}; {time.perf_counter() - t0:.0f}s for missing runs",
        "",
        "| method | test mIoU | landslide F1 | landslide IoU | Δ mIoU vs none (wins) | paired t (Δ mIoU) | Δ "
        "F1 vs none (wins) | best val mIoU |" + (" run-to-run sd (mIoU) |" if spread else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if spread else ""),
    ]

    def ms(v: list[float]) -> str:
        return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}"

    table = {}
    for m in args.methods:
        miou = [scores[(m, s)]["miou"] for s in args.seeds]
        f1 = [scores[(m, s)]["f1"] or 0.0 for s in args.seeds]
        iou = [scores[(m, s)]["iou_landslide"] or 0.0 for s in args.seeds]
        d_miou = (
            [scores[(m, s)]["miou"] - scores[("none", s)]["miou"] for s in args.seeds] if "none" in args.methods else []
        )
        d_f1 = (
            [(scores[(m, s)]["f1"] or 0.0) - (scores[("none", s)]["f1"] or 0.0) for s in args.seeds]
            if "none" in args.methods
            else []
        )
        wins = lambda d: f"{sum(x > 0 for x in d)}/{len(d)}"  # noqa: E731
        dm = (
            "—"
            if m == "none" or not d_miou
            else f"{np.mean(d_miou):+.3f} ± {np.std(d_miou, ddof=1):.3f} ({wins(d_miou)})"
        )
        df = "—" if m == "none" or not d_f1 else f"{np.mean(d_f1):+.3f} ± {np.std(d_f1, ddof=1):.3f} ({wins(d_f1)})"
        t = (
            "—"
            if m == "none" or len(d_miou) < 2
            else f"{np.mean(d_miou) / (np.std(d_miou, ddof=1) / np.sqrt(len(d_miou))):+.2f}"
        )
        lines.append(
            f"| {m} | {ms(miou)} | {ms(f1)} | {ms(iou)} | {dm} | {t} | {df} | {ms([val[(m, s)] for s in args.seeds])} |"
            + (f" {spread[m]:.3f} |" if spread else "")
        )
        table[m] = {
            "miou": miou,
            "f1": f1,
            "iou_landslide": iou,
            "val_miou": [val[(m, s)] for s in args.seeds],
            "runs": {f"{s}/{r}": by_run[(m, s, r)] for s in args.seeds for r in range(args.repeats)},
        }
    text = "\n".join(lines)
    print(text)
    out = work / f"table_{args.tag}_{args.fusion}_pct{args.percent}.md"
    out.write_text(text + "\n")
    (out.with_suffix(".json")).write_text(
        json.dumps({"seeds": args.seeds, "repeats": args.repeats, "scores": table}, indent=1)
    )


if __name__ == "__main__":
    main()
