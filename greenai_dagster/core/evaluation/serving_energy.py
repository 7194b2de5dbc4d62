"""Energy counters for serving: joules spent while a runtime decodes, and where the figure comes from.

In order of trust: the CPU package's RAPL counter (Linux powercap, where readable), NVML's
total-energy counter on an NVIDIA GPU (board energy since driver load, millijoules), and otherwise
codecarbon's power model for this CPU (its TDP table, or its constant 4 W per thread for a CPU it
does not know) times the wall time. `source` says which, and every result row carries it: a
constant-power estimate ranks variants by time alone and is labelled as such.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path


class EnergyCounter:
    """Cumulative joules since an arbitrary origin; `source` names how they are known. `min_window_s`: the
    shortest span over which a difference of two readings means something (0: any span)."""

    source = "none"
    min_window_s = 0.0

    def joules(self) -> float:
        raise NotImplementedError


class Rapl(EnergyCounter):
    def __init__(self, domains: list[Path]):
        self.domains = domains
        self.source = f"RAPL package energy counter ({len(domains)} domain(s))"
        self._last = [self._read(d) for d in domains]
        self._total = 0.0

    @staticmethod
    def _read(domain: Path) -> int:
        return int((domain / "energy_uj").read_text())

    def joules(self) -> float:
        for i, domain in enumerate(self.domains):
            now = self._read(domain)
            delta = now - self._last[i]
            if delta < 0:   # the counter wrapped
                delta += int((domain / "max_energy_range_uj").read_text())
            self._total += delta / 1e6
            self._last[i] = now
        return self._total


class Nvml(EnergyCounter):
    def __init__(self, index: int):
        import pynvml

        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self._nvml = pynvml
        self.source = f"NVML total energy counter, GPU {index}"
        # the counter moves in steps (every ~20-100 ms): over 2 s one step is at most a few percent
        self.min_window_s = 2.0

    def joules(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0


class ConstantPower(EnergyCounter):
    def __init__(self, watts: float, what: str):
        self.watts = watts
        self.source = f"codecarbon power model: {watts:g} W constant ({what}); no energy counter readable"

    def joules(self) -> float:
        return self.watts * time.perf_counter()


def _rapl_domains() -> list[Path]:
    root = Path("/sys/class/powercap")
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1) if root.exists() else []
    readable = []
    for domain in domains:
        try:
            int((domain / "energy_uj").read_text())
            readable.append(domain)
        except (OSError, ValueError):
            pass
    return readable


def counter(device: str, threads: int) -> EnergyCounter:
    """The most trustworthy energy counter for `device` on this machine."""
    if device.startswith("cuda"):
        try:
            return Nvml(int(device.split(":")[1]) if ":" in device else 0)
        except Exception:  # noqa: BLE001 - no NVML here: fall through to the estimate
            pass
    elif domains := _rapl_domains():
        return Rapl(domains)

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    from codecarbon.core.cpu import TDP

    tdp = TDP()   # watts for the whole CPU: its TDP from codecarbon's table, else 4 W per hardware thread
    cores = os.cpu_count() or threads
    return ConstantPower(float(tdp.tdp or 4.0 * cores) * threads / cores,
                         f"{tdp.model}: codecarbon's {tdp.tdp or 4.0 * cores:g} W for the CPU "
                         f"(its table, or 4 W per thread if the CPU is not in it) x {threads}/{cores} threads")
