"""Measured sensitivity: the KL divergence from the baseline when units are quantized.

Everything here is measured, not estimated: `table` quantizes one unit at one level at a time
(every other weight as in the baseline) and runs the model on the sensitivity tokens; `measure`
does the same for a whole allocation. The tokens come from the calibration corpus, never from the
held-out text a candidate is finally evaluated on, so the search cannot fit the evaluation.

Weights are swapped in place and always restored (`quantized`), so one float model in memory serves
every measurement; fake-quantized weights are cached per (linear, level).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from greenai_dagster.core.evaluation import fidelity
from greenai_dagster.core.methods.mixed.levels import GROUP_SIZE, Unit, fake_quantize, level_bits


class Quantizer:
    """Applies allocations to a float model in place, caching each linear's fake-quantized weights."""

    def __init__(self, model: torch.nn.Module, unit_list: list[Unit], group_size: int = GROUP_SIZE):
        self.model = model
        self.group_size = group_size
        self.units = {u.name: u for u in unit_list}
        self.modules = dict(model.named_modules())
        self._cache: dict[tuple[str, str], torch.Tensor] = {}

    def weight(self, linear: str, level: str) -> torch.Tensor:
        key = (linear, level)
        if key not in self._cache:
            self._cache[key] = fake_quantize(self.modules[linear].weight.data, level_bits(level), self.group_size)
        return self._cache[key]

    def use(self, level: str, weights: dict[str, torch.Tensor]) -> None:
        """Serve `level` from given weights ({linear: dequantized weight}) instead of RTN: e.g. each linear as a
        uniform GPTQ run at that level left it, so a search stitches GPTQ's own layers (EvoPress's database)."""
        for linear, weight in weights.items():
            self._cache[(linear, level)] = weight

    def clear(self) -> None:
        """Drop the cached fake-quantized weights (about 4 bytes per weight per level used)."""
        self._cache.clear()

    @contextmanager
    def quantized(self, allocation: dict[str, str]) -> Iterator[torch.nn.Module]:
        """The model with `allocation` applied (units not named, and `f16` units, stay in float)."""
        saved: dict[str, torch.Tensor] = {}
        try:
            for unit_name, level in allocation.items():
                if level == "f16":
                    continue
                for linear in self.units[unit_name].linears:
                    module = self.modules[linear]
                    saved[linear] = module.weight.data
                    module.weight.data = self.weight(linear, level)
            yield self.model
        finally:
            for linear, original in saved.items():
                self.modules[linear].weight.data = original


def reference_on(model: torch.nn.Module, token_chunks: list[list[int]]) -> dict[str, torch.Tensor]:
    """The float model's top-k distributions on the sensitivity tokens (equal-length chunks)."""
    windows = torch.tensor(token_chunks, dtype=torch.long)
    return fidelity.build_reference(model, windows)


def measure(quantizer: Quantizer, reference: dict[str, torch.Tensor], allocation: dict[str, str],
            max_positions: int | None = None) -> fidelity.Fidelity:
    """`fidelity.measure` of the model with `allocation` applied (on the first `max_positions` only, if given:
    the cheap fitness of the evolution's screens)."""
    with quantizer.quantized(allocation) as model:
        return fidelity.measure(model, reference, max_positions=max_positions)


def table(quantizer: Quantizer, reference: dict[str, torch.Tensor], levels: list[str],
          progress: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """{unit: {level: KL}}, one unit quantized at a time; `f16` (unchanged weights) is 0 by definition."""
    out: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for i, unit in enumerate(quantizer.units.values()):
        out[unit.name] = {}
        for level in levels:
            out[unit.name][level] = 0.0 if level == "f16" else measure(quantizer, reference, {unit.name: level}).kl_divergence
        if progress:
            progress(f"sensitivity {i + 1}/{len(quantizer.units)} {unit.name}: "
                     + ", ".join(f"{lv} {kl:.4f}" for lv, kl in out[unit.name].items())
                     + f" ({time.perf_counter() - started:.0f} s)")
    return out


def predicted_kl(sens: dict[str, dict[str, float]], allocation: dict[str, str]) -> float:
    """The additive prediction: the sum of each unit's own KL at its level."""
    return sum(sens[unit][level] for unit, level in allocation.items())
