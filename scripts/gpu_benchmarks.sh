#!/usr/bin/env bash
# Issue 6's GPU targets in one go: DeiT-S 224 at batch 256, bf16 and fp32 inference (PPT vs its baseline vs stock
# transformers sdpa, interleaved in one run each), torch.compile, a bf16 training step, 384 px, and fp32 in ONNX
# Runtime (PPT-ONNX vs stock-ONNX, when onnxruntime-gpu is installed). Then the GPU
# tests (tests/test_gpu.py). Everything lands in OUT_DIR, plus OUT_DIR.tar.gz.
#
#   bash scripts/gpu_benchmarks.sh outputs/gpu
#
# Needs a CUDA torch and transformers >= 5.9 (the model code only); run from the repository root. The variables
# below shrink it for a dry run on a CPU machine: ARCH=deit-tiny BATCH=2 DEVICE=cpu ROUNDS=1 bash scripts/...
set -euo pipefail
out=${1:-outputs/gpu}
arch=${ARCH:-deit-small}
batch=${BATCH:-256}
device=${DEVICE:-cuda}
rounds=${ROUNDS:-9}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
{
    python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
} | tee "$out/machine.txt"

bench() {  # bench NAME ARGS...: one benchmark run, its report in $out/NAME
    local name=$1
    shift
    echo "== $name: benchmark.py $*" | tee -a "$out/commands.txt"
    python benchmark.py --arch "$arch" --device "$device" --rounds "$rounds" --no_progress \
        --output_dir "$out/$name" "$@" 2>&1 | tee "$out/$name.log"
}

bench inference_bf16 --batch_size "$batch" --dtype bf16
bench inference_fp32 --batch_size "$batch" --dtype fp32
bench compile_bf16 --batch_size "$batch" --dtype bf16 --compile
bench train_bf16 --mode train --batch_size "$((batch / 2))" --dtype bf16
# 384 px: r=144 removes the same fraction of tokens per step as r=50 at 224 (577 -> 433 -> 289 -> 145).
bench inference_384_bf16 --image_size 384 --tokens_removed 144 --batch_size "$((batch / 4 > 0 ? batch / 4 : 1))" \
    --dtype bf16

# ONNX Runtime (PPT-ONNX vs stock-ONNX, same weights, next to eager): on a GPU this needs onnxruntime-gpu, whose
# CUDAExecutionProvider runs the graphs with their inputs and outputs bound on the GPU.
if python -c "import sys, onnxruntime, onnxscript; sys.exit('$device' != 'cpu' and 'CUDAExecutionProvider' \
        not in onnxruntime.get_available_providers())" 2>/dev/null; then
    bench inference_fp32_onnxruntime --batch_size "$batch" --dtype fp32 --backend onnxruntime
else
    echo "== inference_fp32_onnxruntime skipped: needs pip install \".[onnx]\" (on a GPU: onnxruntime-gpu)" \
        | tee -a "$out/commands.txt"
fi

if [ "$device" = cuda ]; then
    python -m pytest -q tests/test_gpu.py 2>&1 | tee "$out/test_gpu.log"
fi
tar czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
echo "wrote $out and $out.tar.gz"
