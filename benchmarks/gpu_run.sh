#!/bin/bash
# The GPU session's second call (after .gpuA was copied to /root/parts): join the MLX CUDA
# wheel, install it and the peers' wheels from .gpuB into /tmp/site, and run the suite.
# Usage (device tool, carry .gpuB): bash benchmarks/gpu_run.sh [suite args...]
set -eu
mkdir -p /tmp/wh /tmp/site
cat /root/parts/part_aa .gpuB/part_ab > /tmp/wh/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
cp .gpuB/*.whl /tmp/wh/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/wh/*.whl
export PYTHONPATH=/tmp/site:$(ls -d packages/*/src | tr '\n' ':')
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export GENMLX_GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.__version__); import jax; print(jax.devices())"
python3 benchmarks/gpu_suite.py --out "${OUT:-.}/gpu_suite.json" "$@"
