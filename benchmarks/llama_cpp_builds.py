"""Which llama-cpp-python build to keep on this machine: decode speed and crashes, side by side.

    python benchmarks/llama_cpp_builds.py NAME=WHEEL_DIR [NAME=WHEEL_DIR ...] [--repeats 5]

Each build (a wheel of llama-cpp-python 0.3.36 compiled with different CMAKE_ARGS, see
scripts/llama_cpp_cmake_args.py) is installed into its own folder and imported from there by a child
process per (build, GGUF type), so a build that crashes (SIGILL) loses only its own cells. Each cell:
the default model as F16, Q8_0, Q4_0, Q4_K_M (llama.cpp-quantized from the F16 conversion) and the
packaged Q4_1 file; a 128-token prefill, then 32 single-token decodes against the KV cache, 2 threads;
ms/token is the median decode step of each repeat, and the figure the median over repeats (spread =
min-max over repeats). Writes benchmarks/results/llama_cpp_builds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT, NEW_TOKENS, THREADS = 128, 32, 2

CHILD = r"""
import json, statistics, sys, time
from llama_cpp import Llama, llama_print_system_info
path, repeats = sys.argv[1], int(sys.argv[2])
llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=%d, n_threads_batch=%d, use_mmap=False, verbose=False)
prompt = list(range(1000, 1000 + %d))
per_repeat = []
for r in range(repeats + 1):
    llm.reset(); llm.eval(prompt)
    steps = []
    for _ in range(%d):
        token = int(llm.scores[llm.n_tokens - 1].argmax())
        t = time.perf_counter(); llm.eval([token]); steps.append(time.perf_counter() - t)
    if r:
        per_repeat.append(1000 * statistics.median(steps))
print(json.dumps({"decode_ms_per_token": statistics.median(per_repeat), "spread": [min(per_repeat), max(per_repeat)],
                  "system_info": llama_print_system_info().decode().strip()}))
""" % (THREADS, THREADS, PROMPT, NEW_TOKENS)


def install(name: str, wheel_dir: Path, root: Path) -> Path:
    target = root / name
    if not target.exists():
        wheel = next(Path(wheel_dir).glob("llama_cpp_python-*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       check=True)
    return target


def cell(site: Path, gguf: Path, repeats: int) -> dict:
    from greenai_dagster.core.machine.process_failure import describe

    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(gguf), str(repeats)], capture_output=True, text=True,
                          env=env, timeout=600)
    if proc.returncode != 0:
        return {"ok": False, "error": describe(proc.returncode, proc.stderr)}
    return {"ok": True, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("builds", nargs="+", help="NAME=WHEEL_DIR")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sites", default="/tmp/llama_cpp_builds")
    parser.add_argument("--args", nargs="*", default=[], help="NAME=CMAKE_ARGS to record with each build")
    args = parser.parse_args()

    from greenai_dagster.core.models.default_model import ensure_default_checkpoint, find_packaged_gguf
    from greenai_dagster.core.models.gguf_files import baseline_ggufs
    from greenai_dagster.core.storage.paths import data_root
    from greenai_dagster.core.runtimes.verdicts import machine_fingerprint

    ggufs = {**baseline_ggufs(ensure_default_checkpoint(), data_root() / "selftest" / "gguf"),
             "Q4_1 (packaged)": find_packaged_gguf()}
    cmake = dict(a.split("=", 1) for a in args.args)
    rows = {}
    for spec in args.builds:
        name, wheel_dir = spec.split("=", 1)
        site = install(name, Path(wheel_dir), Path(args.sites))
        rows[name] = {"cmake_args": cmake.get(name), "types": {}}
        for qtype, path in ggufs.items():
            started = time.perf_counter()
            rows[name]["types"][qtype] = cell(site, Path(path), args.repeats)
            print(f"{name:<10} {qtype:<16} {rows[name]['types'][qtype].get('decode_ms_per_token') or rows[name]['types'][qtype]['error']}"
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)
        rows[name]["passes_every_type"] = all(c["ok"] for c in rows[name]["types"].values())
    passing = {n: statistics.mean(c["decode_ms_per_token"] for c in r["types"].values())
               for n, r in rows.items() if r["passes_every_type"]}
    report = {
        "how": f"benchmarks/llama_cpp_builds.py: llama-cpp-python 0.3.36 builds side by side on this machine; "
               f"default model (SmolLM2-135M-Instruct) GGUFs; {PROMPT}-token prefill then {NEW_TOKENS} single-token "
               f"decodes, {THREADS} threads, median decode step per repeat, median of {args.repeats} repeats "
               "(spread min-max); each cell in its own process (a crash loses only that cell)",
        "machine": {**machine_fingerprint(), "platform": platform.platform(), "cores": os.cpu_count()},
        "builds": rows,
        "kept": min(passing, key=passing.get) if passing else None,
        "kept_rule": "the fastest build (mean decode ms/token over the types) that runs every type",
    }
    (RESULTS / "llama_cpp_builds.json").write_text(json.dumps(report, indent=1))
    print(f"kept: {report['kept']}")


if __name__ == "__main__":
    main()
