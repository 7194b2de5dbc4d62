"""GpuResource: picks the device and is the one door through which compression and evaluation run.

Device placement, memory reporting and clean-up live here, so assets never touch CUDA directly.
GPU work is serialised by the `gpu` pool on the compression / benchmark assets (one run per GPU).
"""

from __future__ import annotations

import gc

from dagster import ConfigurableResource
from pydantic import Field


class GpuResource(ConfigurableResource):
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda' or 'cuda:N'")

    def device_name(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            from greenai_dagster.core.errors import OutOfMemory

            raise OutOfMemory("device 'cuda' was asked for but no CUDA GPU is visible.", "Set gpu.device to 'cpu' or 'auto'.")
        return self.device

    def status(self) -> dict:
        """Device, memory and utilisation (the seed's /gpu status)."""
        import psutil
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
        """Call `fn(*args, device=..., **kwargs)` on the chosen device, freeing device memory after."""
        try:
            return fn(*args, device=self.device_name(), **kwargs)
        finally:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
