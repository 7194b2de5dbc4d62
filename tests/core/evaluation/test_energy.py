"""Energy measurement (core/evaluation/energy.py): when codecarbon cannot start or reads nothing, the
reading is null with the reason, never zero, and the measured work still runs."""

from __future__ import annotations

import pytest


class _BrokenStart:
    def __init__(self, *a, **k):
        pass

    def start(self):
        raise RuntimeError("no RAPL, no TDP table entry")


class _NoReading(_BrokenStart):
    final_emissions_data = None

    def start(self):
        pass

    def stop(self):
        return None


@pytest.mark.parametrize("tracker, says", [(_BrokenStart, "could not start"), (_NoReading, "no measurement")])
def test_a_codecarbon_failure_records_null_and_why_never_zero(tracker, says, monkeypatch):
    import codecarbon

    from greenai_dagster.core.evaluation.energy import track_energy

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", tracker)
    ran = []
    with track_energy() as reading:
        ran.append(True)                                   # the measured work still runs
    assert ran and reading.energy_kwh is None and reading.co2_grams is None and says in reading.error
