"""The one class for evaluation settings: validated where an experiment is configured (the `eval` block of
ExperimentConfig, stored as JSON in DuckDB) and passed as is to the evaluation functions (core/evaluation/evaluate.py),
so a setting is named, defaulted and described once. Its own module so that both core/settings/config.py and
core/evaluation/evaluate.py import it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class EvalSettings(BaseModel):
    """How a candidate is evaluated; stored with each experiment so figures carry their conditions."""

    model_config = ConfigDict(extra="forbid")
    limit_per_task: int | None = Field(10, ge=1, description="proxy: items per task while searching (None = all)")
    min_items_for_a_file: int | None = Field(200, ge=1, description=(
        "a user's JSONL file is one task, whose 10-item proxy cannot tell a model from chance: while searching, at "
        "least this many of its items are scored (all of a smaller file); None = limit_per_task as for any task"))
    batch_size: int = Field(8, ge=1, description="evaluation batch size")
    fidelity_tokens: int = Field(4096, ge=512, description="held-out tokens scored against the baseline (KL, top-1, "
                                                          "perplexity ratio); chosen by benchmarks/fidelity_tau.py")
    fidelity_text: str | None = Field(None, description="a UTF-8 text file to score fidelity on instead of the "
                                                        "corpus's held-out half")
    sampled_tokens: int = Field(2048, ge=0, description=(
        "tokens the baseline samples from 16 prompts across domains (temperature 1, core.evaluation.sampled_text), a second "
        "fidelity text that is no one's calibration data: KL on it is reported as kl_sampled (0 = off)"))
    prompt_len: int = Field(128, ge=8, description="latency probe: prompt tokens")
    new_tokens: int = Field(16, ge=2, description="latency probe: decoded tokens")
    latency_repeats: int = Field(5, ge=1, description="latency probe: repeats")
    throughput_batch_size: int = Field(4, ge=0, description="throughput probe: batch size (0: latency and memory "
                                                            "only)")
    timeout_s: float = Field(1800.0, gt=0, description="evaluation time limit per model, seconds")
    full_set_for_frontier: bool | None = Field(
        None, description="score the baseline and final frontier members on every item; None = on a GPU only")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        """Configs stored before fidelity replaced the perplexity pass used `perplexity_max_tokens`."""
        if isinstance(data, dict) and "perplexity_max_tokens" in data:
            data = dict(data)
            data.setdefault("fidelity_tokens", max(512, data.pop("perplexity_max_tokens")))
        return data

    @field_validator("fidelity_text")
    @classmethod
    def _text_exists(cls, value):
        if value is not None and not Path(value).is_file():
            raise ValueError(f"fidelity text file '{value}' does not exist")
        return value

    def settings(self) -> "EvalSettings":
        """A copy to evaluate with (a step may change it, e.g. the full-set pass lifts `limit_per_task`)."""
        return self.model_copy()


# The settings a user may override when starting an experiment from the Launchpad or the REST API
# (fidelity_text names a file on the server: config files and the CLI only).
OVERRIDABLE = ("limit_per_task", "min_items_for_a_file", "full_set_for_frontier", "fidelity_tokens", "sampled_tokens", "batch_size",
               "prompt_len",
               "new_tokens", "latency_repeats", "throughput_batch_size", "timeout_s")


def override_fields(upper_bounds: dict[str, float] | None = None) -> dict:
    """`create_model` field definitions for an overrides model generated from EvalSettings: the same names,
    descriptions and lower bounds, each optional (unset keeps the default, named in the description), plus
    upper bounds where a caller wants them (the REST API refuses a request for a million-token probe)."""
    fields = {}
    for name in OVERRIDABLE:
        info = EvalSettings.model_fields[name]
        bounds = {key: getattr(m, key) for m in info.metadata for key in ("ge", "gt")
                  if isinstance(m, (annotated_types.Ge, annotated_types.Gt)) and hasattr(m, key)}
        if upper_bounds and name in upper_bounds:
            bounds["le"] = upper_bounds[name]
        fields[name] = (Optional[info.annotation], Field(None, description=f"{info.description} (default "
                                                                          f"{info.default})", **bounds))
    return fields
