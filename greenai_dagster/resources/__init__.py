"""Resources: the results store and the compute device. One set per deployment (`local` / `cluster`)."""

import os

from greenai_dagster.resources.gpu import GpuResource
from greenai_dagster.resources.store import ResultsStoreResource


def resources_for(deployment: str | None = None) -> dict:
    """`local`: DuckDB under the data root, this machine's device. `cluster`: a shared store path
    from GREENAI_SHARED_DUCKDB and one GPU per run (the pool limit is set in dagster.yaml)."""
    from greenai_dagster.core.errors import DiskFull

    deployment = deployment or os.environ.get("GREENAI_DEPLOYMENT", "local")
    if deployment == "cluster":
        shared = os.environ.get("GREENAI_SHARED_DUCKDB", "").strip()
        if not shared:
            raise DiskFull("GREENAI_DEPLOYMENT=cluster needs GREENAI_SHARED_DUCKDB (the DuckDB file every run writes "
                           "to), and it is not set.",
                           "export GREENAI_SHARED_DUCKDB=/shared/path/greenai.duckdb, or unset GREENAI_DEPLOYMENT "
                           "for the local store under GREENAI_DATA.")
        return {"store": ResultsStoreResource(path=shared), "gpu": GpuResource(device="cuda")}
    if deployment != "local":
        raise DiskFull(f"GREENAI_DEPLOYMENT is '{deployment}'; it must be 'local' or 'cluster'.",
                       "Unset it (local) or set it to 'cluster' with GREENAI_SHARED_DUCKDB.")
    return {"store": ResultsStoreResource(), "gpu": GpuResource()}


__all__ = ["GpuResource", "ResultsStoreResource", "resources_for"]
