"""W4 weight-only checkpoints on CUDA through PyTorch's tinygemm int4 kernel (`aten._weight_int4pack_mm`).

Serves compressed-tensors `pack-quantized` 4-bit checkpoints with group scales (GPTQ with static or
no activation ordering, AWQ, AutoRound, RTN as this project saves them), group sizes 32-256. At
load the saved int32 words are unpacked with compressed-tensors' own helper and repacked for the
kernel: u = q + 8 in [0, 15], pairs of columns as high/low nibbles of a byte, then
`_convert_weight_to_int4pack(..., inner_k_tiles=8)`; scales and zero points interleaved as
[K/group, N, 2] bf16 so that w = (u - 8) * scale + zero, zero = -zero_point * scale. The weights are
never expanded to dense bf16 in memory.

Decode (a handful of rows) uses the int4 kernel: on Llama-3-8B shapes on an H100 it measured
2.3-2.7x faster than bf16 per matrix-vector product. Prefill does not: tinygemm on 512 rows ran at
about 2k tokens/s for an 8B model, so for more than `PREFILL_ROWS` rows each layer dequantizes its
packed weight (one compiled elementwise pass, read 0.5 byte and write 2 bytes per weight) and runs
a bf16 matmul. The dequantizer reads tinygemm's tiled layout through a permutation learnt at run
time by packing probe matrices (so it follows the kernel's layout rather than a copy of it) and
checked to be the same in every tile.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from greenai_dagster.core.formats import compressed_tensors
from greenai_dagster.core.runtimes.cuda_compiled import (CudaRuntime, activation_args, load_state, quant_config,
                                                         read_config, skeleton, supported_folder, weight_args)
from greenai_dagster.core.runtimes.cuda_static import Record

SUPPORTED_GROUPS = (32, 64, 128, 256)
PREFILL_ROWS = 16     # more rows than this: dequantize and use a bf16 matmul


def inner_k_tiles(in_features: int) -> int:
    """tinygemm's K tiling: 8 (the fastest) where K allows, else 4 or 2 (K must divide by 16 x tiles)."""
    for tiles in (8, 4, 2):
        if in_features % (16 * tiles) == 0:
            return tiles
    raise ValueError(f"in_features {in_features} is not a multiple of 32: tinygemm cannot take it")


def _pack(unsigned: torch.Tensor, tiles: int) -> torch.Tensor:
    """[N, K] values in 0..15 -> tinygemm's packed int32 layout (even column in the high nibble)."""
    u = unsigned.to(torch.uint8)
    return torch.ops.aten._convert_weight_to_int4pack(((u[:, ::2] << 4) | u[:, 1::2]).contiguous(), tiles)


def _nibbles(packed: torch.Tensor, n: int, k: int, tiles: int) -> torch.Tensor:
    """The packed weight's 4-bit values in storage order, one tile (8 rows x 16*tiles columns) per row."""
    words = packed.reshape(n // 8, k // (16 * tiles), -1)
    shifts = torch.arange(0, 32, 4, device=packed.device, dtype=torch.int32)
    return ((words.unsqueeze(-1) >> shifts) & 15).reshape(n // 8, k // (16 * tiles), -1)


@functools.lru_cache(maxsize=None)
def tile_order(tiles: int, device: str) -> torch.Tensor:
    """For each value of a tile (row-major: row * 16*tiles + column), where tinygemm stores it.

    Learnt by packing probes whose values are the digits (base 16) of each element's index, on a
    2 x 2-tile matrix; raises if any element leaves its tile or the tiles differ in layout."""
    ktile = 16 * tiles
    n, k = 16, 2 * ktile
    index = torch.arange(n * k, device=device, dtype=torch.int32).view(n, k)
    stored = torch.zeros(n // 8, 2, 8 * ktile, dtype=torch.int64, device=device)
    for digit in range(math.ceil(math.log2(n * k) / 4)):
        stored += _nibbles(_pack((index >> (4 * digit)) & 15, tiles), n, k, tiles).long() << (4 * digit)
    row, col = stored // k, stored % k
    tile_rows = torch.arange(n // 8, device=device).view(-1, 1, 1)
    tile_cols = torch.arange(2, device=device).view(1, -1, 1)
    local = (row % 8) * ktile + col % ktile
    if not (bool((row // 8 == tile_rows).all()) and bool((col // ktile == tile_cols).all())
            and bool((local == local[0, 0]).all())):
        raise RuntimeError("tinygemm's packed layout is not tile-periodic here; cannot dequantize it for prefill")
    return torch.argsort(local[0, 0])


def dequantize_packed(packed: torch.Tensor, scales_and_zeros: torch.Tensor, order: torch.Tensor, group_size: int,
                      n: int, k: int, tiles: int) -> torch.Tensor:
    """bf16 [N, K] weight of a tinygemm-packed one (`order` = `tile_order`): w = (u - 8) * scale + zero."""
    ktile = 16 * tiles
    values = _nibbles(packed, n, k, tiles)[..., order]
    u = values.view(n // 8, k // ktile, 8, ktile).permute(0, 2, 1, 3).reshape(n, k // group_size, group_size)
    scale = scales_and_zeros[..., 0].t().unsqueeze(-1)
    zero = scales_and_zeros[..., 1].t().unsqueeze(-1)
    return ((u.to(torch.bfloat16) - 8) * scale + zero).reshape(n, k)


_dequantize_compiled = torch.compile(dequantize_packed, dynamic=False)


class W4Linear(torch.nn.Module):
    """y = x W^T (+ b) with W in tinygemm's packed int4 layout and bf16 group scales / zeros."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int, in_features: int,
                 out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.tiles = inner_k_tiles(in_features)
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)

    def dequantize(self) -> torch.Tensor:
        order = tile_order(self.tiles, str(self.packed.device))
        return _dequantize_compiled(self.packed, self.scales_and_zeros, order, self.group_size, self.out_features,
                                    self.in_features, self.tiles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] <= PREFILL_ROWS:
            y = torch.ops.aten._weight_int4pack_mm(flat.contiguous(), self.packed, self.group_size,
                                                   self.scales_and_zeros)
        else:
            y = F.linear(flat, self.dequantize())
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y


def repack(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, group_size: int):
    """Signed 4-bit q [N, K] with scale [N, K/g] (and zero point) -> (packed int32, scales_and_zeros)."""
    unsigned = (q.to(torch.int32) + 8).clamp(0, 15)
    packed = _pack(unsigned, inner_k_tiles(q.shape[1]))
    scale = scale.float()
    zero = torch.zeros_like(scale) if zero_point is None else -zero_point.float() * scale
    return packed, torch.stack([scale.t(), zero.t()], dim=-1).contiguous().to(torch.bfloat16)


def rtn_w4(weight: torch.Tensor, group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest 4-bit groups, scale = max|w| / 7.5 as compressed-tensors computes it."""
    n, k = weight.shape
    groups = weight.float().view(n, k // group_size, group_size)
    scale = (groups.abs().amax(-1) / 7.5).clamp(min=1e-8)
    q = torch.round(groups / scale.unsqueeze(-1)).clamp(-8, 7).to(torch.int8).view(n, k)
    return q, scale


def dequantize_record(record: Record) -> torch.Tensor:
    """The record's weight expanded to bf16 on the quantization grid (the reference the tests compare to)."""
    q, scale, g = record["q"].float(), record["scale"].float(), record["group_size"]
    n, k = q.shape
    zp = record["zero_point"].float()
    return ((q.view(n, k // g, g) - zp.unsqueeze(-1)) * scale.unsqueeze(-1)).view(n, k).to(torch.bfloat16)


class CudaW4(CudaRuntime):
    name = "torch-cuda-w4-tinygemm"
    kernel = ("aten._weight_int4pack_mm (tinygemm, inner_k_tiles=8) for decode, dequantize + bf16 matmul for "
              "prefill; bf16 lm_head; torch.compile decode step in a CUDA graph")
    group_size = 128   # for in-memory quantization (`quantize`)
    formats = (compressed_tensors.NAME,)

    def available(self, device: str) -> bool:
        return super().available(device) and hasattr(torch.ops.aten, "_weight_int4pack_mm")

    def serves(self, folder: Path, device: str) -> bool:
        quant = quant_config(Path(folder))
        if not self.reads(folder) or not quant or quant.get("format") != "pack-quantized":
            return False
        config = read_config(Path(folder))
        if config.get("hidden_size", 1) % 32 or config.get("intermediate_size", 1) % 32:
            return False
        weights = weight_args(quant)
        return bool(weights) and not activation_args(quant) and supported_folder(folder) and all(
            w.get("num_bits") == 4 and w.get("strategy") == "group" and w.get("group_size") in SUPPORTED_GROUPS
            and w.get("actorder") in (None, "static") and not w.get("dynamic") for w in weights)

    def build(self, record: Record) -> torch.nn.Module:
        packed, sz = repack(record["q"], record["scale"], record["zero_point"], record["group_size"])
        n, k = record["q"].shape
        return W4Linear(packed, sz, record["group_size"], k, n, record.get("bias"))

    def quantize(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Record:
        q, scale = rtn_w4(weight, self.group_size)
        record = {"q": q, "scale": scale, "zero_point": torch.zeros_like(scale), "group_size": self.group_size}
        if bias is not None:
            record["bias"] = bias.to(torch.bfloat16)
        return record

    def record_reader(self, folder: Path, device: str):
        state = load_state(folder)
        names = set(compressed_tensors.packed_linears(state))
        model = skeleton(folder, device, names, state)
        group_size = weight_args(quant_config(folder))[0]["group_size"]

        def record_of(name: str) -> Record:
            q = compressed_tensors.stored_integers(state, name, 4, device).to(torch.int8)
            scale = state[f"{name}.weight_scale"].to(device=device, dtype=torch.float32)
            zero_point = compressed_tensors.stored_zero_point(state.get(f"{name}.weight_zero_point"), *scale.shape)
            record = {"q": q, "scale": scale, "group_size": group_size,
                      "zero_point": torch.zeros_like(scale) if zero_point is None
                      else zero_point.to(device=device, dtype=torch.float32).view_as(scale)}
            if f"{name}.bias" in state:
                record["bias"] = state[f"{name}.bias"].to(device=device, dtype=torch.bfloat16)
            return record

        return model, record_of


# ------------------------------------------------------------------------------------------------------------
# Opt-in (not in `runtimes.RUNTIMES`): the same checkpoints through the project's Triton kernels
# (`cuda_kernels.gemv_wq` in the Triton decode step, dequantize + cuBLAS or `w4_matmul` in prefill). Measured
# on an H100 (Llama-3-8B shape, random weights, 2026-12-06) with one group (64 bytes of a row) per K step:
# 5.68-5.93 ms/token, slower than tinygemm, because that kernel was latency-bound (about 0.7 TB/s). With K
# tiles of several groups (2026-12-07, same shape): 3.60 ms/token against tinygemm's 3.40 in the same run, so
# tinygemm stays the default; its prefill is the faster of the two (0.70x bf16 against tinygemm's 0.24x).
# ------------------------------------------------------------------------------------------------------------

# up to this many rows (a decode step of a batch of sequences) the in-register dequantizing matmul reads the
# 4-bit weight once; dequantize + cuBLAS would write and read a bf16 copy of it at every step
SMALL_BATCH = 64


class PackedW4Linear(torch.nn.Module):
    """y = x W^T (+ b), W [N, K] as 4-bit values packed eight to an int32 with group-major scales."""

    # measured on an H100 (Llama-3-8B shape, 512-token prefill, 2026-12-06): dequantize + cuBLAS 19.5k tokens/s,
    # the in-register dequantizing Triton matmul 17.4k (bf16: 28.8k)
    prefill_kernel = "dequantize"   # or "fused" (`cuda_kernels.w4_matmul`)
    def __init__(self, packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor | None, group_size: int,
                 in_features: int, out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("packed", packed)       # int32 [N, K / 8]
        self.register_buffer("scales", scales)       # bf16 [K / group, N]
        self.register_buffer("offsets", offsets)     # bf16 [K / group, N] (8 + zero point) or None (8)
        self.register_buffer("bias", bias)

    def dequantize(self) -> torch.Tensor:
        """The bf16 [N, K] weight (plain torch ops, so torch.compile can trace it)."""
        u = (self.packed.unsqueeze(-1) >> torch.arange(0, 32, 4, device=self.packed.device, dtype=torch.int32)) & 15
        u = u.reshape(self.out_features, self.in_features // self.group_size, self.group_size).float()
        offsets = 8.0 if self.offsets is None else self.offsets.t().float().unsqueeze(-1)
        weight = (u - offsets) * self.scales.t().float().unsqueeze(-1)
        return weight.reshape(self.out_features, self.in_features).to(torch.bfloat16)

    def gemv(self, x: torch.Tensor, residual: torch.Tensor | None = None, norm=None, silu: bool = False) -> torch.Tensor:
        """One token [K] -> [N] (+ residual): the decode step's matrix-vector kernel (`norm`, `silu`: the
        input's RMSNorm or SiLU-gating done inside it, `cuda_kernels.gemv_wq`)."""
        from greenai_dagster.core.runtimes.cuda_kernels import gemv_wq

        return gemv_wq(x, self.packed, self.scales, self.offsets, self.group_size, 4, self.bias, residual, norm, silu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from greenai_dagster.core.runtimes import cuda_kernels as kernels

        flat = x.reshape(-1, self.in_features)
        if torch.compiler.is_compiling() or not flat.is_cuda:
            y = F.linear(flat, self.dequantize(), self.bias)
        elif flat.shape[0] == 1:
            y = self.gemv(flat[0].contiguous()).view(1, -1)
        elif self.prefill_kernel == "fused" or flat.shape[0] <= SMALL_BATCH:
            y = kernels.w4_matmul(flat, self.packed, self.scales, self.offsets, self.group_size, self.bias)
        else:
            weight = kernels.dequantize_wq(self.packed, self.scales, self.offsets, self.group_size, 4)
            y = F.linear(flat, weight, self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


def repack_packed(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, group_size: int):
    """Signed 4-bit q [N, K] with scale [N, K/g] (and zero point) -> (packed int32 [N, K/8],
    scales bf16 [K/g, N], offsets bf16 [K/g, N] or None)."""
    from greenai_dagster.core.runtimes.cuda_kernels import pack_unsigned

    if q.shape[1] % group_size:
        raise ValueError(f"in_features {q.shape[1]} is not a multiple of the group size {group_size}")
    packed = pack_unsigned((q.to(torch.int32) + 8).clamp(0, 15), 4)
    scales = scale.float().t().contiguous().to(torch.bfloat16)
    offsets = None
    if zero_point is not None and bool((zero_point != 0).any()):
        offsets = (8.0 + zero_point.float()).t().contiguous().to(torch.bfloat16)
    return packed, scales, offsets


class CudaW4Triton(CudaW4):
    """`CudaW4`'s checkpoints, packed for `cuda_kernels` (u = q + 8, eight columns per int32, group-major
    scales); decode through the Triton launch list (`cuda_static.StaticDecoder.kernel_step`)."""

    name = "torch-cuda-w4-triton"
    kernel = ("W4 group-quantized: Triton int4 GEMV (magic-number dequantization, group-major scales) in a "
              "CUDA-graph decode step with fused attention; dequantize + cuBLAS for prefill; bf16 lm_head")

    def available(self, device: str) -> bool:
        if not CudaRuntime.available(self, device):
            return False
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True

    def build(self, record: Record) -> torch.nn.Module:
        packed, scales, offsets = repack_packed(record["q"], record["scale"], record["zero_point"],
                                                record["group_size"])
        n, k = record["q"].shape
        return PackedW4Linear(packed, scales, offsets, record["group_size"], k, n, record.get("bias"))
