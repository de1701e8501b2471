#!/usr/bin/env bash
# The inference issue's GPU measurements in one call on the lent device machine (H100, python3 with
# torch, no network, no Docker). Prepare here first: `scripts/device_wheels.sh` (writes .whl/), then
# run through the device tool with carry [".whl"] and a timeout of 600 s:
#     bash scripts/gpu_check.sh
# It writes to $OUT (or ./gpu-check): the AMOS-sized benchmark against nnU-Net's predictor, TTA off
# and on (bench_amos.json), the same for the demo model on a sample case for fp16 agreement
# (bench_demo.json), and a 512x512x600 case under GPU_MEMORY_LIMIT_GB=24 (limit24.json), plus the log.
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
export PYTHONUNBUFFERED=1
py=python3
if [[ -d .whl ]]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
work=/tmp/gpu-check
mkdir -p "$work"
step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }

step "AMOS-sized model and cases"
$py scripts/amos_sized_model.py --model "$work/amos-model" --cases "$work/cases" --slices 160,600 || exit 1

step "AMOS-sized case: this engine vs nnUNetPredictor on cuda, TTA off and on"
BENCH_DEVICE=cuda $py scripts/bench_inference.py --model "$work/amos-model" \
    --case "$work/cases/amos_sized_160.nii.gz" --tta both --skip-files --json "$out/bench_amos.json"

step "512x512x600 under GPU_MEMORY_LIMIT_GB=24"
mkdir -p "$work/in600"
ln -sf "$work/cases/amos_sized_600.nii.gz" "$work/in600/"
INPUT_DIR="$work/in600" OUTPUT_DIR="$work/out600" MODEL_DIR="$work/amos-model" TTA=0 \
    GPU_MEMORY_LIMIT_GB=24 METRICS_FILE="$out/limit24.json" $py inference/run_inference.py
echo "exit status $?"

step "demo model on a sample case: fp16 GPU output vs nnU-Net's GPU output"
BENCH_DEVICE=cuda $py scripts/bench_inference.py --tta 0 --skip-files --json "$out/bench_demo.json"

step "done"
