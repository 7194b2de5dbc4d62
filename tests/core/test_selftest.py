"""The self-test's verdicts decide which runtimes serve: one that failed here is left out, with its reason."""

from __future__ import annotations

import pytest

from greenai_dagster.core import runtimes, selftest
from greenai_dagster.core.models.default_model import find_packaged_gguf
from greenai_dagster.core.runtimes import verdicts


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_runtime_that_failed_here_is_left_out_with_its_reason(own_cache):
    gguf = find_packaged_gguf()
    verdicts.save_verdicts({"llama.cpp": {"passed": False, "reason": "killed by SIGILL", "quick": True}})
    chosen, skipped = runtimes.serving_candidates(gguf, "cpu")
    assert "llama.cpp" not in [r.name for r in chosen]
    assert len(skipped) == 1 and skipped[0].startswith("llama.cpp: failed the self-test on this machine (killed by SIGILL)")
    assert runtimes.serving_candidates(gguf, "cuda")[1] == []          # verdicts are about this CPU only

    verdicts.save_verdicts({"llama.cpp": {"passed": True, "reason": "every check passed", "quick": False}})
    assert runtimes.pick(gguf, "cpu")[0].name == "llama.cpp"


def test_verdicts_belong_to_one_machine_and_build(own_cache):
    verdicts.save_verdicts({"torch-cpu-int4": {"passed": False, "reason": "x"}})
    stored = verdicts.cache_file().read_text()
    other = stored.replace(verdicts._key(verdicts.machine_fingerprint()), "another-machine")
    verdicts.cache_file().write_text(other)
    assert verdicts.load_verdicts() == {}                                 # another machine's verdict is not ours


def test_without_a_verdict_llama_cpp_gets_the_quick_crash_check(own_cache):
    """On a machine whose llama.cpp build crashes (SIGILL in ggml's AMX path), this reports the crash;
    on a sound build the packaged GGUF runs and the verdict is recorded."""
    reason = verdicts.unavailable_reason("llama.cpp")
    verdict = verdicts.load_verdicts()["llama.cpp"]
    assert verdict["quick"] is True
    assert reason is None, reason
    assert verdict["passed"] is True


def test_logits_comparison():
    import numpy as np

    ref = np.array([[4.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    assert selftest.compare(ref, ref) == {"kl": pytest.approx(0.0, abs=1e-12), "top1": 1.0}
    worse = selftest.compare(ref[:, [2, 0, 1]].copy(), ref)
    assert worse["kl"] > 1.0 and worse["top1"] == 0.0
    assert selftest.compare(np.full_like(ref, np.nan), ref)["kl"] == float("inf")
