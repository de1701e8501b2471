#!/usr/bin/env bash
# The inference issue's GPU measurements in one call on the lent device machine (H100, python3 with
# torch, no network, no Docker). Prepare here first: `scripts/device_wheels.sh` (writes .whl/), then
# run through the device tool with carry [".whl"] and a timeout of 600 s:
#     bash scripts/gpu_check.sh
# It writes to $OUT (or ./gpu-check), in this order: the AMOS-sized benchmark against nnU-Net's
# predictor with TTA off, with the network alone at batch 4 and 8 (bench_amos_tta0.json); a
# 512x512x600 case under GPU_MEMORY_LIMIT_GB=24 (limit24.json); the demo model on a sample case for
# fp16 agreement (bench_demo.json); the engine alone on two copies of the AMOS-sized case with cuDNN
# autotuning on and off (cudnn_benchmark_*.json: the first case pays the one-off costs, the second
# shows a test set's steady state); ENGINE=nnunet (nnU-Net's own predictor in our runner) on the
# AMOS-sized case (engine_nnunet.json, its agreement with the fast engine); the AMOS-sized benchmark
# with TTA on (bench_amos_tta1.json);
# plus log.txt. Estimated (not yet measured) 7-8 minutes on an H100: nnU-Net's ~66-90 s per run
# dominates.
# DRY_RUN=1 rehearses the same steps on the CPU with a small case (192 x 192 x 30; the long case
# replaced by the small one; the TTA-on step run with TTA off) so that the script itself is known to
# work before device time is spent on it: `DRY_RUN=1 OUT=/tmp/dry bash scripts/gpu_check.sh`
# (about 7 minutes on 2 cores).
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
export PYTHONUNBUFFERED=1 COLUMNS=160
py="${PYTHON:-python3}"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    device=cpu force_cpu=1 size=192 slices=30 long=30 tta_on=0 batches=4
else
    device=cuda force_cpu=0 size=512 slices=160 long=600 tta_on=1 batches=4,8
fi
if [[ -d .whl && "${DRY_RUN:-0}" != 1 ]]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
# the device has no editable install: the host tools (amoskit) and the engine (amosseg) by path
export PYTHONPATH="$PWD:$PWD/inference${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$py -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 1
work=$(mktemp -d /tmp/gpu-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }
failed=0

step "AMOS-sized model and cases"
$py -m amoskit.devtools.amos_sized_model --model "$work/amos-model" --cases "$work/cases" --size "$size" \
    --slices "$(printf '%s\n' "$slices" "$long" | sort -u | paste -sd,)" || exit 1

# Cheapest and most important first: a run cut short by the time limit keeps what it finished.
step "AMOS-sized case: this engine vs nnUNetPredictor on $device, TTA off (with nnU-Net's phase split)"
BENCH_DEVICE=$device $py -m amoskit.bench.inference --model "$work/amos-model" --device "$device" \
    --case "$work/cases/amos_sized_$slices.nii.gz" --tta 0 --skip-files --net-batches "$batches" \
    --json "$out/bench_amos_tta0.json" || failed=1

step "${size}x${size}x$long under GPU_MEMORY_LIMIT_GB=24"
mkdir -p "$work/in-long"
ln -sf "$work/cases/amos_sized_$long.nii.gz" "$work/in-long/"
INPUT_DIR="$work/in-long" OUTPUT_DIR="$work/out-long" MODEL_DIR="$work/amos-model" TTA=0 \
    GPU_MEMORY_LIMIT_GB=24 METRICS_FILE="$out/limit24.json" FORCE_CPU=$force_cpu \
    $py inference/run_inference.py || failed=1

step "demo model on a sample case: this engine vs nnU-Net on $device (fp16 agreement)"
BENCH_DEVICE=$device $py -m amoskit.bench.inference --device "$device" --tta 0 --skip-files \
    --json "$out/bench_demo.json" || failed=1

step "the engine alone on two copies of the AMOS-sized case, cuDNN autotuning on and off (first vs second)"
mkdir -p "$work/in-two"
ln -sf "$work/cases/amos_sized_$slices.nii.gz" "$work/in-two/a.nii.gz"
ln -sf "$work/cases/amos_sized_$slices.nii.gz" "$work/in-two/b.nii.gz"
for bench in 1 0; do
    rm -f "$out/cudnn_benchmark_$bench.json"
    INPUT_DIR="$work/in-two" OUTPUT_DIR="$work/out-two" MODEL_DIR="$work/amos-model" TTA=0 CUDNN_BENCHMARK=$bench \
        METRICS_FILE="$out/cudnn_benchmark_$bench.json" FORCE_CPU=$force_cpu \
        $py inference/run_inference.py > "$work/cudnn_$bench.log" 2>&1 || { failed=1; tail -5 "$work/cudnn_$bench.log"; }
    $py -c "import json,sys; m=json.load(open(sys.argv[1]))
print(f'CUDNN_BENCHMARK={sys.argv[2]}: run {m[\"total_seconds\"]:.2f} s, startup {m[\"startup_seconds\"]:.2f} s, '
      f'peak RSS {m[\"peak_rss_bytes\"]/2**30:.2f} GiB')
for c in m['cases']:
    s = c['seconds']
    print(f'  {c[\"name\"]}: read {s[\"read\"]:.2f} preprocess {s[\"preprocess\"]:.2f} network {s[\"network\"]:.2f} '
          f'export {s[\"export\"]:.2f} write {s[\"write\"]:.2f} s, peak GPU {c[\"peak_gpu_bytes\"]/2**30:.2f} GiB')" \
        "$out/cudnn_benchmark_$bench.json" $bench || failed=1
done

step "ENGINE=nnunet (nnU-Net's own predictor in our runner) on $device: the AMOS-sized case, TTA off"
mkdir -p "$work/in-one"
ln -sf "$work/cases/amos_sized_$slices.nii.gz" "$work/in-one/a.nii.gz"
INPUT_DIR="$work/in-one" OUTPUT_DIR="$work/out-nnunet" MODEL_DIR="$work/amos-model" TTA=0 ENGINE=nnunet \
    METRICS_FILE="$out/engine_nnunet.json" FORCE_CPU=$force_cpu \
    $py inference/run_inference.py > "$work/nnunet.log" 2>&1 || { failed=1; tail -5 "$work/nnunet.log"; }
grep -E "^device:|^a.nii.gz:" "$work/nnunet.log"
$py -c "import sys; from amoskit import metrics
a, b = metrics.read_labels(sys.argv[1]), metrics.read_labels(sys.argv[2])
print(f'fast engine vs ENGINE=nnunet: voxel agreement {metrics.agreement(a, b):.4%}')" \
    "$work/out-two/a.nii.gz" "$work/out-nnunet/a.nii.gz" || failed=1

step "AMOS-sized case: this engine vs nnUNetPredictor on $device, TTA $([[ $tta_on == 1 ]] && echo on || echo off) (no phase split)"
BENCH_DEVICE=$device $py -m amoskit.bench.inference --model "$work/amos-model" --device "$device" \
    --case "$work/cases/amos_sized_$slices.nii.gz" --tta "$tta_on" --skip-files --no-phases --net-batches "$batches" \
    --json "$out/bench_amos_tta$tta_on.json" || failed=1

step "done (failed=$failed)"
exec >&- 2>&-  # close the pipe into tee and let it finish writing log.txt
wait
exit $failed
