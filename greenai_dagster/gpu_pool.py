"""The Dagster pool `gpu` sized to the machine: one GPU step per GPU at a time, CPU steps never held back.

The compression, baseline and benchmark assets sit in the pool `gpu` (see assets/). Its limit is the
number of GPUs this machine shows (`core.machine.gpu_claim.visible_gpus`), set on the instance the first time the
sensor or `greenai run` launches work; which GPU each step gets is `core.machine.gpu_claim`'s job. A limit a
person set (`dagster instance concurrency set gpu N`, or the UI's concurrency page) is kept. On a
machine without a GPU no limit is set: steps share the CPU, and latency probes still take the device's
exclusive slot (`core.machine.device_slot`).
"""

from __future__ import annotations

from dagster import DagsterInstance

POOL = "gpu"


def pool_limit(instance: DagsterInstance) -> int | None:
    """The `gpu` pool's limit set on this instance (None: not set; the pools' default applies)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    for limit in storage.get_pool_limits():
        if limit.name == POOL and not limit.from_default:
            return limit.limit
    return None


def ensure_gpu_pool(instance: DagsterInstance, gpus: int) -> int | None:
    """Set the `gpu` pool's limit to `gpus` unless one is set; return the limit in force (None: no GPU,
    or a storage without pools)."""
    current = pool_limit(instance)
    if current is not None or gpus < 1 or not instance.event_log_storage.supports_global_concurrency_limits:
        return current
    instance.event_log_storage.set_concurrency_slots(POOL, gpus)
    return gpus
