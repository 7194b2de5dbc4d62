"""Links into the REST API for Dagster metadata (no FastAPI import: the assets use this).

`GREENAI_API_URL` (e.g. http://127.0.0.1:8000, where `greenai serve` listens) set in the
environment of `dagster dev` makes the frontier's metadata link to the served chart, so one
click in the UI opens it; unset, the metadata keeps the file path.
"""

from __future__ import annotations

import os
from urllib.parse import quote


def api_url() -> str | None:
    return os.environ.get("GREENAI_API_URL", "").strip().rstrip("/") or None


def chart_url(experiment: str) -> str | None:
    base = api_url()
    return f"{base}/experiments/{quote(experiment, safe='')}/chart" if base else None


def pareto_url(experiment: str) -> str | None:
    base = api_url()
    return f"{base}/pareto/{quote(experiment, safe='')}" if base else None
