"""Registry of compression methods: name -> method object. Adding a method is one file + one line."""

from __future__ import annotations

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods.asvd import Asvd
from greenai_dagster.core.methods.autoround import AutoRound
from greenai_dagster.core.methods.awq import Awq
from greenai_dagster.core.methods.base import CompressionMethod
from greenai_dagster.core.methods.gguf import GgufQuant
from greenai_dagster.core.methods.gptq import Gptq
from greenai_dagster.core.methods.int8_dynamic import Int8Dynamic
from greenai_dagster.core.methods.lora import Lora
from greenai_dagster.core.methods.magnitude import MagnitudePrune
from greenai_dagster.core.methods.mixed.method import MixedPrecision
from greenai_dagster.core.methods.qlora import QLora
from greenai_dagster.core.methods.rtn import Rtn
from greenai_dagster.core.methods.smoothquant import SmoothQuantW8A8
from greenai_dagster.core.methods.sparsity import SparseGpt, Wanda
from greenai_dagster.core.methods.structured import StructuredPrune

REGISTRY: dict[str, CompressionMethod] = {m.name: m for m in (
    Gptq(), Awq(), AutoRound(), Rtn(), MixedPrecision(), Int8Dynamic(), SmoothQuantW8A8(),
    MagnitudePrune(), StructuredPrune(), SparseGpt(), Wanda(),
    Asvd(), GgufQuant(),
    Lora(), QLora(),
)}


def get_method(name: str) -> CompressionMethod:
    try:
        return REGISTRY[name]
    except KeyError:
        raise CompressionFailed(
            f"unknown compression method '{name}'.", f"Use one of: {', '.join(sorted(REGISTRY))}."
        ) from None
