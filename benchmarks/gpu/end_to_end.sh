#!/usr/bin/env bash
# The product end to end on one lent GPU (issue 29, item 1): four experiments at once, 3 episodes each,
#   a) the packaged SmolLM2-135M with the `llm` coordinator (greenai llm-server: llama.cpp on CPU, SmolLM2-135M-Instruct)
#   b) Gemma 3 270M with the planner            c) Gemma 3 270M with the `llm` coordinator
#   d) SmolLM2-135M with the planner, launched through the Dagster webserver's /graphql (the Launchpad's
#      launch_experiment job and run config) and carried on by the coordinator sensor under `dagster dev`
# then benchmarks/gpu/end_to_end_report.py -> $OUT/gpu_end_to_end.json (and logs.tgz).
# Staging, in calls made back to back while the machine stays warm (git-ignored folders, each < 64 MiB):
#   bash benchmarks/gpu/first_command.sh stage-a | stage-b | stage-c   (SmolLM2's GGUF, the Python stack)
#   bash benchmarks/gpu/quality_run.sh stage-g1 ... stage-g4          (Gemma 3 270M's PyPI part wheels)
#   bash benchmarks/gpu/end_to_end.sh stage-d     (.gpu/d from benchmarks/gpu/stage_serving.py: llama-cpp-python,
#                                                  dagster-webserver, pydantic-settings, diskcache)
# Then: bash benchmarks/gpu/end_to_end.sh run-e2e [deadline_s]   (default 540)
#   Each job gets SIGTERM at the deadline and SIGKILL 15 s later (2026-12-08: a job that outlived its SIGTERM
#   kept the script past the device call's 600 s limit, and the call returned nothing); keep deadline_s <= 560.
#   every `greenai run` resumes by name, so a second run-e2e on the warm machine goes on where the first stopped.
# Knobs (environment): EPISODES (3), E2E_EVAL / E2E_METHODS (JSON for the configs' `eval` / `compression_methods`),
#   RUN_ARGS (extra `greenai run` flags, e.g. --no-full-eval), GEMMA (a checkpoint folder instead of the staged
#   Gemma), SITE (/tmp/site), GREENAI_DATA (/tmp/gdata), ONLY (a subset of "a b c d").
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SITE=${SITE:-/tmp/site}
export GREENAI_DATA=${GREENAI_DATA:-/tmp/gdata} PYTHONPATH=$SITE:$PWD
[ -f $SITE/gomp/libgomp.so.1 ] && export LD_LIBRARY_PATH=$SITE/gomp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/out}
G=$GREENAI_DATA
E=$G/e2e                          # this script's logs, configs and Dagster homes
EPISODES=${EPISODES:-3}
ONLY=${ONLY:-a b c d}
source "$(dirname "$0")/common.sh"   # gemma_checkpoint

py_wait() {   # url seconds [graphql]: until the URL answers (a /graphql that has loaded its code location)
  python3 - "$@" <<'PY'
import json, sys, time, urllib.request
url, limit, graphql = sys.argv[1], float(sys.argv[2]), len(sys.argv) > 3
query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}'
end = time.time() + limit
while time.time() < end:
    try:
        if not graphql:
            urllib.request.urlopen(url, timeout=5).read(); sys.exit(0)
        req = urllib.request.Request(url, data=query, headers={"Content-Type": "application/json"})
        entries = json.load(urllib.request.urlopen(req, timeout=5))["data"]["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries): sys.exit(0)
    except Exception:
        pass
    time.sleep(1)
sys.exit(f"{url} did not answer within {limit:.0f} s")
PY
}
config() {   # file coordinator model: an experiment's JSON config (`greenai run -c`)
  local llm=""
  [ "$2" = llm ] && llm=", \"coordinator_fallback\": \"planner\", \"llm_model\": \"$LLM_ALIAS\", \"llm_base_url\": \"$LLM_URL\""
  printf '{"coordinator": "%s", "model": "%s"%s%s%s}\n' "$2" "$3" "$llm" \
    "${E2E_METHODS:+, \"compression_methods\": $E2E_METHODS}" "${E2E_EVAL:+, \"eval\": $E2E_EVAL}" > "$1"
}
cli_job() {   # letter threads coordinator model: `greenai run` on its own Dagster home, within the deadline
  local x=$1 threads=$2 left=$(( DL - SECONDS - 20 ))
  (( left > 30 )) || { echo "job $x: no time left" >> $E/$x.log; return 0; }
  config $E/$x.json "$3" "$4"
  DAGSTER_HOME=$E/home_$x OMP_NUM_THREADS=$threads timeout -k 15 $left python3 -m greenai_dagster.cli run -c $E/$x.json \
    -e $EPISODES -i -n "$PREFIX-$x" ${RUN_ARGS:-} >> $E/$x.log 2>&1
  echo "job $x: exit $? at ${SECONDS} s" >> $E/$x.log
}
ui_job() {    # threads: `dagster dev` on its own home, the experiment launched through /graphql, the sensor drives it
  local threads=$1 home=$E/home_d port=${DAGSTER_PORT:-3071}
  mkdir -p $home
  printf 'telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 2\n' > $home/dagster.yaml
  # the instance's SQLite storages created once before `dagster dev` (created by two processes at once they race)
  DAGSTER_HOME=$home python3 -c "from dagster import DagsterInstance; DagsterInstance.get().get_runs(limit=1)"
  DAGSTER_HOME=$home OMP_NUM_THREADS=$threads GREENAI_SENSOR_INTERVAL_S=5 setsid python3 -m dagster dev \
    -w workspace.yaml -h 127.0.0.1 -p $port > $E/dagster_dev.log 2>&1 &
  DAGSTER_PID=$!
  py_wait http://127.0.0.1:$port/graphql 180 graphql >> $E/d.log 2>&1 || { tail -20 $E/dagster_dev.log >> $E/d.log; return 0; }
  echo "dagster dev up at ${SECONDS} s" >> $E/d.log
  DAGSTER_HOME=$home timeout -k 10 $(( DL - SECONDS - 15 )) python3 benchmarks/gpu/end_to_end_ui.py http://127.0.0.1:$port "$PREFIX-d" $EPISODES \
    $(( DL - SECONDS - 20 )) $E/ui_launch.json ${E2E_EVAL:+--eval "$E2E_EVAL"} \
    ${E2E_METHODS:+--methods "$E2E_METHODS"} >> $E/d.log 2>&1
  echo "job d: exit $? at ${SECONDS} s" >> $E/d.log
  kill -TERM -- -$DAGSTER_PID 2>/dev/null        # webserver, daemon, code server and any run still going
  for _ in $(seq 15); do kill -0 $DAGSTER_PID 2>/dev/null || break; sleep 1; done
  kill -KILL -- -$DAGSTER_PID 2>/dev/null
}

case "$1" in
  stage-d)
    mkdir -p $SITE && tar xJf .gpu/d/serving.tar.xz -C $SITE
    # libgomp for llama.cpp's libraries, only where the image has none
    ldconfig -p | grep -q 'libgomp.so.1 ' || { tar xJf .gpu/d/gomp.tar.xz -C $SITE; export LD_LIBRARY_PATH=$SITE/gomp; }
    python3 -c "import llama_cpp, llama_cpp.server.app, dagster_webserver, pydantic_settings
print('llama_cpp', llama_cpp.__version__, 'system_info', llama_cpp.llama_print_system_info().decode()[:120])" ;;
  run-e2e)
    DL=${2:-540}
    PREFIX=${PREFIX:-e2e}
    mkdir -p $E "$OUT"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $E/gpu.txt
    # the llm coordinator's endpoint: llama.cpp on 3 CPU threads, started first (the LLM jobs need it at episode 1)
    LLM_PORT=${LLM_PORT:-8765} LLM_URL=http://127.0.0.1:${LLM_PORT:-8765}/v1
    LLM_ALIAS=$(python3 -c "from greenai_dagster.core.models.default_model import find_packaged_gguf as f; print(f().stem)")
    export OPENAI_API_KEY=local
    setsid python3 -m greenai_dagster.cli llm-server --port ${LLM_PORT:-8765} --threads 3 > $E/llm_server.log 2>&1 &
    LLM_PID=$!
    py_wait $LLM_URL/models 120 >> $E/llm_server.log 2>&1 && echo "llm-server up at ${SECONDS} s"
    # 16 cores: llm-server 3, each experiment 3 threads (d's are shared by dagster dev, the daemon and its runs)
    pids=()
    [[ " $ONLY " == *" a "* ]] && { cli_job a 3 llm smollm2-135m-instruct & pids+=($!); }
    [[ " $ONLY " == *" d "* ]] && { ui_job 3 & pids+=($!); }
    if [[ " $ONLY " == *" b "* || " $ONLY " == *" c "* ]]; then
      ( [ -n "${GEMMA:-}" ] || gemma_checkpoint; gemma=${GEMMA:-$G/gemma3-270m}
        [[ " $ONLY " == *" b "* ]] && cli_job b 3 planner $gemma &
        [[ " $ONLY " == *" c "* ]] && cli_job c 3 llm $gemma &
        wait ) &
      pids+=($!)
    fi
    wait "${pids[@]}"                   # each job ends by its own timeout within the deadline
    kill -TERM -- -$LLM_PID 2>/dev/null
    for x in $ONLY; do echo "== $x"; grep -v -i -E "warn|it/s\]|s/it\]" $E/$x.log | tail -n 8; done
    experiments=()
    for x in $ONLY; do experiments+=(--experiment "$PREFIX-$x:$E/home_$x:$x"); done
    python3 benchmarks/gpu/end_to_end_report.py "$OUT/gpu_end_to_end.json" "${experiments[@]}" \
      --gpu "$(cat $E/gpu.txt 2>/dev/null)" --ui-launch $E/ui_launch.json --concurrent "$ONLY" 2>&1 | tail -40
    tar czf "$OUT/logs.tgz" -C $G $(cd $G && ls e2e/*.log e2e/*.json e2e/*.txt 2>/dev/null) \
      $(cd $G && ls -d experiments/$PREFIX-*/logs 2>/dev/null)
    ls -la "$OUT" ;;
  *) echo "usage: $0 stage-d | run-e2e [deadline_s]"; exit 2 ;;
esac
