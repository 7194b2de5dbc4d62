"""Resources: the results store and the compute device. One set per deployment (`local` / `cluster`)."""

import os

from greenai_dagster.resources.gpu import GpuResource
from greenai_dagster.resources.store import ResultsStoreResource


def resources_for(deployment: str | None = None) -> dict:
    """`local`: DuckDB under the data root, this machine's device. `cluster`: a shared store path
    from GREENAI_SHARED_DUCKDB and one GPU per run (the pool limit is set in dagster.yaml)."""
    deployment = deployment or os.environ.get("GREENAI_DEPLOYMENT", "local")
    if deployment == "cluster":
        return {"store": ResultsStoreResource(path=os.environ["GREENAI_SHARED_DUCKDB"]), "gpu": GpuResource(device="cuda")}
    return {"store": ResultsStoreResource(), "gpu": GpuResource()}


__all__ = ["GpuResource", "ResultsStoreResource", "resources_for"]
