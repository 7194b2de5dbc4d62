"""Energy and CO2 around a block of work, through codecarbon's offline tracker (no network).

On a CPU-only machine codecarbon estimates power from the CPU's TDP and the process's share of
it; on a GPU it reads NVML. Reports say which.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class EnergyReading:
    energy_kwh: float = 0.0
    co2_grams: float = 0.0
    duration_s: float = 0.0
    source: str = "codecarbon offline tracker"


@contextmanager
def track_energy(country_iso_code: str = "TWN"):
    """Yield an EnergyReading that is filled in when the block ends (also on error)."""
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    reading = EnergyReading()
    tracker = OfflineEmissionsTracker(
        country_iso_code=country_iso_code, save_to_file=False, log_level="error",
        measure_power_secs=5, tracking_mode="process",
    )
    tracker.start()
    try:
        yield reading
    finally:
        emissions_kg = tracker.stop() or 0.0
        data = tracker.final_emissions_data
        reading.energy_kwh = float(getattr(data, "energy_consumed", 0.0) or 0.0)
        reading.co2_grams = float(emissions_kg) * 1000.0
        reading.duration_s = float(getattr(data, "duration", 0.0) or 0.0)
        reading.source = f"codecarbon offline tracker, country={country_iso_code}, " + (
            "GPU via NVML" if getattr(data, "gpu_power", 0) else "CPU power estimated from TDP")
