"""Request and reply bodies of the REST API (the seed's JSON shapes, user manual sections 5 and 7)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
JobStatus = Literal["pending", "running", "completed", "failed"]



def _only_known(value: list[str] | None, known: list[str], what: str) -> list[str] | None:
    """A list field that may only name known things (unset is fine, empty is not): 422 naming the unknown ones."""
    if value is not None:
        unknown = [v for v in value if v not in known]
        if unknown or not value:
            raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return value

class EvalSettings(BaseModel):
    """Evaluation settings (core/config.py EvalConfig); a field left out keeps its default."""

    model_config = ConfigDict(extra="forbid")
    limit_per_task: Optional[int] = Field(None, ge=1, le=100000, description="proxy items per task while searching (10)")
    full_set_for_frontier: Optional[bool] = Field(None, description="score the final frontier on every item "
                                                                    "(default: on a GPU only)")
    fidelity_tokens: Optional[int] = Field(None, ge=512, le=1_000_000, description="held-out tokens for KL etc. (4096)")
    batch_size: Optional[int] = Field(None, ge=1, le=1024)
    prompt_len: Optional[int] = Field(None, ge=8, le=32768)
    new_tokens: Optional[int] = Field(None, ge=2, le=4096)
    latency_repeats: Optional[int] = Field(None, ge=1, le=100)
    throughput_batch_size: Optional[int] = Field(None, ge=1, le=1024)
    timeout_s: Optional[float] = Field(None, gt=0, le=7 * 24 * 3600)


class CompressRequest(BaseModel):
    """POST /compress: the seed's body (`model_name`, `dataset`, `max_episodes`) plus the `greenai run` settings."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"model_name": "gpt2", "dataset": "gsm8k", "max_episodes": 5}]})
    model_name: str = Field(..., min_length=1, max_length=500,
                            description="Hugging Face id, a model folder on the server, or 'default' (SmolLM2-135M)")
    dataset: str = Field("bigbench_above_chance", min_length=1, max_length=500,
                         description="benchmark name (GET /benchmarks) or a multiple-choice .jsonl on the server")
    max_episodes: int = Field(3, ge=1, le=1000)
    budget: float = Field(2.0, gt=0, le=10000, description="wall-time budget in hours")
    experiment_name: Optional[str] = Field(None, pattern=NAME_PATTERN,
                                           description="default: <model>_<dataset>_<time>_<suffix>")
    coordinator: Literal["planner", "llm", "random"] = "planner"
    compression_methods: Optional[list[str]] = Field(None, max_length=50, description="GET /methods; default: all")
    constraints: dict[str, float] = Field(default_factory=dict,
                                          description="min_<metric>/max_<metric> bounds, e.g. max_latency_ms")
    objectives: Optional[list[str]] = Field(None, max_length=20, description="frontier objectives (core/objectives.py)")
    eval: EvalSettings = Field(default_factory=EvalSettings)

    @field_validator("compression_methods")
    @classmethod
    def _known_methods(cls, value):
        from greenai_dagster.core.methods import REGISTRY

        return _only_known(value, sorted(REGISTRY), "method")

    @field_validator("constraints")
    @classmethod
    def _constraint_names(cls, value: dict) -> dict:
        import math
        import re

        for key, bound in value.items():
            if not re.fullmatch(r"(min|max)_[a-z_]{1,60}", key):
                raise ValueError(f"constraint '{key}' must look like min_<metric> or max_<metric>")
            if not math.isfinite(bound):
                raise ValueError(f"constraint '{key}' must be a finite number")
        return value

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value):
        from greenai_dagster.core.objectives import OBJECTIVES

        return _only_known(value, list(OBJECTIVES), "objective")


class SpecRequest(BaseModel):
    """POST /spec/infer."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model_name": "gpt2"}]})
    model_name: str = Field(..., min_length=1, max_length=500, description="Hugging Face id, a folder on the server, "
                                                                           "or 'default'")


class Progress(BaseModel):
    current_episode: int = Field(description="the latest episode started (0 before the first)")
    max_episodes: int
    episodes_completed: int = 0
    pareto_solutions: int = 0


class JobInfo(BaseModel):
    """A compression job: one experiment, launched as the Dagster run `job_id` of `launch_experiment`."""

    job_id: str
    status: JobStatus
    experiment: Optional[str] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    progress: Progress
    termination_reason: Optional[str] = None
    error: Optional[str] = None
    dagster_status: Optional[str] = Field(None, description="the launch run's Dagster status")


class JobList(BaseModel):
    jobs: list[JobInfo]


class LogLine(BaseModel):
    timestamp: str
    run_id: str
    job_name: str
    level: str
    event: Optional[str] = None
    step: Optional[str] = None
    message: str


class JobLogs(BaseModel):
    job_id: str
    experiment: Optional[str] = None
    logs: list[LogLine]


class Solution(BaseModel):
    model_config = ConfigDict(extra="allow")
    strategy: dict[str, Any]
    result: dict[str, Any]


class ParetoReply(BaseModel):
    """The seed's pareto_frontier.json (`solutions` of `strategy` + `result`) with the experiment's extras."""

    model_config = ConfigDict(extra="allow")
    experiment_name: str
    solutions: list[Solution]


class Episode(BaseModel):
    episode: int
    strategy_id: str
    status: str
    error: Optional[str] = None
    strategy: dict[str, Any]
    result: Optional[dict[str, Any]] = None


class EpisodesReply(BaseModel):
    job_id: str
    experiment: str
    episodes: list[Episode]


class ExperimentSummary(BaseModel):
    id: str
    model: Optional[str] = None
    dataset: Optional[str] = None
    status: str
    termination_reason: Optional[str] = None
    created_at: Optional[str] = None
    finished_at: Optional[str] = None
    episodes_completed: int = 0
    pareto_solutions: int = 0


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]


class ErrorBody(BaseModel):
    detail: Any
