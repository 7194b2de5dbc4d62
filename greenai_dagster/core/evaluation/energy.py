"""Energy and CO2 around a block of work, through codecarbon's offline tracker (no network).

On a CPU-only machine codecarbon estimates power from the CPU's TDP and the process's share of
it; on a GPU it reads NVML. Reports say which.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class EnergyReading:
    """None (stored as NULL) when codecarbon could not measure; `error` then says why."""

    energy_kwh: float | None = None
    co2_grams: float | None = None
    duration_s: float = 0.0
    source: str = "codecarbon offline tracker"
    error: str | None = None


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


@contextmanager
def track_energy(country_iso_code: str = "TWN"):
    """Yield an EnergyReading that is filled in when the block ends (also on error).

    A codecarbon failure never fails the work it measures and never reads as 0.0: the figures
    stay None and `error` records the reason."""
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    reading = EnergyReading()
    try:
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(
            country_iso_code=country_iso_code, save_to_file=False, log_level="error",
            measure_power_secs=5, tracking_mode="process",
        )
        tracker.start()
    except Exception as exc:  # noqa: BLE001 - any codecarbon failure: the work goes on, unmeasured
        reading.error = f"codecarbon could not start ({_why(exc)})"
        yield reading
        return
    try:
        yield reading
    finally:
        try:
            emissions_kg = tracker.stop()
            data = tracker.final_emissions_data
        except Exception as exc:  # noqa: BLE001
            emissions_kg, data, reading.error = None, None, f"codecarbon could not stop ({_why(exc)})"
        energy = getattr(data, "energy_consumed", None)
        if reading.error is None and (emissions_kg is None or energy is None):
            reading.error = "codecarbon returned no measurement"
        elif reading.error is None:
            energy, co2 = float(energy), float(emissions_kg) * 1000.0
            if math.isfinite(energy) and math.isfinite(co2) and energy >= 0 and co2 >= 0:
                reading.energy_kwh, reading.co2_grams = energy, co2
            else:
                reading.error = f"codecarbon returned an impossible reading ({energy} kWh, {co2} g)"
        reading.duration_s = float(getattr(data, "duration", 0.0) or 0.0)
        reading.source = f"codecarbon offline tracker, country={country_iso_code}, " + (
            "GPU via NVML" if getattr(data, "gpu_power", 0) else "CPU power estimated from TDP")
