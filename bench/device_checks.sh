#!/usr/bin/env bash
# The GPU checks of one device lease, as one prepared run (docs/benchmarks.md records them).
#
# Usage, on a machine with one CUDA GPU and python3 holding PyTorch, from the repo root:
#   bash bench/device_checks.sh OUT_DIR
# Python packages the GPU machine lacks travel as wheels in .whl/ (ignored by git); fetch them
# here with `pip download --no-deps --only-binary=:all: --python-version 3.12 ...` for:
# diffusers==0.42.1 importlib_metadata typing_extensions (LVDM); imagen-pytorch==1.21.6
# beartype einops-exts ema-pytorch kornia kornia-rs pytorch-warmup pydantic pydantic-core
# annotated-types typing-inspection datasets dill multiprocess (EchoDiffusion's cascades).
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
step gpu 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step gpu_tests 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/unit/test_sampling_cuda.py
step lvdm_sampling 200 python3 bench/lvdm_sampling.py --device cuda --budget-s 150 \
    --out "$out/lvdm_sampling.json"
for s in 1SCM 2SCM 4SCM; do
    step "cascade_$s" 60 python3 bench/cascade_sampling.py --structure "$s" --preset paper \
        --device cuda --step-fraction 0.125 --out "$out/cascade_$s.json"
done
if [ -f bench/gan_gpu.py ]; then
    step gan 80 python3 bench/gan_gpu.py --device cuda --steps 3 --out "$out/gan.json"
fi
echo "=== done after $SECONDS s" >>"$log"
