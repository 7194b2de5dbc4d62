"""`greenai serve`: uvicorn on 127.0.0.1 by default; any other address needs an API key."""

from __future__ import annotations

import ipaddress
import os

from greenai_dagster.api.app import ApiSettings, create_app


class KeyRequired(ValueError):
    """Binding beyond the loopback interface without an API key."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_for(host: str, api_key: str | None = None, dagster_url: str | None = None) -> ApiSettings:
    key = api_key or os.environ.get("GREENAI_API_KEY") or None
    if not is_loopback(host) and not key:
        raise KeyRequired(f"binding to {host} exposes the API beyond this machine: set GREENAI_API_KEY or pass "
                          "--api-key (clients send it in the X-API-Key header), or bind to 127.0.0.1.")
    settings = ApiSettings(api_key=key)
    if dagster_url:
        settings.dagster_url = dagster_url
    return settings


def serve(host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          dagster_url: str | None = None) -> None:
    import uvicorn

    settings = settings_for(host, api_key, dagster_url)
    shown = f"[{host}]" if ":" in host else host
    print(f"greenai serve: http://{shown}:{port} (docs at /docs); runs launch through {settings.dagster_url}. "
          f"Start dagster dev with GREENAI_API_URL=http://{shown}:{port} so the frontier's metadata links to "
          "the served chart.", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
