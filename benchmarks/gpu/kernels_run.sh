#!/usr/bin/env bash
# Issue 29's decode/prefill table on a lent GPU machine, after first_command.sh's stage-a/b/c (the project's
# dependencies in /tmp/site): the GPU tests of the CUDA runtimes first (tests/core/runtimes, marked gpu), then
# benchmarks/runtimes_gpu.py (Llama-3-8B shape, random weights, each variant in its own process, batch 1/8/32),
# alone on the GPU so its timings are quiet. Everything it writes lands in $OUT:
#   bash benchmarks/gpu/kernels_run.sh [variants]      (default bf16,w4_g128_triton,fp8,int8,w4_g128)
# TESTS_S / BENCH_S bound the two parts (seconds; TESTS_S=0 skips the tests); the device call's own limit is 600 s. TESTS_K: a pytest -k
# expression (only those GPU tests); BATCHES: the batch sizes (1,8,32). A variant that fails is run once more with CUDA_LAUNCH_BLOCKING=1
# (runtimes_gpu.py's `diagnose`: <out stem>_<variant>_failure.txt).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site:$PWD GREENAI_DATA=/tmp/gdata-kernels
export GREENAI_KERNEL_TUNING=off   # every variant times its tiles afresh: the tuning report lists each candidate's time
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" "$GREENAI_DATA"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/runtimes_gpu.log.txt"
start=$SECONDS
[ "${TESTS_S:-170}" = 0 ] || timeout "${TESTS_S:-170}" python3 -m pytest -q -m gpu tests/core/runtimes -p no:cacheprovider ${TESTS_K:+-k "$TESTS_K"} 2>&1 \
  | grep -v -E "^  |Warning" | tail -n 30 > "$OUT/gpu_tests.log.txt"
echo "gpu tests: $(tail -n 1 "$OUT/gpu_tests.log.txt") ($(( SECONDS - start )) s)" | tee -a "$OUT/runtimes_gpu.log.txt"
timeout "${BENCH_S:-$(( 570 - SECONDS ))}" python3 benchmarks/runtimes_gpu.py --variants "${1:-bf16,w4_g128_triton,fp8,int8,w4_g128}" \
  --repeats 3 --batches "${BATCHES:-1,8,32}" --out "$OUT/runtimes_gpu.json" 2>&1 | grep -v -i -E "warn|^\s*$" | tee -a "$OUT/runtimes_gpu.log.txt"
echo "benchmark exit ${PIPESTATUS[0]} at $SECONDS s"
ls -la "$OUT"
