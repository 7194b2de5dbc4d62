"""CMake arguments for building llama-cpp-python on this machine's CPU, with ggml's AMX path off.

Why not GGML_NATIVE: a native build turns on ggml's AMX kernels wherever the CPU reports AMX, and on
this project's 2-core Xeon (AVX-512 + AMX) those kernels die with SIGILL on every quantized GGUF
(`tilezero` in `ggml_backend_amx_mul_mat`). Why not runtime dispatch (GGML_BACKEND_DL +
GGML_CPU_ALL_VARIANTS): its best variant on such a CPU, `sapphirerapids`, is the AMX one again, and
llama-cpp-python 0.3.36 does not call `ggml_backend_load_all()`, so no backend would load.
So: GGML_NATIVE off, AMX always off, and the features switched on from /proc/cpuinfo:
- default: the AVX2 baseline (SSE4.2, AVX, AVX2, BMI2, FMA, F16C) where the CPU has it: any x86-64
  from 2013 on. Measured side by side on the AVX-512/AMX Xeon (benchmarks/results/llama_cpp_builds.json):
  as fast as the build with every AVX-512 feature on (F16 17.5 vs 17.7, Q4_0 7.8 vs 8.1, Q8_0 12.2
  vs 11.7 ms/token, 2 threads: within a few percent either way), and it runs on more CPUs;
- `--all-features`: every feature ggml can use that the CPU has (AVX-512, VNNI, BF16...), AMX off;
- `--minimal`: SSE4.2 only, the fallback setup builds when the default fails the self-test.

    python scripts/llama_cpp_cmake_args.py [--all-features | --minimal]    # prints the CMAKE_ARGS value
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# ggml option -> the /proc/cpuinfo flags it needs (all of them)
GGML_FEATURES = {
    "SSE42": ["sse4_2"],
    "AVX": ["avx"],
    "AVX2": ["avx2"],
    "BMI2": ["bmi2"],
    "FMA": ["fma"],
    "F16C": ["f16c"],
    "AVX_VNNI": ["avx_vnni"],
    "AVX512": ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"],
    "AVX512_VBMI": ["avx512f", "avx512vbmi"],
    "AVX512_VNNI": ["avx512f", "avx512_vnni"],
    "AVX512_BF16": ["avx512f", "avx512_bf16"],
}
PORTABLE = {"SSE42", "AVX", "AVX2", "BMI2", "FMA", "F16C"}
MINIMAL = {"SSE42"}
ALWAYS_OFF = ["AMX_TILE", "AMX_INT8", "AMX_BF16"]


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str], level: str = "portable") -> str:
    """The -D options: a feature is on when the CPU has every flag it needs and it belongs to `level`
    ("portable": the AVX2 baseline, "all": every feature, "minimal": SSE4.2)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "-DGGML_NATIVE=ON"          # ggml's own choice elsewhere (ARM builds have no AMX path)
    on = {f for f, needs in GGML_FEATURES.items() if all(n in flags for n in needs)}
    if level == "portable":
        on &= PORTABLE
    elif level == "minimal":
        on &= MINIMAL
    parts = ["-DGGML_NATIVE=OFF"]
    parts += [f"-DGGML_{f}={'ON' if f in on else 'OFF'}" for f in GGML_FEATURES]
    parts += [f"-DGGML_{f}=OFF" for f in ALWAYS_OFF]
    return " ".join(parts)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    print(cmake_args(cpu_flags(), "all" if "--all-features" in arguments else
                     "minimal" if "--minimal" in arguments else "portable"))
