"""GpuResource: picks the device and is the one door through which compression and evaluation run.

Device placement, memory reporting and clean-up live here, so assets never touch CUDA directly.
GPU work is limited by the `gpu` pool on the compression / benchmark assets (limit = GPU count, set by
`greenai_dagster.gpu_pool`), and each such step's work is pinned to a GPU no other step holds
(`core.machine.gpu_claim`): one step per GPU. CPU work claims nothing.
"""

from __future__ import annotations

import gc
import os

# answer torch.cuda.is_available() through NVML, without initialising CUDA: a step can still be pinned
# to one GPU (CUDA_VISIBLE_DEVICES) after asking whether there is one
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import psutil
from dagster import ConfigurableResource
from pydantic import Field

from greenai_dagster.core.errors import OutOfMemory
from greenai_dagster.core.machine import gpu_claim
from greenai_dagster.core.machine.gpu_claim import visible_gpus


class GpuResource(ConfigurableResource):
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'")

    def device_name(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise OutOfMemory("device 'cuda' was asked for but no CUDA GPU is visible.", "Set gpu.device to 'cpu' or 'auto'.")
        return self.device

    def gpu_count(self) -> int:
        """GPUs this resource's steps may spread over: all visible ones for "auto"/"cuda", one for a named
        "cuda:N", none for "cpu" (counted without initialising CUDA)."""
        if self.device == "cpu":
            return 0
        if self.device.startswith("cuda:"):
            return 1

        return len(visible_gpus())

    def status(self) -> dict:
        """Device, memory and utilisation (the seed's /gpu status)."""
        import torch

        device = self.device_name()
        if device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info()
            try:
                utilisation = torch.cuda.utilization()
            except Exception:  # noqa: BLE001 - needs NVML; not fatal for a status report
                utilisation = None
            return {"device": device, "name": torch.cuda.get_device_name(), "memory_total_gb": total / 1024**3,
                    "memory_free_gb": free / 1024**3, "utilization_percent": utilisation}
        vm = psutil.virtual_memory()
        return {"device": "cpu", "name": "cpu", "threads": torch.get_num_threads(), "memory_total_gb": vm.total / 1024**3,
                "memory_free_gb": vm.available / 1024**3, "utilization_percent": psutil.cpu_percent(interval=0.1)}

    def run(self, fn, *args, **kwargs):
        """Call `fn(*args, device=..., **kwargs)` on the chosen device, freeing device memory after. On a
        machine with several GPUs, `device` "cuda"/"auto" means one GPU claimed for this call alone."""
        device = self.device_name()
        try:
            if device == "cuda":
                import torch

                with gpu_claim.pinned_device(torch.cuda.is_initialized()) as (pinned, _):
                    return fn(*args, device=pinned, **kwargs)
            return fn(*args, device=device, **kwargs)
        finally:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
