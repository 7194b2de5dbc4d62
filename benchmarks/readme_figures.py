"""Every measured figure in README.md, traced to the committed results file it comes from.

    python benchmarks/readme_figures.py --check      # exit 1, listing each README figure that disagrees with its file
    python benchmarks/readme_figures.py --list       # every registered figure: README text, file, JSON path, value
    python benchmarks/readme_figures.py --check --readme /tmp/README.md

One table (FIGURES) below. Each entry names where the figure sits in README.md, the file under
benchmarks/results/ that holds it, and how its value is read from that file:

- ``F(snippet, file, value)``: ``snippet`` is a regular expression that matches README.md exactly once
  and has one group, the figure (``\\s+`` in the snippet absorbs line breaks).
- ``T(table, row, column, file, value, k=0)``: a cell of a Markdown table: ``table`` is a regular
  expression matching the table's header line, or a line above the table (exactly once), ``row`` the row's first cell (or a tuple of
  its first cells), ``column`` the header of the column; ``k`` picks the k-th number in the cell.

``value`` is a JSON path (``a.b[3].c``; ``[key=v,key2=w]`` is the one list element whose fields read so;
``[*]`` every element, skipping those where the rest of the path is absent), or an expression whose
``{path}`` parts are JSON paths, evaluated with + - * / ( ), ``min``, ``max``, ``sum``, ``len``, ``abs``
(so derived figures, such as a speed-up, are computed from the file, never typed). For a ``.txt`` file
the path is a regular expression with one group (``re.S``), e.g. ``{/tau ([-\\d.]+)/}``.

A README figure agrees with its file when it is the file's value rounded to the precision the README
shows (``17.2`` agrees with 17.199, ``3e-5`` with 2.95e-05; thousands separators ignored). Pure Python
(json + re), no model loading.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NUMBER = re.compile(r"(?:(?<![\w.])[-−])?(?<![\d.])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass(frozen=True)
class F:
    snippet: str
    file: str
    value: str


@dataclass(frozen=True)
class T:
    table: str
    row: str | tuple
    column: str
    file: str
    value: str
    k: int = 0


# ------------------------------------------------------------------------------------------------ table
# Shorthands for files with one row per variant.
FC = "first_command.json"
def fc_ep(sid: str) -> str:
    return f"episodes[strategy_id={sid}]"

RC = "runtimes_cpu.json"
def rc(variant: str, runtime: str = "llama.cpp") -> str:
    return f"[variant={variant},runtime={runtime}]"

RG = "runtimes_gpu.json"
GRID = "grid_smollm2_bigbench_above_chance.json"        # regenerated in this session: entries one line each
def g(sid: str) -> str:
    return f"rows[strategy_id={sid}]"

MP = "mixed_precision.json"                              # GPTQ levels, H100 (issue 26)
MPR = "mixed_precision_rtn.json"                         # RTN levels, on the held-out text before the disjoint split
def mp(model: str, label: str) -> str:
    return f"[model={model},label={label}]"

ML = "mixed_llama_cpp.json"                              # regenerated in this session
GQ = "gguf_quality.json"                                 # regenerated in this session
FT = "fidelity_tau.json"                                 # generated_mc, H100 (issue 26)
FTB = "fidelity_tau_bigbench.json"                       # the BIG-bench table before it
SS = "search_summary.txt"                                # regenerated in this session

FIRST_TABLE = r"^\| candidate \| KL \(nats/token\)"
FIRST_ROWS = {
    "GPTQ W4 g64 (Q4_0 blocks, same integers)": "ep001_gptq_w4g64_act",
    "INT8 (per-channel int8, served as Q8_0)": "ep002_int8_dynamic",
    "AutoRound W4 g64 (its compression: 199 of the 248 s)": "ep003_autoround_w4g64_i50",
}

CPU_TABLE = r"^\| variant \| runtime \| weights in the runtime \|"
CPU_ROWS = [  # (README variant, runtime, file variant)
    ("baseline", "llama.cpp", "baseline"),
    ("baseline", "torch-eager", "baseline"),
    ("ep001_gptq_w4g64_act", "llama.cpp", "first_command/ep001_gptq_w4g64_act"),
    ("ep001_gptq_w4g64_act", "torch-cpu-int4", "first_command/ep001_gptq_w4g64_act"),
    ("ep001_gptq_w4g64_act", "torch-eager", "first_command/ep001_gptq_w4g64_act"),
    ("ep002_int8_dynamic", "llama.cpp", "first_command/ep002_int8_dynamic"),
    ("ep002_int8_dynamic", "torch-int8-dynamic", "first_command/ep002_int8_dynamic"),
    ("ep003_autoround_w4g64_i50", "llama.cpp", "first_command/ep003_autoround_w4g64_i50"),
    ("ep003_autoround_w4g64_i50", "torch-eager", "first_command/ep003_autoround_w4g64_i50"),
    ("rtn_w8g64", "llama.cpp", "rtn_w8g64"),
    ("rtn_w8g64", "torch-eager", "rtn_w8g64"),
    ("packaged_q4_1.gguf", "llama.cpp", "packaged_q4_1.gguf"),
    ("gguf_f16", "llama.cpp", "gguf_f16"),
    ("gguf_q8_0", "llama.cpp", "gguf_q8_0"),
    ("gguf_q4_k_m", "llama.cpp", "gguf_q4_k_m"),
    ("gguf_q4_0", "llama.cpp", "gguf_q4_0"),
]
CPU_BASE = "{" + rc("baseline") + ".decode_ms_per_token}"
CPU_BASE_MEM = "{" + rc("baseline") + ".memory_gb}"

GPU_TABLE = r"^\| variant \| runtime \| batch-1 step \| decode ms/token"
GPU_ROWS = [  # (README variant, README runtime, file variant): one warm machine, two calls (runtimes_gpu.json)
    ("bf16", "torch-cuda-compiled", "bf16"),
    ("FP8", "torch-cuda-fp8", "fp8"),
    ("int8 weight-only", "torch-cuda-int8-wo", "int8"),
    ("W4 g128", "torch-cuda-w4-triton", "w4_g128_triton"),
    ("W4 g128", "torch-cuda-w4-tinygemm", "w4_g128"),
]
def rg(variant: str) -> str:
    return f"[variant={variant}]"
def rg_tps(variant: str, batch: int) -> str:
    """tokens/s of a variant at a batch size: batch 1 from its decode step, others from its batches list."""
    if batch == 1:
        return "1000 / {" + rg(variant) + ".decode_ms_per_token}"
    return "{" + rg(variant) + f".batches[batch={batch}].tokens_per_s" + "}"

GEN_TABLE = r"^[ \t]*\| family \| items \| accuracy \| chance \| p \|"
AC_KEPT_NOT = "rows[*above_chance=False]"

MIX_SMOL = r"^SmolLM2-135M \(the default model; every row measured"
MIX_GEMMA = r"^Gemma 3 270M \(PyPI `gemma3-270m"
MIX_COLS = [("uniform", "uniform_w{b}"), ("knapsack, per block", "knapsack_block_{b}"),
            ("evolution, per block", "evolutionary_block_{b}"), ("knapsack, per linear", "knapsack_linear_{b}"),
            ("evolution, per linear", "evolutionary_linear_{b}")]
MIX_SMOL_CELLS = {  # avg bits -> the columns measured (the others read "-" or "not run")
    "3": [0, 1, 2, 3, 4], "3.5": [1, 2, 3, 4], "4": [0, 1, 2, 3], "4.25": [1, 2, 3, 4], "5": [0, 1, 2, 3], "6": [0, 1, 2, 3]}
MIX_GEMMA_CELLS = {"3": [0, 1, 2, 3, 4], "3.5": [1, 2, 3, 4], "4": [0], "4.25": [1, 2, 3, 4]}
PAIRED_TABLE = r"^[ \t]*\| avg bits \| knapsack, per block \| knapsack, per linear \| evolution, per linear \|"
PAIRED_CELLS = {"3": ["knapsack_block_3", "knapsack_linear_3", "evolutionary_linear_3"],
                "4": ["knapsack_block_4", "knapsack_linear_4", None], "5": ["knapsack_block_5", "knapsack_linear_5", None],
                "6": ["knapsack_block_6", "knapsack_linear_6", None]}
PAIRED_HEADERS = ["knapsack, per block", "knapsack, per linear", "evolution, per linear"]

ML_TABLE = r"^\| allocation \| avg bits \| GGUF tensor types \|"
ML_ROWS = ["uniform_w4", "uniform_w5", "uniform_w8", "knapsack_458_4.5", "knapsack_458_5", "knapsack_458_6",
           "knapsack_458_7"]
def ml(label: str) -> str:
    return f"rows[label={label}]"


def _first_command() -> list:
    out = [
        F(r"\*\*(482) s for the 3 episodes", FC, "split_s.total"),
        F(r"\(load (6), compress 248", FC, "split_s.load"),
        F(r"\(load 6, compress (270), evaluate", FC, "split_s.compress"),
        F(r"compress 248, evaluate\s+(151),", FC, "split_s.evaluate"),
        F(r"orchestration (55) s\)", FC, "split_s.orchestration"),
        F(r"against the baseline's (17\.2) ms/token", FC, "baseline.latency_ms"),
        F(r"ms/token and (0\.288) GB \(F16", FC, "baseline.memory_gb"),
        F(r"its compression: (199) of the 248 s", FC, "{" + fc_ep("ep003_autoround_w4g64_i50") + ".compression_time_s}"),
        F(r"its compression: 199 of the (248) s", FC, "split_s.compress"),
        F(r"their (10) % latency difference", FC, "100 * ({" + fc_ep("ep003_autoround_w4g64_i50") + ".latency_ms} / {"
          + fc_ep("ep001_gptq_w4g64_act") + ".latency_ms} - 1)"),
    ]
    for row, sid in FIRST_ROWS.items():
        e = fc_ep(sid)
        out += [
            T(FIRST_TABLE, row, "KL (nats/token)", FC, e + ".kl_divergence"),
            T(FIRST_TABLE, row, "proxy accuracy", FC, e + ".accuracy"),
            T(FIRST_TABLE, row, "decode ms/token", FC, e + ".latency_ms"),
            T(FIRST_TABLE, row, "x faster", FC, "{baseline.latency_ms} / {" + e + ".latency_ms}"),
            T(FIRST_TABLE, row, "peak memory GB", FC, e + ".memory_gb"),
            T(FIRST_TABLE, row, "x memory", FC, "{" + e + ".memory_gb} / {baseline.memory_gb}"),
            T(FIRST_TABLE, row, "on disk GB", FC, e + ".model_size_gb"),
        ]
    return out


def _runtimes_cpu() -> list:
    out = []
    for variant, runtime, fvariant in CPU_ROWS:
        r = rc(fvariant, runtime)
        row = (variant, runtime)
        out += [
            T(CPU_TABLE, row, "decode ms/token", RC, r + ".decode_ms_per_token"),
            T(CPU_TABLE, row, "x vs baseline's best", RC, CPU_BASE + " / {" + r + ".decode_ms_per_token}"),
            T(CPU_TABLE, row, "prefill tok/s", RC, r + ".prefill_tokens_per_s"),
            T(CPU_TABLE, row, "memory GB", RC, r + ".memory_gb"),
            T(CPU_TABLE, row, "x memory", RC, "{" + r + ".memory_gb} / " + CPU_BASE_MEM),
            T(CPU_TABLE, row, "J/token", RC, r + ".energy_j_per_token"),
        ]
    gptq, ar, int8 = (rc("first_command/" + s) for s in
                      ("ep001_gptq_w4g64_act", "ep003_autoround_w4g64_i50", "ep002_int8_dynamic"))
    spd = lambda r: CPU_BASE + " / {" + r + ".decode_ms_per_token}"
    mem = lambda r: "{" + r + ".memory_gb} / " + CPU_BASE_MEM
    out += [
        F(r"measured twice in this run read (19\.0) and 20\.3", RC, rc("baseline") + ".decode_ms_per_token"),
        F(r"measured twice in this run read 19\.0 and (20\.3)", RC, rc("gguf_f16") + ".decode_ms_per_token"),
        F(r"candidates of one block type (10\.7) and 11\.0", RC, gptq + ".decode_ms_per_token"),
        F(r"candidates of one block type 10\.7 and (11\.0)", RC, ar + ".decode_ms_per_token"),
        F(r"GPTQ W4 (1\.78)x at 0\.51x", RC, spd(gptq)),
        F(r"GPTQ W4 1\.78x at (0\.51)x", RC, mem(gptq)),
        F(r"AutoRound W4 (1\.73)x at 0\.51x", RC, spd(ar)),
        F(r"AutoRound W4 1\.73x at (0\.51)x", RC, mem(ar)),
        F(r"embedding in Q8_0\) (1\.38)x at 0\.59x", RC, spd(int8)),
        F(r"embedding in Q8_0\) 1\.38x at (0\.59)x", RC, mem(int8)),
        F(r"\(compressed-tensors\) reads (0\.68)x memory", RC, mem(rc("rtn_w8g64"))),
        F(r"kernel runs (1\.8)x faster than eager", RC,
          "{" + rc("first_command/ep001_gptq_w4g64_act", "torch-eager") + ".decode_ms_per_token} / {"
          + rc("first_command/ep001_gptq_w4g64_act", "torch-cpu-int4") + ".decode_ms_per_token}"),
        F(r"but (3\.2)x slower than llama\.cpp", RC,
          "{" + rc("first_command/ep001_gptq_w4g64_act", "torch-cpu-int4") + ".decode_ms_per_token} / {"
          + gptq + ".decode_ms_per_token}"),
        F(r"but slow: (4\.6)x slower than\s+llama\.cpp's Q8_0", RC,
          "{" + rc("first_command/ep002_int8_dynamic", "torch-int8-dynamic") + ".decode_ms_per_token} / {"
          + int8 + ".decode_ms_per_token}"),
        F(r"slower than float eager \((63\.6) against 46\.3 ms/token\)", RC,
          rc("first_command/ep002_int8_dynamic", "torch-int8-dynamic") + ".decode_ms_per_token"),
        F(r"slower than float eager \(63\.6 against (46\.3) ms/token\)", RC,
          rc("baseline", "torch-eager") + ".decode_ms_per_token"),
    ]
    return out


def _llama_cpp_builds() -> list:
    LB = "llama_cpp_builds.json"
    out = [F(r"runs F16 \((18\.0) ms/token\)", LB, "builds.native.types.F16.decode_ms_per_token")]
    for readme, ftype in [("F16", "F16"), ("Q8_0", "Q8_0"), ("Q4_K_M", "Q4_K_M"), ("Q4_0", "Q4_0"),
                          ("Q4_1", "Q4_1 (packaged)")]:
        num = r"\d+\.\d"
        out += [
            F(rf"{readme} ({num})\s*/\s*{num}(?:,| ms/token)", LB, f"builds.cpu_no_amx.types.{ftype}.decode_ms_per_token"),
            F(rf"{readme} {num}\s*/\s*({num})(?:,| ms/token)", LB, f"builds.portable_avx2.types.{ftype}.decode_ms_per_token"),
        ]
    return out


def _runtimes_gpu() -> list:
    out = []
    for variant, runtime, fvariant in GPU_ROWS:
        r = rg(fvariant)
        row = (variant, runtime)
        out += [
            T(GPU_TABLE, row, "decode ms/token", RG, r + ".decode_ms_per_token"),
            T(GPU_TABLE, row, "limit ms/token", RG, r + ".limit_ms_per_token"),
            T(GPU_TABLE, row, "x limit", RG, r + ".ratio_to_limit"),
            T(GPU_TABLE, row, "prefill tok/s (512)", RG, r + ".prefill_tokens_per_s"),
            T(GPU_TABLE, row, "memory GB", RG, r + ".memory_gb"),
            T(GPU_TABLE, row, "J/token", RG, r + ".energy_j_per_token"),
            T(GPU_TABLE, row, "batch 8 tok/s", RG, r + ".batches[batch=8].tokens_per_s"),
            T(GPU_TABLE, row, "batch 32 tok/s", RG, r + ".batches[batch=32].tokens_per_s"),
        ]
    ratio = lambda a, b: f"({a}) / ({b})"   # noqa: E731
    prefill = lambda v: "{" + rg(v) + ".prefill_tokens_per_s} / {" + rg("bf16") + ".prefill_tokens_per_s}"  # noqa: E731
    out += [
        F(r"copy\s+bandwidth measured in the same run \((3\.03) TB/s\)", RG, rg("bf16") + ".copy_bandwidth_tb_s"),
        F(r"bf16 decode (1\.14)x its limit \(<= 1\.15x", RG, rg("bf16") + ".ratio_to_limit"),
        F(r"FP8 prefill (1\.29)x bf16's \(>= 1\.0x\)", RG, prefill("fp8")),
        F(r"FP8 decode (0\.65)x bf16's", RG, "{" + rg("fp8") + ".decode_ms_per_token} / {" + rg("bf16")
          + ".decode_ms_per_token}"),
        F(r"FP8 decode 0\.65x bf16's \((0\.651) against", RG, "{" + rg("fp8") + ".decode_ms_per_token} / {"
          + rg("bf16") + ".decode_ms_per_token}"),
        F(r"W4 decode (3\.29) ms\s+\(tinygemm", RG, rg("w4_g128") + ".decode_ms_per_token"),
        F(r"\(tinygemm, (2\.06)x its limit\)", RG, rg("w4_g128") + ".ratio_to_limit"),
        F(r"W4 prefill\s+(0\.70)x bf16's \(Triton runtime\)", RG, prefill("w4_g128_triton")),
        F(r"bf16, measured\s+in both, read (5\.701) and", RG, rg("bf16") + ".decode_ms_per_token"),
        F(r"FP8 decode 4\.15 -> (3\.71) ms/token", RG, rg("fp8") + ".decode_ms_per_token"),
        F(r"W4 Triton 3\.93 -> (3\.45) ms/token", RG, rg("w4_g128_triton") + ".decode_ms_per_token"),
        F(r"its 128 GEMVs 3\.26 -> (2\.63) ms\)", RG, rg("w4_g128_triton") + ".profile_ms_per_token.decoder GEMVs"),
        F(r"\(FP8 16\.59 GB then, (9\.60) now\)", RG, rg("fp8") + ".memory_gb"),
        F(r"W4 tinygemm at batch 1 \((1\.73)x bf16's", RG, ratio(rg_tps("w4_g128", 1), rg_tps("bf16", 1))),
        F(r"FP8 at\s+batch 8 \((1\.16)x bf16's\)", RG, ratio(rg_tps("fp8", 8), rg_tps("bf16", 8))),
        F(r"and batch 32 \((1\.13)x bf16's\)", RG, ratio(rg_tps("fp8", 32), rg_tps("bf16", 32))),
        F(r"every step: (0\.25)x bf16 at batch 8\)", RG, ratio(rg_tps("int8", 8), rg_tps("bf16", 8))),
        F(r"relative L2 of the logits (0\.37) against", RG, rg("fp8") + ".decode_check.vs_prefill.relative_l2_error"),
        F(r"relative L2 of the logits 0\.37 against (0\.06);", RG,
          rg("bf16") + ".decode_check.vs_prefill.relative_l2_error"),
        F(r"the eager step against the prefill (0\.41)\)", RG, rg("fp8") + ".decode_check.eager_step_vs_prefill"),
    ]
    return out


GE = "gpu_end_to_end.json"
GR = "gpu_end_to_end_energy_recheck.json"
GE_TABLE = r"^\| experiment \| coordinator \| driver \| episodes finished"
G8 = "gpu_llama8b.json"
G8_TABLE = r"^\| stage \| seconds \| peak GB \| formula GB"


def _gpu_end_to_end() -> list:
    def ex(label: str) -> str:
        return f"experiments[label={label}]"

    def row(label: str, sid: str) -> str:
        return f"{ex(label)}.rows[strategy_id={sid}]"

    def span(rows: list, field: str, fn: str) -> str:
        return fn + "(" + ", ".join("{" + row(x, sid) + field + "}" for x, sid in rows) + ")"

    def low_high(before: str, low: str, high: str, after: str, name: str, rows: list, field: str) -> list:
        """A README range "low-high" (regexes) as two figures: the rows' minimum and maximum of `field`."""
        return [F(before + "(" + low + ")-" + high + after, name, span(rows, field, "min")),
                F(before + low + "-(" + high + ")" + after, name, span(rows, field, "max"))]

    first_w4 = {"a": "ep002_gptq_w4g64_act", "b": "ep001_gptq_w4g64_act", "c": "ep001_gptq_w4g64_act",
                "d": "ep002_gptq_w4g32_act"}
    out = []
    for label, readme in (("a", "SmolLM2-135M (a)"), ("b", "Gemma 3 270M (b)"), ("c", "Gemma 3 270M (c)"),
                          ("d", "SmolLM2-135M (d)")):
        out += [T(GE_TABLE, readme, "episodes finished", GE, "len({" + ex(label) + ".rows[*strategy_id!=baseline]})"),
                T(GE_TABLE, readme, "baseline ms/token", GE, row(label, "baseline") + ".latency_ms_per_token"),
                T(GE_TABLE, readme, "W4 ms/token", GE, row(label, first_w4[label]) + ".latency_ms_per_token"),
                T(GE_TABLE, readme, "mean candidate run s", GE, ex(label) + ".extrapolated.from_runs.mean_candidate_run_s"),
                T(GE_TABLE, readme, "10 episodes, min", GE, "{" + ex(label) + ".extrapolated.from_runs.seconds} / 60")]
        if label in ("a", "c"):
            out.append(T(GE_TABLE, readme, "decided by the LLM", GE, ex(label) + ".decided_by.llm"))
    candidates = [(x, r) for x, rs in (("a", ("ep001_structured_s30", "ep002_gptq_w4g64_act", "ep003_int8_dynamic")),
                                       ("b", ("ep001_gptq_w4g64_act", "ep002_int8_dynamic", "ep003_autoround_w4g64_i50")),
                                       ("c", ("ep001_gptq_w4g64_act", "ep002_structured_s30", "ep003_gptq_w4g64")),
                                       ("d", ("ep002_gptq_w4g32_act",))) for r in rs]
    gptq = [("a", "ep002_gptq_w4g64_act"), ("b", "ep001_gptq_w4g64_act"), ("c", "ep001_gptq_w4g64_act"),
            ("c", "ep003_gptq_w4g64"), ("d", "ep002_gptq_w4g32_act")]
    ui = "experiments[label=d].runs"
    recheck = [("a", "baseline"), ("a", "ep001_gptq_w4g64_act"), ("b", "baseline"), ("b", "ep001_gptq_w4g64_act"),
               ("c", "baseline"), ("c", "ep001_gptq_w4g64"), ("d", "baseline")]
    withdrawn = [("a", "ep002_gptq_w4g64_act"), ("a", "ep001_structured_s30"), ("a", "baseline")]
    out += low_high(r"The probe took ", r"18\.0", r"242\.5", " s of each", GE, candidates, ".seconds.evaluate_latency_probe")
    out += low_high("GPTQ W4 ", r"8\.0", r"15\.7", " s", GE, gptq, ".seconds.compress")
    out += low_high(r"\(", r"0\.84", r"1\.07", " J/token at", GE, withdrawn, ".energy_j_per_token_withdrawn")
    # the 2026-12-08 re-measurement of J/token (one run-e2e call: each experiment's baseline and first candidate)
    out += low_high("over ", r"2\.01", r"2\.16", " s of decoding", GR, recheck, ".energy_window.seconds")
    out += low_high(r"\(", "1755", "2835", r" tokens\)", GR, recheck, ".energy_window.tokens")
    out += low_high("", r"169\.8", r"257\.2", " W, under", GR, recheck, ".energy_window.watts")
    out += low_high(r"and\s+", r"0\.164", r"0\.243", " J/token", GR, recheck, ".energy_j_per_token")
    out += [
        F(r"holds it \(up to\s+(113\.2) s\)", GE, span(candidates, ".device_slot_wait_s.probe", "max")),
        F(r"Scoring waits for the same slot \(up to (90\.5) s\)", GE, span(candidates, ".device_slot_wait_s.scoring", "max")),
        F(r"AutoRound (107\.7) s", GE, row("b", "ep003_autoround_w4g64_i50") + ".seconds.compress"),
        F(r"\(tinygemm\) drew (0\.209) J/token", GR, row("a", "ep001_gptq_w4g64_act") + ".energy_j_per_token"),
        F(r"bf16 baseline's (0\.171):", GR, row("a", "baseline") + ".energy_j_per_token"),
        F(r"W4 step is slower \((1\.07) against", GR, row("a", "ep001_gptq_w4g64_act") + ".latency_ms_per_token"),
        F(r"W4 step is slower \(1\.07 against (0\.69) ms/token\)", GR, row("a", "baseline") + ".latency_ms_per_token"),
        F(r"succeeded in (3\.9) s;", GE, ui + "[job=launch_experiment].seconds"),
        F(r"requested setup \((234\.0) s\)", GE, ui + "[job=setup].seconds"),
        F(r"The next candidate succeeded \((395\.5) s\)", GE, ui + "[job=candidate,status=SUCCESS].seconds"),
        F(r"on SmolLM2 \((0\.98) against", GE, row("a", "ep002_gptq_w4g64_act") + ".latency_ms_per_token"),
        F(r"\(0\.98 against (0\.66) ms/token\)", GE, row("a", "baseline") + ".latency_ms_per_token"),
        F(r"alike on\s+Gemma 3 \((0\.75) against", GE, row("b", "ep001_gptq_w4g64_act") + ".latency_ms_per_token"),
        F(r"\(0\.75 against (0\.78)-0\.83\)", GE, row("c", "baseline") + ".latency_ms_per_token"),
        F(r"\(0\.75 against 0\.78-(0\.83)\)", GE, row("b", "baseline") + ".latency_ms_per_token"),
        F(r"random\*\* bf16 weights \((14\.96) GB on", G8, "model.size_on_disk_gb"),
        F(r"`min_vram_gb` (16\.72) GB at batch 1", G8, "formulas.for_this_model.min_vram_gb"),
        F(r"\(accuracy scoring: (0\.91)\)", G8, "formulas.stages[row=baseline,stage=accuracy].ratio_measured_to_formula"),
    ]
    for readme, rid, stage in (("baseline load", "baseline", "load"),
                               ("baseline reference (its own samples)", "baseline", "reference"),
                               ("baseline fidelity", "baseline", "fidelity"),
                               ("baseline latency probe (bf16)", "baseline", "latency_probe"),
                               ("RTN W4 compression", "ep001_rtn_w4g64", "compress"),
                               ("W4 latency probe (tinygemm)", "ep001_rtn_w4g64", "latency_probe")):
        st = f"stages[row={rid}].stages.{stage}"
        fs = f"formulas.stages[row={rid},stage={stage}]"
        out += [T(G8_TABLE, readme, "seconds", G8, st + ".seconds"),
                T(G8_TABLE, readme, "peak GB", G8, fs + ".measured_gb")]
        if rid == "baseline" or stage == "compress":
            out += [T(G8_TABLE, readme, "formula GB", G8, fs + ".formula_gb"),
                    T(G8_TABLE, readme, "measured / formula", G8, fs + ".ratio_measured_to_formula")]
    return out


def _generated_and_eval() -> list:
    AC = "above_chance.json"
    out = []
    for fam in ["opposite", "first_letter", "plural", "unit_conversion", "next_in_sequence"]:
        r = f"rows[task={fam}]"
        out += [T(GEN_TABLE, fam, "items", AC, r + ".items"), T(GEN_TABLE, fam, "accuracy", AC, r + ".accuracy"),
                T(GEN_TABLE, fam, "chance", AC, r + ".chance"), T(GEN_TABLE, fam, "p", AC, r + ".p_value")]
    rest = "addition, category_member, day_after, letter_after, alphabetical_first, larger_number"
    others = "rows[*task!=next_in_sequence,above_chance=False]"
    out += [
        T(GEN_TABLE, rest, "items", AC, "min({" + others + ".items})", 0),
        T(GEN_TABLE, rest, "items", AC, "max({" + others + ".items})", 1),
        T(GEN_TABLE, rest, "accuracy", AC, "min({" + others + ".accuracy})", 0),
        T(GEN_TABLE, rest, "accuracy", AC, "max({" + others + ".accuracy})", 1),
        T(GEN_TABLE, rest, "chance", AC, "min({" + others + ".chance})", 0),
        T(GEN_TABLE, rest, "chance", AC, "max({" + others + ".chance})", 1),
        T(GEN_TABLE, rest, "p", AC, "min({" + others + ".p_value})"),
        F(r"float32, this 2-core CPU, (85) s\)", AC, "wall_time_s"),
        F(r"family, (40) items\) the baseline reads", AC, "proxy.items"),
        F(r"the baseline reads (0\.525)\s+against chance", AC, "proxy.accuracy"),
        F(r"against chance (0\.250), p = 3e-5", AC, "proxy.chance"),
        F(r"against chance 0\.250, p = (3e-5)", AC, "proxy.p_value"),
        F(r"\): `unit_conversion` \((88) items\)", AC, "rows[task=unit_conversion].items"),
        F(r"`first_letter` \((140)\)", AC, "rows[task=first_letter].items"),
        F(r"`opposite` \((60)\)", AC, "rows[task=opposite].items"),
        F(r"`plural` \((45)\); 333 items", AC, "rows[task=plural].items"),
        F(r"\(45\); (333) items, 40 in", AC, "sum({rows[*above_chance=True].items})"),
        F(r"333 items, (40) in the search's proxy", AC, "proxy.items"),
        F(r"all 11 families \(adds addition.*?\), (1,546) items", AC, "sum({rows[*].items})"),
        # humaneval_full.json
        F(r"default model scores pass@1 (0\.0):", "humaneval_full.json", "pass@1"),
        F(r"cut \((104) of 164\s+completions empty\)", "humaneval_full.json", "empty_completions"),
        F(r"cut \(104 of (164)\s+completions empty\)", "humaneval_full.json", "problems"),
        F(r"the other (60) fail their tests", "humaneval_full.json", "{problems} - {empty_completions}"),
        F(r"all (164) HumanEval problems", "humaneval_full.json", "problems"),
        # vs_lm_eval.json
        F(r"\(bb_snarks, (181) items:", "vs_lm_eval.json", "items"),
        F(r"181 items: (0\.5193370165745856) both\)", "vs_lm_eval.json", "accuracy_ours[0]"),
        F(r"181 items: (0\.5193370165745856) both\)", "vs_lm_eval.json", "accuracy_lm_eval[0]"),
        F(r"at\s+(0\.91)x its wall time \(median of 3", "vs_lm_eval.json", "median_wall_ratio_ours_over_lm_eval"),
        F(r"its wall time \(median of (3), alternating", "vs_lm_eval.json", "conditions.repeats"),
        # proxy_tau.txt / proxy_tau.json
        F(r"over (9) variants of the\s+default model, Kendall tau", "proxy_tau.json", "len({variants})"),
        F(r"full-set accuracy is (0\.06) \(bigbench_commonsense\)", "proxy_tau.txt",
          "{/bigbench_commonsense:.*?proxy 10/task \\(timed run\\): tau ([-\\d.]+)/}"),
        F(r"and (-0\.03) \(elementary_math_qa\)", "proxy_tau.txt",
          "{/elementary_math_qa:.*?proxy 10/task \\(timed run\\): tau ([-\\d.]+)/}"),
        F(r"at a (9)-10x speed-up", "proxy_tau.txt", "{/bigbench_commonsense:.*?speed-up ([\\d.]+)x/}"),
        F(r"at a 9-(10)x speed-up", "proxy_tau.txt", "{/elementary_math_qa:.*?speed-up ([\\d.]+)x/}"),
        F(r"40 items per task reach tau (0\.74) on", "proxy_tau.txt",
          "{/bigbench_commonsense:.*?proxy 40/task \\(prefix of full run\\): tau ([-\\d.]+)/}"),
        F(r"python benchmarks/proxy_tau\.py`: proxy vs full set over (9) variants", "proxy_tau.json", "len({variants})"),
    ]
    return out


def _serving_other() -> list:
    CW, DS, CE = "concurrent_writers.json", "device_slot.json", "celery_workers.json"
    out = [
        F(r"Measured with\s+(2), 4 and 8 concurrent writer", CW, "table[0].writers"),
        F(r"Measured with\s+2, (4) and 8 concurrent writer", CW, "table[1].writers"),
        F(r"Measured with\s+2, 4 and (8) concurrent writer", CW, "table[2].writers"),
        F(r"concurrent writer processes, (20) rows each", CW, "table[0].episodes_per_writer"),
        F(r"~10\): (0) rows lost", CW, "sum({table[*].rows_lost})"),
        F(r"0 rows lost, (0)\s+duplicates", CW, "sum({table[*].duplicate_rows})"),
        F(r"duplicates, (0) failed writes in every case", CW, "sum({table[*].failed_writes})"),
        F(r"never waited for a lock and wrote\s+(40)/80/160 rows", CW, "table[0].rows_present"),
        F(r"(80)/160 rows in 2\.0", CW, "table[1].rows_present"),
        F(r"80/(160) rows in 2\.0", CW, "table[2].rows_present"),
        F(r"rows in (2\.0)/4\.0/7\.8 s", CW, "table[0].wall_s"),
        F(r"rows in 2\.0/(4\.0)/7\.8 s", CW, "table[1].wall_s"),
        F(r"rows in 2\.0/4\.0/(7\.8) s", CW, "table[2].wall_s"),
        F(r"\(~(20) rows/s, CPU-bound\)", CW, "{table[2].writes_per_s}"),
        F(r"episode\) took (44)/77/110 s", CW, "table[3].wall_s"),
        F(r"episode\) took 44/(77)/110 s", CW, "table[4].wall_s"),
        F(r"episode\) took 44/77/(110) s", CW, "table[5].wall_s"),
        F(r"\(before: (28)/76/205 s", CW, "before_parquet.table[0].wall_s"),
        F(r"\(before: 28/(76)/205 s", CW, "before_parquet.table[1].wall_s"),
        F(r"\(before: 28/76/(205) s", CW, "before_parquet.table[2].wall_s"),
        F(r"median (11\.14) ms/token alone", DS, "median_latency_ms.alone"),
        F(r"\*\*(11\.11) with the slot \(x1\.00\)", DS, "median_latency_ms.slot"),
        F(r"with the slot \(x(1\.00)\)\*\*", DS, "ratio_to_alone.slot"),
        F(r"(24\.73) ignoring it \(x2\.22\)", DS, "median_latency_ms.no_slot"),
        F(r"24\.73 ignoring it \(x(2\.22)\)", DS, "ratio_to_alone.no_slot"),
        F(r"one `candidate_sweep` of (8) candidates", CE, "runs.1.candidates"),
        F(r"Wall time (132\.7) s on 1 worker", CE, "runs.1.wall_s"),
        F(r"on 1 worker, (119\.6) s on 2", CE, "runs.2.wall_s"),
        F(r"\*\*x(1\.11)\*\*", CE, "{runs.1.wall_s} / {runs.2.wall_s}"),
    ]
    return out


# The celery step times sit under keys holding '[' (compress_and_benchmark[...]): read by key prefix ('*').
def _celery_steps() -> list:
    CE = "celery_workers.json"
    return [
        F(r"a candidate step takes (10)-17 s", CE, "min({runs.1.step_s.compress_and_benchmark*})"),
        F(r"a candidate step takes 10-(17) s", CE, "max({runs.1.step_s.compress_and_benchmark*})"),
        F(r"the same steps take (19)-29 s each", CE, "min({runs.2.step_s.compress_and_benchmark*})"),
        F(r"the same steps take 19-(29) s each", CE, "max({runs.2.step_s.compress_and_benchmark*})"),
        F(r"\(sum (204) s against 122 s\)", CE, "runs.2.candidate_steps_sum_s"),
        F(r"\(sum 204 s against (122) s\)", CE, "runs.1.candidate_steps_sum_s"),
        F(r"while the other worker scores \((0)-2\.4 s\)", CE, "min({runs.2.per_candidate[*].probe_slot_wait_s})"),
        F(r"while the other worker scores \(0-(2\.4) s\)", CE, "max({runs.2.per_candidate[*].probe_slot_wait_s})"),
    ]


def _quality_stale() -> list:
    """Files another engineer regenerates in this session: one line per figure, so each is easy to edit."""
    gq = "rows[variant={}]"
    out = [
        # gguf_quality.json
        F(r"`gguf_quality\.json`: (190) items, 4096 held-out", GQ, gq.format("F16") + ".flips_vs_baseline.items"),
        F(r"190 items, (4096) held-out\s+tokens", GQ, "{" + gq.format("F16") + ".fidelity.tokens} + 8"),
        F(r"the baseline \(transformers float32\) (0\.600) ± 0\.035", GQ, gq.format("baseline") + ".accuracy"),
        F(r"the baseline \(transformers float32\) 0\.600 ± (0\.035)", GQ, gq.format("baseline") + ".accuracy_stderr"),
        F(r"\*\*(0\.600), 0 of 190 items flipped", GQ, gq.format("F16") + ".accuracy"),
        F(r"\*\*0\.600, (0) of 190 items flipped", GQ, "{" + gq.format("F16") + ".flips_vs_baseline.correct_to_wrong} + {"
          + gq.format("F16") + ".flips_vs_baseline.wrong_to_correct}"),
        F(r"items flipped, KL (0\.00000), top-1", GQ, gq.format("F16") + ".fidelity.kl_divergence"),
        F(r"KL 0\.00000, top-1 (0\.9998),", GQ, gq.format("F16") + ".fidelity.top1_agreement"),
        F(r"perplexity x(1\.0000)\*\*", GQ, gq.format("F16") + ".fidelity.ppl_ratio"),
        F(r"dequantized from it\) (0\.605), 3 flips", GQ, gq.format("packaged Q4_1") + ".accuracy"),
        F(r"dequantized from it\) 0\.605, (3) flips", GQ, "{" + gq.format("packaged Q4_1") + ".flips_vs_baseline.correct_to_wrong} + {"
          + gq.format("packaged Q4_1") + ".flips_vs_baseline.wrong_to_correct}"),
        F(r"0\.605, 3 flips, McNemar p = (1\.0),", GQ, gq.format("packaged Q4_1") + ".flips_vs_baseline.p_value"),
        F(r"McNemar p = 1\.0,\s+KL (0\.0029):", GQ, gq.format("packaged Q4_1") + ".fidelity.kl_divergence"),
        F(r"Q4_K_M of the baseline (0\.605), 7 flips", GQ, gq.format("Q4_K_M") + ".accuracy"),
        F(r"Q4_K_M of the baseline 0\.605, (7) flips", GQ, "{" + gq.format("Q4_K_M") + ".flips_vs_baseline.correct_to_wrong} + {"
          + gq.format("Q4_K_M") + ".flips_vs_baseline.wrong_to_correct}"),
        F(r"7 flips, p = (1\.0),\s+KL 0\.053", GQ, gq.format("Q4_K_M") + ".flips_vs_baseline.p_value"),
        F(r"7 flips, p = 1\.0,\s+KL (0\.053), x1\.082", GQ, gq.format("Q4_K_M") + ".fidelity.kl_divergence"),
        F(r"KL 0\.053, x(1\.082)\. llama\.cpp scored", GQ, gq.format("Q4_K_M") + ".fidelity.ppl_ratio"),
        # fidelity_tau.json
        F(r"it reads (6)-17 % low\s+\(`benchmarks/results/fidelity_tau", FT, "100 * min({rows[*].topk_vs_exact_kl.relative_error})"),
        F(r"it reads 6-(17) % low\s+\(`benchmarks/results/fidelity_tau", FT, "100 * max({rows[*].topk_vs_exact_kl.relative_error})"),
        F(r"`topk_vs_exact_kl`, (21) variants, 2,044 positions", FT, "len({rows[*].topk_vs_exact_kl})"),
        F(r"Bonferroni over (21)\s+variants\) the accuracy rule", FT, "variants"),
        F(r"the accuracy rule changes (4) rows", FT, "len({gate.changed_by_accuracy})"),
        F(r"GPTQ W4 g64 \((0\.066)\s+lost", FT, "-{full_set_vs_baseline.gptq_w4g64_act.accuracy_delta}"),
        F(r"lost, p = (0\.00047)\), RTN W4", FT, "full_set_vs_baseline.gptq_w4g64_act.p_value"),
        F(r"RTN W4 \((0\.099)\), AutoRound W4", FT, "-{full_set_vs_baseline.rtn_w4g64.accuracy_delta}"),
        F(r"AutoRound W4 \((0\.054)\) and W3", FT, "-{full_set_vs_baseline.autoround_w4g64.accuracy_delta}"),
        F(r"and W3 \((0\.075)\) are degraded", FT, "-{full_set_vs_baseline.autoround_w3g64.accuracy_delta}"),
        F(r"AWQ W4 \((0\.036)\s+\*more\*", FT, "full_set_vs_baseline.awq_w4g64.accuracy_delta"),
        F(r"now fails the fidelity bound itself \(KL (0\.514)\)", FT, "rows[variant=sparsegpt_s50].fidelity.4096.kl_divergence"),
        F(r"on the lent H100 in float32, no TF32: the baseline and (21) variants", FT, "variants"),
        F(r"every item of `generated_mc`, (333) items", FT, "sum({benchmark.items_per_task.*})"),
        F(r"and (32,704) positions of the held-out prose", FT, "held_out_positions"),
        F(r"and (8,176) of the\s+baseline's own samples", FT, "sampled_positions"),
        F(r"per task (0\.80)/0\.88/0\.92/0\.98", FT, "tau.proxy_vs_full_accuracy.10"),
        F(r"per task 0\.80/(0\.88)/0\.92/0\.98", FT, "tau.proxy_vs_full_accuracy.20"),
        F(r"per task 0\.80/0\.88/(0\.92)/0\.98", FT, "tau.proxy_vs_full_accuracy.40"),
        F(r"per task 0\.80/0\.88/0\.92/(0\.98)", FT, "tau.proxy_vs_full_accuracy.80"),
        F(r"KL on the prose (0\.75)/0\.76/0\.76/0\.76", FT, "tau.neg_kl_vs_full_accuracy.1024"),
        F(r"KL on the prose 0\.75/(0\.76)/0\.76/0\.76", FT, "tau.neg_kl_vs_full_accuracy.4096"),
        F(r"KL on the prose 0\.75/0\.76/(0\.76)/0\.76", FT, "tau.neg_kl_vs_full_accuracy.16384"),
        F(r"KL on the prose 0\.75/0\.76/0\.76/(0\.76)", FT, "tau.neg_kl_vs_full_accuracy.32768"),
        F(r"baseline's samples (0\.78)/0\.79/0\.78/0\.78", FT, "tau.neg_kl_sampled_vs_full_accuracy.1024"),
        F(r"baseline's samples 0\.78/(0\.79)/0\.78/0\.78", FT, "tau.neg_kl_sampled_vs_full_accuracy.2048"),
        F(r"baseline's samples 0\.78/0\.79/(0\.78)/0\.78", FT, "tau.neg_kl_sampled_vs_full_accuracy.4096"),
        F(r"baseline's samples 0\.78/0\.79/0\.78/(0\.78)", FT, "tau.neg_kl_sampled_vs_full_accuracy.8192"),
        F(r"\(tau (0\.90) between them\)", FT, "tau.kl_sampled_vs_kl_prose"),
        F(r"4096 tokens: tau (1\.00) against 32k", FT, "tau.kl_vs_kl_at_max_tokens.4096"),
        F(r"2048 tokens: tau (0\.99) against 8k", FT, "tau.kl_sampled_vs_kl_sampled_at_max_tokens.2048"),
        F(r"read\s+KL (0\.144) and 0\.083 on the prose", FT, "rows[variant=gptq_w4g64_act].fidelity.4096.kl_divergence"),
        F(r"KL 0\.144 and (0\.083) on the prose", FT, "rows[variant=autoround_w4g64].fidelity.4096.kl_divergence"),
        F(r"but (0\.526) and 0\.283 on the baseline's samples", FT, "rows[variant=gptq_w4g64_act].fidelity_sampled.2048.kl_divergence"),
        F(r"but 0\.526 and (0\.283) on the baseline's samples", FT, "rows[variant=autoround_w4g64].fidelity_sampled.2048.kl_divergence"),
        F(r"and lose (0\.073) and\s+0\.051", FT, "{rows[variant=baseline].full_accuracy} - {rows[variant=gptq_w4g64_act].full_accuracy}"),
        F(r"and lose 0\.073 and\s+(0\.051)", FT, "{rows[variant=baseline].full_accuracy} - {rows[variant=autoround_w4g64].full_accuracy}"),
        F(r"\((0\.564) -> 0\.490 and 0\.513\)", FT, "rows[variant=baseline].full_accuracy"),
        F(r"\(0\.564 -> (0\.490) and 0\.513\)", FT, "rows[variant=gptq_w4g64_act].full_accuracy"),
        F(r"\(0\.564 -> 0\.490 and (0\.513)\)", FT, "rows[variant=autoround_w4g64].full_accuracy"),
        F(r"AWQ W4 reads (0\.117) and 0\.181", FT, "rows[variant=awq_w4g64].fidelity.4096.kl_divergence"),
        F(r"AWQ W4 reads 0\.117 and (0\.181)", FT, "rows[variant=awq_w4g64].fidelity_sampled.2048.kl_divergence"),
        F(r"and gains (0\.044)\s+\(0\.608\)", FT, "{rows[variant=awq_w4g64].full_accuracy} - {rows[variant=baseline].full_accuracy}"),
        F(r"and gains 0\.044\s+\((0\.608)\)", FT, "rows[variant=awq_w4g64].full_accuracy"),
        F(r"40 items buys tau (0\.92) for 4x", FT, "tau.proxy_vs_full_accuracy.40"),
        F(r"\(`fidelity_tau_bigbench\.json`, (14) variants, 3,419 items\)", FTB, "variants"),
        F(r"\(`fidelity_tau_bigbench\.json`, 14 variants, (3,419) items\)", FTB, "sum({benchmark.items_per_task.*})"),
        F(r"proxy (0\.87)-0\.96, KL 0\.85-0\.87", FTB, "tau.proxy_vs_full_accuracy.10"),
        F(r"proxy 0\.87-(0\.96), KL 0\.85-0\.87", FTB, "max({tau.proxy_vs_full_accuracy.*})"),
        F(r"proxy 0\.87-0\.96, KL (0\.85)-0\.87", FTB, "min({tau.neg_kl_vs_full_accuracy.*})"),
        F(r"proxy 0\.87-0\.96, KL 0\.85-(0\.87)", FTB, "max({tau.neg_kl_vs_full_accuracy.*})"),
        # grid_smollm2_generated_mc.json
        F(r"\*\*all (31) strategies measured\*\*, 14", "grid_smollm2_generated_mc.json", "len({rows[*strategy_id!=baseline]})"),
        F(r"all 31 strategies measured\*\*, (14)\s+degraded", "grid_smollm2_generated_mc.json", "len({rows[*degraded=True]})"),
        F(r"GPTQ W4 g64 reads KL (0\.145) on the prose", "grid_smollm2_generated_mc.json", "rows[strategy_id=gptq_w4g64_act].kl_divergence"),
        F(r"on the prose and (0\.503) on the baseline's samples, AWQ", "grid_smollm2_generated_mc.json", "rows[strategy_id=gptq_w4g64_act].kl_sampled"),
        F(r"AWQ W4 (0\.116) and\s+0\.168", "grid_smollm2_generated_mc.json", "rows[strategy_id=awq_w4g64].kl_divergence"),
        F(r"AWQ W4 0\.116 and\s+(0\.168)", "grid_smollm2_generated_mc.json", "rows[strategy_id=awq_w4g64].kl_sampled"),
        F(r"AutoRound W4 (0\.074) and 0\.229", "grid_smollm2_generated_mc.json", "rows[strategy_id=autoround_w4g64_i50].kl_divergence"),
        F(r"AutoRound W4 0\.074 and (0\.229)", "grid_smollm2_generated_mc.json", "rows[strategy_id=autoround_w4g64_i50].kl_sampled"),
        F(r"\(load (0\.11)-1\.65 on this", "grid_smollm2_generated_mc.json", "min({rows[*].conditions.load_average_1m})"),
        F(r"\(load 0\.11-(1\.65) on this", "grid_smollm2_generated_mc.json", "max({rows[*].conditions.load_average_1m})"),
        F(r"`int8_dynamic` \(KL 0\.001-(0\.005)\)", "grid_smollm2_generated_mc.json", "rows[strategy_id=int8_dynamic].kl_divergence"),
        F(r"`w8a8_sq0\.5` \((0\.015)\)", "grid_smollm2_generated_mc.json", "rows[strategy_id=w8a8_sq0.5].kl_divergence"),
        F(r"Q4_K_M at (0\.047) and", "grid_smollm2_generated_mc.json", "rows[strategy_id=gguf_q4_k_m].kl_divergence"),
        F(r"AutoRound W4 at (0\.074) \(9\.2", "grid_smollm2_generated_mc.json", "rows[strategy_id=autoround_w4g64_i50].kl_divergence"),
        F(r"AutoRound W4 at 0\.074 \((9\.2) ms/token in llama\.cpp\), AWQ", "grid_smollm2_generated_mc.json", "rows[strategy_id=autoround_w4g64_i50].latency_ms"),
        F(r"RTN W4 \(0\.116-(0\.379), 8\.6-11\.4", "grid_smollm2_generated_mc.json", "rows[strategy_id=rtn_w4g64].kl_divergence"),
        F(r"RTN W4 \(0\.116-0\.379, (8\.6)-11\.4", "grid_smollm2_generated_mc.json", "rows[strategy_id=gptq_w4g32_act].latency_ms"),
        F(r"RTN W4 \(0\.116-0\.379, 8\.6-(11\.4)", "grid_smollm2_generated_mc.json", "rows[strategy_id=awq_w4g64].latency_ms"),
        F(r"AutoRound W3 at (0\.258), the smallest file;", "grid_smollm2_generated_mc.json", "rows[strategy_id=autoround_w3g64_i50].kl_divergence"),
        F(r"baseline (17\.9) ms/token\. \*\*A bug", "grid_smollm2_generated_mc.json", "rows[strategy_id=baseline].latency_ms"),
        F(r"the re-run reads (0\.256), as on BIG-bench", "grid_smollm2_generated_mc.json", "rows[strategy_id=qlora_nf4_r8_s30].kl_divergence"),
        F(r"as on BIG-bench \((0\.242)\)", GRID, "rows[strategy_id=qlora_nf4_r8_s30].kl_divergence"),
        # grid_smollm2_bigbench_above_chance.json
        F(r"\*\*all (31) strategies are measured\*\*", GRID, "len({rows[*strategy_id!=baseline]})"),
        F(r"all 31 strategies are measured\*\*, (16) of them degraded", GRID, "len({rows[*degraded=True]})"),
        F(r"`gptq_w8g64_act`, `rtn_w8g64`, `gguf_q8_0` \(KL (0\.001)-0\.004\)", GRID, g("gptq_w8g64_act") + ".kl_divergence"),
        F(r"`gguf_q8_0` \(KL 0\.001-(0\.004)\)", GRID, g("gguf_q8_0") + ".kl_divergence"),
        F(r"`gguf_q4_k_m` \((0\.053)\), `autoround_w4g64_i50`", GRID, g("gguf_q4_k_m") + ".kl_divergence"),
        F(r"`autoround_w4g64_i50`\s+\((0\.081), 9\.2 ms/token", GRID, g("autoround_w4g64_i50") + ".kl_divergence"),
        F(r"\(0\.081, (9\.2) ms/token in llama\.cpp, the fastest\)", GRID, g("autoround_w4g64_i50") + ".latency_ms"),
        F(r"`gptq_w4g64_act` \((0\.162)\), `gptq_w4g32_act` \(0\.193\)", GRID, g("gptq_w4g64_act") + ".kl_divergence"),
        F(r"`gptq_w4g64_act` \(0\.162\), `gptq_w4g32_act` \((0\.193)\),", GRID, g("gptq_w4g32_act") + ".kl_divergence"),
        F(r"`autoround_w3g64_i50` \((0\.272), the smallest file", GRID, g("autoround_w3g64_i50") + ".kl_divergence"),
        F(r"the smallest file, (0\.093) GB", GRID, g("autoround_w3g64_i50") + ".model_size_gb"),
        F(r"\(AutoRound W4 KL (0\.081) and W3 0\.272", GRID, g("autoround_w4g64_i50") + ".kl_divergence"),
        F(r"AutoRound W4 KL 0\.081 and W3 (0\.272)", GRID, g("autoround_w3g64_i50") + ".kl_divergence"),
        F(r"RTN W3 is (1\.91) —", GRID, g("rtn_w3g64") + ".kl_divergence"),
        F(r"QLoRA (0\.242),", GRID, g("qlora_nf4_r8_s30") + ".kl_divergence"),
        F(r"`mixed_4\.25b_knapsack` (0\.256),", GRID, g("mixed_4.25b_knapsack") + ".kl_divergence"),
        F(r"magnitude 50 % \+ LoRA (2\.24) and", GRID, g("magnitude_s50+lora_r8_s30") + ".kl_divergence"),
        F(r"LoRA (1\.32)\) and the baseline", GRID, g("structured_s30+gptq_w4g64_act+lora_r8_s30") + ".kl_divergence"),
        F(r"and the baseline \((13\.4) ms/token\) were re-probed", GRID, g("baseline") + ".latency_ms"),
        F(r"`gguf_q4_k_m` (33) ms, `gguf_q8_0` 38 ms", GRID, g("gguf_q4_k_m") + ".latency_ms"),
        F(r"`gguf_q8_0` (38) ms are", GRID, g("gguf_q8_0") + ".latency_ms"),
        F(r"`gguf_q8_0` \((0\.0037)\), and, degraded", GRID, g("gguf_q8_0") + ".kl_divergence"),
        F(r"SparseGPT 2:4 \((1\.17)\)", GRID, g("sparsegpt_2of4") + ".kl_divergence"),
        F(r"Wanda 50 % / 2:4 \((0\.89) / 2\.57\)", GRID, g("wanda_s50") + ".kl_divergence"),
        F(r"Wanda 50 % / 2:4 \(0\.89 / (2\.57)\)", GRID, g("wanda_2of4") + ".kl_divergence"),
        F(r"structured 30 % / 50 % \((1\.75) / 3\.62\)", GRID, g("structured_s30") + ".kl_divergence"),
        F(r"structured 30 % / 50 % \(1\.75 / (3\.62)\)", GRID, g("structured_s50") + ".kl_divergence"),
        F(r"`gptq_w8g64_act` \(KL (0\.0007), accuracy 0\.611", GRID, g("gptq_w8g64_act") + ".kl_divergence"),
        F(r"\(KL 0\.0007, accuracy (0\.611), no difference", GRID, g("gptq_w8g64_act") + ".accuracy"),
        F(r"no difference from the baseline's (0\.600);", GRID, g("baseline") + ".accuracy"),
        F(r"Q8_0 in llama\.cpp (14\.6) ms/token, 0\.215 GB", GRID, g("gptq_w8g64_act") + ".latency_ms"),
        F(r"Q8_0 in llama\.cpp 14\.6 ms/token, (0\.215) GB", GRID, g("gptq_w8g64_act") + ".memory_gb"),
        F(r"`w8a8_sq0\.5` \((0\.016);", GRID, g("w8a8_sq0.5") + ".kl_divergence"),
        F(r"without expanding it: eager, (170) ms\)", GRID, g("w8a8_sq0.5") + ".latency_ms"),
        F(r"`awq_w4g64` \((0\.128), worse", GRID, g("awq_w4g64") + ".kl_divergence"),
        F(r"worse: McNemar p = (0\.03); Q4_1", GRID, g("awq_w4g64") + ".flips.p_value"),
        F(r"Q4_1 (11\.3) ms,\s+0\.171 GB", GRID, g("awq_w4g64") + ".latency_ms"),
        F(r"Q4_1 11\.3 ms,\s+(0\.171) GB", GRID, g("awq_w4g64") + ".memory_gb"),
        F(r"`gptq_w4g64_act` \((0\.162), no difference, p = 0\.39", GRID, g("gptq_w4g64_act") + ".kl_divergence"),
        F(r"no difference, p = (0\.39); Q4_0", GRID, g("gptq_w4g64_act") + ".flips.p_value"),
        F(r"p = 0\.39; Q4_0 (9\.4) ms, 0\.166 GB", GRID, g("gptq_w4g64_act") + ".latency_ms"),
        F(r"p = 0\.39; Q4_0 9\.4 ms, (0\.166) GB", GRID, g("gptq_w4g64_act") + ".memory_gb"),
        F(r"`gptq_w4g32_act` \((0\.193)\): none degraded", GRID, g("gptq_w4g32_act") + ".kl_divergence"),
        F(r"the largest perplexity ratio on it x(1\.27)", GRID, "max({rows[*strategy_id=gptq_w8g64_act|w8a8_sq0.5|awq_w4g64|gptq_w4g64_act|gptq_w4g32_act].ppl_ratio})"),
        F(r"in its best runtime \(llama\.cpp F16\): ([\d.]+) ms/token, [\d.]+ GB \(re-probed", GRID, g("baseline") + ".latency_ms"),
        F(r"in its best runtime \(llama\.cpp F16\): [\d.]+ ms/token, ([\d.]+) GB \(re-probed", GRID, g("baseline") + ".memory_gb"),
        F(r"\*\*W4 reads ([\d.]+)x faster and", GRID, "{" + g("baseline") + ".latency_ms} / {" + g("gptq_w4g64_act") + ".latency_ms}"),
        F(r"faster and\s+([\d.]+)x the memory, as served\*\*", GRID, "{" + g("gptq_w4g64_act") + ".memory_gb} / {" + g("baseline") + ".memory_gb}"),
        F(r"`rtn_w4g64` \((0\.393)\), `gptq_w4g64` \(0\.319\)", GRID, g("rtn_w4g64") + ".kl_divergence"),
        F(r"`gptq_w4g64` \((0\.319)\),", GRID, g("gptq_w4g64") + ".kl_divergence"),
        F(r"`rtn_w8g64` \((0\.001); 20\.3 ms\)", GRID, g("rtn_w8g64") + ".kl_divergence"),
        F(r"`rtn_w8g64` \(0\.001; (20\.3) ms\)", GRID, g("rtn_w8g64") + ".latency_ms"),
        F(r"`sparsegpt_s50` \((0\.384); its 39\.8 ms", GRID, g("sparsegpt_s50") + ".kl_divergence"),
        F(r"`sparsegpt_s50` \(0\.384; its (39\.8) ms", GRID, g("sparsegpt_s50") + ".latency_ms"),
        F(r"`int8_dynamic` \(KL (0\.93), x2\.72;", GRID, g("int8_dynamic") + ".kl_divergence"),
        F(r"`int8_dynamic` \(KL 0\.93, x(2\.72);", GRID, g("int8_dynamic") + ".ppl_ratio"),
        F(r"RTN W3 \((1\.91), x8\.1\)", GRID, g("rtn_w3g64") + ".kl_divergence"),
        F(r"RTN W3 \(1\.91, x(8\.1)\)", GRID, g("rtn_w3g64") + ".ppl_ratio"),
        F(r"magnitude 30 %/50 %/2:4 \((0\.51) / 3\.0 / 4\.5\)", GRID, g("magnitude_s30") + ".kl_divergence"),
        F(r"magnitude 30 %/50 %/2:4 \(0\.51 / (3\.0) / 4\.5\)", GRID, g("magnitude_s50") + ".kl_divergence"),
        F(r"magnitude 30 %/50 %/2:4 \(0\.51 / 3\.0 / (4\.5)\)", GRID, g("magnitude_2of4") + ".kl_divergence"),
        F(r"SparseGPT 2:4 -> GPTQ \((0\.92), x2\.84\)", GRID, g("sparsegpt_2of4+gptq_w4g64_act") + ".kl_divergence"),
        F(r"SparseGPT 2:4 -> GPTQ \(0\.92, x(2\.84)\)", GRID, g("sparsegpt_2of4+gptq_w4g64_act") + ".ppl_ratio"),
        F(r"structured 30 % -> GPTQ \((1\.92), x8\.5\)", GRID, g("structured_s30+gptq_w4g64_act") + ".kl_divergence"),
        F(r"structured 30 % -> GPTQ \(1\.92, x(8\.5)\)", GRID, g("structured_s30+gptq_w4g64_act") + ".ppl_ratio"),
        F(r"ASVD 0\.8 and 0\.5 \(KL\s+(9\.8) and 16\.4", GRID, g("asvd_r80") + ".kl_divergence"),
        F(r"ASVD 0\.8 and 0\.5 \(KL\s+9\.8 and (16\.4)", GRID, g("asvd_r50") + ".kl_divergence"),
        F(r"Evaluation of the baseline: ([\d.]+) s", GRID, g("baseline") + ".eval_time_s"),
        F(r"held-out KL \*\*1\.283\*\*, ([\d.]+) % below uniform", MPR, "100 * (1 - {" + mp("smollm2", "evolutionary_linear_3") + ".kl_divergence} / {" + mp("smollm2", "uniform_w3") + ".kl_divergence})"),
        F(r"held-out KL \*\*(1\.283)\*\*, 32\.7 % below", MPR, mp("smollm2", "evolutionary_linear_3") + ".kl_divergence"),
        # search_summary.txt (the generated_mc grid) and search_bigbench_summary.txt
        F(r"`grid_smollm2_generated_mc\.json`, (31) strategies, 13 of them", SS, "{/grid: (\\d+) measured strategies/}"),
        F(r"31 strategies, (13) of them on its frontier", "grid_smollm2_generated_mc.json", "len({rows[*is_pareto=True]})"),
        F(r"planner reaches (0\.928) of the grid's hypervolume at k = 3", SS, "{/as_measured:.*?\\n3 +([\\d.]+)/}"),
        F(r"hypervolume at k = 3 and (0\.952) at k = 12", SS, "{/as_measured:.*?\\n12 +([\\d.]+)/}"),
        F(r"TPE ends at (0\.940), random", SS, "{/as_measured:.*?\\n12 +[\\d.]+ +([\\d.]+)/}"),
        F(r"random at (0\.906) \(grid\)", SS, "{/as_measured:.*?\\n12 +[\\d.]+ +[\\d.]+ +([\\d.]+)/}"),
        F(r"/ (0\.854)\s+\(shuffled\) by k = 12", SS, "{/shuffled:.*?\\n12 +[\\d.]+ +[\\d.]+ +([\\d.]+)/}"),
        F(r"needs all (12) episodes to pass 0\.95", SS, "{/planner >= 0.95 at k = (\\d+)/}"),
        F(r"it reached (1\.000) at k = 8", "search_bigbench_summary.txt", "{/as_measured:.*?\\n8 +([\\d.]+)/}"),
        F(r"it reached 1\.000 at k = (8)", "search_bigbench_summary.txt", "{/planner >= 0.95 at k = (\\d+)/}"),
        # search_llm_local_summary.txt
        F(r"late \((0\.869) at k = 8, 1\.000 from k = 9\)", "search_llm_local_summary.txt", "{/as_measured:.*?\\n8 +[\\d.]+ +[\\d.]+ +([\\d.]+)/}"),
        F(r"late \(0\.869 at k = 8, (1\.000) from k = 9\)", "search_llm_local_summary.txt", "{/as_measured:.*?\\n9 +[\\d.]+ +[\\d.]+ +([\\d.]+)/}"),
    ]
    # mixed_precision.json: the two KL tables and the paired ratios
    for table, model, cells in [(MIX_SMOL, "smollm2", MIX_SMOL_CELLS), (MIX_GEMMA, "gemma3-270m", MIX_GEMMA_CELLS)]:
        for bits, cols in cells.items():
            for c in cols:
                header, label = MIX_COLS[c]
                r = mp(model, label.format(b=bits))
                out += [T(table, bits, header, MPR, r + ".kl_divergence", 0), T(table, bits, header, MPR, r + ".kl_stderr", 1),
                        T(table, bits, header, MPR, r + ".perplexity", 2)]
            out.append(T(table, bits, "size GB", MPR, mp(model, MIX_COLS[cols[0]][1].format(b=bits)) + ".size_gb"))
    for bits, labels in PAIRED_CELLS.items():
        for header, label in zip(PAIRED_HEADERS, labels):
            if label:
                r = mp("smollm2", label) + ".kl_vs_uniform"
                out += [T(PAIRED_TABLE, bits, header, MPR, r + ".ratio", 0), T(PAIRED_TABLE, bits, header, MPR, r + ".ratio_low", 1),
                        T(PAIRED_TABLE, bits, header, MPR, r + ".ratio_high", 2)]
    out += [
        F(r"baseline perplexity (13\.33)\)", MPR, "{" + mp("smollm2", "uniform_w8") + ".perplexity} / {" + mp("smollm2", "uniform_w8") + ".ppl_ratio}"),
        F(r"SmolLM2: (35) % lower KL at 4 bits", MPR, "100 * (1 - {" + mp("smollm2", "knapsack_linear_4") + ".kl_divergence} / {" + mp("smollm2", "uniform_w4") + ".kl_divergence})"),
        F(r"lower KL at 4 bits, (54) % at 5", MPR, "100 * (1 - {" + mp("smollm2", "knapsack_linear_5") + ".kl_divergence} / {" + mp("smollm2", "uniform_w5") + ".kl_divergence})"),
        F(r"54 % at 5, (43) % at 6", MPR, "100 * (1 - {" + mp("smollm2", "knapsack_linear_6") + ".kl_divergence} / {" + mp("smollm2", "uniform_w6") + ".kl_divergence})"),
        F(r"ratios are not paired: (0\.685) \(evolution\)", MPR, "{" + mp("gemma3-270m", "evolutionary_linear_3") + ".kl_divergence} / {" + mp("gemma3-270m", "uniform_w3") + ".kl_divergence}"),
        F(r"and (0\.699) \(knapsack\) at 3 bits", MPR, "{" + mp("gemma3-270m", "knapsack_linear_3") + ".kl_divergence} / {" + mp("gemma3-270m", "uniform_w3") + ".kl_divergence}"),
        F(r"Gemma: the knapsack is (30) % lower", MPR, "100 * (1 - {" + mp("gemma3-270m", "knapsack_linear_3") + ".kl_divergence} / {" + mp("gemma3-270m", "uniform_w3") + ".kl_divergence})"),
        F(r"and the evolution (31\.5) % \(2\.101 against 3\.067", MPR, "100 * (1 - {" + mp("gemma3-270m", "evolutionary_linear_3") + ".kl_divergence} / {" + mp("gemma3-270m", "uniform_w3") + ".kl_divergence})"),
        F(r"SmolLM2: the knapsack is (14) % lower", MPR, "100 * (1 - {" + mp("smollm2", "knapsack_linear_3") + ".kl_divergence} / {" + mp("smollm2", "uniform_w3") + ".kl_divergence})"),
        F(r"the evolution \*\*([\d.]+) %\*\* \(1\.283", MPR, "100 * (1 - {" + mp("smollm2", "evolutionary_linear_3") + ".kl_divergence} / {" + mp("smollm2", "uniform_w3") + ".kl_divergence})"),
        F(r"\(1\.283 against (1\.906); perplexity 53", MPR, mp("smollm2", "uniform_w3") + ".kl_divergence"),
        F(r"the evolution's KL is (0\.674) of uniform's", MPR, mp("smollm2", "evolutionary_linear_3") + ".kl_vs_uniform.ratio"),
        F(r"95 % interval (0\.642)-0\.706: certainly", MPR, mp("smollm2", "evolutionary_linear_3") + ".kl_vs_uniform.ratio_low"),
        F(r"95 % interval 0\.642-(0\.706): certainly", MPR, mp("smollm2", "evolutionary_linear_3") + ".kl_vs_uniform.ratio_high"),
        F(r"interval's upper end reaches (29\.4) %", MPR, "100 * (1 - {" + mp("smollm2", "evolutionary_linear_3") + ".kl_vs_uniform.ratio_high})"),
        F(r"w2, is catastrophic in every layer \(KL (11\.5) uniform\)", MPR, mp("smollm2", "uniform_w2") + ".kl_divergence"),
        F(r"ends worse than its knapsack start on held-out text \((0\.243) against 0\.212\)", MPR, mp("gemma3-270m", "evolutionary_linear_4.25") + ".kl_divergence"),
        F(r"on held-out text \(0\.243 against (0\.212)\)", MPR, mp("gemma3-270m", "knapsack_linear_4.25") + ".kl_divergence"),
    ]
    # mixed_llama_cpp.json
    for label in ML_ROWS:
        r = ml(label)
        out += [
            T(ML_TABLE, label, "avg bits", ML, r + ".avg_bits"),
            T(ML_TABLE, label, "KL (ppl ratio)", ML, r + ".kl_divergence", 0),
            T(ML_TABLE, label, "KL (ppl ratio)", ML, r + ".kl_stderr", 1),
            T(ML_TABLE, label, "KL (ppl ratio)", ML, r + ".ppl_ratio", 2),
            T(ML_TABLE, label, "ms/token, median [rounds]", ML, r + ".decode_ms_per_token", 0),
            T(ML_TABLE, label, "ms/token, median [rounds]", ML, "min({" + r + ".decode_ms_round_medians})", 1),
            T(ML_TABLE, label, "ms/token, median [rounds]", ML, "max({" + r + ".decode_ms_round_medians})", 2),
            T(ML_TABLE, label, "peak GB", ML, r + ".peak_memory_gb"),
            T(ML_TABLE, label, "GGUF GB", ML, r + ".gguf_size_gb"),
        ]
    out += [
        F(r"uniform Q8_0 reads (0\.0032) here against 0\.0014 in PyTorch", ML, ml("uniform_w8") + ".kl_divergence"),
        F(r"uniform Q8_0 reads 0\.0032 here against (0\.0014) in PyTorch", MPR, mp("smollm2", "uniform_w8") + ".kl_divergence"),
        F(r"halves Q5_0's KL at the same file size\*\* \((0\.0585) against", ML, ml("knapsack_458_5") + ".kl_divergence"),
        F(r"\(0\.0585 against (0\.1134), 0\.131 GB", ML, ml("uniform_w5") + ".kl_divergence"),
        F(r"0\.1134, (0\.131) GB\s+both\)", ML, ml("knapsack_458_5") + ".gguf_size_gb"),
        F(r"inside this machine's noise \((8\.48) against 8\.41 ms/token\)", ML, ml("knapsack_458_5") + ".decode_ms_per_token"),
        F(r"\(8\.48 against (8\.41) ms/token\)", ML, ml("uniform_w5") + ".decode_ms_per_token"),
        F(r"matches Q5_0's quality \((0\.112) against 0\.113\)", ML, ml("knapsack_458_4.5") + ".kl_divergence"),
        F(r"\(0\.112 against (0\.113)\) in a 5 % smaller", ML, ml("uniform_w5") + ".kl_divergence"),
        F(r"in a (5) % smaller file", ML, "100 * (1 - {" + ml("knapsack_458_4.5") + ".gguf_size_gb} / {" + ml("uniform_w5") + ".gguf_size_gb})"),
        F(r"They win only on file\s+size \((0\.144) and 0\.158 against 0\.171 GB\)", ML, ml("knapsack_458_6") + ".gguf_size_gb"),
        F(r"size \(0\.144 and (0\.158) against 0\.171 GB\)", ML, ml("knapsack_458_7") + ".gguf_size_gb"),
        F(r"size \(0\.144 and 0\.158 against (0\.171) GB\)", ML, ml("uniform_w8") + ".gguf_size_gb"),
    ]
    return out


def _mixed_gptq() -> list:
    """The GPTQ-level mixed-precision table (issue 26) and its bullets: mixed_precision.json, search files."""
    table = r"^\| model \| avg bits \| GPTQ uniform \|"
    out = []
    for model, name in (("SmolLM2-135M", "smollm2"), ("Gemma 3 270M", "gemma3-270m")):
        for bits in ("3", "4"):
            row = (model, bits)
            out += [T(table, row, "GPTQ uniform", MP, mp(name, f"uniform_w{bits}") + ".kl_divergence"),
                    T(table, row, "AutoRound uniform", MP, mp(name, f"uniform_autoround_w{bits}") + ".kl_divergence"),
                    T(table, row, "knapsack", MP, mp(name, f"knapsack_linear_{bits}") + ".kl_divergence"),
                    T(table, row, "size GB", MP, mp(name, f"knapsack_linear_{bits}") + ".size_gb")]
            if (name, bits) != ("smollm2", "4"):
                out.append(T(table, row, "evolution", MP, mp(name, f"evolutionary_linear_{bits}") + ".kl_divergence"))
    best = {("SmolLM2-135M", "3"): ("smollm2", "evolutionary_linear_3"), ("SmolLM2-135M", "4"): ("smollm2", "knapsack_linear_4"),
            ("Gemma 3 270M", "3"): ("gemma3-270m", "evolutionary_linear_3"), ("Gemma 3 270M", "4"): ("gemma3-270m", "knapsack_linear_4")}
    for row, (name, label) in best.items():
        out.append(T(table, row, "best mixed / best uniform", MP, mp(name, label) + ".kl_vs_best_uniform.ratio"))
        if name == "gemma3-270m":
            out += [T(table, row, "best mixed / best uniform", MP, mp(name, label) + ".kl_vs_best_uniform.low", 1),
                    T(table, row, "best mixed / best uniform", MP, mp(name, label) + ".kl_vs_best_uniform.high", 2)]
    row = ("Gemma 3 270M, second search", "3")
    g2 = "gemma3-270m.search2"
    out += [T(table, row, "GPTQ uniform", MP, mp(g2, "uniform_w3") + ".kl_divergence"),
            T(table, row, "AutoRound uniform", MP, mp(g2, "uniform_autoround_w3") + ".kl_divergence"),
            T(table, row, "evolution", MP, mp(g2, "evolutionary_linear_3") + ".kl_divergence"),
            T(table, row, "size GB", MP, mp(g2, "evolutionary_linear_3") + ".size_gb"),
            T(table, row, "best mixed / best uniform", MP, mp(g2, "evolutionary_linear_3") + ".kl_vs_best_uniform.ratio"),
            T(table, row, "best mixed / best uniform", MP, mp(g2, "evolutionary_linear_3") + ".kl_vs_best_uniform.low", 1),
            T(table, row, "best mixed / best uniform", MP, mp(g2, "evolutionary_linear_3") + ".kl_vs_best_uniform.high", 2)]
    ar, ars = "smollm2.autoround", "mixed_precision_search.smollm2.autoround.linear.json"   # third round
    for bits in ("3", "4"):
        row = ("SmolLM2-135M, AutoRound levels", bits)
        evo = mp(ar, f"evolutionary_linear_{bits}")
        out += [T(table, row, "GPTQ uniform", MP, mp(ar, f"uniform_gptq_w{bits}") + ".kl_divergence"),
                T(table, row, "AutoRound uniform", MP, mp(ar, f"uniform_w{bits}") + ".kl_divergence"),
                T(table, row, "evolution", MP, evo + ".kl_divergence"),
                T(table, row, "size GB", MP, evo + ".size_gb"),
                T(table, row, "best mixed / best uniform", MP, evo + ".kl_vs_best_uniform.ratio"),
                T(table, row, "best mixed / best uniform", MP, evo + ".kl_vs_best_uniform.low", 1),
                T(table, row, "best mixed / best uniform", MP, evo + ".kl_vs_best_uniform.high", 2)]
    out += [
        F(r"from NSGA-II's (0\.254) to 0\.252", ars, "budget_evolution.per_budget.3.start_kl"),
        F(r"from NSGA-II's 0\.254 to (0\.252)", ars, "budget_evolution.per_budget.3.kl"),
        F(r"reads \*\*(0\.350) held out", MP, mp(ar, "evolutionary_linear_3") + ".kl_divergence"),
        F(r"held out, (1\.121) \[1\.086", MP, mp(ar, "evolutionary_linear_3") + ".kl_vs_best_uniform.ratio"),
        F(r"held out, 1\.121 \[(1\.086), 1\.157\]", MP, mp(ar, "evolutionary_linear_3") + ".kl_vs_best_uniform.low"),
        F(r"held out, 1\.121 \[1\.086, (1\.157)\]", MP, mp(ar, "evolutionary_linear_3") + ".kl_vs_best_uniform.high"),
        F(r"uniform AutoRound W3 \((0\.311)\): worse", MP, mp(ar, "uniform_w3") + ".kl_divergence"),
        F(r"W4, (0\.906) \[0\.876, 0\.936\]: better", MP, mp(ar, "evolutionary_linear_4") + ".kl_vs_best_uniform.ratio"),
        F(r"W4, 0\.906 \[(0\.876), 0\.936\]: better", MP, mp(ar, "evolutionary_linear_4") + ".kl_vs_best_uniform.low"),
        F(r"W4, 0\.906 \[0\.876, (0\.936)\]: better", MP, mp(ar, "evolutionary_linear_4") + ".kl_vs_best_uniform.high"),
        F(r"settings as the first round \((40) generations", ars, "budget_evolution.per_budget.3.generations"),
        F(r"\(all (210) linears at w3\)", ars, "budget_evolution.per_budget.3.start_level_counts.w3"),
        F(r"evolution moved only (6) of them", ars,
          "{budget_evolution.per_budget.3.level_counts.w4} + {budget_evolution.per_budget.3.level_counts.w2}"),
        F(r"at 4 bits\s+(8) of 210 moved", ars,
          "{budget_evolution.per_budget.4.level_counts.w5} + {budget_evolution.per_budget.4.level_counts.w3}"),
        F(r"at 4 bits\s+8 of (210) moved", ars, "budget_evolution.per_budget.4.start_level_counts.w4"),
        F(r"\((204) at w3, 4 at w4, 2 at w2", ars, "budget_evolution.per_budget.3.level_counts.w3"),
        F(r"\(204 at w3, (4) at w4, 2 at w2", ars, "budget_evolution.per_budget.3.level_counts.w4"),
        F(r"\(204 at w3, 4 at w4, (2) at w2", ars, "budget_evolution.per_budget.3.level_counts.w2"),
        F(r"for (0\.9) % lower calibration KL", ars,
          "100 * (1 - {budget_evolution.per_budget.3.kl} / {budget_evolution.per_budget.3.start_kl})"),
        F(r"for 8 % \((0\.099) -> 0\.091\)", ars, "budget_evolution.per_budget.4.start_kl"),
        F(r"for 8 % \(0\.099 -> (0\.091)\)", ars, "budget_evolution.per_budget.4.kl"),
        F(r"for (8) % \(0\.099", ars,
          "100 * (1 - {budget_evolution.per_budget.4.kl} / {budget_evolution.per_budget.4.start_kl})"),
    ]
    g2s = "mixed_precision_search.gemma3-270m.search2.gptq.linear.json"
    out += [
        F(r"knapsack's (0\.519) to 0\.486", g2s, "budget_evolution.per_budget.3.start_kl"),
        F(r"knapsack's 0\.519 to (0\.486)", g2s, "budget_evolution.per_budget.3.kl"),
        F(r"settings fixed before it ran: (150) generations", g2s, "budget_evolution.per_budget.3.generations"),
        F(r"NSGA-II with (96)\s+trials", g2s, "evolutionary.trials"),
        F(r"allocation reads \*\*(0\.515), 0\.758", MP, mp(g2, "evolutionary_linear_3") + ".kl_divergence"),
        F(r"allocation reads \*\*0\.515, (0\.758) \[", MP, mp(g2, "evolutionary_linear_3") + ".kl_vs_best_uniform.ratio"),
        F(r"0\.758 \[(0\.737), 0\.779\] of uniform GPTQ", MP, mp(g2, "evolutionary_linear_3") + ".kl_vs_best_uniform.low"),
        F(r"0\.758 \[0\.737, (0\.779)\] of uniform GPTQ", MP, mp(g2, "evolutionary_linear_3") + ".kl_vs_best_uniform.high"),
        F(r"W3 itself read (0\.679) here", MP, mp(g2, "uniform_w3") + ".kl_divergence"),
        F(r"here and (0\.653) in the first run", MP, mp("gemma3-270m", "uniform_w3") + ".kl_divergence"),
        F(r"the new allocation is (0\.789), still", MP, "{" + mp(g2, "evolutionary_linear_3") + ".kl_divergence} / {"
          + mp("gemma3-270m", "uniform_w3") + ".kl_divergence}"),
    ]
    sm = "mixed_precision_search.smollm2.gptq.linear.json"
    gm = "mixed_precision_search.gemma3-270m.gptq.linear.json"
    out += [
        F(r"Gemma (0\.657), paired interval", MP, mp("gemma3-270m", "knapsack_linear_4") + ".kl_vs_best_uniform.ratio"),
        F(r"paired interval\s+\[(0\.633), 0\.680\]; SmolLM2", MP, mp("gemma3-270m", "knapsack_linear_4") + ".kl_vs_best_uniform.low"),
        F(r"paired interval\s+\[0\.633, (0\.680)\]; SmolLM2", MP, mp("gemma3-270m", "knapsack_linear_4") + ".kl_vs_best_uniform.high"),
        F(r"SmolLM2 (0\.76) of AutoRound W4", MP, mp("smollm2", "knapsack_linear_4") + ".kl_vs_best_uniform.ratio"),
        F(r"evolution reaches (0\.814)\s+\[", MP, mp("gemma3-270m", "evolutionary_linear_3") + ".kl_vs_best_uniform.ratio"),
        F(r"reaches 0\.814\s+\[(0\.789), 0\.839\]", MP, mp("gemma3-270m", "evolutionary_linear_3") + ".kl_vs_best_uniform.low"),
        F(r"reaches 0\.814\s+\[0\.789, (0\.839)\]", MP, mp("gemma3-270m", "evolutionary_linear_3") + ".kl_vs_best_uniform.high"),
        F(r"\(KL (0\.304), 3\.8x below uniform GPTQ W3\)", MP, mp("smollm2", "uniform_autoround_w3") + ".kl_divergence"),
        F(r"\(KL 0\.304, (3\.8)x below uniform GPTQ W3\)", MP, "{" + mp("smollm2", "uniform_w3") + ".kl_divergence} / {"
          + mp("smollm2", "uniform_autoround_w3") + ".kl_divergence}"),
        F(r"the best GPTQ-level allocation is (1\.41)x", MP, mp("smollm2", "evolutionary_linear_3") + ".kl_vs_best_uniform.ratio"),
        F(r"worse than GPTQ at both widths \((0\.805) and", MP, mp("gemma3-270m", "uniform_autoround_w3") + ".kl_divergence"),
        F(r"at both widths \(0\.805 and (0\.305)\)", MP, mp("gemma3-270m", "uniform_autoround_w4") + ".kl_divergence"),
        F(r"calibration KL by (3\.4) %", sm, "100 * (1 - {budget_evolution.per_budget.3.kl} / {budget_evolution.per_budget.3.start_kl})"),
        F(r"SmolLM2 3 bits: (0\.364) -> 0\.352", sm, "budget_evolution.per_budget.3.start_kl"),
        F(r"SmolLM2 3 bits: 0\.364 -> (0\.352)", sm, "budget_evolution.per_budget.3.kl"),
        F(r"to (6\.6) %\s+\(Gemma 4 bits", gm, "100 * (1 - {budget_evolution.per_budget.4.kl} / {budget_evolution.per_budget.4.start_kl})"),
        F(r"Gemma 4 bits: (0\.082) -> 0\.076", gm, "budget_evolution.per_budget.4.start_kl"),
        F(r"Gemma 4 bits: 0\.082 -> (0\.076)", gm, "budget_evolution.per_budget.4.kl"),
        F(r"worse at Gemma's 4 bits \((0\.108) against", MP, mp("gemma3-270m", "evolutionary_linear_4") + ".kl_divergence"),
        F(r"worse at Gemma's 4 bits \(0\.108 against (0\.096)\)", MP, mp("gemma3-270m", "knapsack_linear_4") + ".kl_divergence"),
        F(r"then (40) generations of the", sm, "budget_evolution.per_budget.3.generations"),
        F(r"held-out prose \((8,176) positions", MP, mp("smollm2", "uniform_w4") + ".eval_tokens"),
    ]
    return out


FIGURES: list = (_mixed_gptq() + _first_command() + _runtimes_cpu() + _llama_cpp_builds() + _runtimes_gpu() + _gpu_end_to_end() + _generated_and_eval()
                 + _serving_other() + _celery_steps()
                 + _quality_stale())


# ------------------------------------------------------------------------------------------------ reading files
_SEG = re.compile(r"\[([^\]]*)\]|([^.\[]+)")


def _matches(item, cond: str) -> bool:
    for part in cond.split(","):
        neg = "!=" in part
        key, _, want = part.partition("!=" if neg else "=")
        if not isinstance(item, dict) or key not in item:
            return False
        got = item[key]
        hit = str(got) in want.split("|")
        if hit == neg:
            return False
    return True


def _resolve(obj, path: str):
    """a.b[3][key=v][*cond].c; a key ending in '*' takes every key with that prefix (a list)."""
    segs = [(m.group(1), m.group(2)) for m in _SEG.finditer(path)]
    return _walk(obj, segs, path)


def _walk(obj, segs, path):
    if not segs:
        return obj
    (sel, key), rest = segs[0], segs[1:]
    if key is not None:
        if key.endswith("*") and isinstance(obj, dict):
            vals = [v for k, v in obj.items() if k.startswith(key[:-1])]
            return [_walk(v, rest, path) for v in vals]
        if not isinstance(obj, dict) or key not in obj:
            raise KeyError(f"{key!r} not found (path {path})")
        return _walk(obj[key], rest, path)
    if not isinstance(obj, list):
        raise KeyError(f"[{sel}] on a non-list (path {path})")
    if sel.lstrip("-").isdigit():
        return _walk(obj[int(sel)], rest, path)
    if sel.startswith("*"):
        out = []
        for item in obj:
            if sel[1:] and not _matches(item, sel[1:]):
                continue
            try:
                out.append(_walk(item, rest, path))
            except (KeyError, IndexError, TypeError):
                continue
        return out
    found = [item for item in obj if _matches(item, sel)]
    if len(found) != 1:
        raise KeyError(f"[{sel}] matches {len(found)} elements, not 1 (path {path})")
    return _walk(found[0], rest, path)


_CACHE: dict = {}


def _load(name: str):
    if name not in _CACHE:
        text = (RESULTS / name).read_text()
        _CACHE[name] = text if name.endswith(".txt") else json.loads(text)
    return _CACHE[name]


_ALLOWED = {"min": min, "max": max, "sum": sum, "len": len, "abs": abs}


def file_value(fig) -> float:
    data = _load(fig.file)
    expr = fig.value
    if "{" not in expr:
        expr = "{" + expr + "}"
    values = []

    def sub(m):
        inner = m.group(1)
        if inner.startswith("/") and inner.endswith("/"):
            hit = re.search(inner[1:-1], data, re.S)
            if not hit:
                raise KeyError(f"pattern {inner} not found")
            v = float(hit.group(1))
        else:
            v = _resolve(data, inner)
        values.append(v)
        return f"_v[{len(values) - 1}]"

    code = re.sub(r"\{((?:/.*?/)|[^{}]+)\}", sub, expr)
    if re.search(r"[^\s\w\[\]().,*/+\-]", code) or re.search(r"\b(?!_v\b|min\b|max\b|sum\b|len\b|abs\b)[A-Za-z_]\w*",
                                                             code):
        raise ValueError(f"expression not allowed: {fig.value}")
    v = eval(code, {"__builtins__": {}}, {"_v": values, **_ALLOWED})   # noqa: S307 (names checked above)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"value is {v!r}, not a number")
    return float(v)


# ------------------------------------------------------------------------------------------------ reading README
def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


_ANY_NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?"


def _any_figure(snippet: str) -> str:
    """The snippet with its group widened to any number, so a changed figure is found, and reported as changed."""
    i = 0
    while i < len(snippet):
        if snippet[i] == "\\":
            i += 2
            continue
        if snippet[i] == "(" and not snippet.startswith("(?", i):
            depth, j = 1, i + 1
            while depth:
                if snippet[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(snippet[j], 0)
                j += 1
            return snippet[:i] + "(" + _ANY_NUMBER + ")" + snippet[j:]
        i += 1
    raise ValueError(f"snippet /{snippet}/ has no group")


def readme_text(fig, readme: str) -> tuple[str, str]:
    """The README text that holds the figure: the snippet's match, or the table cell."""
    if isinstance(fig, F):
        hits = list(re.finditer(_any_figure(fig.snippet), readme, re.M))
        if len(hits) != 1:
            raise LookupError(f"snippet /{fig.snippet}/ matches README {len(hits)} times, not once")
        return hits[0].group(1), hits[0].group(0)
    heads = list(re.finditer(fig.table, readme, re.M))
    if len(heads) != 1:
        raise LookupError(f"table /{fig.table}/ matches README {len(heads)} times, not once")
    start = readme.rfind("\n", 0, heads[0].start()) + 1
    lines = readme[start:].split("\n")
    while lines and not lines[0].lstrip().startswith("|"):       # an anchor above the table: its first line
        lines.pop(0)
    header = _cells(lines[0])
    if fig.column not in header:
        raise LookupError(f"table /{fig.table}/ has no column {fig.column!r}")
    col = header.index(fig.column)
    row = fig.row if isinstance(fig.row, tuple) else (fig.row,)
    for line in lines[2:]:
        if not line.strip().startswith("|"):
            break
        cells = _cells(line)
        if tuple(cells[:len(row)]) == row:
            cell = cells[col]
            nums = NUMBER.findall(cell.replace("**", ""))
            if len(nums) <= fig.k:
                raise LookupError(f"cell {cell!r} (row {row}, column {fig.column!r}) has no number #{fig.k}")
            return nums[fig.k], line.strip()
        continue
    raise LookupError(f"table /{fig.table}/ has no row {row}")


def _parse(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-"))


def agrees(shown: str, value: float) -> bool:
    """The README's figure is the file's value at the precision the README shows."""
    shown = shown.replace(",", "").replace("−", "-")
    x = float(shown)
    if "e" in shown.lower():
        mant, exp = shown.lower().split("e")
        digits = len(mant.split(".")[1]) if "." in mant else 0
        half = 0.5 * 10 ** (int(exp) - digits)
    else:
        digits = len(shown.split(".")[1]) if "." in shown else 0
        half = 0.5 * 10 ** (-digits)
    return abs(x - value) <= half * (1 + 1e-9) + 1e-12


def describe(fig) -> str:
    if isinstance(fig, F):
        return f"/{fig.snippet}/"
    return f"table /{fig.table}/ row {fig.row!r} column {fig.column!r}" + (f" number #{fig.k}" if fig.k else "")


def check(readme_path: Path) -> list[str]:
    readme = readme_path.read_text()
    problems = []
    for fig in FIGURES:
        try:
            shown, context = readme_text(fig, readme)
        except LookupError as e:
            problems.append(f"README: not found: {e}\n  file: benchmarks/results/{fig.file}  path: {fig.value}")
            continue
        try:
            value = file_value(fig)
        except Exception as e:          # noqa: BLE001 (any failure to read the file is a disagreement)
            problems.append(f"README: {context!r} (figure {shown})\n  file: benchmarks/results/{fig.file}  path: "
                            f"{fig.value}  cannot be read: {e}")
            continue
        if not agrees(shown, value):
            problems.append(f"README: {context!r} (figure {shown})\n  file: benchmarks/results/{fig.file}  path: "
                            f"{fig.value}  file's value: {value:.6g}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if any README figure disagrees with its file")
    ap.add_argument("--list", action="store_true", help="print every registered figure with its source")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    if args.list:
        readme = args.readme.read_text()
        for i, fig in enumerate(FIGURES, 1):
            try:
                shown = readme_text(fig, readme)[0]
            except LookupError:
                shown = "(not found)"
            try:
                value = f"{file_value(fig):.6g}"
            except Exception as e:      # noqa: BLE001
                value = f"unreadable: {e}"
            print(f"{i:4d}  README {shown:>12}  file {value:>12}  {fig.file}: {fig.value}\n      {describe(fig)}")
        if not args.check:
            return 0
    problems = check(args.readme)
    for p in problems:
        print(p)
    print(f"{len(FIGURES)} README figures registered; {len(problems)} disagree with their results files.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
