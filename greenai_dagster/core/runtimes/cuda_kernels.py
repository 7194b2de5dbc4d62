"""Triton kernels of the CUDA runtimes' batch-1 decode step (and the low-bit prefill helpers).

At batch 1 a decode step reads every weight once and does two flops per weight, so it is bound by
memory bandwidth; what decides its speed is how close each matrix-vector product comes to the copy
bandwidth and how few other kernels (with their launch gaps) the step has. These kernels make the
whole step a short list of launches, captured as one CUDA graph (`cuda_static.StaticDecoder`):

- `gemv_wq`: y = W x for weights packed as unsigned 4- or 8-bit integers in int32 words (value j of a
  word at bits [bits*j, bits*(j+1)), k = word * (32 / bits) + j), with group scales stored group-major
  ([K / group, N], so each step's scales are one coalesced read) and the dequantization
  w = (u - offset) * scale, offset = 2^(bits-1) (+ the zero point where there is one). The integers
  become floats without an int-to-float conversion: OR-ing a masked field into the mantissa of 2^23
  gives 2^23 + u * 16^p exactly (p: the field's nibble position), one logic op and one float add; the
  16^-p goes into x, once per tile. The offset and scale are applied once per group and row, through
  the group sum of x. Optional bias and residual are added in the epilogue.
- `gemv_fp8`: y = s_x s_w (q_x . W_fp8): FP8 e4m3 weights with per-channel scales; x is quantized to
  e4m3 per token inside the kernel (its absolute maximum in a first pass), the function that
  `torch._scaled_mm` computes in prefill.
- `gemv_bf16`: y = W x for bf16 weights (the baseline and the lm_head).
- The GEMVs read their input in one of three ways: as it is; RMS-normalised (`norm` = the norm's weight
  and eps: every program computes the row's 1/RMS in a prologue from L2, then normalises each element as
  it loads it, rounded as transformers rounds); or as silu(gate) * up of a fused gate_up output
  (`silu`). So the step needs no norm or SiLU launches of its own: on an H100 those were 97 launches and
  0.18 ms of an 8B step (2026-12-07 profile). Fused, every program redoes the transform for its input
  row, which costs ALU: the tuner times each tile both fused and after a separate `rmsnorm` / `silu_mul`
  launch and keeps the faster (both give the same bits). Those two kernels are also the reference the
  fused inputs are tested against.
- `decode_attention`: one token's attention, split over the cache in blocks of 64 positions (one
  program per query head and block, flash-decoding style; blocks past the current position read
  nothing), then one combining launch: rotary embedding of q and k from the fused qkv output, the new
  k and v written into the static cache, grouped-query heads sharing a KV head.
- `dequantize_wq` (packed integers -> bf16 matrix), `w4_matmul` (a bf16 x int4 matmul that dequantizes
  tiles in registers, for prefill) and `quantize_rows_fp8` (per-token e4m3 for `_scaled_mm` in prefill).

Tile shapes are chosen per matrix shape on first use by timing the candidates (each replayed in a CUDA
graph after an L2 flush, as the step runs it; median), and the choice is kept on disk for later processes
(`tuning_cache`); `tuning_report()` says what was chosen. Under
TRITON_INTERPRET=1 (CPU tests of the arithmetic) the first candidate is used without timing.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from pathlib import Path

import torch
import triton
import triton.language as tl

from greenai_dagster.core.runtimes import tuning_cache

MAGIC: tl.constexpr = tl.constexpr(0x4B000000)   # the bit pattern of 2^23 in float32
MAGIC_F: tl.constexpr = tl.constexpr(8388608.0)
FP8_MAX = 448.0
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


# ----------------------------------------------------------------------------------------------
# tuning: per (kernel, shape) the fastest of a few tile configurations, timed on first use
# ----------------------------------------------------------------------------------------------

_TUNED: dict[tuple, dict] = {}
_REPORT: dict[tuple, dict] = {}
_FLUSH: dict[str, torch.Tensor] = {}
_FLUSH_GRAPH: dict[str, torch.cuda.CUDAGraph] = {}   # the L2 flush alone, captured once per device


def _flush_l2(device) -> None:
    buf = _FLUSH.get(str(device))
    if buf is None:
        buf = _FLUSH[str(device)] = torch.empty(96 * 2**20, dtype=torch.int8, device=device)
    buf.zero_()


def _event_median_ms(run, repeats: int, before=None) -> float:
    """Median time of `run()` between CUDA events over `repeats` runs, after two untimed warm-up runs;
    `before()` (an L2 flush) runs ahead of each, outside the events."""
    times = []
    for i in range(repeats + 2):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        if i >= 2:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def _eager_time_ms(fn, device, repeats: int = 7) -> float:
    """Median of `fn` between CUDA events, L2 flushed before each run (the host's launch overhead included)."""
    return _event_median_ms(fn, repeats, before=lambda: _flush_l2(device))


def _captured(fn) -> torch.cuda.CUDAGraph:
    """`fn` as a CUDA graph (run once uncaptured first, on a side stream, as capture requires)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        fn()
    return graph


def _time_ms(fn, device, repeats: int = 7) -> float:
    """Time of `fn` on a cold L2 as the decode step's CUDA graph runs it: [L2 flush, fn] and [L2 flush]
    are captured as graphs and replayed, and the difference is fn's time. Timed eagerly instead, every
    launch carried the host's launch overhead, which the step's graph does not pay: on an H100 (2026-12-07)
    that made a separate rmsnorm launch look 20-30 us dearer than it is, the tuner fused every norm into the
    4-bit GEMV, and the W4 step got 0.3 ms slower. Where capture fails, eager timing."""
    try:
        flush_and_fn = _captured(lambda: (_flush_l2(device), fn()))
        flush_only = _FLUSH_GRAPH.get(str(device))
        if flush_only is None:
            flush_only = _FLUSH_GRAPH[str(device)] = _captured(lambda: _flush_l2(device))
    except Exception:   # noqa: BLE001 - a launch that cannot be captured is still timed, eagerly
        return _eager_time_ms(fn, device, repeats)
    replays = 2 * repeats + 1   # a difference of two medians: more replays (each tens of microseconds)
    return max(_event_median_ms(flush_and_fn.replay, replays) - _event_median_ms(flush_only.replay, replays), 0.0)


_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]   # kernels as written now


def _pick(name: str, key: tuple, configs: list[dict], launch, device) -> dict:
    """The config `launch(config)` runs fastest with, for this key (timed once per chip and kernel source,
    the choice kept on disk by `tuning_cache`; the first config under the interpreter or when the caller
    is capturing a CUDA graph, where nothing may be timed)."""
    full = (name, *key)
    chosen = _TUNED.get(full)
    if chosen is not None:
        return chosen
    if INTERPRET or not torch.cuda.is_available() or torch.cuda.is_current_stream_capturing():
        return configs[0]
    cache = tuning_cache.path()
    cache_key = tuning_cache.key(full, torch.cuda.get_device_name(device), triton.__version__, _SOURCE_HASH)
    stored = tuning_cache.load(cache).get(cache_key)
    if isinstance(stored, dict) and stored.get("config") in configs:
        _TUNED[full] = stored["config"]
        _REPORT[full] = {"best": stored["config"], "best_ms": stored.get("ms"), "tried": [], "refused": [],
                         "from": str(cache)}
        return stored["config"]
    results, errors = [], []
    for config in configs:
        try:
            launch(config)   # compile
            results.append((_time_ms(lambda: launch(config), device), config))
        except Exception as exc:   # noqa: BLE001 - a config the compiler or the chip refuses is skipped
            errors.append(f"{config}: {type(exc).__name__}: {str(exc)[:200]}")
    if not results:
        raise RuntimeError(f"no tile configuration of {name} ran for {key}: {errors[0]}")
    best_ms, best = min(results, key=lambda r: r[0])
    _TUNED[full] = best
    _REPORT[full] = {"best": best, "best_ms": round(best_ms, 5),
                     "tried": [(round(ms, 5), c) for ms, c in results], "refused": errors}
    tuning_cache.store(cache, cache_key, best, best_ms)
    return best


def tuning_report() -> list[dict]:
    """What `_pick` chose: one entry per (kernel, shape), with each candidate's median time."""
    return [{"kernel": k[0], "key": list(k[1:]), **v} for k, v in _REPORT.items()]


def _cfg(num_warps: int, num_stages: int, **meta) -> dict:
    return {"meta": meta, "num_warps": num_warps, "num_stages": num_stages}


Norm = tuple   # (weight [K] bf16, eps): an RMSNorm a GEMV applies to its input itself (one launch fewer)


def _check_input(x: torch.Tensor, k: int, norm: Norm | None, silu: bool) -> None:
    if norm is not None and silu:
        raise ValueError("a GEMV's input is either RMS-normalised or silu(gate) * up, not both")
    if x.numel() != (2 * k if silu else k) or not x.is_contiguous():
        raise ValueError(f"GEMV input of {x.numel()} elements for K = {k}{' (silu: 2K)' if silu else ''}")


# ----------------------------------------------------------------------------------------------
# packed integer weights
def _input_variants(configs: list[dict], norm: Norm | None, silu: bool) -> list[dict]:
    """The tile configs with the input transform fused, and the same tiles after a separate `rmsnorm` /
    `silu_mul` launch. Fused, every program redoes the transform for its whole input row: free where the
    GEMV waits on memory, not where it is short of ALU (the 4-bit kernel), so the timing decides."""
    if norm is None and not silu:
        return configs
    return configs + [{**c, "separate_input": True} for c in configs]


def _kernel_input(x: torch.Tensor, norm: Norm | None, silu: bool, config: dict) -> tuple:
    """(x, norm, silu) as the kernel gets them under `config`: as given, or transformed by its own launch."""
    if not config.get("separate_input"):
        return x, norm, silu
    return (rmsnorm(x, *norm) if norm is not None else silu_mul(x)), None, False


# ----------------------------------------------------------------------------------------------

def pack_unsigned(u: torch.Tensor, bits: int) -> torch.Tensor:
    """[N, K] integers in 0..2^bits-1 -> int32 [N, K * bits / 32], value j of a word at bits [bits*j, ...)."""
    n, k = u.shape
    per_word = 32 // bits
    if k % per_word:
        raise ValueError(f"K = {k} is not a multiple of {per_word}")
    words = u.to(torch.int64).view(n, k // per_word, per_word)
    shifts = torch.arange(per_word, device=u.device, dtype=torch.int64) * bits
    packed = (words << shifts).sum(-1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)
    return packed.to(torch.int32).contiguous()


def unpack_unsigned(packed: torch.Tensor, bits: int) -> torch.Tensor:
    per_word = 32 // bits
    shifts = torch.arange(per_word, device=packed.device, dtype=torch.int32) * bits
    values = (packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return values.reshape(packed.shape[0], -1)


def tile_k(group_size: int, bits: int) -> int:
    """K tile of the packed kernels: a power of two dividing the group (each tile in one group)."""
    cap = 256 if bits == 4 else 128
    tile = 1
    while tile * 2 <= cap and group_size % (tile * 2) == 0:
        tile *= 2
    return tile


@triton.jit
def _rms_factor(x_ptr, K, eps, NORM: tl.constexpr, BK: tl.constexpr):
    """1 / RMS(x) over K (a prologue every program runs: x is a few KB, read from L2); 1.0 without NORM."""
    if NORM:
        rk = tl.arange(0, BK)
        ss = tl.zeros([BK], dtype=tl.float32)
        for k0 in range(0, K, BK):
            x = tl.load(x_ptr + k0 + rk, mask=k0 + rk < K, other=0.0).to(tl.float32)
            ss += x * x
        r = tl.rsqrt(tl.sum(ss, axis=0) / K + eps)
    else:
        r = 1.0
    return r


@triton.jit
def _step_input(x_ptr, g_ptr, offs, K, r, NORM: tl.constexpr, SILU: tl.constexpr):
    """x[offs] as the linear reads it, rounded as the separate kernels round it (`rmsnorm`, `silu_mul`):
    the raw input; or RMS-normalised (x * r cast to bf16, times the norm's weight g, cast); or, for a
    fused gate_up output [2K], silu(gate) * up."""
    mask = offs < K
    if SILU:
        gate = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(x_ptr + K + offs, mask=mask, other=0.0).to(tl.float32)
        act = (gate / (1.0 + tl.exp(-gate))).to(tl.bfloat16).to(tl.float32)
        x = (act * up).to(tl.bfloat16).to(tl.float32)
    else:
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if NORM:
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            x = ((x * r).to(tl.bfloat16).to(tl.float32) * g).to(tl.bfloat16).to(tl.float32)
    return x


@triton.jit
def _offsets(o_ptr, index, mask, HAS_O: tl.constexpr, BITS: tl.constexpr):
    """The offset subtracted from each unsigned value: 2^(bits-1) plus the zero point where there is one
    (stored as one tensor, `offsets`), else the constant 2^(bits-1)."""
    if HAS_O:
        o = tl.load(o_ptr + index, mask=mask, other=0.0).to(tl.float32)
    else:
        o = 1 << (BITS - 1)
    return o


@triton.jit
def _gemv_wq_kernel(x_ptr, w_ptr, s_ptr, o_ptr, b_ptr, r_ptr, y_ptr, g_ptr, N, K, KP, eps,
                    G: tl.constexpr, BITS: tl.constexpr, HAS_O: tl.constexpr, HAS_B: tl.constexpr,
                    HAS_R: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_REDUCE: tl.constexpr = False,
                    NORM: tl.constexpr = False, SILU: tl.constexpr = False):
    VPW: tl.constexpr = 32 // BITS
    rms = _rms_factor(x_ptr, K, eps, NORM, 1024)
    BKP: tl.constexpr = BK // VPW
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    nmask = rn < N
    rc = tl.arange(0, BKP)
    w_rows = w_ptr + rn.to(tl.int64)[:, None] * KP + rc[None, :]
    if GROUP_REDUCE:   # products summed per group first: one scale (and offset) load per group and row
        NG: tl.constexpr = BK // G
        acc = tl.zeros([BN, NG], dtype=tl.float32)
    else:              # every word scaled by its own group's scale (a scale load per word)
        acc = tl.zeros([BN, BKP], dtype=tl.float32)
    for k0 in range(0, K, BK):
        w = tl.load(w_rows + k0 // VPW, mask=nmask[:, None], other=0)
        grp = (k0 + rc * VPW) // G          # a tile may span several groups: each column's own scale
        xb = k0 + rc * VPW
        if BITS == 4:
            x0 = _step_input(x_ptr, g_ptr, xb + 0, K, rms, NORM, SILU)
            x1 = _step_input(x_ptr, g_ptr, xb + 1, K, rms, NORM, SILU)
            x2 = _step_input(x_ptr, g_ptr, xb + 2, K, rms, NORM, SILU)
            x3 = _step_input(x_ptr, g_ptr, xb + 3, K, rms, NORM, SILU)
            x4 = _step_input(x_ptr, g_ptr, xb + 4, K, rms, NORM, SILU)
            x5 = _step_input(x_ptr, g_ptr, xb + 5, K, rms, NORM, SILU)
            x6 = _step_input(x_ptr, g_ptr, xb + 6, K, rms, NORM, SILU)
            x7 = _step_input(x_ptr, g_ptr, xb + 7, K, rms, NORM, SILU)
            xsum = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7))
            hi = w >> 20
            # field p of a word, OR-ed into 2^23's mantissa: 2^23 + u * 16^p exactly; minus 2^23, exact
            part = (((w & 0xF) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * x0[None, :]
            part += (((w & 0xF0) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x1 * 0.0625)[None, :]
            part += (((w & 0xF00) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x2 * 0.00390625)[None, :]
            part += (((w & 0xF000) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x3 * 0.000244140625)[None, :]
            part += (((w & 0xF0000) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * \
                (x4 * 0.0000152587890625)[None, :]
            part += (((hi & 0xF) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * x5[None, :]
            part += (((hi & 0xF0) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x6 * 0.0625)[None, :]
            part += (((hi & 0xF00) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x7 * 0.00390625)[None, :]
        else:
            x0 = _step_input(x_ptr, g_ptr, xb + 0, K, rms, NORM, SILU)
            x1 = _step_input(x_ptr, g_ptr, xb + 1, K, rms, NORM, SILU)
            x2 = _step_input(x_ptr, g_ptr, xb + 2, K, rms, NORM, SILU)
            x3 = _step_input(x_ptr, g_ptr, xb + 3, K, rms, NORM, SILU)
            xsum = (x0 + x1) + (x2 + x3)
            hi = w >> 16
            part = (((w & 0xFF) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * x0[None, :]
            part += (((w & 0xFF00) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x1 * 0.00390625)[None, :]
            part += (((hi & 0xFF) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * x2[None, :]
            part += (((hi & 0xFF00) | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F) * (x3 * 0.00390625)[None, :]
        if GROUP_REDUCE:
            part_g = tl.sum(tl.reshape(part, [BN, NG, BKP // NG]), axis=2)        # [BN, NG]
            xsum_g = tl.sum(tl.reshape(xsum, [NG, BKP // NG]), axis=1)       # [NG]
            gi = k0 // G + tl.arange(0, NG)
            s = tl.load(s_ptr + gi[None, :] * N + rn[:, None], mask=nmask[:, None], other=0.0).to(tl.float32)
            o = _offsets(o_ptr, gi[None, :] * N + rn[:, None], nmask[:, None], HAS_O, BITS)
            acc += s * (part_g - o * xsum_g[None, :])
        else:
            s = tl.load(s_ptr + grp[None, :] * N + rn[:, None], mask=nmask[:, None], other=0.0).to(tl.float32)
            o = _offsets(o_ptr, grp[None, :] * N + rn[:, None], nmask[:, None], HAS_O, BITS)
            acc += s * (part - o * xsum[None, :])
    y = tl.sum(acc, axis=1)
    if HAS_B:
        y += tl.load(b_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
    if HAS_R:
        y += tl.load(r_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
    tl.store(y_ptr + rn, y.to(tl.bfloat16), mask=nmask)


# K tiles of 256-1024 columns (several groups each): a 64-byte row slice per step (one group) left the
# kernel latency-bound at about 0.7 TB/s on an H100
WQ_CONFIGS = [_cfg(4, 3, BN=4, BK=1024), _cfg(4, 3, BN=8, BK=512), _cfg(4, 3, BN=8, BK=1024),
              _cfg(4, 3, BN=16, BK=512), _cfg(2, 4, BN=4, BK=512), _cfg(4, 4, BN=16, BK=256),
              _cfg(2, 4, BN=2, BK=1024), _cfg(2, 4, BN=8, BK=256)]
# the same tiles summing each group's products before scaling them (GROUP_REDUCE): a scale load per group and
# row instead of per word, at the price of a reshape-reduction in registers; the timing decides per shape
WQ_CONFIGS += [_cfg(4, 3, BN=4, BK=1024, GROUP_REDUCE=True), _cfg(4, 3, BN=8, BK=1024, GROUP_REDUCE=True),
               _cfg(4, 3, BN=8, BK=512, GROUP_REDUCE=True), _cfg(4, 3, BN=16, BK=512, GROUP_REDUCE=True),
               _cfg(8, 3, BN=16, BK=1024, GROUP_REDUCE=True), _cfg(2, 4, BN=4, BK=512, GROUP_REDUCE=True)]
# 2048-column tiles: more bytes in flight per program where the matrix is small (H100, 2026-12-07: the
# 1024-column tiles read the 4096x4096 o_proj at about 0.3 TB/s, latency-bound)
WQ_CONFIGS += [_cfg(4, 3, BN=2, BK=2048), _cfg(8, 3, BN=4, BK=2048), _cfg(4, 4, BN=4, BK=2048, GROUP_REDUCE=True),
               _cfg(8, 3, BN=8, BK=2048, GROUP_REDUCE=True), _cfg(4, 3, BN=2, BK=2048, GROUP_REDUCE=True)]
# several rows per thread: a thread's input values (loaded, scaled by 16^-p, normalised where fused) serve
# every row it holds, so the per-column work is shared where the 4-bit kernel is short of ALU
WQ_CONFIGS += [_cfg(4, 3, BN=16, BK=1024), _cfg(4, 3, BN=32, BK=512), _cfg(2, 3, BN=16, BK=512),
               _cfg(4, 3, BN=32, BK=512, GROUP_REDUCE=True)]


def gemv_wq(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor | None,
            group_size: int, bits: int, bias: torch.Tensor | None = None,
            residual: torch.Tensor | None = None, norm: Norm | None = None, silu: bool = False) -> torch.Tensor:
    """bf16 y [N] = dequantized(packed) [N, K] @ input(x) (+ bias) (+ residual); see the module docstring.
    input(x): x [K]; RMSNorm(x) with `norm` = (weight, eps); silu(gate) * up of x = gate_up [2K] with `silu`."""
    n, kp = packed.shape
    k = kp * 32 // bits
    _check_input(x, k, norm, silu)
    y = torch.empty(n, dtype=torch.bfloat16, device=x.device)
    configs = [c for c in WQ_CONFIGS if k % c["meta"]["BK"] == 0
               and not (c["meta"].get("GROUP_REDUCE") and c["meta"]["BK"] % group_size)]
    if not configs:   # K with a small power of two in it (e.g. 576): one group a step
        block_k = tile_k(group_size, bits)
        while k % block_k:
            block_k //= 2
        configs = [_cfg(1, 4, BN=8, BK=block_k), _cfg(2, 4, BN=16, BK=block_k), _cfg(4, 3, BN=32, BK=block_k),
                   _cfg(1, 4, BN=4, BK=block_k)]

    def launch(config):
        meta = config["meta"]
        xin, nrm, sl = _kernel_input(x, norm, silu, config)
        _gemv_wq_kernel[(triton.cdiv(n, meta["BN"]),)](
            xin, packed, scales, offsets if offsets is not None else scales, bias if bias is not None else y,
            residual if residual is not None else y, y, nrm[0] if nrm else y, n, k, kp,
            nrm[1] if nrm else 0.0, G=group_size, BITS=bits,
            HAS_O=offsets is not None, HAS_B=bias is not None, HAS_R=residual is not None,
            NORM=nrm is not None, SILU=sl, num_warps=config["num_warps"], num_stages=config["num_stages"], **meta)

    configs = _input_variants(configs, norm, silu)
    launch(_pick("gemv_wq", (n, k, group_size, bits, norm is not None, silu), configs, launch, x.device))
    return y


# ----------------------------------------------------------------------------------------------
# FP8 and bf16 weights
# ----------------------------------------------------------------------------------------------

@triton.jit
def _gemv_fp8_kernel(x_ptr, w_ptr, ws_ptr, b_ptr, r_ptr, y_ptr, g_ptr, N, K, eps, HAS_B: tl.constexpr,
                     HAS_R: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NORM: tl.constexpr = False,
                     SILU: tl.constexpr = False):
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    nmask = rn < N
    rk = tl.arange(0, BK)
    rms = _rms_factor(x_ptr, K, eps, NORM, BK)
    amax = tl.zeros([BK], dtype=tl.float32)
    for k0 in range(0, K, BK):
        x = _step_input(x_ptr, g_ptr, k0 + rk, K, rms, NORM, SILU)
        amax = tl.maximum(amax, tl.abs(x))
    x_scale = tl.maximum(tl.max(amax, axis=0), 1e-12) / 448.0
    w_rows = w_ptr + rn.to(tl.int64)[:, None] * K + rk[None, :]
    acc = tl.zeros([BN, BK], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kmask = k0 + rk < K
        w = tl.load(w_rows + k0, mask=nmask[:, None] & kmask[None, :], other=0.0).to(tl.float32)
        x = _step_input(x_ptr, g_ptr, k0 + rk, K, rms, NORM, SILU)
        xq = tl.clamp(x / x_scale, -448.0, 448.0).to(tl.float8e4nv).to(tl.float32)
        acc += w * xq[None, :]
    y = tl.sum(acc, axis=1) * x_scale * tl.load(ws_ptr + rn, mask=nmask, other=0.0)
    if HAS_B:
        y += tl.load(b_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
    if HAS_R:
        y += tl.load(r_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
    tl.store(y_ptr + rn, y.to(tl.bfloat16), mask=nmask)


@triton.jit
def _gemv_bf16_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, g_ptr, N, K, eps, HAS_B: tl.constexpr,
                      HAS_R: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NORM: tl.constexpr = False,
                      SILU: tl.constexpr = False):
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    nmask = rn < N
    rk = tl.arange(0, BK)
    rms = _rms_factor(x_ptr, K, eps, NORM, BK)
    w_rows = w_ptr + rn.to(tl.int64)[:, None] * K + rk[None, :]
    acc = tl.zeros([BN, BK], dtype=tl.float32)
    for k0 in range(0, K, BK):
        kmask = k0 + rk < K
        w = tl.load(w_rows + k0, mask=nmask[:, None] & kmask[None, :], other=0.0).to(tl.float32)
        x = _step_input(x_ptr, g_ptr, k0 + rk, K, rms, NORM, SILU)
        acc += w * x[None, :]
    y = tl.sum(acc, axis=1)
    if HAS_B:
        y += tl.load(b_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
    if HAS_R:
        y += tl.load(r_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
    tl.store(y_ptr + rn, y.to(tl.bfloat16), mask=nmask)


FP8_CONFIGS = [_cfg(4, 3, BN=8, BK=512), _cfg(4, 3, BN=16, BK=512), _cfg(4, 3, BN=8, BK=1024),
               _cfg(4, 4, BN=16, BK=256), _cfg(4, 3, BN=32, BK=256), _cfg(4, 3, BN=4, BK=1024),
               _cfg(8, 3, BN=16, BK=1024), _cfg(2, 4, BN=8, BK=256)]
BF16_CONFIGS = [_cfg(4, 3, BN=8, BK=256), _cfg(4, 3, BN=4, BK=512), _cfg(4, 3, BN=8, BK=512),
                _cfg(4, 3, BN=16, BK=256), _cfg(4, 2, BN=4, BK=1024), _cfg(2, 4, BN=8, BK=256),
                _cfg(8, 3, BN=16, BK=512), _cfg(4, 4, BN=2, BK=1024)]


def gemv_fp8(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None,
             residual: torch.Tensor | None = None, norm: Norm | None = None, silu: bool = False) -> torch.Tensor:
    """bf16 y [N] = s_x * s_w[n] * sum_k e4m3(x_k / s_x) w[n, k]; s_x = max|x| / 448 (per token); x the
    linear's input as in `gemv_wq` (`norm`, `silu`)."""
    n, k = weight.shape
    _check_input(x, k, norm, silu)
    y = torch.empty(n, dtype=torch.bfloat16, device=x.device)

    def launch(config):
        meta = config["meta"]
        xin, nrm, sl = _kernel_input(x, norm, silu, config)
        _gemv_fp8_kernel[(triton.cdiv(n, meta["BN"]),)](
            xin, weight, weight_scale, bias if bias is not None else y, residual if residual is not None else y, y,
            nrm[0] if nrm else y, n, k, nrm[1] if nrm else 0.0, HAS_B=bias is not None,
            HAS_R=residual is not None, NORM=nrm is not None, SILU=sl, num_warps=config["num_warps"],
            num_stages=config["num_stages"], **meta)

    configs = _input_variants(FP8_CONFIGS, norm, silu)
    launch(_pick("gemv_fp8", (n, k, norm is not None, silu), configs, launch, x.device))
    return y


def gemv_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
              residual: torch.Tensor | None = None, norm: Norm | None = None, silu: bool = False) -> torch.Tensor:
    """bf16 y [N] = W [N, K] @ input(x) (+ bias) (+ residual), fp32 accumulation; input(x) as in `gemv_wq`."""
    n, k = weight.shape
    _check_input(x, k, norm, silu)
    y = torch.empty(n, dtype=torch.bfloat16, device=x.device)

    def launch(config):
        meta = config["meta"]
        xin, nrm, sl = _kernel_input(x, norm, silu, config)
        _gemv_bf16_kernel[(triton.cdiv(n, meta["BN"]),)](
            xin, weight, bias if bias is not None else y, residual if residual is not None else y, y,
            nrm[0] if nrm else y, n, k, nrm[1] if nrm else 0.0, HAS_B=bias is not None,
            HAS_R=residual is not None, NORM=nrm is not None, SILU=sl, num_warps=config["num_warps"],
            num_stages=config["num_stages"], **meta)

    configs = _input_variants(BF16_CONFIGS, norm, silu)
    launch(_pick("gemv_bf16", (n, k, norm is not None, silu), configs, launch, x.device))
    return y


# ----------------------------------------------------------------------------------------------
# the rest of the step
# ----------------------------------------------------------------------------------------------

@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, y_ptr, K, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    k = tl.arange(0, BLOCK)
    mask = k < K
    x = tl.load(x_ptr + row * K + k, mask=mask, other=0.0).to(tl.float32)
    r = tl.rsqrt(tl.sum(x * x, axis=0) / K + eps)
    normed = (x * r).to(tl.bfloat16).to(tl.float32)   # as transformers: normalised in fp32, cast, then * weight
    w = tl.load(w_ptr + k, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * K + k, (normed * w).to(tl.bfloat16), mask=mask)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm of each row of a contiguous bf16 x [..., K]."""
    k = x.shape[-1]
    y = torch.empty_like(x)
    block = triton.next_power_of_2(k)
    _rmsnorm_kernel[(x.numel() // k,)](x, weight, y, k, eps, BLOCK=block,
                                       num_warps=4 if block <= 2048 else (8 if block <= 8192 else 16))
    return y


@triton.jit
def _silu_mul_kernel(gu_ptr, y_ptr, INTER, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < INTER
    g = tl.load(gu_ptr + i, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + INTER + i, mask=mask, other=0.0).to(tl.float32)
    act = (g / (1.0 + tl.exp(-g))).to(tl.bfloat16).to(tl.float32)   # silu in fp32, rounded as torch does
    tl.store(y_ptr + i, (act * u).to(tl.bfloat16), mask=mask)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for one token's fused gate_up output [2 * I] (gate first)."""
    inter = gate_up.numel() // 2
    y = torch.empty(inter, dtype=torch.bfloat16, device=gate_up.device)
    _silu_mul_kernel[(triton.cdiv(inter, 1024),)](gate_up, y, inter, BLOCK=1024, num_warps=4)
    return y


@triton.jit
def _decode_attention_split_kernel(qkv_ptr, cos_ptr, sin_ptr, pos_ptr, k_ptr, v_ptr, part_ptr, ml_ptr, scale,
                                   MAX_LEN, H: tl.constexpr, KVH: tl.constexpr, D: tl.constexpr,
                                   BT: tl.constexpr, S: tl.constexpr):
    """Program (h, split): query head h over cache positions [split * BT, split * BT + BT) before `pos`, plus
    the new position itself in the split that holds it; writes its unnormalised output and (max, sum)."""
    h = tl.program_id(0)
    split = tl.program_id(1)
    group: tl.constexpr = H // KVH
    kvh = h // group
    pos = tl.load(pos_ptr)
    d = tl.arange(0, D)
    half: tl.constexpr = D // 2
    partner = (d + half) % D
    sign = tl.where(d < half, -1.0, 1.0)
    cos = tl.load(cos_ptr + pos * D + d).to(tl.float32)
    sin = tl.load(sin_ptr + pos * D + d).to(tl.float32)
    q_at = qkv_ptr + h * D
    q = (tl.load(q_at + d).to(tl.float32) * cos
         + sign * tl.load(q_at + partner).to(tl.float32) * sin).to(tl.bfloat16).to(tl.float32)
    k_at = qkv_ptr + (H + kvh) * D
    k_new = (tl.load(k_at + d).to(tl.float32) * cos + sign * tl.load(k_at + partner).to(tl.float32) * sin
             ).to(tl.bfloat16)
    v_new = tl.load(qkv_ptr + (H + KVH + kvh) * D + d)
    cache = kvh.to(tl.int64) * MAX_LEN * D
    start = split * BT
    is_current = (pos >= start) & (pos < start + BT)
    if is_current & (h % group == 0):   # one query head of the group writes the new position
        tl.store(k_ptr + cache + pos * D + d, k_new)
        tl.store(v_ptr + cache + pos * D + d, v_new)
    t = start + tl.arange(0, BT)
    tmask = t < pos                      # earlier positions only: the new one comes from registers
    offs = cache + t.to(tl.int64)[:, None] * D + d[None, :]
    keys = tl.load(k_ptr + offs, mask=tmask[:, None], other=0.0).to(tl.float32)
    s = tl.where(tmask, tl.sum(keys * q[None, :], axis=1) * scale, float("-inf"))
    s_cur = tl.where(is_current, tl.sum(k_new.to(tl.float32) * q, axis=0) * scale, float("-inf"))
    m = tl.maximum(tl.max(s, axis=0), s_cur)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    p = tl.exp(s - m_safe)
    p_cur = tl.exp(s_cur - m_safe)
    values = tl.load(v_ptr + offs, mask=tmask[:, None], other=0.0).to(tl.float32)
    acc = tl.sum(p[:, None] * values, axis=0) + p_cur * v_new.to(tl.float32)
    row = h * S + split
    tl.store(part_ptr + row * D + d, acc)
    tl.store(ml_ptr + row * 2, m)
    tl.store(ml_ptr + row * 2 + 1, tl.sum(p, axis=0) + p_cur)


@triton.jit
def _decode_attention_combine_kernel(part_ptr, ml_ptr, out_ptr, D: tl.constexpr, S: tl.constexpr):
    h = tl.program_id(0)
    sp = tl.arange(0, S)
    d = tl.arange(0, D)
    m = tl.load(ml_ptr + (h * S + sp) * 2)
    l_sum = tl.load(ml_ptr + (h * S + sp) * 2 + 1)
    weight = tl.exp(m - tl.max(m, axis=0))    # empty splits: exp(-inf) = 0
    acc = tl.load(part_ptr + (h * S + sp)[:, None] * D + d[None, :])
    out = tl.sum(weight[:, None] * acc, axis=0) / tl.sum(weight * l_sum, axis=0)
    tl.store(out_ptr + h * D + d, out.to(tl.bfloat16))


def decode_attention(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pos: torch.Tensor,
                     k_cache: torch.Tensor, v_cache: torch.Tensor, heads: int, kv_heads: int, head_dim: int,
                     scale: float) -> torch.Tensor:
    """One token's attention output [heads * head_dim] (bf16) from its fused qkv projection (before rotary);
    writes its rotated k and its v into the caches [1, kv_heads, max_len, head_dim] at `pos`. Split over
    the cache in blocks (one program per head and block, blocks past `pos` read nothing), then combined."""
    max_len = k_cache.shape[2]
    block = 64 if head_dim <= 128 else 32
    splits = triton.next_power_of_2(triton.cdiv(max_len, block))
    part = torch.empty(heads * splits * head_dim, dtype=torch.float32, device=qkv.device)
    ml = torch.empty(heads * splits * 2, dtype=torch.float32, device=qkv.device)
    out = torch.empty(heads * head_dim, dtype=torch.bfloat16, device=qkv.device)
    _decode_attention_split_kernel[(heads, splits)](qkv, cos, sin, pos, k_cache, v_cache, part, ml, scale, max_len,
                                                    H=heads, KVH=kv_heads, D=head_dim, BT=block, S=splits,
                                                    num_warps=4, num_stages=1)
    _decode_attention_combine_kernel[(heads,)](part, ml, out, D=head_dim, S=splits, num_warps=4)
    return out


# ----------------------------------------------------------------------------------------------
# prefill helpers
# ----------------------------------------------------------------------------------------------

@triton.jit
def _dequantize_wq_kernel(w_ptr, s_ptr, o_ptr, y_ptr, N, K, KP, G: tl.constexpr, BITS: tl.constexpr,
                          HAS_O: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    VPW: tl.constexpr = 32 // BITS
    rn = tl.program_id(0) * BN + tl.arange(0, BN)
    rk = tl.program_id(1) * BK + tl.arange(0, BK)
    nmask = rn < N
    words = tl.load(w_ptr + rn.to(tl.int64)[:, None] * KP + (rk // VPW)[None, :], mask=nmask[:, None], other=0)
    u = (words >> ((rk % VPW) * BITS)[None, :]) & ((1 << BITS) - 1)
    u = ((u | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F)
    s = tl.load(s_ptr + (rk // G)[None, :] * N + rn[:, None], mask=nmask[:, None], other=0.0).to(tl.float32)
    if HAS_O:
        o = tl.load(o_ptr + (rk // G)[None, :] * N + rn[:, None], mask=nmask[:, None], other=0.0).to(tl.float32)
    else:
        o = 1 << (BITS - 1)
    tl.store(y_ptr + rn.to(tl.int64)[:, None] * K + rk[None, :], ((u - o) * s).to(tl.bfloat16), mask=nmask[:, None])


def dequantize_wq(packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor | None, group_size: int,
                  bits: int) -> torch.Tensor:
    """The bf16 [N, K] weight of a packed one: (u - offset) * scale."""
    n, kp = packed.shape
    k = kp * 32 // bits
    block_k = min(256, k & -k)
    y = torch.empty(n, k, dtype=torch.bfloat16, device=packed.device)
    _dequantize_wq_kernel[(triton.cdiv(n, 32), k // block_k)](
        packed, scales, offsets if offsets is not None else scales, y, n, k, kp, G=group_size, BITS=bits,
        HAS_O=offsets is not None, BN=32, BK=block_k, num_warps=4)
    return y


@triton.jit(do_not_specialize=["M"])
def _w4_matmul_kernel(x_ptr, w_ptr, s_ptr, o_ptr, b_ptr, y_ptr, M, N, K, KP, G: tl.constexpr,
                      HAS_O: tl.constexpr, HAS_B: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                      BK: tl.constexpr, GROUP_N: tl.constexpr):
    """y^T [N, M] = W [N, K] x^T: the dequantized weight tile is the first operand of the dot."""
    pid = tl.program_id(0)
    grid_m = tl.cdiv(M, BM)
    grid_n = tl.cdiv(N, BN)
    per_group = GROUP_N * grid_m
    first_n = (pid // per_group) * GROUP_N
    size_n = tl.minimum(grid_n - first_n, GROUP_N)
    pid_n = first_n + (pid % per_group) % size_n
    pid_m = (pid % per_group) // size_n
    rn = pid_n * BN + tl.arange(0, BN)
    rm = pid_m * BM + tl.arange(0, BM)
    nmask = rn < N
    mmask = rm < M
    BKP: tl.constexpr = BK // 8
    rc = tl.arange(0, BKP)
    rk = tl.arange(0, BK)
    acc = tl.zeros([BN, BM], dtype=tl.float32)
    for k0 in range(0, K, BK):
        w = tl.load(w_ptr + rn.to(tl.int64)[:, None] * KP + k0 // 8 + rc[None, :], mask=nmask[:, None], other=0)
        s = tl.load(s_ptr + (k0 // G) * N + rn, mask=nmask, other=0.0).to(tl.float32)
        if HAS_O:
            o = tl.load(o_ptr + (k0 // G) * N + rn, mask=nmask, other=0.0).to(tl.float32)
        else:
            o = tl.zeros([BN], dtype=tl.float32) + 8.0
        off = o[:, None] + 8388608.0   # 2^23 + offset, exact
        sc = s[:, None]
        f0 = ((((w & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f1 = (((((w >> 4) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f2 = (((((w >> 8) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f3 = (((((w >> 12) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f4 = (((((w >> 16) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f5 = (((((w >> 20) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f6 = (((((w >> 24) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        f7 = (((((w >> 28) & 0xF) | MAGIC).to(tl.float32, bitcast=True) - off) * sc).to(tl.bfloat16)
        wt = tl.interleave(tl.interleave(tl.interleave(f0, f4), tl.interleave(f2, f6)),
                           tl.interleave(tl.interleave(f1, f5), tl.interleave(f3, f7)))   # [BN, BK], k order
        x = tl.load(x_ptr + rm.to(tl.int64)[:, None] * K + k0 + rk[None, :], mask=mmask[:, None], other=0.0)
        acc = tl.dot(wt, tl.trans(x), acc)
    if HAS_B:
        acc += tl.load(b_ptr + rn, mask=nmask, other=0.0).to(tl.float32)[:, None]
    tl.store(y_ptr + rm.to(tl.int64)[None, :] * N + rn[:, None], acc.to(tl.bfloat16),
             mask=nmask[:, None] & mmask[None, :])


W4MM_CONFIGS = [_cfg(8, 3, BM=128, BN=128, BK=64, GROUP_N=8), _cfg(4, 4, BM=64, BN=128, BK=64, GROUP_N=8),
                _cfg(8, 3, BM=256, BN=128, BK=64, GROUP_N=8), _cfg(8, 4, BM=128, BN=256, BK=64, GROUP_N=8),
                _cfg(4, 3, BM=128, BN=64, BK=128, GROUP_N=8), _cfg(8, 3, BM=128, BN=128, BK=128, GROUP_N=8)]
# a batch's decode step (M = 8 or 32 rows): tiles of 16-32 rows, not 128 of which 120 are masked (H100,
# 2026-12-07: at M = 8 the 128-row tiles ran the 8B step at 14.7 ms, 8.5x its bandwidth limit)
W4MM_CONFIGS += [_cfg(4, 4, BM=16, BN=64, BK=128, GROUP_N=8), _cfg(4, 4, BM=16, BN=128, BK=128, GROUP_N=8),
                 _cfg(4, 4, BM=32, BN=64, BK=128, GROUP_N=8), _cfg(2, 4, BM=16, BN=32, BK=128, GROUP_N=8),
                 _cfg(4, 3, BM=32, BN=128, BK=64, GROUP_N=8)]


def w4_matmul(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor | None,
              group_size: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """bf16 y [M, N] = x [M, K] @ dequantized(packed)^T, 4-bit, dequantized tile by tile in registers."""
    m, k = x.shape
    n, kp = packed.shape
    x = x.contiguous()
    y = torch.empty(m, n, dtype=torch.bfloat16, device=x.device)
    configs = []   # the K tile shrinks to the group where a group is smaller (each tile in one group)
    for c in W4MM_CONFIGS:
        block_k = min(c["meta"]["BK"], group_size)
        if group_size % block_k == 0 and k % block_k == 0 and block_k >= 16:
            configs.append({**c, "meta": {**c["meta"], "BK": block_k}})
    if not configs:
        raise ValueError(f"no w4_matmul tile fits group {group_size}, K {k}")

    def launch(config):
        meta = config["meta"]
        grid = (triton.cdiv(m, meta["BM"]) * triton.cdiv(n, meta["BN"]),)
        _w4_matmul_kernel[grid](x, packed, scales, offsets if offsets is not None else scales,
                                bias if bias is not None else y, y, m, n, k, kp, G=group_size,
                                HAS_O=offsets is not None, HAS_B=bias is not None, num_warps=config["num_warps"],
                                num_stages=config["num_stages"], **meta)

    bucket = 1 << max(m - 1, 0).bit_length()   # rows rounded up to a power of two: one choice per bucket
    launch(_pick("w4_matmul", (bucket, n, k, group_size), configs, launch, x.device))
    return y


@triton.jit
def _quantize_rows_fp8_kernel(x_ptr, q_ptr, s_ptr, K, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    k = tl.arange(0, BLOCK)
    mask = k < K
    x = tl.load(x_ptr + row.to(tl.int64) * K + k, mask=mask, other=0.0).to(tl.float32)
    scale = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-12) / 448.0
    tl.store(q_ptr + row.to(tl.int64) * K + k, tl.clamp(x / scale, -448.0, 448.0).to(tl.float8e4nv), mask=mask)
    tl.store(s_ptr + row, scale)


def quantize_rows_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row e4m3: (q [M, K] float8_e4m3fn, scale [M, 1] float32), scale = max|row| / 448."""
    m, k = x.shape
    x = x.contiguous()
    q = torch.empty(m, k, dtype=torch.float8_e4m3fn, device=x.device)
    s = torch.empty(m, 1, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(k)
    _quantize_rows_fp8_kernel[(m,)](x, q, s, k, BLOCK=block, num_warps=4 if block <= 2048 else 8)
    return q, s
