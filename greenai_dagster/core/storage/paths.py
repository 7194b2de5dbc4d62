"""Where things live on disk.

Everything the project writes sits under one data root (`GREENAI_DATA`, default `./data`):
the DuckDB file, the Dagster instance, cached models, benchmark data and experiment folders.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    return Path(os.environ.get("GREENAI_DATA", "data")).resolve()


def models_dir() -> Path:
    return data_root() / "models"


def benchmarks_dir() -> Path:
    return data_root() / "benchmarks"


def experiments_dir() -> Path:
    return data_root() / "experiments"


def duckdb_path() -> Path:
    return data_root() / "greenai.duckdb"


def dagster_home() -> Path:
    return data_root() / "dagster_home"


def checkpoints_dir() -> Path:
    """Compressed checkpoints: large, so kept apart from the small JSON experiment folders."""
    return data_root() / "checkpoints"
