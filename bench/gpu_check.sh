#!/usr/bin/env bash
# GPU smoke run and GPU benchmarks, in one script (run by hand on a machine with a CUDA GPU).
#
#     bash bench/gpu_check.sh [WORK]        # WORK: scratch folder (default /tmp/gpu_check)
#
# Every stage CLI of both domains runs on the GPU (--accelerator gpu, Lightning's default
# bf16-mixed precision where the GPU supports it), on the demo data at small step counts:
# MRI demo-data → preprocess → pretrain global (G^D) → local (L^R) → finetune from it → evaluate →
# predict; RS demo-data → preprocess → pretrain hpcl-ssl (dual) → finetune from it with the
# class-aware term (hpcl-ssl+sup) → evaluate → predict a whole scene. Then the step-time ratios of
# bench/pretrain_step.py and the queue share of bench/queue_share.py on the GPU. Stops at the
# first failure. The CLIs are called as `python -m medseg.cli` / `python -m rs.cli` so that the
# script also runs where the package is on PYTHONPATH rather than installed.
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
$M evaluate --data "$W/mri/prepared" --model "$W/mri/finetune/model.pt" --out "$W/mri/evaluate"
$M predict --input "$W/mri/raw/imagesTr" --model "$W/mri/finetune/model.pt" --data "$W/mri/prepared" --out "$W/mri/predict"
ls "$W/mri/predict" | head -n 3
$PY - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
train = json.load(open(f"{w}/mri/finetune/train.json"))
print("MRI finetune train.json:", json.dumps(train)[:600])
print("MRI test metrics:", json.dumps(json.load(open(f"{w}/mri/evaluate/metrics.json")))[:600])
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
$R evaluate --data "$W/rs/prepared" --model "$W/rs/finetune/model.pt" --out "$W/rs/evaluate"
$R predict --image "$W/rs/raw/scenes/scene_00_image.tif" --dem "$W/rs/raw/scenes/scene_00_dem.tif" --model "$W/rs/finetune/model.pt" \
   --data "$W/rs/prepared" --out "$W/rs/predict"
$PY - "$W" <<'EOF'
import json, sys, glob
import rasterio
w = sys.argv[1]
train = json.load(open(f"{w}/rs/finetune/train.json"))
print("RS finetune train.json:", json.dumps(train)[:600])
print("RS test metrics:", json.dumps(json.load(open(f"{w}/rs/evaluate/metrics.json")))[:600])
for tif in glob.glob(f"{w}/rs/predict/*.tif"):
    with rasterio.open(tif) as src:
        print("prediction", tif, src.crs, src.shape, src.count, src.dtypes)
EOF

if [ "$DEV" = cuda ]; then
  step "pretraining step / supervised step on the GPU (bench/pretrain_step.py)"
  $PY bench/pretrain_step.py --device cuda --reps 50
  $PY bench/pretrain_step.py --device cuda --reps 20 --batch 64 --size 128
  step "queue share on the GPU (bench/queue_share.py)"
  $PY bench/queue_share.py --device cuda --K 65536 --D 128 --reps 20
fi
echo; echo "gpu_check: all stages passed in $(( $(date +%s) - t0 )) s"
