#!/usr/bin/env bash
# GPU smoke run and GPU benchmarks, in one script (run by hand on a machine with a CUDA GPU).
#
#     bash bench/gpu_check.sh [WORK]        # WORK: scratch folder (default /tmp/gpu_check)
#
# Every stage CLI of both domains runs on the GPU (--accelerator gpu, Lightning's default
# bf16-mixed precision where the GPU supports it), on the demo data at small step counts:
# MRI demo-data → preprocess → pretrain global (G^D) → local (L^R) → finetune from it → evaluate →
# predict; RS demo-data → preprocess → pretrain hpcl-ssl (dual) → finetune from it with the
# class-aware term (hpcl-ssl+sup) → evaluate → predict a whole scene. Evaluation and prediction run
# with --device (cuda, and cpu beside it: the metrics must agree) and predict without --data (the
# model's own preprocessing record). A fine-tuning run with --compile. Each semi-supervised mode's
# fine-tuning step time against supervised fine-tuning (SEMI_STEPS steps, default 60). Then the step times of
# bench/pretrain_step.py at the demo's and the full presets' sizes (ACDC protocol: U-Net at 192²;
# Landslide4Sense: ResNet-34 at 128², hyper-pixel queue K = 65,536) in float32, in bf16 autocast
# with channels-last, and compiled, with the presets' protocol cost at those step times. Stops at
# the first failure. The CLIs are called as `python -m medseg.cli` / `python -m rs.cli` so that
# the script also runs where the package is on PYTHONPATH rather than installed.
set -euo pipefail
PY=${PYTHON:-python3}
W=${1:-/tmp/gpu_check}
rm -rf "$W" && mkdir -p "$W"
export PYTHONUNBUFFERED=1
DEV=${DEVICE:-cuda}   # DEVICE=cpu rehearses the script's stages on a machine without a GPU
if [ "$DEV" = cuda ]; then GPU=(--accelerator gpu --devices 1); else GPU=(--accelerator cpu); fi
step() { echo; echo "=== $* [$(date +%T)]"; }
t0=$(date +%s)

step environment
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, lightning, monai, segmentation_models_pytorch as smp, rasterio, nibabel; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0), '| lightning', lightning.__version__, '| monai', monai.__version__, '| smp', smp.__version__, '| rasterio', rasterio.__version__)"

step MRI
M="$PY -m medseg.cli"
$M demo-data --out "$W/mri/raw" --n-subjects 16 --n-slices 12 --size 96 --seed 0
$M preprocess --input "$W/mri/raw" --out "$W/mri/prepared" --target-spacing 2.25 2.25 --image-size 64 64 \
   --partitions 4 --n-test 4 --n-val 2 --n-labeled 4 --seed 0
$M pretrain --stage global --strategy GD --data "$W/mri/prepared" --out "$W/mri/pretrain/GD" --steps 40 \
   --volumes-per-batch 4 --seed 0 "${GPU[@]}"
$M pretrain --stage local --strategy LR --init "$W/mri/pretrain/GD/model.pt" --data "$W/mri/prepared" \
   --out "$W/mri/pretrain/GD+LR" --steps 20 --volumes-per-batch 4 --seed 0 "${GPU[@]}"
$M finetune --data "$W/mri/prepared" --out "$W/mri/finetune" --budget 2 --seed 0 \
   --init "$W/mri/pretrain/GD+LR/model.pt" --steps 100 --val-every 50 "${GPU[@]}"
$M finetune --data "$W/mri/prepared" --out "$W/mri/finetune_compiled" --budget 2 --seed 0 \
   --init "$W/mri/pretrain/GD+LR/model.pt" --steps 40 --val-every 20 --compile "${GPU[@]}"
$M evaluate --data "$W/mri/prepared" --model "$W/mri/finetune/model.pt" --out "$W/mri/evaluate" --device "$DEV"
$M evaluate --data "$W/mri/prepared" --model "$W/mri/finetune/model.pt" --out "$W/mri/evaluate_cpu" --device cpu
$M predict --input "$W/mri/raw/imagesTr" --model "$W/mri/finetune/model.pt" --out "$W/mri/predict" --device "$DEV"
ls "$W/mri/predict" | head -n 3
$PY - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
train = json.load(open(f"{w}/mri/finetune/train.json"))
print("MRI finetune train.json:", json.dumps(train)[:600])
print("MRI finetune --compile: best val", json.load(open(f"{w}/mri/finetune_compiled/train.json"))["best_val_dice"])
dev, cpu = (json.load(open(f"{w}/mri/{d}/metrics.json")) for d in ("evaluate", "evaluate_cpu"))
print("MRI test metrics:", json.dumps(dev)[:600])
print("MRI Dice on the device vs the CPU:", dev["summary"]["dice_mean"], cpu["summary"]["dice_mean"],
      "difference", abs(dev["summary"]["dice_mean"] - cpu["summary"]["dice_mean"]))
EOF

step Remote sensing
R="$PY -m rs.cli"
$R demo-data --out "$W/rs/raw" --n-scenes 2 --size 384 --seed 0
$R preprocess --input "$W/rs/raw" --out "$W/rs/prepared" --tile 64 --overlap 16 --block-tiles 4 \
   --val-fraction 0.2 --test-fraction 0.3 --seed 0
NET=(--encoder tu-regnetx_002 --encoder-depth 4 --decoder-channels 32,16,16,8)
$R pretrain --method hpcl --data "$W/rs/prepared" --out "$W/rs/pretrain" --fusion dual "${NET[@]}" --steps 40 \
   --queue-size 1024 --seed 0 "${GPU[@]}"
$R finetune --data "$W/rs/prepared" --out "$W/rs/finetune" --percent 20 --seed 0 --method hpcl-ssl+sup \
   --fusion dual --init "$W/rs/pretrain/model.pt" "${NET[@]}" --steps 100 --val-every 50 \
   --hpcl-weight 0.2 --hpcl-warmup 20 --hpcl-queue 512 --hpcl-unlabeled 8 "${GPU[@]}"
$R evaluate --data "$W/rs/prepared" --model "$W/rs/finetune/model.pt" --out "$W/rs/evaluate" --device "$DEV"
$R evaluate --data "$W/rs/prepared" --model "$W/rs/finetune/model.pt" --out "$W/rs/evaluate_cpu" --device cpu
$R predict --image "$W/rs/raw/scenes/scene_00_image.tif" --dem "$W/rs/raw/scenes/scene_00_dem.tif" --model "$W/rs/finetune/model.pt" \
   --out "$W/rs/predict" --probabilities --device "$DEV"
$PY - "$W" <<'EOF'
import json, sys, glob
import rasterio
w = sys.argv[1]
train = json.load(open(f"{w}/rs/finetune/train.json"))
print("RS finetune train.json:", json.dumps(train)[:600])
dev, cpu = (json.load(open(f"{w}/rs/{d}/metrics.json")) for d in ("evaluate", "evaluate_cpu"))
print("RS test metrics:", json.dumps(dev)[:600])
print("RS mIoU on the device vs the CPU:", dev["summary"]["miou"], cpu["summary"]["miou"],
      "difference", abs(dev["summary"]["miou"] - cpu["summary"]["miou"]))
for tif in glob.glob(f"{w}/rs/predict/*.tif"):
    with rasterio.open(tif) as src:
        print("prediction", tif, src.crs, src.shape, src.count, src.dtypes, "overviews", src.overviews(1),
              src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"))
EOF

step "semi-supervised fine-tuning step times (each mode vs supervised, the stage CLIs on the demo data)"
SEMI_STEPS=${SEMI_STEPS:-60}
for mode in none self-training fixmatch unimatch; do
  $M finetune --data "$W/mri/prepared" --out "$W/semi/mri_$mode" --budget 2 --seed 0 --semi "$mode" \
     --steps "$SEMI_STEPS" --val-every "$SEMI_STEPS" "${GPU[@]}" > "$W/semi_mri_$mode.log" 2>&1
  $R finetune --data "$W/rs/prepared" --out "$W/semi/rs_$mode" --percent 20 --seed 0 --semi "$mode" --fusion dual \
     "${NET[@]}" --steps "$SEMI_STEPS" \
     --val-every "$SEMI_STEPS" "${GPU[@]}" > "$W/semi_rs_$mode.log" 2>&1
done
$PY - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
modes = ("none", "self-training", "fixmatch", "unimatch")
for domain in ("mri", "rs"):
    runs = {m: json.load(open(f"{w}/semi/{domain}_{m}/train.json")) for m in modes}
    per_step = {m: r["wall_seconds"] / r["steps"] for m, r in runs.items()}
    print(domain, "s/step (incl. one validation):",
          ", ".join(f"{m} {t:.4f} ({t / per_step['none']:.2f}x supervised)" for m, t in per_step.items()))
EOF

if [ "$DEV" = cuda ]; then
  step "step times on the GPU, demo preset (bench/pretrain_step.py)"
  $PY bench/pretrain_step.py --device cuda --preset demo --reps 30 --warmup 5
  step "step times on the GPU, full presets: float32"
  $PY bench/pretrain_step.py --device cuda --preset full --reps 10 --warmup 3
  step "step times on the GPU, full presets: bf16 autocast + channels-last (the stages' GPU defaults), protocol cost"
  $PY bench/pretrain_step.py --device cuda --preset full --reps 10 --warmup 3 --precision bf16 --channels-last --cost
  step "step times on the GPU, full presets: bf16 + channels-last + torch.compile"
  $PY bench/pretrain_step.py --device cuda --preset full --reps 10 --warmup 5 --precision bf16 --channels-last --compile
fi
echo; echo "gpu_check: all stages passed in $(( $(date +%s) - t0 )) s"
