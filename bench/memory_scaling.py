"""Peak memory of preprocessing and of training on the demo dataset and on one 4× its size.

    .venv/bin/python bench/memory_scaling.py [--steps 30] [--scale 4] [--repeats 2] [--work DIR] [--preprocess-only]

Target: flat, peak RSS at 4× / peak RSS at 1× ≈ 1.0, because prepared data are memory-mapped
(ARCHITECTURE: a dataset larger than RAM must still train).

Every stage runs as a fresh subprocess with the demo config's options (the commands of the
workflow's rules): ``medseg preprocess``, ``rs preprocess``, and ``--steps`` steps of each
training loop (validation once, at the end). Per process:

* **peak RSS**: ``ru_maxrss`` from ``os.wait4`` of that process (the kernel's high-water mark);
* **anon / file**: the peaks of ``RssAnon`` (heap: what the process really holds) and of
  ``RssFile`` (pages of mapped files it touched, e.g. the prepared ``.npy`` memmaps and the
  shared libraries; the kernel can drop them at any time) polled from ``/proc/<pid>/status``
  every 10 ms.

Each stage runs ``--repeats`` times per size and the table shows the lowest peaks; "spread" is
the largest run-to-run difference of a stage's peak RSS at one size (allocator and timing
noise): a delta below it means nothing. "d/data d" divides the growth of the peak RSS by the
growth of the prepared arrays on disk: about 0 when memory is flat, about 1 (or more) when
something holds the whole dataset.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _demo_data import demo_commands, training_commands
from _machine import machine_description

MIB = 2**20


def _status_kib(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0])
    return out


def peak_memory(argv: list[str], log: Path) -> dict[str, float]:
    """Run ``argv`` to completion; its peak RSS, peak anonymous and peak file-backed RSS in MiB
    and its wall seconds. Raises CalledProcessError when it fails (its output is in ``log``)."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    peak = {"RssAnon": 0, "RssFile": 0}
    t0 = time.perf_counter()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        for key, kib in _status_kib(proc.pid).items():
            if key in peak:
                peak[key] = max(peak[key], kib)
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv, output=log.read_text()[-3000:])
    return {
        "rss": usage.ru_maxrss / 1024,
        "anon": peak["RssAnon"] / 1024,
        "file": peak["RssFile"] / 1024,
        "seconds": time.perf_counter() - t0,
    }


def prepared_mib(folder: Path) -> float:
    """Size of the prepared arrays (``*.npy``) in MiB."""
    return sum(f.stat().st_size for f in folder.glob("*.npy")) / MIB


def _with_out(argv: list[str], out: Path) -> list[str]:
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(out)
    return argv


def measure_scale(
    work: Path, scale: int, steps: int, repeats: int, training: bool = True
) -> tuple[dict[str, list[dict[str, float]]], dict[str, float]]:
    """Peak memory of every measured stage at ``scale`` × the demo size, ``repeats`` runs each,
    and the prepared data size per domain (MiB)."""
    rows: dict[str, list[dict[str, float]]] = {}
    sizes: dict[str, float] = {}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for domain in ("mri", "rs"):
        commands = demo_commands(domain, work / domain, scale)
        subprocess.run(commands["demo-data"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        name = f"{'MRI' if domain == 'mri' else 'RS'} preprocess"
        for r in range(repeats):  # the first run writes the prepared data the training stages read
            out = work / domain / ("prepared" if r == 0 else f"prepared_repeat{r}")
            rows.setdefault(name, []).append(
                peak_memory(_with_out(commands["preprocess"], out), logs / f"{domain}_preprocess_{r}.log")
            )
        sizes[domain] = prepared_mib(work / domain / "prepared")
    for r in range(repeats if training else 0):
        training = training_commands(work / "mri" / "prepared", work / "rs" / "prepared", work / f"out{r}", steps)
        for name, argv in training.items():  # the global stage runs before the local one it initialises
            rows.setdefault(name, []).append(peak_memory(argv, logs / f"{name.replace(' ', '_')}_{r}.log"))
    return rows, sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="training steps per stage")
    ap.add_argument("--scale", type=int, default=4, help="the larger dataset, in multiples of the demo size")
    ap.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of each stage per size; the table shows the lowest peak and the spread",
    )
    ap.add_argument(
        "--work", type=Path, default=None, help="folder for data and outputs (kept; default: a temporary one)"
    )
    ap.add_argument(
        "--preprocess-only", action="store_true", help="measure the two preprocess stages only (about 2 min)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        work = args.work or Path(tmp)
        small, small_sizes = measure_scale(work / "x1", 1, args.steps, args.repeats, not args.preprocess_only)
        large, large_sizes = measure_scale(
            work / f"x{args.scale}", args.scale, args.steps, args.repeats, not args.preprocess_only
        )
    k = args.scale
    print(f"machine: {machine_description(1)}")
    print(
        f"prepared arrays: MRI {small_sizes['mri']:.1f} -> {large_sizes['mri']:.1f} MiB, "
        f"RS {small_sizes['rs']:.1f} -> {large_sizes['rs']:.1f} MiB ({k}x the demo's subjects / scenes); "
        f"{args.steps} training steps; target: peak RSS {k}x/1x ~ 1.0"
    )
    print(
        f"{'stage':24s} {'RSS 1x':>7s} {f'RSS {k}x':>7s} {'ratio':>6s} {'delta':>6s} {'spread':>6s} {'d/data d':>8s} | "
        f"{'anon 1x':>7s} {f'anon {k}x':>7s} | {'file 1x':>7s} {f'file {k}x':>7s}   (MiB; lowest of "
        f"{args.repeats} runs)"
    )
    for name, runs_small in small.items():
        a = {key: min(r[key] for r in runs_small) for key in ("rss", "anon", "file")}
        b = {key: min(r[key] for r in large[name]) for key in ("rss", "anon", "file")}
        # run-to-run spread of the peak RSS at either size: a delta below it is noise
        spread = max(max(r["rss"] for r in runs) - min(r["rss"] for r in runs) for runs in (runs_small, large[name]))
        domain = "mri" if name.startswith("MRI") else "rs"
        growth = large_sizes[domain] - small_sizes[domain]
        delta = b["rss"] - a["rss"]
        print(
            f"{name:24s} {a['rss']:7.0f} {b['rss']:7.0f} {b['rss'] / a['rss']:6.2f} {delta:6.0f} "
            f"{spread:6.0f} {delta / growth:8.2f} | "
            f"{a['anon']:7.0f} {b['anon']:7.0f} | {a['file']:7.0f} {b['file']:7.0f}"
        )


if __name__ == "__main__":
    main()
