"""The one interface every compression method implements.

A method is a small class registered by name. It declares its parameters as a pydantic model
(validated at the edge), checks them against the model spec, and `apply`s itself to a model in
memory, returning the model and what it has to report. How the result is saved is named by
`checkpoint_format`: the marker of a `core.formats` module (default `hf`: transformers' `save_pretrained`,
which writes float and compressed-tensors folders, with LoRA adapters beside them), so chains compose
without special cases and a method that writes an existing format needs no other file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.formats import hf
from greenai_dagster.core.models.spec import ModelSpec


PER_CHANNEL_LOG2 = 10.0   # the group_log2 feature of per-channel scales (coarser than any group)


# every concrete method's name, recorded as its class is defined: what an error may offer instead of a method
# this model cannot take (the registry in `core.methods` imports every method module, so base never imports it)
METHOD_NAMES: list[str] = []


def needs_linears(spec: ModelSpec) -> str | None:
    """The reason shared by every weight method when a model has no layer it could change."""
    if not spec.linear_in_features:
        return "it has no nn.Linear or Conv1D layer besides the output head"
    return None


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class CompressionContext:
    """What a method may use besides the model: tokenizer, spec, calibration data, device."""

    tokenizer: Any
    spec: ModelSpec
    device: str = "cpu"
    calibration: Callable[[int, int], list[list[int]]] | None = None  # (num_samples, seq_len) -> token ids


@dataclass
class MethodResult:
    model: torch.nn.Module
    report: dict = field(default_factory=dict)


class CompressionMethod(ABC):
    name: ClassVar[str]
    family: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    must_be_last: ClassVar[bool] = False
    must_be_first: ClassVar[bool] = False
    checkpoint_format: ClassVar[str] = hf.MARKER   # how `core.formats.save` writes the last step's model

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name not in METHOD_NAMES:
            METHOD_NAMES.append(cls.name)

    def parse(self, params: dict) -> MethodParams:
        try:
            return self.Params(**params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            raise CompressionFailed(
                f"invalid parameter for {self.name}: {where}: {first['msg']}.",
                f"Fix '{where}' in the strategy (allowed fields: {', '.join(self.Params.model_fields)}).",
            ) from None

    def validate(self, params: dict, spec: ModelSpec) -> dict:
        reason = spec.unsupported_methods.get(self.name)
        if reason:
            usable = sorted(m for m in METHOD_NAMES if m not in spec.unsupported_methods)
            raise CompressionFailed(
                f"'{self.name}' cannot compress {spec.model_name} ({spec.architecture or spec.model_family}): {reason}.",
                f"Use a method this model supports: {', '.join(usable) or 'none'} (listed in model_spec.json).")
        parsed = self.parse(params)
        self.check(parsed, spec)
        return parsed.model_dump()

    def unsupported(self, model: torch.nn.Module, spec: ModelSpec) -> str | None:
        """Why this method cannot compress this architecture at all (None: it can). Asked once, when the
        model spec is built, with the loaded model; the answer is stored in the spec."""
        return None

    def note(self, model: torch.nn.Module, spec: ModelSpec) -> str | None:
        """What this method leaves untouched on this architecture (e.g. fused experts), if anything."""
        return None

    def check(self, params: MethodParams, spec: ModelSpec) -> None:
        """Raise CompressionFailed when the params do not fit this model. Default: nothing to check."""

    def label(self, params: dict) -> str:
        return self.name

    def features(self, params: dict) -> dict[str, float]:
        """Where this step puts a strategy in the search space (`core.search.coordinator.space.FEATURES`), the
        numbers model-based search generalises over. A step names only what it changes; the method owns
        them, so adding a method touches no other file."""
        return {}

    @abstractmethod
    def apply(self, model: torch.nn.Module, params: MethodParams, ctx: CompressionContext) -> MethodResult:
        """Compress `model` (may modify it in place) and return it with a report."""
