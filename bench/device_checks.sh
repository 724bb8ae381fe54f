#!/usr/bin/env bash
# The GPU checks of one device lease, as one prepared run (docs/benchmarks.md records them).
#
# Usage, on a machine with one CUDA GPU and python3 holding PyTorch, from the repo root:
#   bash bench/device_checks.sh OUT_DIR [STEP...]
# STEPs (default: all, in this order): gpu_tests gpu_tests_compile lvdm_sampling cascade gan
# train lvdm_compile cascade_graphs lvdm_compile_bf16w gan_bf16. One device command may run
# 600 s and a lease has 900 s in all, start included, so split the work: e.g.
# `... gpu_tests lvdm_compile cascade_graphs` (about 470 s), then at once `... train`.
# Python packages the GPU machine lacks travel as wheels in .whl/ (ignored by git); fetch them
# here with `pip download --no-deps --only-binary=:all: --python-version 3.12 ...` for:
# diffusers==0.42.1 importlib_metadata typing_extensions (LVDM); imagen-pytorch==1.21.6
# beartype einops-exts ema-pytorch kornia kornia-rs pytorch-warmup pydantic pydantic-core
# annotated-types typing-inspection datasets dill multiprocess (EchoDiffusion's cascades);
# lpips pydicom monai (train_gpu.py's VAE and RV-failure rows).
# Writes OUT_DIR/log.txt and one JSON per bench; each step has its own time limit so one
# hang leaves the others their time.
set -u
out=${1:?usage: bash bench/device_checks.sh OUT_DIR}
mkdir -p "$out"
log="$out/log.txt"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >>"$log" 2>&1 || echo "wheel install failed" >>"$log"
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: run with a limit, log its output and time
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name (limit ${limit}s): $*" >>"$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "=== $name: rc $? after $((SECONDS - start)) s" >>"$log"
}
want() {  # want STEP: true when STEP was asked for (or none was)
    [ ${#steps[@]} -eq 0 ] || [[ " ${steps[*]} " == *" $1 "* ]]
}
steps=("${@:2}")
step gpu 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if want gpu_tests; then
    step gpu_tests 90 python3 -m pytest -q -p no:cacheprovider -m gpu -k "not compiled" \
        tests/unit/test_cascade_cuda.py tests/unit/test_sampling_cuda.py
fi
if want gpu_tests_compile; then  # torch.compile equals eager (two cold compiles)
    step gpu_tests_compile 150 python3 -m pytest -q -p no:cacheprovider -m gpu -k compiled \
        tests/unit/test_sampling_cuda.py
fi
if want lvdm_sampling; then
    step lvdm_sampling 200 python3 bench/lvdm_sampling.py --device cuda --budget-s 150 \
        --out "$out/lvdm_sampling.json"
fi
if want cascade; then
    for s in 1SCM 2SCM 4SCM; do
        step "cascade_$s" 60 python3 bench/cascade_sampling.py --structure "$s" --preset paper \
            --device cuda --step-fraction 0.125 --out "$out/cascade_$s.json"
    done
fi
if want gan; then
    step gan 80 python3 bench/gan_gpu.py --device cuda --steps 3 --precisions fp32 fp16 \
        --out "$out/gan.json"
fi
if want train; then
    step train 180 python3 bench/train_gpu.py --device cuda --steps 3 --budget-s 150 \
        --out "$out/train.json"
fi
if want lvdm_compile; then  # torch.compile of the paper UNet at 192 frames, K = 8
    step lvdm_compile 240 python3 bench/lvdm_sampling.py --device cuda --modes compile \
        --precisions bf16 --frames 192 --blocks 8 --out "$out/lvdm_compile.json"
fi
if want cascade_graphs; then  # CUDA-graph replay of the cascades' UNets
    step cascade_1SCM_b8_bf16_graphs 60 python3 bench/cascade_sampling.py --structure 1SCM \
        --preset paper --device cuda --step-fraction 0.125 --batch 8 --precision bf16 \
        --graphs --out "$out/cascade_1SCM_b8_bf16_graphs.json"
    step cascade_4SCM_graphs 60 python3 bench/cascade_sampling.py --structure 4SCM \
        --preset paper --device cuda --step-fraction 0.125 --graphs \
        --out "$out/cascade_4SCM_graphs.json"
fi
if want lvdm_compile_bf16w; then  # the same with the UNet's weights in bf16 (a bench switch)
    step lvdm_compile_bf16w 100 python3 bench/lvdm_sampling.py --device cuda --modes compile \
        --unet-dtype bf16 --precisions fp32 --frames 192 --blocks 8 \
        --out "$out/lvdm_compile_bf16w.json"
fi
if want gan_bf16; then
    step gan_bf16 50 python3 bench/gan_gpu.py --device cuda --steps 3 --precisions bf16 \
        --out "$out/gan_bf16.json"
fi
echo "=== done after $SECONDS s" >>"$log"
