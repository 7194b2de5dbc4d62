"""Will the model fit, and was that failure an out-of-memory? (E003)

Two jobs, both so that memory trouble is the seed's E003 instead of a dead process or an E005:
- `check_fits`: before a model is loaded, its weights at the load dtype (parameters counted on the
  meta device from its config: nothing allocated, no weights read) plus the spec's 10% buffer are
  compared with the memory this process can still get: the host's available memory, capped by a
  cgroup limit (containers, CI runners) and by RLIMIT_AS; or the GPU's free memory. A model that
  cannot fit is refused with needed vs available, before any loading.
- `is_out_of_memory`: torch reports a failed CPU allocation as a RuntimeError ("DefaultCPUAllocator:
  can't allocate memory"), not as MemoryError, so failures inside a method are classified here.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import psutil

from greenai_dagster.core.errors import OutOfMemory

GIB = 1024**3
BUFFER = 0.10        # the spec's inference buffer (core/models/spec.py: 10% of P*W)
OOM_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory", "std::bad_alloc",
               "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, torch's OutOfMemoryError, or an allocator failure torch raised as RuntimeError."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def parameter_count(config, trust_remote_code: bool = False) -> int | None:
    """Parameters of the model `config` describes, counted on the meta device (no memory used). A model
    with its own code is built only under the user's opt-in (`trust_remote_code`); else no estimate."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:   # noqa: BLE001 - an architecture that cannot be built this way: no estimate, no refusal
        return None
    return sum(p.numel() for p in model.parameters())


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2 or v1) memory limit, if one is set."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(int(limit) - usage, 0)
    return None


def available_bytes(device: str = "cpu") -> int:
    """Memory this process can still get on `device`."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)

    room = [psutil.virtual_memory().available]
    cgroup = _cgroup_room()
    if cgroup is not None:
        room.append(cgroup)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        room.append(max(soft - psutil.Process(os.getpid()).memory_info().vms, 0))
    return int(min(room))


def needed_bytes(params: int, dtype) -> int:
    import torch

    return int(params * torch.empty((), dtype=dtype).element_size() * (1 + BUFFER))


def check_fits(model_ref: str, config, device: str, dtype, trust_remote_code: bool = False) -> None:
    """E003 (needed vs available) before loading a model that cannot fit; silent when it fits or when
    no estimate can be made."""
    params = parameter_count(config, trust_remote_code)
    if params is None:
        return
    needed, available = needed_bytes(params, dtype), available_bytes(device)
    if needed > available:
        where = "GPU" if device.startswith("cuda") else "host"
        raise OutOfMemory(
            f"model '{model_ref}' ({params / 1e9:.2f} B parameters) needs about {needed / GIB:.2f} GiB of {where} "
            f"memory to load in {str(dtype).replace('torch.', '')} (weights + {BUFFER:.0%} buffer); "
            f"{available / GIB:.2f} GiB is available. Nothing was loaded.",
            "Use a smaller model, a machine with more memory, or free memory used by other processes.")
