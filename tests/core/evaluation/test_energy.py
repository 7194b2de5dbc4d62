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


def test_a_coarse_energy_counter_is_read_over_its_window_not_around_each_short_decode_loop(tiny_model_dir):
    """A counter that moves in steps (NVML: every ~20-100 ms) is read over at least its `min_window_s` of
    decoding, and the figure is that window's joules over its decoded tokens; a fine counter is read around
    each timed decode loop as before. A constant-power counter makes the expected joules exact."""
    from greenai_dagster.core.evaluation.runtime_probe import measure
    from greenai_dagster.core.evaluation.serving_energy import ConstantPower
    from greenai_dagster.core.runtimes import EagerTorch

    session = EagerTorch().open_for_request(tiny_model_dir, "cpu", 1, 16 + 4)
    fine = measure(session, 256, 16, 4, repeats=2, warmup=1, batch_size=0, meter=ConstantPower(50.0, "test"))
    assert "energy_window" not in fine
    assert fine["energy_j_per_token"] == pytest.approx(50.0 * fine["decode_ms_per_token"] / 1000, rel=0.5)

    coarse = ConstantPower(50.0, "test")
    coarse.min_window_s = 0.3
    figures = measure(session, 256, 16, 4, repeats=2, warmup=1, batch_size=0, meter=coarse)
    window = figures["energy_window"]
    assert window["seconds"] >= 0.3 and window["tokens"] >= 11 and window["tokens"] % 11 == 0   # 20 - 8 - 1 per cycle
    assert figures["energy_j_per_token"] == pytest.approx(50.0 * window["seconds"] / window["tokens"], rel=0.02)
    assert window["watts"] == pytest.approx(50.0, rel=0.02)
    # the window's short prefills cost little beside its decodes: J/token stays near power x decode time
    assert 0.5 < figures["energy_j_per_token"] / (50.0 * figures["decode_ms_per_token"] / 1000) < 3.0
