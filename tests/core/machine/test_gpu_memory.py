"""Per-stage peak CUDA memory (core/machine/gpu_memory.py): measured on CUDA only, nothing recorded elsewhere."""

from __future__ import annotations

import pytest
import torch

from greenai_dagster.core.machine.gpu_memory import CONDITIONS_KEY, START_KEY, StagePeaks, cuda_device, stage_peak

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour where torch has no CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_a_cpu_stage_measures_nothing():
    assert cuda_device("cpu") is None
    with stage_peak("cpu") as peak:
        torch.ones(1024)
    assert peak.gb is None and peak.start_gb is None


@no_cuda
def test_cuda_asked_of_a_torch_without_cuda_measures_nothing_and_does_not_fail():
    assert cuda_device("cuda") is None
    with stage_peak("cuda:0") as peak:
        pass
    assert peak.gb is None


def test_a_cpu_run_adds_nothing_to_the_conditions_never_a_zero():
    peaks = StagePeaks("cpu")
    with peaks.stage("load"):
        pass
    with peaks.stage("fidelity"):
        pass
    conditions = {"device": "cpu"}
    assert peaks.record(conditions) == {"device": "cpu"}
    assert peaks.gb == {} and peaks.start_gb == {}


def test_stages_are_recorded_in_the_order_they_ran_after_the_compression_s():
    """The candidate row: compression's stages (read back from its marker file) first, then the load, then
    the scoring stages evaluate_checkpoint recorded. The values are placeholders for the ordering only."""
    peaks = StagePeaks("cpu", gb={"load": 2.0}, start_gb={"load": 0.5})
    compression = {CONDITIONS_KEY: {"compress_load": 1.0, "compress": 1.5},
                   START_KEY: {"compress_load": 0.0, "compress": 1.0}}
    conditions = {CONDITIONS_KEY: {"fidelity": 2.5, "accuracy": 2.25}, START_KEY: {"fidelity": 2.0, "accuracy": 2.0}}
    peaks.record(conditions, earlier=compression)
    assert list(conditions[CONDITIONS_KEY]) == ["compress_load", "compress", "load", "fidelity", "accuracy"]
    assert list(conditions[START_KEY]) == ["compress_load", "compress", "load", "fidelity", "accuracy"]
    assert "max_memory_allocated" in conditions["gpu_peak_source"]


def test_a_stage_that_raises_is_not_recorded():
    peaks = StagePeaks("cpu")
    with pytest.raises(RuntimeError):
        with peaks.stage("compress"):
            raise RuntimeError("method failed")
    assert "compress" not in peaks.gb


def test_compressing_on_cpu_writes_no_gpu_figures_into_the_checkpoint(tiny_model_dir, tiny_spec, tmp_path):
    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.formats.common import variant_metadata
    from greenai_dagster.core.strategy import Step, Strategy

    strategy = Strategy("rtn4", [Step("rtn", {"bits": 4, "group_size": 32})])
    info = compress_to_checkpoint(str(tiny_model_dir), strategy, tiny_spec, tmp_path / "model")
    assert CONDITIONS_KEY not in info and START_KEY not in info
    assert CONDITIONS_KEY not in variant_metadata(tmp_path / "model")


def test_compression_leaves_no_model_in_llm_compressors_session(tiny_model_dir, tiny_spec, tmp_path):
    """llm-compressor's global session held the last compressed model after `oneshot` (so its memory, on a
    GPU too, stayed allocated through the steps after it); once the checkpoint is saved it is released."""
    from llmcompressor.core import active_session

    from greenai_dagster.core.compress import compress_to_checkpoint
    from greenai_dagster.core.strategy import Step, Strategy

    strategy = Strategy("rtn4", [Step("rtn", {"bits": 4, "group_size": 32})])
    compress_to_checkpoint(str(tiny_model_dir), strategy, tiny_spec, tmp_path / "model")
    assert active_session().state.model is None
    assert (tmp_path / "model" / "config.json").exists()


@needs_cuda
def test_a_cuda_stage_counts_what_it_allocates_and_what_was_held_before():
    held = torch.empty(16 * 2**20, dtype=torch.uint8, device="cuda")          # 16 MiB held before the stage
    peaks = StagePeaks("cuda")
    with peaks.stage("work"):
        scratch = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")   # 64 MiB within it
        del scratch
    assert peaks.start_gb["work"] >= 16 / 1024 - 1e-3
    assert peaks.gb["work"] >= (16 + 64) / 1024 - 1e-3
    del held
