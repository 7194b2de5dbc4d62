"""Registry of compression methods: name -> method object. Adding a method is one file + one line."""

from __future__ import annotations

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.base import CompressionMethod
from greenai_dagster.core.methods.gptq import Gptq
from greenai_dagster.core.methods.int8_dynamic import Int8Dynamic

REGISTRY: dict[str, CompressionMethod] = {m.name: m for m in (Int8Dynamic(), Gptq())}


def get_method(name: str) -> CompressionMethod:
    try:
        return REGISTRY[name]
    except KeyError:
        raise CompressionFailed(
            f"unknown compression method '{name}'.", f"Use one of: {', '.join(sorted(REGISTRY))}."
        ) from None
