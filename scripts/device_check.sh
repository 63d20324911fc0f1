#!/usr/bin/env bash
# The CUDA checks in one call, for a machine with an NVIDIA GPU and PyTorch but no network
# (the device tool's image: Python 3.12, torch, numpy, pytest, tqdm; no gymnasium).
#
#   scripts/device_check.sh --fetch     here, with network: the wheels the GPU image lacks, into .whl/
#   scripts/device_check.sh             there, from the repository root, .whl/ carried along
#
# It runs every device-parametrised test file with its CUDA cases (-k cuda, plus the captured-step
# and CUDA-graph tests), then benchmarks/envs.py on CUDA: env steps/s of the batched CartPole alone,
# of PPO's rollout eager and replayed as a CUDA graph (512 … 65 536 environments), and seconds of PPO
# training to a 100-episode mean of 475, eager and graphed. Logs go to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(gymnasium==1.4.0 farama-notifications==0.0.6)

if [ "${1:-}" = "--fetch" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    exec python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
fi

LOG="${OUT:-/tmp}/device_check.log"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
    FILES=$(grep -l 'DEVICES\|is_available()' tests/test_*.py)
    python3 -m pytest -q -p no:cacheprovider -o addopts="-ra" --continue-on-collection-errors -k "cuda or captured or graph" $FILES
    python3 benchmarks/envs.py --device cuda --sizes 512 4096 65536 --no-gymnasium
    python3 benchmarks/envs.py --device cuda --solve --solve-envs 1024 4096 --seeds 1 2 3
} 2>&1 | tee "$LOG"
