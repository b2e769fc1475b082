"""When has fine-tuning converged? Best validation score against the step count, per seed.

Each step count S is its own run (the cosine schedule depends on S), fine-tuned with the stage
CLI exactly as the workflow does, from scratch or from ``--init``; the score is the best
validation score the run selected (validation only: the test split is not read). Prints, per S,
the mean ± sd over seeds and the gap to the largest mean, and the smallest S within ``--tol``
of it: the step count where the curve has flattened.

    python bench/convergence.py --domain mri --data results/mri/prepared --budget 1 \\
        --steps 200 400 600 800 --seeds 0 1 2 -- --channels 8,16,32,64,64 --lr 0.003 --batch-size 8
    python bench/convergence.py --domain rs --data results/rs/prepared --percent 5 \\
        --steps 100 200 400 --seeds 0 1 2 -- --fusion dual --encoder tu-regnetx_002 --decoder-channels 32,16,16,8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(domain: str, data: Path, budget: str, steps: int, seed: int, extra: list[str], out: Path) -> dict:
    if domain == "mri":
        from medseg.cli import main

        budget_args = ["--budget", budget]
    else:
        from rs.cli import main

        budget_args = ["--percent", budget]
    val_every = max(1, steps // 10)
    argv = [
        "finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        *budget_args,
        "--steps",
        str(steps),
        "--seed",
        str(seed),
        "--val-every",
        str(val_every),
        "--checkpoint-every",
        "0",
        "--progress",
        "none",
        *extra,
    ]
    if main(argv) != 0:
        raise SystemExit(f"finetune failed: {' '.join(argv)}")
    return json.loads((out / "train.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", choices=["mri", "rs"], required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--budget", default=None, help="MRI: labeled subjects")
    p.add_argument("--percent", default=None, help="remote sensing: labeled tiles in percent")
    p.add_argument("--steps", type=int, nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tol", type=float, default=0.01, help="converged: within this of the largest mean")
    p.add_argument("--json", type=Path, default=None, help="write every run's record here")
    args, extra = p.parse_known_args()
    extra = [e for e in extra if e != "--"]
    budget = args.budget if args.domain == "mri" else args.percent
    if budget is None:
        p.error("--budget (MRI) or --percent (remote sensing) is required")
    key = "best_val_dice" if args.domain == "mri" else "best_val_miou"
    rows: dict[int, list[float]] = {}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            for seed in args.seeds:
                t0 = time.perf_counter()
                rec = run(args.domain, args.data, str(budget), steps, seed, extra, Path(tmp) / f"s{steps}_{seed}")
                rows.setdefault(steps, []).append(rec[key])
                records.append(
                    {
                        "steps": steps,
                        "seed": seed,
                        "score": rec[key],
                        "best_step": rec["best_step"],
                        "history": rec["history"],
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(
                    f"steps {steps:5d} seed {seed}: {key} {rec[key]:.4f} (best at {rec['best_step']}, "
                    f"{time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    means = {s: statistics.mean(v) for s, v in rows.items()}
    top = max(means.values())
    print(f"\n{args.domain}, budget {budget}, seeds {args.seeds}; {key} (validation), best of each run")
    print("| steps | mean ± sd | gap to the largest mean |")
    print("|---|---|---|")
    for s, v in rows.items():
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"| {s} | {means[s]:.4f} ± {sd:.4f} | {means[s] - top:+.4f} |")
    converged = min(s for s in rows if means[s] >= top - args.tol)
    print(f"\nconverged (within {args.tol} of the largest mean): {converged} steps")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
