"""Formats a unit can take, the units themselves, and the fake-quantisation that simulates them.

A level is a symmetric group-wise integer format of 2 to 8 bits (as `core.methods.rtn` saves it through
llm-compressor) or `f16` (left in float). Bits per weight count the integers only; every quantized
level shares the group size, so their scale overhead is the same and `avg_bits` compares them fairly
(size on disk is measured separately, from the checkpoint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from greenai_dagster.core.models import arch

GROUP_SIZE = 64
LEVELS: dict[str, int] = {"w2": 2, "w3": 3, "w4": 4, "w5": 5, "w6": 6, "w8": 8, "f16": 16}


@dataclass(frozen=True)
class Unit:
    """One allocation decision: a set of linears that share a format."""

    name: str                   # "model.layers.3" (block) or "model.layers.3.mlp.down_proj" (linear)
    linears: tuple[str, ...]    # module names of the nn.Linear layers it covers
    params: int                 # weights in those linears

    def pattern(self) -> str:
        """A compressed-tensors target matching exactly these linears."""
        return "re:^(" + "|".join(re.escape(n) for n in self.linears) + ")$"


def level_bits(level: str) -> int:
    try:
        return LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(LEVELS)}") from None


def quantizable_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every nn.Linear llm-compressor would quantize: not the output head, not MoE routers."""
    skip = arch.head_names(model) | arch.router_names(model)
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name not in skip}


def units(model: torch.nn.Module, granularity: str = "block") -> list[Unit]:
    """The allocation units: one per linear, or one per transformer block (its linears together)."""
    linears = quantizable_linears(model)
    if granularity == "linear":
        return [Unit(n, (n,), m.weight.numel()) for n, m in linears.items()]
    if granularity != "block":
        raise ValueError(f"granularity must be 'block' or 'linear', not {granularity!r}")
    blocks: dict[str, list[str]] = {}
    for name in linears:
        match = re.match(r"^(.*?\.(?:layers|h|blocks|block)\.\d+)\.", name)
        blocks.setdefault(match.group(1) if match else name, []).append(name)
    return [Unit(b, tuple(ns), sum(linears[n].weight.numel() for n in ns)) for b, ns in blocks.items()]


def quant_args(bits: int, group_size: int = GROUP_SIZE):
    from compressed_tensors.quantization import QuantizationArgs

    return QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy="group", group_size=group_size)


SCALE_DTYPE = torch.bfloat16   # llm-compressor stores and applies group scales in bfloat16


@torch.no_grad()
def fake_quantize(weight: torch.Tensor, bits: int, group_size: int = GROUP_SIZE) -> torch.Tensor:
    """The weight exactly as llm-compressor's RTN saves it, dequantized: per-group absmax scales from
    compressed-tensors' `calculate_qparams`, stored in bfloat16; the weight divided, rounded, clamped
    and multiplied back in bfloat16, as its compressor does (a test checks every integer and logit)."""
    from compressed_tensors.quantization.utils import calculate_qparams

    args = quant_args(bits, group_size)
    rows, cols = weight.shape
    grouped = weight.float().reshape(rows, cols // group_size, group_size)
    scale, _ = calculate_qparams(grouped.amin(-1), grouped.amax(-1), args)
    scale = scale.to(SCALE_DTYPE)[..., None]
    q = torch.clamp(torch.round(grouped.to(SCALE_DTYPE) / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return (q * scale).reshape(rows, cols).to(weight.dtype)


def average_bits(allocation: dict[str, str], unit_list: list[Unit]) -> float:
    """Weight-weighted mean bits of an allocation (units it does not name stay in float)."""
    total = sum(u.params for u in unit_list)
    return sum(u.params * level_bits(allocation.get(u.name, "f16")) for u in unit_list) / total


def uniform(unit_list: list[Unit], level: str) -> dict[str, str]:
    return {u.name: level for u in unit_list}
