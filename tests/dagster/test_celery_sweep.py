"""The Celery sweep's step runs the pipeline on the device its worker's `GpuResource` names (issue 27, item 3).

Before, `compress_and_benchmark` called the pipeline with no device, so a worker on a GPU machine compressed
and evaluated on its CPU. These run the op's body in this process (Dagster's `build_op_context` with the
resources a worker would have), without redis or workers: tests/dagster/test_celery.py covers the spread over workers.
The GPU side runs without a GPU as tests/core/machine/test_gpu_claim.py does: GPUs are named through
CUDA_VISIBLE_DEVICES and the claims are real kernel locks; torch is told a GPU exists (its CPU build then
fails at the first tensor moved there, which is where the device is seen to have reached the pipeline).
"""

from __future__ import annotations

import os

import pytest

from greenai_dagster.core.machine import gpu_claim

FAST_EVAL = {"limit_per_task": 4, "full_set_for_frontier": False, "batch_size": 4, "fidelity_tokens": 512,
             "prompt_len": 16, "new_tokens": 4, "latency_repeats": 2, "throughput_batch_size": 2,
             "sampled_tokens": 0}


@pytest.fixture(scope="module")
def sweep_experiment(tmp_path_factory, tiny_model_dir, tiny_benchmark, data_root):
    """A tiny experiment with its baseline and two registered, pending candidates; (store path, keys)."""
    from greenai_dagster.core import pipeline
    from greenai_dagster.core.settings.config import ExperimentConfig
    from greenai_dagster.core.storage.store import ResultsStore

    folder = tmp_path_factory.mktemp("sweep")
    store = ResultsStore(folder / "results.duckdb")
    config = ExperimentConfig(model=str(tiny_model_dir), dataset=str(tiny_benchmark), episodes=2, name="sweep_dev",
                              output_dir=str(folder / "experiments"), eval=FAST_EVAL)
    keys = pipeline.experiment_with_chosen_candidates(store, config, [("rtn", {"bits": 8}), ("int8", {})], "test")
    return store.path, keys


def _step_context(store_path, device: str):
    from dagster import build_op_context

    from greenai_dagster.resources import GpuResource, ResultsStoreResource

    return build_op_context(resources={"store": ResultsStoreResource(path=str(store_path)),
                                       "gpu": GpuResource(device=device)})


def test_the_sweep_step_compresses_and_measures_on_the_workers_device(sweep_experiment):
    from greenai_dagster.celery_sweep import compress_and_benchmark
    from greenai_dagster.core.storage.store import ResultsStore

    store_path, keys = sweep_experiment
    done = compress_and_benchmark(_step_context(store_path, "cpu"), keys[0])
    assert done["candidate_key"] == keys[0] and done["device"] == "cpu"
    store = ResultsStore(store_path)
    assert store.result(keys[0])["conditions"]["device"] == "cpu"      # what the evaluation ran on
    assert store.strategy(keys[0])["status"] == "done"


def test_the_sweep_step_claims_a_free_gpu_and_runs_there(sweep_experiment, data_root, monkeypatch):
    """Two fake GPUs, one held by another step: the sweep's step asks its `GpuResource` (device "cuda") for
    a device, claims the free GPU, pins this process to it and hands the pipeline "cuda:0"; the CPU build of
    torch then refuses the first tensor moved there, and that error is what the candidate's record keeps."""
    import torch

    from greenai_dagster.celery_sweep import compress_and_benchmark
    from greenai_dagster.core.storage.store import ResultsStore

    store_path, keys = sweep_experiment
    monkeypatch.setattr(gpu_claim, "_pinned", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,9")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)     # a GPU machine, as far as torch says
    with gpu_claim.claim(["7"]):                                       # GPU 7 busy with another step
        with pytest.raises(Exception) as err:
            compress_and_benchmark(_step_context(store_path, "cuda"), keys[1])
    # it tried the GPU, not the CPU ("Torch not compiled with CUDA enabled"; a CUDA build without a driver
    # says "No CUDA GPUs are available" or "Found no NVIDIA driver")
    assert any(word in str(err.value) for word in ("CUDA", "NVIDIA")), err.value
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "9" and gpu_claim._pinned == "9"   # on the free GPU
    store = ResultsStore(store_path)
    record = next(r for r in store.strategies("sweep_dev") if r["candidate_key"] == keys[1])
    assert record["status"] == "failed" and record["error"] == str(err.value), record
    assert store.result(keys[1]) is None
