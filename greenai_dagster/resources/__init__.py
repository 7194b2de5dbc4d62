"""Resources: the results store and the compute device. One set per deployment (`local` / `cluster`)."""

import os

from dagster import EnvVar

from greenai_dagster.core.errors import DiskFull
from greenai_dagster.resources.gpu import GpuResource
from greenai_dagster.resources.store import ResultsStoreResource

SHARED_DUCKDB = "GREENAI_SHARED_DUCKDB"


def _shared_store_missing():
    return DiskFull(f"GREENAI_DEPLOYMENT=cluster needs {SHARED_DUCKDB} (the DuckDB file every run writes to), and it "
                    "is not set.",
                    f"export {SHARED_DUCKDB}=/shared/path/greenai.duckdb, or unset GREENAI_DEPLOYMENT for the local "
                    "store under GREENAI_DATA.")


class UnsetSharedStore(ResultsStoreResource):
    """The cluster store when its variable is unset: the definitions still load (the UI can show what is
    wrong), and every use of the store fails with the E007 that says which variable to set."""

    def get(self):
        raise _shared_store_missing()


def resources_for(deployment: str | None = None) -> dict:
    """`local`: DuckDB under the data root, this machine's device. `cluster`: the shared store path from
    GREENAI_SHARED_DUCKDB, read through Dagster's EnvVar (resolved when a run starts, shown as such in the UI),
    and one GPU per run (the pool limit is set in dagster.yaml)."""
    deployment = deployment or os.environ.get("GREENAI_DEPLOYMENT", "local")
    if deployment == "cluster":
        if not os.environ.get(SHARED_DUCKDB, "").strip():
            return {"store": UnsetSharedStore(path=""), "gpu": GpuResource(device="cuda")}
        return {"store": ResultsStoreResource(path=EnvVar(SHARED_DUCKDB)), "gpu": GpuResource(device="cuda")}
    if deployment != "local":
        raise DiskFull(f"GREENAI_DEPLOYMENT is '{deployment}'; it must be 'local' or 'cluster'.",
                       "Unset it (local) or set it to 'cluster' with GREENAI_SHARED_DUCKDB.")
    return {"store": ResultsStoreResource(), "gpu": GpuResource()}


def open_store(resources: dict):
    """The ResultsStore of a resource set, outside a run (the CLI driver): EnvVar fields resolved now."""
    return resources["store"].process_config_and_initialize().get()


__all__ = ["GpuResource", "ResultsStoreResource", "open_store", "resources_for"]
