"""Dagster resource around the DuckDB ResultsStore."""

from dagster import ConfigurableResource
from pydantic import Field

from greenai_dagster.core.storage.paths import duckdb_path
from greenai_dagster.core.storage.store import ResultsStore


class ResultsStoreResource(ConfigurableResource):
    path: str = Field(default_factory=lambda: str(duckdb_path()), description="DuckDB file")

    def get(self) -> ResultsStore:
        return ResultsStore(self.path)
