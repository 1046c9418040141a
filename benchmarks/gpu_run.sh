#!/bin/bash
# The GPU session's second call (after .gpuA was copied to /root/parts): join the MLX CUDA
# wheel, install it and the peers' wheels from .gpuB into /tmp/site, and run the suite.
# Usage (device tool, carry .gpuB): bash benchmarks/gpu_run.sh [suite args...]
set -eu
. benchmarks/gpu_env.sh
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.__version__); import jax; print(jax.devices())"
python3 benchmarks/gpu_suite.py --out "${OUT:-.}/gpu_suite.json" "$@"
