"""Request and reply bodies of the REST API (the seed's JSON shapes, user manual sections 5 and 7)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from greenai_dagster.core.eval_settings import override_fields

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]



def _only_known(value: list[str] | None, known: list[str], what: str) -> list[str] | None:
    """A list field that may only name known things (unset is fine, empty is not): 422 naming the unknown ones."""
    if value is not None:
        unknown = [v for v in value if v not in known]
        if unknown or not value:
            raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return value

# Upper bounds a web request may ask for; names, descriptions, defaults and lower bounds come from the one
# evaluation settings class (core/eval_settings.py), as the Launchpad's do.
REQUEST_UPPER_BOUNDS = {"limit_per_task": 100000, "fidelity_tokens": 1_000_000, "batch_size": 1024,
                        "prompt_len": 32768, "new_tokens": 4096, "latency_repeats": 100,
                        "throughput_batch_size": 1024, "timeout_s": 7 * 24 * 3600}
EvalSettings = create_model(
    "EvalSettings", __config__=ConfigDict(extra="forbid"),
    __doc__="Evaluation settings (core/eval_settings.py EvalSettings); a field left out keeps its default.",
    **override_fields(REQUEST_UPPER_BOUNDS))


class CompressRequest(BaseModel):
    """POST /compress: the seed's body (`model_name`, `dataset`, `max_episodes`) plus the `greenai run` settings."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"model_name": "gpt2", "dataset": "gsm8k", "max_episodes": 5}]})
    model_name: str = Field(..., min_length=1, max_length=500,
                            description="Hugging Face id, a model folder on the server, or 'default' (SmolLM2-135M)")
    dataset: str = Field("generated_mc", min_length=1, max_length=500,
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

        from greenai_dagster.core.gate import check_constraint_names

        check_constraint_names(value)
        for key, bound in value.items():
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
