"""A compression strategy is data: an id and an ordered list of steps (method name + params).

Strategies are validated against the model spec before anything runs: every method must be
registered, its parameters must parse (each method has a pydantic params model) and fit the
model (e.g. the GPTQ group size must divide every quantized layer's input width), and the chain
order must be allowed (a step whose output can no longer be compressed must be last).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from greenai_dagster.core.errors import CompressionFailed
from greenai_dagster.core.methods import get_method
from greenai_dagster.core.models.spec import ModelSpec


@dataclass
class Step:
    method: str
    params: dict = field(default_factory=dict)


@dataclass
class Strategy:
    strategy_id: str
    steps: list[Step]
    reasoning: str = ""

    @property
    def methods(self) -> list[str]:
        return [s.method for s in self.steps]

    def label(self) -> str:
        """Short, stable description used in candidate keys, e.g. `gptq_w4g64`."""
        return "+".join(get_method(s.method).label(s.params) for s in self.steps)

    def to_json(self) -> dict:
        """The seed's strategy.json fields, plus the full steps so the strategy can be re-run."""
        quant = [s for s in self.steps if "bits" in s.params]
        return {
            "strategy_id": self.strategy_id,
            "methods": self.methods,
            "quantization_bits": quant[-1].params["bits"] if quant else None,
            "quantization_method": quant[-1].method if quant else None,
            "steps": [{"method": s.method, "params": s.params} for s in self.steps],
            "reasoning": self.reasoning,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Strategy":
        steps = [Step(s["method"], dict(s.get("params", {}))) for s in data["steps"]]
        return cls(strategy_id=data["strategy_id"], steps=steps, reasoning=data.get("reasoning", ""))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2))


def validate_strategy(strategy: Strategy, spec: ModelSpec) -> Strategy:
    """Return the strategy with every step's params normalised (defaults filled), or raise E005."""
    if not strategy.steps:
        raise CompressionFailed("strategy has no steps.", "Give at least one compression step.")
    normalised = []
    widths: set[int] | None = None   # input widths an earlier structural step leaves, if any
    for position, step in enumerate(strategy.steps):
        method = get_method(step.method)
        params = method.validate(step.params, spec)
        group = params.get("group_size")
        if widths and group and any(w % group for w in widths):
            bad = sorted(w for w in widths if w % group)
            raise CompressionFailed(
                f"group size {group} of '{step.method}' does not divide the input width {bad[0]} that the earlier "
                f"structural step leaves.", "Use a smaller group size, or prune without heads (prune_heads: false).")
        if hasattr(method, "widths_after"):
            widths = method.widths_after(params, spec)
        if method.must_be_last and position != len(strategy.steps) - 1:
            raise CompressionFailed(
                f"'{step.method}' must be the last step of a chain (its output cannot be processed further).",
                f"Move '{step.method}' to the end of the chain.",
            )
        if method.must_be_first and position != 0:
            raise CompressionFailed(
                f"'{step.method}' must be the first step of a chain (it re-loads the base model itself).",
                f"Move '{step.method}' to the start of the chain.",
            )
        normalised.append(Step(step.method, params))
    return Strategy(strategy.strategy_id, normalised, strategy.reasoning)
