"""Time one optimisation step of the pretraining strategies against a supervised step of the same
network and batch, side by side in one run, at the sizes of a workflow preset, and print the
ratios; with ``--cost``, what the preset's whole protocol costs at these step times.

    python bench/pretrain_step.py [--preset demo|full] [--domain mri rs] [--reps 5] [--warmup 2]
        [--threads 1] [--device cpu|cuda] [--precision 32|bf16] [--channels-last] [--compile] [--cost]

Presets (read from the workflow configs, so the sizes are the ones the workflow trains at):

* ``demo`` — ``workflows/config/config.yaml``: MRI U-Net 8..64 at 64², batches of 4 volumes × 4
  partitions; RS ``tu-regnetx_002`` early fusion on 9 × 64² tiles, batch 16, queue K = 4,096.
* ``full`` — MRI from ``workflows/config/full.yaml`` (the ACDC protocol of the paper: U-Net
  16..128 with 6 levels at 192², 10 volumes × 4 partitions, fine-tuning batch 20); RS from
  ``workflows/config/landslide4sense.yaml`` (ResNet-34 early fusion, 14 × 128² patches,
  batch 32, hyper-pixel queue K = 65,536, momentum 0.999).

Steps: MRI supervised (soft Dice + CE) at the pretraining batch and at the fine-tuning batch,
G^D (encoder + g1, two views), L^R (first decoder blocks + g2, frozen encoder); RS supervised and
hyper-pixel pretraining (HPCL, online + momentum network, a FULL queue of K keys, one hyper-pixel
per 8 × 8 pixels). Each runs the real strategy's ``loss`` (views, heads, masks, queue) plus
backward and the strategy's optimiser. "per pass" divides by the network passes of a step (2 for
the two-view strategies), the fair comparison with a supervised step.

``--precision bf16`` runs the steps under ``torch.autocast`` (bfloat16; what ``--precision
bf16-mixed`` does in the stages), ``--channels-last`` puts weights and images in NHWC,
``--compile`` compiles the networks' blocks as the stages' ``--compile`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from _machine import machine_description

import rs.networks  # noqa: F401  (registers the early and dual networks)
from segcore.losses import SoftDiceCELoss
from segcore.networks import build_network
from segcore.runtime.trainer import compiled_blocks
from segcore.strategies import strategy_class

warnings.filterwarnings("ignore")
CONFIGS = Path(__file__).resolve().parent.parent / "workflows" / "config"
SUPERPIXEL_SIDE = 8  # one hyper-pixel per 8 x 8 pixels (the SLIC default of both domains)


def _config(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text())


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The step sizes of a preset: {"mri": {...}, "rs": {...}} from the workflow configs."""
    demo = _config("config.yaml")
    mri_cfg = demo["mri"] if name == "demo" else {**demo["mri"], **_config("full.yaml")["mri"]}
    rs_cfg = demo["rs"] if name == "demo" else _deep_merge(demo["rs"], _config("landslide4sense.yaml")["rs"])
    g, loc = mri_cfg["pretrain"]["global"], mri_cfg["pretrain"]["local"]
    mri = {
        "size": int(mri_cfg["preprocess"]["image_size"][0]),
        "channels": [int(c) for c in mri_cfg["network"]["channels"]],
        "partitions": int(mri_cfg["preprocess"]["partitions"]),
        "volumes": int(g["volumes_per_batch"]),
        "local_volumes": int(loc["volumes_per_batch"]),
        "negatives": str(loc["negatives"]),
        "finetune_batch": int(mri_cfg["finetune"]["batch_size"]),
        "classes": 4,
    }
    landslide4sense = name == "full"
    net = rs_cfg["network"]
    rs = {
        "size": 128 if landslide4sense else int(rs_cfg["preprocess"]["tile"]),
        "in_channels": 14 if landslide4sense else 9,
        "spectral": list(range(12)) if landslide4sense else list(range(4)),
        "encoder": str(net["encoder"]),
        "encoder_depth": int(net["encoder_depth"]),
        "decoder_channels": [int(c) for c in net["decoder_channels"]],
        "batch": int(rs_cfg["pretrain"]["batch_size"]),
        "finetune_batch": int(rs_cfg["finetune"]["batch_size"]),
        "K": int(rs_cfg["pretrain"]["queue_size"]),
        "momentum": float(rs_cfg["pretrain"]["momentum"]),
        "crop_scale": tuple(rs_cfg["pretrain"]["crop_scale"]),
    }
    return {"mri": mri, "rs": rs}


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """Times steps with the benchmark's device, precision, memory format and compilation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device(args.device)
        self.bf16, self.channels_last, self.compile = args.precision == "bf16", args.channels_last, args.compile
        self.reps, self.warmup = args.reps, args.warmup

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.compile:
            for block in compiled_blocks(net):
                block.compile()
        return net

    def image(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def time(self, loss_fn: Callable[[], torch.Tensor], opt: torch.optim.Optimizer) -> float:
        """Mean seconds of ``loss_fn`` + backward + ``opt.step`` over ``reps`` after ``warmup``."""

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss = loss_fn()
            loss.backward()
            opt.step()

        for _ in range(self.warmup):
            step()
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(self.reps):
            step()
        sync(self.device)
        return (time.perf_counter() - t0) / self.reps


def mri_batch(b: int, size: int, volumes: int, partitions: int, g: torch.Generator) -> dict[str, Any]:
    per = max(1, b // (volumes * partitions))
    groups = [f"v{v}" for v in range(volumes) for _ in range(partitions) for _ in range(per)]
    parts = [p for _ in range(volumes) for p in range(partitions) for _ in range(per)]
    n = len(groups)
    return {
        "image": torch.rand(n, 1, size, size, generator=g),
        "label": torch.randint(0, 4, (n, size, size), generator=g),
        "meta": {"group": groups, "partition": parts, "sample": list(range(n))},
    }


def mri_rows(p: dict[str, Any], run: Runner) -> list[tuple[str, float, int]]:
    g = torch.Generator().manual_seed(0)
    spec = {"name": "unet2d", "in_channels": 1, "num_classes": p["classes"], "channels": p["channels"]}
    batch = mri_batch(p["volumes"] * p["partitions"], p["size"], p["volumes"], p["partitions"], g)
    batch["image"] = run.image(batch["image"])
    label = batch["label"].to(run.device)
    seg_loss = SoftDiceCELoss(p["classes"]).to(run.device)
    rows = []
    net = run.prepare(build_network(spec))
    t = run.time(lambda: seg_loss(net(batch["image"]), label), torch.optim.Adam(net.parameters(), 1e-4))
    rows.append((f"MRI supervised, batch {len(label)}", t, 1))
    ft = mri_batch(p["finetune_batch"], p["size"], 1, 1, g)
    x_ft, y_ft = run.image(ft["image"]), ft["label"].to(run.device)
    net = run.prepare(build_network(spec))
    t = run.time(lambda: seg_loss(net(x_ft), y_ft), torch.optim.Adam(net.parameters(), 1e-4))
    rows.append((f"MRI fine-tuning, batch {len(y_ft)}", t, 1))
    net = build_network(spec)
    strategy = strategy_class("GD")(net, (p["size"], p["size"]), volumes_per_batch=p["volumes"]).to(run.device)
    net = run.prepare(net)
    t = run.time(
        lambda: strategy.loss(net, batch, g)[0],
        strategy.optimizer(strategy.trained_parameters(net), 1e-4),
    )
    rows.append((f"MRI G^D, batch {len(label)}", t, 2))
    net = build_network(spec)
    n_blocks = max(1, len(p["channels"]) - 3)
    local = mri_batch(p["local_volumes"] * p["partitions"], p["size"], p["local_volumes"], p["partitions"], g)
    local["image"] = run.image(local["image"])
    strategy = strategy_class("LR")(net, n_blocks, volumes_per_batch=p["local_volumes"], negatives=p["negatives"])
    strategy = strategy.to(run.device)
    net = run.prepare(net)
    strategy.set_train_mode(net, True)
    t = run.time(
        lambda: strategy.loss(net, local, g)[0],
        strategy.optimizer(strategy.trained_parameters(net), 1e-4),
    )
    rows.append((f"MRI L^R ({p['negatives']}), batch {len(local['label'])}", t, 2))
    return rows


def rs_rows(p: dict[str, Any], run: Runner) -> list[tuple[str, float, int]]:
    g = torch.Generator().manual_seed(0)
    spec = {
        "name": "early",
        "in_channels": p["in_channels"],
        "num_classes": 2,
        "encoder_name": p["encoder"],
        "encoder_depth": p["encoder_depth"],
        "decoder_channels": p["decoder_channels"],
    }
    b, s = p["batch"], p["size"]
    x = run.image(torch.randn(b, p["in_channels"], s, s, generator=g))
    y = torch.randint(0, 2, (p["finetune_batch"], s, s), generator=g).to(run.device)
    x_ft = run.image(torch.randn(p["finetune_batch"], p["in_channels"], s, s, generator=g))
    side = s // SUPERPIXEL_SIDE
    cells = torch.arange(s) // SUPERPIXEL_SIDE
    sp = (cells[:, None] * side + cells[None, :]).expand(b, s, s).contiguous().to(run.device)
    seg_loss = SoftDiceCELoss(2).to(run.device)
    rows = []
    net = run.prepare(build_network(spec))
    t = run.time(lambda: seg_loss(net(x_ft), y), torch.optim.Adam(net.parameters(), 1e-4))
    rows.append((f"RS supervised, batch {len(y)}", t, 1))
    net = build_network(spec)
    strategy = strategy_class("hpcl")(
        net,
        batch_size=b,
        K=p["K"],
        m=p["momentum"],
        crop_scale=p["crop_scale"],
        jitter_channels=p["spectral"],
    ).to(run.device)
    with torch.no_grad():  # a full queue, as in every step after the first K / (hyper-pixels per step)
        keys = torch.nn.functional.normalize(torch.randn(p["K"], strategy.queue.D, generator=g), dim=1)
        strategy.queue.enqueue(keys.to(run.device))
    net = run.prepare(net)
    strategy.key_net = run.prepare(strategy.key_net)
    batch = {"image": x, "superpixels": sp}
    t = run.time(
        lambda: strategy.loss(net, batch, g)[0],
        strategy.optimizer(strategy.trained_parameters(net), 1e-4),
    )
    rows.append((f"RS hyper-pixel K={p['K']}, batch {b}", t, 2))
    return rows


def protocol_cost(times: dict[str, float], device: str) -> None:
    """Hours of the full presets' protocols at the measured step times (``--preset full``);
    ``times``: seconds per step by row name; ``device``: where they were measured (the label)."""

    def t(prefix: str) -> float:
        return next(v for k, v in times.items() if k.startswith(prefix))

    acdc = _deep_merge(_config("config.yaml")["mri"], _config("acdc.yaml")["mri"])
    l4s = _deep_merge(_config("config.yaml")["rs"], _config("landslide4sense.yaml")["rs"])
    m = acdc
    methods = [x for x in m["methods"] if x in ("none", "GR", "GD-", "GD", "GD+LR", "GD+LD")]  # the paper's
    ft = m["finetune"]
    g_steps, l_steps, ft_steps = m["pretrain"]["global"]["steps"], m["pretrain"]["local"]["steps"], ft["steps"]
    runs_ft = len(methods) * len(ft["budgets"]) * len(ft["seeds"]) + len(ft["all_labels_methods"]) * len(
        ft.get("all_labels_seeds") or ft["seeds"]
    )
    grid = f"{len(methods)} methods x {len(ft['budgets'])} budgets x {len(ft['seeds'])} seeds + all labels"
    n_global = len({x.split("+")[0] for x in methods if x != "none"})
    n_local = len([x for x in methods if "+" in x])
    mri = [
        (f"global pretraining ({n_global} runs)", n_global * g_steps, t("MRI G^D")),
        (f"local pretraining ({n_local} runs)", n_local * l_steps, t("MRI L^R")),
        (f"supervised fine-tuning ({grid}: {runs_ft} runs)", runs_ft * ft_steps, t("MRI fine-tuning")),
    ]
    f = l4s["finetune"]
    fusions = len(l4s["fusions"])
    hpcl_fusions = len(l4s.get("hpcl", {}).get("fusions") or l4s["fusions"])
    per_method = {x: hpcl_fusions if x.startswith("hpcl") else fusions for x in l4s["methods"]}
    runs = sum(per_method.values()) * len(f["budgets"]) * len(f["seeds"]) + len(
        f["all_labels_methods"]
    ) * fusions * len(f["all_labels_seeds"])
    n_pre = hpcl_fusions if any(x.startswith("hpcl-ssl") for x in l4s["methods"]) else 0
    rs = [
        (f"hyper-pixel pretraining ({n_pre} runs)", n_pre * l4s["pretrain"]["steps"], t("RS hyper-pixel")),
        (f"supervised fine-tuning ({runs} runs)", runs * f["steps"], t("RS supervised")),
    ]  # fmt: skip
    print(f"\ncost of the full presets at {device} step times (training steps only: no evaluation or validation)")
    for title, parts in (
        ("ACDC preset (workflows/config/acdc.yaml, the paper's methods; semi-supervised cells not counted)", mri),
        ("Landslide4Sense preset (workflows/config/landslide4sense.yaml; semi-supervised cells not counted)", rs),
    ):
        total = 0.0
        print(title)
        for name, steps, t in parts:
            total += steps * t
            print(f"  {name:62s} {steps:>9,d} steps x {t:7.3f} s = {steps * t / 3600:8.1f} h")
        print(f"  {'total':62s} {'':>9s}                 = {total / 3600:8.1f} h ({total / 86400:.1f} days)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("demo", "full"), default="demo")
    ap.add_argument("--domain", nargs="+", choices=("mri", "rs"), default=["mri", "rs"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", choices=("32", "bf16"), default="32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cost", action="store_true", help="the full presets' protocol cost at these step times")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Runner(args)
    sizes = preset(args.preset)
    device = f"; device {torch.cuda.get_device_name(run.device)}" if run.device.type == "cuda" else ""
    print(f"machine: {machine_description(args.threads)}{device}")
    print(
        f"preset {args.preset}: {sizes}; precision {args.precision}, channels-last {args.channels_last}, "
        f"compile {args.compile}; {args.reps} timed steps after {args.warmup}; target: contrastive <= 1.15x "
        "supervised per pass"
    )
    rows: list[tuple[str, float, int, float]] = []
    for domain in args.domain:
        found = mri_rows(sizes["mri"], run) if domain == "mri" else rs_rows(sizes["rs"], run)
        reference = found[0][1]
        rows += [(name, t, passes, reference) for name, t, passes in found]
    print(f"{'step':44s} {'s/step':>8s} {'passes':>6s} {'ratio/step':>10s} {'ratio/pass':>10s}")
    for name, t, passes, reference in rows:
        print(f"{name:44s} {t:8.4f} {passes:6d} {t / reference:10.2f} {t / passes / reference:10.2f}")
    if args.cost:
        where = torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else f"CPU ({args.threads} thread)"
        protocol_cost({name: t for name, t, _, _ in rows}, where)


if __name__ == "__main__":
    main()
