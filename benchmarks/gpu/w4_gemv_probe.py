"""Probe: do two GEMV designs beat the decode step's (issue 29: W4 and FP8 decode)?

    python benchmarks/gpu/w4_gemv_probe.py --out w4_gemv_probe.json      # on a CUDA machine
    TRITON_INTERPRET=1 python benchmarks/gpu/w4_gemv_probe.py --check    # the arithmetic, on a CPU

`gemv_wq` packs 8 consecutive k of a row into one int32 word, so the 8 input values a word needs are
8 strided scalars: every thread gathers each x it uses with its own load (32 loads for 4 words). Here
the packing is interleaved in blocks of 256 k (32 words): word c of block b holds k = 256 b + 32 j + c
in its nibble j. Then the input the 32 words of a block need for nibble j is 32 consecutive values,
one vector load per thread and nibble, shared by every row the thread holds; the tile is 3-D
[rows, blocks, 32 words] and each group's products are summed before its scale is applied.

Second design: the GEMV on the tensor cores (`gemv_dot`), x as the first column of a [K, 16] operand.
FP8 weights then need no conversion to float on the ALU (the step's `gemv_fp8` converts every weight),
and bf16 ones no FMA per weight; the 15 zero columns cost tensor-core time, of which a GEMV has plenty.

Timed as the decode step runs a GEMV (`cuda_kernels._time_ms`: in a CUDA graph after an L2 flush,
median), on the four linear shapes of a Llama-3-8B layer (random weights, group 128), beside the
runtime's own `gemv_wq` (its tuner's best tile), tinygemm (`aten._weight_int4pack_mm`) and the bf16 GEMV.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import triton
import triton.language as tl

from greenai_dagster.core.runtimes import cuda_kernels as ck

BLOCK = 256   # k values per interleave block: 32 words of 8 nibbles
MAGIC: tl.constexpr = tl.constexpr(0x4B000000)   # 2^23's bit pattern in float32 (as cuda_kernels)
MAGIC_F: tl.constexpr = tl.constexpr(8388608.0)
SHAPES = {"qkv_proj": (6144, 4096), "o_proj": (4096, 4096), "gate_up_proj": (28672, 4096), "down_proj": (4096, 14336)}


def pack_interleaved(u: torch.Tensor) -> torch.Tensor:
    """[N, K] values 0..15 -> int32 [N, K / 8]: word c of block b holds k = 256 b + 32 j + c at bits [4j, 4j + 4)."""
    n, k = u.shape
    blocks = u.to(torch.int64).view(n, k // BLOCK, 8, 32).permute(0, 1, 3, 2)   # [N, blocks, word, nibble]
    packed = (blocks << (torch.arange(8, device=u.device) * 4)).sum(-1).reshape(n, k // 8)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32).contiguous()


@triton.jit
def _nibble(w, J: tl.constexpr):
    """Field J of each word as float (2^23 + u * 16^p) - 2^23 = u * 16^p, p = J for J < 5, J - 5 above."""
    if J < 5:
        f = w & (0xF << (4 * J))
    else:
        f = (w >> 20) & (0xF << (4 * (J - 5)))
    return (f | MAGIC).to(tl.float32, bitcast=True) - MAGIC_F


@triton.jit
def _gemv_w4i_kernel(x_ptr, w_ptr, s_ptr, y_ptr, N, K, KP, G: tl.constexpr, BN: tl.constexpr, NB: tl.constexpr):
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    nmask = rn < N
    rb = tl.arange(0, NB)
    rc = tl.arange(0, 32)
    w_ptrs = w_ptr + rn.to(tl.int64)[:, None, None] * KP + (rb[:, None] * 32 + rc[None, :])[None, :, :]
    x_offs = rb[:, None] * 256 + rc[None, :]                      # [NB, 32]
    JPG: tl.constexpr = G // 32 if G < 256 else 8                 # nibbles per group (G = 32, 64, 128 or >= 256)
    acc = tl.zeros([BN, NB], dtype=tl.float32)
    for k0 in range(0, K, NB * 256):
        w = tl.load(w_ptrs + k0 // 8, mask=nmask[:, None, None], other=0)
        for g in tl.static_range(8 // JPG):
            part = tl.zeros([BN, NB, 32], dtype=tl.float32)
            xs = tl.zeros([NB, 32], dtype=tl.float32)
            for jj in tl.static_range(JPG):
                J: tl.constexpr = g * JPG + jj
                SCALE: tl.constexpr = 1.0 / (1 << (4 * (J if J < 5 else J - 5)))   # the field's 16^-p
                x = tl.load(x_ptr + k0 + x_offs + J * 32).to(tl.float32)
                xs += x
                part += _nibble(w, J) * (x * SCALE)[None, :, :]
            gi = (k0 + rb * 256 + g * JPG * 32) // G               # [NB] group of each block's part g
            s = tl.load(s_ptr + gi[None, :] * N + rn[:, None], mask=nmask[:, None], other=0.0).to(tl.float32)
            acc += s * (tl.sum(part, axis=2) - 8.0 * tl.sum(xs, axis=1)[None, :])
    tl.store(y_ptr + rn, tl.sum(acc, axis=1).to(tl.bfloat16), mask=nmask)


@triton.jit
def _gemv_dot_kernel(x_ptr, w_ptr, ws_ptr, xs_ptr, y_ptr, N, K, SCALED: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr):
    """y = W x on the tensor cores: x as the first column of a [K, 16] operand (the rest zeros), so the
    multiply-adds cost no ALU and FP8 weights need no conversion; for FP8 the result is scaled by
    s_x * s_w[n] (x quantized per token beforehand, as `_scaled_mm` takes it)."""
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    nmask = rn < N
    rk = tl.arange(0, BK)
    col = tl.arange(0, 16)
    w_ptrs = w_ptr + rn.to(tl.int64)[:, None] * K + rk[None, :]
    acc = tl.zeros([BN, 16], dtype=tl.float32)
    for k0 in range(0, K, BK):
        w = tl.load(w_ptrs + k0, mask=nmask[:, None], other=0.0)
        x = tl.load(x_ptr + k0 + rk)
        xt = tl.where(col[None, :] == 0, x[:, None], tl.zeros([BK, 16], dtype=x.dtype))
        acc = tl.dot(w, xt, acc)
    y = tl.sum(acc, axis=1)
    if SCALED:
        y = y * tl.load(xs_ptr) * tl.load(ws_ptr + rn, mask=nmask, other=0.0)
    tl.store(y_ptr + rn, y.to(tl.bfloat16), mask=nmask)


DOT_CONFIGS = [ck._cfg(w, st, BN=bn, BK=bk) for w, st, bn, bk in
               [(4, 3, 64, 256), (4, 4, 64, 128), (4, 3, 128, 128), (4, 3, 32, 256), (4, 3, 16, 512),
                (8, 3, 128, 256), (4, 4, 64, 512), (2, 4, 16, 256)]]


def gemv_dot(x: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor | None = None, x_scale: torch.Tensor | None = None,
             config: dict | None = None) -> torch.Tensor:
    n, k = w.shape
    y = torch.empty(n, dtype=torch.bfloat16, device=x.device)
    scaled = w_scale is not None

    def launch(cfg):
        meta = cfg["meta"]
        _gemv_dot_kernel[(triton.cdiv(n, meta["BN"]),)](x, w, w_scale if scaled else y, x_scale if scaled else y, y,
                                                        n, k, SCALED=scaled, num_warps=cfg["num_warps"],
                                                        num_stages=cfg["num_stages"], **meta)

    configs = [c for c in DOT_CONFIGS if k % c["meta"]["BK"] == 0]
    launch(config or ck._pick("gemv_dot", (n, k, str(w.dtype)), configs, launch, x.device))
    return y


CONFIGS = [ck._cfg(w, st, BN=bn, NB=nb) for w, st, bn, nb in
           [(4, 3, 8, 4), (4, 3, 16, 2), (4, 3, 4, 4), (8, 3, 16, 4), (4, 4, 8, 2), (2, 4, 4, 2), (4, 3, 16, 4),
            (8, 3, 32, 2), (4, 3, 2, 8), (8, 3, 8, 8)]]


def gemv_w4i(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int,
             config: dict | None = None) -> torch.Tensor:
    n, kp = packed.shape
    k = kp * 8
    y = torch.empty(n, dtype=torch.bfloat16, device=x.device)

    def launch(cfg):
        meta = cfg["meta"]
        _gemv_w4i_kernel[(triton.cdiv(n, meta["BN"]),)](x, packed, scales, y, n, k, kp, G=group_size,
                                                        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], **meta)

    configs = [c for c in CONFIGS if k % (c["meta"]["NB"] * BLOCK) == 0]
    launch(config or ck._pick("gemv_w4i", (n, k, group_size), configs, launch, x.device))
    return y


def problem(n: int, k: int, group: int, device: str, seed: int = 0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.randint(0, 16, (n, k), generator=gen)
    scales = (torch.rand(k // group, n, generator=gen) * 0.02 + 0.005).to(torch.bfloat16)
    x = torch.randn(k, generator=gen).to(torch.bfloat16)
    w = (u.float() - 8) * scales.float().repeat_interleave(group, 0).T
    return u.to(device), scales.to(device), x.to(device), w.to(device)


def check() -> None:
    """Both packings against the dequantized matmul (interpreter-sized shapes: one config each)."""
    for n, k, g in [(8, 512, 128), (16, 1024, 64), (4, 512, 32), (8, 1024, 256)]:
        u, s, x, w = problem(n, k, g, "cpu")
        ref = w @ x.float()
        for cfg in CONFIGS:
            if k % (cfg["meta"]["NB"] * BLOCK) == 0 and cfg["meta"]["BN"] <= n:
                got = gemv_w4i(x, pack_interleaved(u), s, g, cfg).float()
                err = ((got - ref).abs().max() / ref.abs().max()).item()
                assert err < 1e-2, (n, k, g, cfg, err)
                print(f"interleaved N={n} K={k} G={g} {cfg['meta']}: max rel err {err:.2e}")
                break
    for n, k in [(32, 512), (64, 256)]:
        _, _, x, w = problem(n, k, 128, "cpu")
        cfg = next(c for c in DOT_CONFIGS if c["meta"]["BN"] <= n and k % c["meta"]["BK"] == 0)
        # float32 operands: the interpreter's tl.dot misreads bf16 ones (Triton 3.6.0), the kernel takes any dtype
        got = gemv_dot(x.float(), w.to(torch.bfloat16).float(), config=cfg).float()
        ref = w.to(torch.bfloat16).float() @ x.float()
        err = ((got - ref).abs().max() / ref.abs().max()).item()
        assert err < 1e-2, (n, k, cfg, err)
        print(f"tensor-core (float32 operands) N={n} K={k} {cfg['meta']}: max rel err {err:.2e}")


def bench(out: str) -> None:
    device = "cuda"
    rows = []
    for name, (n, k) in SHAPES.items():
        u, s, x, w = problem(n, k, 128, device)
        ref = (w @ x.float()).float()
        packed_i = pack_interleaved(u)
        packed_r = ck.pack_unsigned(u, 4)
        y_i = gemv_w4i(x, packed_i, s, 128)
        y_r = ck.gemv_wq(x, packed_r, s, None, 128, 4)
        err = {k_: ((y.float() - ref).abs().max() / ref.abs().max()).item() for k_, y in
               {"interleaved": y_i, "gemv_wq": y_r}.items()}
        w_bf16 = w.to(torch.bfloat16)
        ck.gemv_bf16(x, w_bf16)
        times = {"interleaved": ck._time_ms(lambda: gemv_w4i(x, packed_i, s, 128), device, 15),
                 "gemv_wq": ck._time_ms(lambda: ck.gemv_wq(x, packed_r, s, None, 128, 4), device, 15),
                 "bf16_gemv": ck._time_ms(lambda: ck.gemv_bf16(x, w_bf16), device, 15)}
        try:   # tinygemm, as cuda_w4 packs it
            from greenai_dagster.core.runtimes import cuda_w4
            tg, sz = cuda_w4.repack(u - 8, s.t(), None, 128)
            x2 = x.view(1, k).contiguous()
            torch.ops.aten._weight_int4pack_mm(x2, tg, 128, sz)
            times["tinygemm"] = ck._time_ms(lambda: torch.ops.aten._weight_int4pack_mm(x2, tg, 128, sz), device, 15)
        except Exception as exc:   # noqa: BLE001 - reported, not fatal
            times["tinygemm_error"] = f"{type(exc).__name__}: {exc}"[:200]
        # FP8 (per-channel weight scale, x quantized per token by its own launch, as the runtime's prefill does)
        w_scale = (w.abs().amax(1) / ck.FP8_MAX).clamp(min=1e-12).float()
        w_fp8 = (w / w_scale[:, None]).clamp(-ck.FP8_MAX, ck.FP8_MAX).to(torch.float8_e4m3fn)
        ref8 = (w_fp8.float() * w_scale[:, None]) @ x.float()
        xq, xs = ck.quantize_rows_fp8(x.view(1, k))
        xq, xs = xq.view(k), xs.view(1)

        def fp8_dot():
            q, sc = ck.quantize_rows_fp8(x.view(1, k))
            return gemv_dot(q.view(k), w_fp8, w_scale, sc.view(1))

        y8 = fp8_dot()
        y8r = ck.gemv_fp8(x, w_fp8, w_scale)
        err["fp8_dot_vs_fp8_weights"] = ((y8.float() - ref8).abs().max() / ref8.abs().max()).item()
        err["gemv_fp8_vs_fp8_weights"] = ((y8r.float() - ref8).abs().max() / ref8.abs().max()).item()
        y16 = gemv_dot(x, w_bf16)
        err["bf16_dot"] = ((y16.float() - ref).abs().max() / ref.abs().max()).item()
        times["fp8_dot_with_quantize"] = ck._time_ms(fp8_dot, device, 15)
        times["fp8_dot"] = ck._time_ms(lambda: gemv_dot(xq, w_fp8, w_scale, xs), device, 15)
        times["gemv_fp8"] = ck._time_ms(lambda: ck.gemv_fp8(x, w_fp8, w_scale), device, 15)
        times["bf16_dot"] = ck._time_ms(lambda: gemv_dot(x, w_bf16), device, 15)
        w4_bytes = n * k / 2 + s.numel() * 2
        row = {"shape": name, "n": n, "k": k, "ms": {k_: round(v, 5) for k_, v in times.items() if isinstance(v, float)},
               "w4_tb_per_s": {k_: round(w4_bytes / times[k_] / 1e9, 3) for k_ in ("interleaved", "gemv_wq", "tinygemm")
                               if k_ in times},
               "fp8_tb_per_s": {k_: round(n * k / times[k_] / 1e9, 3) for k_ in ("fp8_dot", "gemv_fp8")},
               "bf16_tb_per_s": {k_: round(n * k * 2 / times[k_] / 1e9, 3) for k_ in ("bf16_gemv", "bf16_dot")},
               "max_rel_err": err,
               "errors": {k_: v for k_, v in times.items() if isinstance(v, str)}}
        rows.append(row)
        print(json.dumps(row))
    per_layer = {v: round(sum(r["ms"].get(v, float("nan")) for r in rows), 4)
                 for v in ("interleaved", "gemv_wq", "tinygemm", "bf16_gemv", "bf16_dot", "gemv_fp8", "fp8_dot",
                           "fp8_dot_with_quantize")}
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "how": "one GEMV per shape, random weights (group 128, symmetric), bf16 input; each timed in a CUDA graph "
                     "after a 96 MiB L2 flush minus the flush alone (cuda_kernels._time_ms, median of 31 replays); "
                     "ms per layer = the four shapes summed (x 32 layers for Llama-3-8B's linears)",
              "rows": rows, "ms_per_layer": per_layer,
              "tuning": [t for t in ck.tuning_report() if t["kernel"] in ("gemv_w4i", "gemv_wq", "gemv_dot", "gemv_fp8")]}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("ms per layer:", per_layer)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--out", default="w4_gemv_probe.json")
    args = parser.parse_args()
    check() if args.check or os.environ.get("TRITON_INTERPRET") == "1" else bench(args.out)
