"""The deployment's resources (resources/): cluster mode without its shared DuckDB is a clear E007 naming
the variable, when the store is used, never a KeyError; the definitions still load so the UI can say so."""

from __future__ import annotations

import subprocess
import sys

import pytest

from greenai_dagster.core.errors import DiskFull
from tests.conftest import REPO

ROOT = REPO


def test_cluster_mode_without_the_shared_duckdb_is_a_clear_error_not_a_keyerror(monkeypatch, data_root):
    """The definitions load without GREENAI_SHARED_DUCKDB (so the UI can say what is wrong); every use of
    the store, at run time, is the E007 naming the variable."""
    import os

    from greenai_dagster.resources import open_store, resources_for

    monkeypatch.delenv("GREENAI_SHARED_DUCKDB", raising=False)
    with pytest.raises(DiskFull, match="GREENAI_SHARED_DUCKDB"):
        open_store(resources_for("cluster"))
    with pytest.raises(DiskFull, match="'local' or 'cluster'"):
        resources_for("clustr")
    monkeypatch.setenv("GREENAI_SHARED_DUCKDB", str(data_root / "shared.duckdb"))
    assert open_store(resources_for("cluster")).path == data_root / "shared.duckdb"   # resolved when used
    env = {k: v for k, v in os.environ.items() if k != "GREENAI_SHARED_DUCKDB"}
    env["GREENAI_DEPLOYMENT"] = "cluster"
    proc = subprocess.run([sys.executable, "-c", "import greenai_dagster.definitions"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "greenai_dagster.cli", "run", "-e", "1", "-n", "cluster_unset"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("E007: GREENAI_DEPLOYMENT=cluster needs GREENAI_SHARED_DUCKDB")
    assert "KeyError" not in proc.stderr and "Traceback" not in proc.stderr
