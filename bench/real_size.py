"""Real-size runs: preprocessing at ACDC and Landslide4Sense sizes on 1 and 2 worker processes,
peak memory of pretraining on the full-size set vs a tenth of it, and the peak memory of
whole-scene prediction at 5,000² and 20,000² pixels. Ratios measured side by side.

    python bench/real_size.py --work DIR [--part preprocess memory scene] [--steps 4]
        [--scene-sizes 5000 20000] [--keep]

Data (``bench/_real_data.py``): 200 ACDC-sized volumes (216 x 256 x 10) in ACDC's layout and a
Landslide4Sense release of 3,799 + 245 + 800 patches of 128 x 128 x 14, generated under
``--work`` once and reused (about 0.2 + 4.5 GB); prepared data stay there for
``bench/data_wait.py --real-size --work DIR``.

* **preprocess**: wall time and peak memory of ``medseg preprocess`` (ACDC protocol of
  ``workflows/config/full.yaml``; without and with ``--n4``) and of ``rs preprocess`` (the
  release, SLIC superpixels included) with ``--workers 1`` and ``--workers 2``; the speed-up
  of the second worker (t1 / t2) and whether the outputs are byte-identical. Peak memory is the
  largest sum of the proportional set sizes (PSS, ``/proc/<pid>/smaps_rollup``) of the stage
  and its worker processes, sampled every second (shared pages counted once), besides the main
  process's own peak RSS.
* **memory**: peak RSS of ``--steps`` pretraining steps (MRI G^D at 192² with 10 volumes x 4
  partitions; RS hyper-pixel, ResNet-34 early fusion, batch 32, K = 65,536) on the full-size
  prepared data and on a tenth of it (10 patients; 380 + 25 + 80 patches); target ratio ≈ 1
  (memory-mapped reads).
* **scene**: ``rs predict`` of one generated scene (4 bands uint16 + a DEM at 25 m, tiled and
  deflate-compressed GeoTIFFs) per size, with a TINY model (an untrained 2-level U-Net of 4 and 8
  channels in the fine-tuned checkpoint format, :func:`tiny_model`: a real model's arithmetic
  per pixel would make 20,000² take hours on this CPU; the memory does not depend on it beyond
  its weights and one batch of windows); peak RSS at each size and their ratio (target ≤ 1.5),
  wall time, and the written COG checked (tiles, compression, overviews, colour table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import machine_description
from _real_data import (
    RS,
    acdc_preprocess,
    acdc_raw,
    l4s_preprocess,
    l4s_raw,
    training_commands,
)

MIB = 2**20


# --------------------------------------------------------------------------- measuring a process tree


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
    except OSError:
        pass
    return out


def _own_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process itself has used so far, its children's excluded."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], log: Path, poll: float = 1.0) -> dict[str, float]:
    """Run ``argv``; its wall seconds, CPU seconds (user + system, worker processes included), the
    main process's peak RSS (``ru_maxrss``, exact) and the
    peak of the summed PSS of it and all its descendants (MiB), sampled every ``poll`` seconds
    (reading ``smaps_rollup`` walks a process's mappings: with gigabytes memory-mapped, sampling
    every 50 ms took a fifth of a core from the measured run). CalledProcessError when it fails."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.perf_counter()
    peak_tree, next_sample, own = 0, 0.0, 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        own = max(own, _own_cpu(proc.pid))
        if time.perf_counter() >= next_sample:
            tree, todo = [], [proc.pid]
            while todo:
                p = todo.pop()
                tree.append(p)
                todo += _children(p)
            peak_tree = max(peak_tree, sum(_pss_kib(p) for p in tree))
            next_sample = time.perf_counter() + poll
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv, output=log.read_text()[-3000:])
    # wait4's CPU times include the descendants the process waited for (its worker processes)
    # the main process's own part (its last sample, within 20 ms of its end) is the serial part of a
    # run with worker processes: the workers do the per-volume work
    cpu = usage.ru_utime + usage.ru_stime
    out = {"seconds": wall, "cpu": cpu, "main_cpu": min(own, cpu), "rss": usage.ru_maxrss / 1024}
    return {**out, "tree_pss": peak_tree / 1024}


def same_outputs(a: Path, b: Path) -> bool:
    """True when the arrays and the manifest of two prepared folders are byte-identical."""
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".npy", ".json") and p.name != "provenance.json")
    return bool(names) and all(
        (b / n).is_file() and _same_file(a / n, b / n) for n in names if n not in ("config.yaml",)
    )


def _same_file(a: Path, b: Path, chunk: int = 64 * MIB) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def disk_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / MIB


# --------------------------------------------------------------------------- parts


def part_preprocess(work: Path, logs: Path, keep: bool, domains: list[str], repeats: int = 1) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    if "mri" in domains:
        rows.update(preprocess_mri(work, logs, keep, repeats))
    if "rs" in domains:
        rows.update(preprocess_rs(work, logs, keep))
    return rows


def preprocess_mri(work: Path, logs: Path, keep: bool, repeats: int = 1) -> dict[str, Any]:
    """The ACDC preprocessing, each setting ``repeats`` times with the worker counts alternating
    (1, 2, then 2, 1, ...: a machine shared with other work changes speed over minutes); the
    fastest run of each is kept, every run's seconds beside it."""
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    mri_raw = acdc_raw(work / "mri" / "raw")
    rows["generate ACDC"] = {"seconds": time.perf_counter() - t0, "mib": disk_mib(mri_raw)}
    for n4 in (False, True):
        outs: dict[int, Path] = {}
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for rep in range(repeats):
            for workers in (1, 2) if rep % 2 == 0 else (2, 1):
                name = f"MRI preprocess{' --n4' if n4 else ''} w{workers}"
                first = workers == 1 and not n4 and rep == 0
                out = work / "mri" / ("prepared" if first else f"prepared_{'n4_' if n4 else ''}w{workers}_r{rep}")
                if out.exists():
                    shutil.rmtree(out)
                log = logs / f"{name.replace(' ', '_')}_r{rep}.log"
                runs[workers].append(run_measured(acdc_preprocess(mri_raw, out, workers, n4), log))
                print(f"  {name} (run {rep + 1}): {runs[workers][-1]}", flush=True)
                if rep == 0:
                    outs[workers] = out
                elif not keep:
                    shutil.rmtree(out)
        for workers, found in runs.items():
            best = min(found, key=lambda r: r["seconds"])
            rows[f"MRI preprocess{' --n4' if n4 else ''} w{workers}"] = {
                **best,
                "runs_seconds": [r["seconds"] for r in found],
            }
        rows[f"MRI preprocess{' --n4' if n4 else ''} identical"] = same_outputs(outs[1], outs[2])
        for out in outs.values():
            if out.name != "prepared" and not keep:
                shutil.rmtree(out)
    rows["prepared MiB mri"] = disk_mib(work / "mri" / "prepared")
    return rows


def preprocess_rs(work: Path, logs: Path, keep: bool) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    rs_raw = l4s_raw(work / "rs" / "raw")
    rows["generate Landslide4Sense"] = {"seconds": time.perf_counter() - t0, "mib": disk_mib(rs_raw)}
    outs = {}
    for workers in (1, 2):
        name = f"RS preprocess w{workers}"
        out = work / "rs" / ("prepared" if workers == 1 else f"prepared_w{workers}")
        if out.exists():
            shutil.rmtree(out)
        rows[name] = run_measured(l4s_preprocess(rs_raw, out, workers), logs / f"{name.replace(' ', '_')}.log")
        outs[workers] = out
        print(f"  {name}: {rows[name]}", flush=True)
    rows["RS preprocess identical"] = same_outputs(outs[1], outs[2])
    if not keep:
        shutil.rmtree(outs[2])
    rows["prepared MiB rs"] = disk_mib(work / "rs" / "prepared")
    return rows


def part_memory(work: Path, logs: Path, steps: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    full = {"mri": work / "mri" / "prepared", "rs": work / "rs" / "prepared"}
    for folder in full.values():
        if not (folder / "manifest.json").is_file():
            raise SystemExit(f"{folder}: run --part preprocess first")
    tenth = {"mri": work / "tenth" / "mri" / "prepared", "rs": work / "tenth" / "rs" / "prepared"}
    if not (tenth["mri"] / "manifest.json").is_file():
        raw = acdc_raw(work / "tenth" / "mri" / "raw", 0.1)
        subprocess.run(acdc_preprocess(raw, tenth["mri"], 2, fraction=0.1), check=True, capture_output=True)
    if not (tenth["rs"] / "manifest.json").is_file():
        raw = l4s_raw(work / "tenth" / "rs" / "raw", 0.1)
        subprocess.run(l4s_preprocess(raw, tenth["rs"], 2), check=True, capture_output=True)
    rows["prepared MiB"] = {
        f"{d} {size}": disk_mib(f) for size, folders in (("full", full), ("tenth", tenth)) for d, f in folders.items()
    }
    for size, folders in (("tenth", tenth), ("full", full)):
        commands = training_commands(folders["mri"], folders["rs"], work / "memory_runs" / size, steps)
        for name in ("MRI pretrain global GD", "RS pretrain hpcl"):
            out = Path(commands[name][commands[name].index("--out") + 1])
            if out.exists():
                shutil.rmtree(out)
            rows[f"{name} {size}"] = run_measured(commands[name], logs / f"{name.replace(' ', '_')}_{size}.log")
            print(f"  {name} {size}: {rows[f'{name} {size}']}", flush=True)
    return rows


def tiny_model(work: Path, logs: Path) -> Path:
    """A TINY remote-sensing model in the fine-tuned checkpoint format: the 2-level U-Net of
    ``unet2d`` with 4 and 8 channels (about 1,700 weights, random: untrained), carrying the
    preprocessing record of the demo scenes (4 bands + 5 terrain channels, their statistics,
    tiles of 64 with 16 of overlap), so that ``rs predict`` reads, derives, standardises, slides,
    blends and writes exactly as with a real model, at a fraction of its arithmetic."""
    model = work / "scene" / "tiny" / "model.pt"
    if model.is_file():
        return model
    import torch

    import rs.networks  # noqa: F401  (registers the rs networks)
    from rs.domain import preprocessing_record
    from segcore.checkpoints import save_checkpoint
    from segcore.networks import build_network

    demo, prep = work / "scene" / "demo", work / "scene" / "demo_prepared"
    for argv in (
        [*RS, "demo-data", "--out", str(demo), "--n-scenes", "2", "--size", "256", "--seed", "0"],
        [*RS, "preprocess", "--input", str(demo), "--out", str(prep), "--tile", "64", "--overlap", "16"],
    ):
        if not (Path(argv[argv.index("--out") + 1]) / "config.yaml").is_file():
            with (logs / "tiny_model.log").open("a") as log:
                subprocess.run(argv, check=True, stdout=log, stderr=subprocess.STDOUT)
    manifest = json.loads((prep / "manifest.json").read_text())
    torch.manual_seed(0)
    spec = {"name": "unet2d", "in_channels": len(manifest["channels"]), "num_classes": 2, "channels": [4, 8]}
    data = {k: manifest[k] for k in ("classes", "channels", "image_size", "normalization")}
    data["preprocessing"] = preprocessing_record(manifest)
    run = {"method": "none", "variant": "unet2d", "note": "tiny untrained model of bench/real_size.py"}
    save_checkpoint(
        model,
        build_network(spec),
        spec,
        stage="finetune",
        method="none",
        pretrained=[],
        run=run,
        data=data,
        domain="rs",
    )
    return model


def write_scene(folder: Path, size: int) -> tuple[Path, Path]:
    """A ``size`` x ``size`` scene at 10 m (UTM 33N): 4 bands uint16 (B, G, R, NIR) and a DEM at
    25 m, both tiled (512) and deflate-compressed, written block row by block row."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    image, dem = folder / f"scene_{size}_image.tif", folder / f"scene_{size}_dem.tif"
    if image.is_file() and dem.is_file():
        return image, dem
    x0, y0 = 500_000.0, 5_200_000.0
    common = {"driver": "GTiff", "crs": "EPSG:32633", "tiled": True, "blockxsize": 512, "blockysize": 512}
    common.update(compress="deflate", bigtiff="IF_SAFER")
    block = 512
    with rasterio.open(
        image, "w", **common, width=size, height=size, count=4, dtype="uint16", nodata=0,
        transform=Affine(10, 0, x0, 0, -10, y0),
    ) as dst:  # fmt: skip
        dst.descriptions = ("B", "G", "R", "NIR")
        cols = np.arange(size, dtype=np.float32)
        for r in range(0, size, block):
            rows = np.arange(r, min(r + block, size), dtype=np.float32)[:, None]
            texture = ((cols[None] * 7 + rows * 13) % 17).astype(np.float32)
            base = 900 + 300 * np.sin(cols[None] / 57.0) * np.cos(rows / 91.0) + 10 * texture
            bands = np.stack([base, base * 1.1, base * 1.2, 2500 + 600 * np.sin((cols[None] + rows) / 140.0) + texture])
            dst.write(np.clip(bands, 1, 65535).astype(np.uint16), window=Window(0, r, size, len(rows)))
    n = int(np.ceil(size * 10 / 25)) + 8
    with rasterio.open(
        dem, "w", **common, width=n, height=n, count=1, dtype="float32", nodata=-9999.0,
        transform=Affine(25, 0, x0 - 100, 0, -25, y0 + 100),
    ) as dst:  # fmt: skip
        east = x0 - 100 + 25 * np.arange(n, dtype=np.float64)
        for r in range(0, n, block):
            north = y0 + 100 - 25 * np.arange(r, min(r + block, n), dtype=np.float64)[:, None]
            elev = 600 + 0.04 * (east[None] - x0) + 40 * np.sin(east[None] / 900.0) * np.cos(north / 700.0)
            dst.write(elev.astype(np.float32)[None], window=Window(0, r, n, len(north)))
    return image, dem


def check_cog(path: Path) -> dict[str, Any]:
    import rasterio

    with rasterio.open(path) as ds:
        return {
            "shape": list(ds.shape),
            "tiled": ds.is_tiled,
            "block": list(ds.block_shapes[0]),
            "compression": None if ds.compression is None else ds.compression.name,
            "overviews": ds.overviews(1),
            "layout": ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
            "colour table": ds.colormap(1).get(1) is not None,
            "mib": path.stat().st_size / MIB,
        }


def part_scene(work: Path, logs: Path, sizes: list[int], batch: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    model = tiny_model(work, logs)
    for size in sizes:
        t0 = time.perf_counter()
        image, dem = write_scene(work / "scene" / "scenes", size)
        rows[f"generate {size}"] = {
            "seconds": time.perf_counter() - t0,
            "mib": (image.stat().st_size + dem.stat().st_size) / MIB,
        }
        out = work / "scene" / f"predict_{size}"
        if out.exists():
            shutil.rmtree(out)
        argv = [*RS, "predict", "--model", str(model), "--image", str(image), "--dem", str(dem), "--out", str(out)]
        argv += ["--threads", "1", "--batch-size", str(batch), "--device", "cpu"]
        rows[f"rs predict {size}"] = run_measured(argv, logs / f"predict_{size}.log")
        rows[f"rs predict {size}"]["output"] = check_cog(out / f"{image.stem}_prediction.tif")
        print(f"  rs predict {size}: {rows[f'rs predict {size}']}", flush=True)
    return rows


def report(results: dict[str, Any]) -> None:
    print(f"machine: {results['machine']}")
    pre = results.get("preprocess")
    if pre:
        print("\nPREPROCESSING (wall s, main process peak RSS MiB, peak PSS of the process tree MiB)")
        for stage in ("MRI preprocess", "MRI preprocess --n4", "RS preprocess"):
            a, b = pre[f"{stage} w1"], pre[f"{stage} w2"]
            print(
                f"{stage:22s} 1 worker {a['seconds']:7.1f} s {a['rss']:6.0f} / {a['tree_pss']:6.0f} MiB | "
                f"2 workers {b['seconds']:7.1f} s {b['rss']:6.0f} / {b['tree_pss']:6.0f} MiB | "
                f"speed-up t1/t2 {a['seconds'] / b['seconds']:.2f} | identical: {pre[f'{stage} identical']}"
            )
            if "cpu" in a and "cpu" in b:
                print(
                    f"{'':22s} CPU s (user + system, workers included): 1 worker {a['cpu']:.1f}, 2 workers "
                    f"{b['cpu']:.1f}; cores used on average (CPU / wall): {a['cpu'] / a['seconds']:.2f}, "
                    f"{b['cpu'] / b['seconds']:.2f}"
                )
            if "main_cpu" in b and b["cpu"] > b["main_cpu"]:
                serial, parallel = b["main_cpu"], b["cpu"] - b["main_cpu"]
                print(
                    f"{'':22s} 2 workers: main process {serial:.1f} CPU s (serial: start-up, headers, manifest), "
                    f"workers {parallel:.1f} CPU s; on 2 free cores t1/t2 would be (serial + parallel) / (serial + "
                    f"parallel / 2) = {(serial + parallel) / (serial + parallel / 2):.2f} (Amdahl, from CPU times)"
                )
            if "runs_seconds" in a:
                runs = [f"{x:.1f}" for x in a["runs_seconds"]], [f"{x:.1f}" for x in b["runs_seconds"]]
                print(f"{'':22s} every run (s): 1 worker {', '.join(runs[0])}; 2 workers {', '.join(runs[1])}")
        print(
            f"generation: {pre['generate ACDC']}, {pre['generate Landslide4Sense']}; prepared MiB: "
            f"MRI {pre['prepared MiB mri']:.0f}, RS {pre['prepared MiB rs']:.0f}"
        )
    mem = results.get("memory")
    if mem:
        print(f"\nPRETRAINING PEAK RSS, full-size set vs a tenth (prepared MiB: {mem['prepared MiB']})")
        for name in ("MRI pretrain global GD", "RS pretrain hpcl"):
            a, b = mem[f"{name} tenth"], mem[f"{name} full"]
            print(
                f"{name:24s} tenth {a['rss']:7.0f} MiB ({a['seconds']:.0f} s) | full {b['rss']:7.0f} MiB "
                f"({b['seconds']:.0f} s) | ratio full/tenth {b['rss'] / a['rss']:.3f}"
            )
    scene = results.get("scene")
    if scene:
        print("\nWHOLE-SCENE PREDICTION (tiny model, 1 thread)")
        sizes = sorted(int(k.split()[-1]) for k in scene if k.startswith("rs predict"))
        for s in sizes:
            r = scene[f"rs predict {s}"]
            print(f"{s:>6d}² px: {r['seconds']:8.1f} s, peak RSS {r['rss']:6.0f} MiB; output {r['output']}")
        if len(sizes) > 1:
            lo, hi = scene[f"rs predict {sizes[0]}"], scene[f"rs predict {sizes[-1]}"]
            print(
                f"peak RSS {sizes[-1]}² / {sizes[0]}²: {hi['rss'] / lo['rss']:.3f} (target <= 1.5); pixels x"
                f"{(sizes[-1] / sizes[0]) ** 2:.0f}, time x{hi['seconds'] / lo['seconds']:.1f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the data and outputs (kept, reused)")
    ap.add_argument(
        "--part", nargs="+", choices=("preprocess", "memory", "scene"), default=["preprocess", "memory", "scene"]
    )
    ap.add_argument("--steps", type=int, default=4, help="pretraining steps of the memory part")
    ap.add_argument("--scene-sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--scene-batch", type=int, default=64, help="windows per network call in the scene part")
    ap.add_argument("--keep", action="store_true", help="keep the 2-worker outputs")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each MRI preprocessing setting (fastest kept)")
    ap.add_argument(
        "--preprocess-domains", nargs="+", choices=("mri", "rs"), default=["mri", "rs"], help="of the preprocess part"
    )
    args = ap.parse_args()
    work = args.work.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results_file = work / "real_size.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results["machine"] = machine_description(1)
    print(f"machine: {results['machine']}", flush=True)
    for part in args.part:
        print(f"[{part}] {time.strftime('%H:%M:%S')}", flush=True)
        if part == "preprocess":  # one domain's rerun keeps the other's numbers
            results[part] = {
                **results.get(part, {}),
                **part_preprocess(work, logs, args.keep, args.preprocess_domains, args.repeats),
            }
        elif part == "memory":
            results[part] = part_memory(work, logs, args.steps)
        else:
            results[part] = part_scene(work, logs, args.scene_sizes, args.scene_batch)
        results[f"{part} machine"] = machine_description(1)
        results_file.write_text(json.dumps(results, indent=1))
    report(results)


if __name__ == "__main__":
    sys.exit(main())
