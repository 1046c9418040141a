#!/bin/bash
# Source on the GPU machine (after .gpuA was copied to /root/parts, with .gpuB carried):
# joins the MLX CUDA wheel, installs it and the peers' wheels from .gpuB into /tmp/site
# once, and exports PYTHONPATH and the settings the GPU scripts use.
#   . benchmarks/gpu_env.sh
if [ ! -d /tmp/site/mlx ]; then
  mkdir -p /tmp/wh /tmp/site
  cat /root/parts/part_aa .gpuB/part_ab > /tmp/wh/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
  cp .gpuB/*.whl /tmp/wh/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/wh/*.whl
fi
export PYTHONPATH=/tmp/site:$(ls -d packages/*/src | tr '\n' ':')
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export GENMLX_GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
