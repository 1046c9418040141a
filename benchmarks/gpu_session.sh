#!/bin/bash
# One GPU call after the staging call (see gpu_run.sh): presampling tests, then the IS,
# SMC and sampler tables side by side, then the IS profile, each bounded in time.
. benchmarks/gpu_env.sh
OUT=${OUT:-.}
python3 -c "import mlx.core as mx; print(mx.default_device(), mx.__version__)"
timeout 80 python3 -m pytest -q -x -p no:cacheprovider packages/genmlx-core/tests/test_presample_gpu.py 2>&1 | tail -4
timeout ${SUITE_S:-300} python3 benchmarks/gpu_suite.py --only is smc samplers --sizes 100000 1000000 10000000 \
  --smc-budget-s ${SMC_S:-60} --sampler-budget-s ${SAMP_S:-30} --out "$OUT/gpu_suite.json" 2>&1 | tail -70
timeout ${PROF_S:-45} python3 benchmarks/is_profile.py --sizes 100000 10000000 --out "$OUT/is_profile.json" 2>&1 | tail -20
