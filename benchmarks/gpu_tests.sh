#!/bin/bash
# GPU machine: the GPU test modules, in parallel processes (MLX's CUDA kernel builds are
# CPU-bound and per process), each bounded in time; logs under $OUT, a summary printed.
#   . benchmarks/gpu_env.sh  (done here)  then  bash benchmarks/gpu_tests.sh
. benchmarks/gpu_env.sh
OUT=${OUT:-.}
T=${TESTS_S:-300}
t() { timeout "$T" python3 -m pytest -q -p no:cacheprovider "$@"; }
C=packages/genmlx-core/tests
t $C/test_presample_gpu.py > "$OUT/t_presample.log" 2>&1 &
t $C/test_fused_gpu.py -k "not logdensity" > "$OUT/t_fused.log" 2>&1 &
for c in poly linreg_latent_scale logreg poisreg; do
  t $C/test_fused_gpu.py -k "logdensity and $c" > "$OUT/t_logdensity_$c.log" 2>&1 &
done
wait
for f in "$OUT"/t_*.log; do echo "== $f"; tail -3 "$f"; done
