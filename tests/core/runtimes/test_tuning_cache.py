"""The Triton tuner's on-disk choices (`core.runtimes.tuning_cache`): what one process stores, the next reads,
keyed so that another chip or a changed kernel is timed afresh; a bad file costs the shortcut, not the run."""

from __future__ import annotations

import json

from greenai_dagster.core.runtimes import tuning_cache

CONFIG_A = {"meta": {"BN": 8, "BK": 1024, "GROUP_REDUCE": True}, "num_warps": 4, "num_stages": 3}
CONFIG_B = {"meta": {"BN": 16, "BK": 512}, "num_warps": 2, "num_stages": 3, "separate_input": True}


def test_a_stored_choice_is_read_back_equal_and_a_second_keeps_the_first(tmp_path):
    file = tmp_path / "cache" / "kernel_tuning.json"
    k1 = tuning_cache.key(("gemv_wq", 28672, 4096, 128, 4, True, False), "NVIDIA H100 80GB HBM3", "3.6.0", "abc")
    k2 = tuning_cache.key(("gemv_bf16", 4096, 4096, False, False), "NVIDIA H100 80GB HBM3", "3.6.0", "abc")
    tuning_cache.store(file, k1, CONFIG_A, 0.058694)
    tuning_cache.store(file, k2, CONFIG_B, 0.02154)
    stored = tuning_cache.load(file)
    assert stored[k1] == {"config": CONFIG_A, "ms": 0.05869}
    assert stored[k2]["config"] == CONFIG_B   # JSON gives back a dict equal to the candidate it came from
    assert not list(file.parent.glob("*.tmp"))


def test_another_chip_triton_or_kernel_source_is_another_key():
    choice = ("gemv_fp8", 6144, 4096, True, False)
    base = tuning_cache.key(choice, "NVIDIA H100 80GB HBM3", "3.6.0", "abc")
    assert len({base, tuning_cache.key(choice, "NVIDIA H200", "3.6.0", "abc"),
                tuning_cache.key(choice, "NVIDIA H100 80GB HBM3", "3.5.1", "abc"),
                tuning_cache.key(choice, "NVIDIA H100 80GB HBM3", "3.6.0", "def")}) == 4


def test_a_corrupt_file_reads_as_empty_and_the_next_store_mends_it(tmp_path):
    file = tmp_path / "kernel_tuning.json"
    file.write_text('{"half a fi')
    assert tuning_cache.load(file) == {}
    tuning_cache.store(file, "k", CONFIG_A, 0.1)
    assert json.loads(file.read_text()) == {"k": {"config": CONFIG_A, "ms": 0.1}}


def test_off_means_no_file_and_an_unwritable_place_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENAI_KERNEL_TUNING", "off")
    assert tuning_cache.path() is None
    tuning_cache.store(None, "k", CONFIG_A, 0.1)   # no-op
    monkeypatch.delenv("GREENAI_KERNEL_TUNING")
    monkeypatch.setenv("GREENAI_DATA", str(tmp_path / "data"))
    assert tuning_cache.path() == (tmp_path / "data" / "cache" / "kernel_tuning.json").resolve()
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    tuning_cache.store(blocker / "kernel_tuning.json", "k", CONFIG_A, 0.1)
    assert blocker.read_text() == "a file where the cache folder should be"
