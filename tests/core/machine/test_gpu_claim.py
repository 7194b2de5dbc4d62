"""One step per GPU (issue 14): the `gpu` pool's limit follows the GPU count, and each GPU step claims a
GPU no other process holds. Runs without a GPU: GPUs are named through CUDA_VISIBLE_DEVICES, and the
claims are real kernel locks between real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from greenai_dagster.core.machine import gpu_claim


@pytest.fixture()
def fresh_claims(data_root, monkeypatch):
    monkeypatch.setattr(gpu_claim, "_pinned", None)
    yield data_root


def test_visible_gpus_reads_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert gpu_claim.visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_claim.visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpu_claim.visible_gpus() == []


def test_claims_never_share_a_gpu_and_wait_when_all_are_held(fresh_claims):
    with gpu_claim.claim(["0", "1"]) as first, gpu_claim.claim(["0", "1"]) as second:
        assert {first.gpu, second.gpu} == {"0", "1"} and {first.index, second.index} == {0, 1}
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            with gpu_claim.claim(["0", "1"], poll_s=0.05, timeout_s=0.5):
                pass
        assert time.perf_counter() - started >= 0.5
    with gpu_claim.claim(["0", "1"], timeout_s=0.5) as again:    # released on exit
        assert again.gpu == "0" and again.wait_s < 0.5


def test_a_killed_holder_frees_its_gpu(fresh_claims):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom greenai_dagster.core.machine import gpu_claim\n"
         "with gpu_claim.claim(['0']) as c:\n    print(c.gpu, flush=True)\n    time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert holder.stdout.readline().strip() == "0"
    with pytest.raises(TimeoutError):                              # held by the other process
        with gpu_claim.claim(["0"], poll_s=0.05, timeout_s=0.3):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with gpu_claim.claim(["0"], timeout_s=5) as claim:
        assert claim.gpu == "0"


def test_a_fresh_process_is_pinned_and_a_busy_one_gets_an_index(fresh_claims, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,9")
    with gpu_claim.claim(["7"]):                                   # GPU 7 busy with another step
        with gpu_claim.pinned_device(cuda_initialised=True) as (device, held):
            assert device == "cuda:1" and held.gpu == "9"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "7,9"         # an initialised process is not re-pinned
        with gpu_claim.pinned_device(cuda_initialised=False) as (device, held):
            assert device == "cuda:0" and held.gpu == "9"
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "9"       # children see the same single GPU
    with gpu_claim.pinned_device(cuda_initialised=False) as (device, held):
        assert device == "cuda:0" and held.gpu == "9"              # pinned for the process's lifetime
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setattr(gpu_claim, "_pinned", None)
    with gpu_claim.pinned_device(cuda_initialised=False) as (device, held):
        assert device == "cuda" and held is None                   # one GPU: nothing to choose


def test_gpu_pool_limit_follows_the_gpu_count_and_keeps_a_set_one(data_root, monkeypatch):
    from dagster import DagsterInstance

    from greenai_dagster.gpu_pool import POOL, ensure_gpu_pool, pool_limit
    from greenai_dagster.resources import GpuResource

    instance = DagsterInstance.get()                               # sqlite under the test's DAGSTER_HOME
    assert pool_limit(instance) is None
    assert ensure_gpu_pool(instance, 0) is None and pool_limit(instance) is None   # CPU: nothing held back
    assert ensure_gpu_pool(instance, 2) == 2 and pool_limit(instance) == 2
    instance.event_log_storage.set_concurrency_slots(POOL, 3)      # a person's choice stays
    assert ensure_gpu_pool(instance, 2) == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert GpuResource(device="auto").gpu_count() == 4
    assert GpuResource(device="cuda:1").gpu_count() == 1 and GpuResource(device="cpu").gpu_count() == 0
