"""Request and reply bodies of the REST API (the seed's JSON shapes, user manual sections 5 and 7)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from greenai_dagster.core.evaluation.eval_settings import override_fields
from greenai_dagster.core.methods import REGISTRY
from greenai_dagster.core.settings import config as config_checks
from greenai_dagster.core.settings.config import REST_FIELDS, entry_field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# the remedy of an E004 about a POST /compress body (the CLI and the Launchpad name their own place to fix it)
REQUEST_REMEDY = "Fix that field in the request body."
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]



def _only_known(value: list[str] | None, known: list[str], what: str) -> list[str] | None:
    """A list field that may only name known things (unset is fine, empty is not): 422 naming the unknown ones."""
    if value is not None:
        unknown = [v for v in value if v not in known]
        if unknown or not value:
            raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return value


# Upper bounds a web request may ask for; names, descriptions, defaults and lower bounds come from the one
# evaluation settings class (core/evaluation/eval_settings.py), as the Launchpad's do.
REQUEST_UPPER_BOUNDS = {"limit_per_task": 100000, "fidelity_tokens": 1_000_000, "batch_size": 1024,
                        "prompt_len": 32768, "new_tokens": 4096, "latency_repeats": 100,
                        "throughput_batch_size": 1024, "timeout_s": 7 * 24 * 3600}
# The request's `eval` block: overrides of core/evaluation/eval_settings.py's EvalSettings (not a second settings class:
# each field optional, unset keeping EvalSettings' default), with a web request's upper bounds.
EvalOverridesRequest = create_model(
    "EvalOverridesRequest", __config__=ConfigDict(extra="forbid"),
    __doc__="Evaluation settings (core/evaluation/eval_settings.py EvalSettings); a field left out keeps its default.",
    **override_fields(REQUEST_UPPER_BOUNDS))

# What a web request may ask beyond ExperimentConfig's own rules (whoever runs the server bounds its work and
# its input sizes); the experiment name is also a URL path segment (NAME_PATTERN).
REQUEST_LIMITS = {"model": {"min_length": 1, "max_length": 500}, "dataset": {"min_length": 1, "max_length": 500},
                  "budget": {"le": 10000}, "name": {"pattern": NAME_PATTERN},
                  "compression_methods": {"max_length": 50}, "objectives": {"max_length": 20}}


def _request_field(name: str):
    """ExperimentConfig's field `name` as a POST /compress body field (core/settings/config.py `entry_field`): its
    default, bounds and description, the request's limits added. `model_name` stays required: the seed's
    body always names the model (`default` for the packaged one)."""
    annotation, info = entry_field(name, **REQUEST_LIMITS.get(name, {}))
    if name == "model":
        annotation, info = str, Field(..., description=info.description, **REQUEST_LIMITS["model"])
    elif name == "eval":
        annotation, info = EvalOverridesRequest, Field(default_factory=EvalOverridesRequest,
                                                       description=info.description)
    return annotation, info


def _known_methods(cls, value):
    """A web request names registered methods (422 here; the CLI answers E005 for the same mistake)."""
    return _only_known(value, sorted(REGISTRY), "method")


# The checks ExperimentConfig runs on the same settings (core/settings/config.py): one function each, so a bad value
# gets the same message (and, in the 422's `error`, the same E004) as through the CLI or the Launchpad.
_VALIDATORS = {"constraints": lambda cls, v: config_checks.check_constraints(v),
               "objectives": lambda cls, v: config_checks.check_objectives(v),
               "name": lambda cls, v: config_checks.check_name(v),
               "compression_methods": _known_methods}


def _request_from_config():
    """POST /compress's body model, generated from ExperimentConfig (core/settings/config.py `REST_FIELDS`: which
    settings a web request may set, under the seed's names)."""
    fields = {rest: _request_field(name) for name, rest in REST_FIELDS.items()}
    validators = {f"_check_{rest}": field_validator(rest)(_VALIDATORS[name])
                  for name, rest in REST_FIELDS.items() if name in _VALIDATORS}
    return create_model(
        "CompressRequest", __config__=ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"model_name": "gpt2", "dataset": "gsm8k", "max_episodes": 5}]}),
        __doc__="POST /compress: the seed's body (`model_name`, `dataset`, `max_episodes`) plus the `greenai run` "
                "settings, generated from core/settings/config.py ExperimentConfig.",
        __validators__=validators, **fields)


CompressRequest = _request_from_config()


def config_kwargs(request) -> dict:
    """The ExperimentConfig keyword arguments of a POST /compress body (REST names back to the schema's)."""
    data = {name: getattr(request, rest) for name, rest in REST_FIELDS.items()}
    data["eval"] = request.eval.model_dump(exclude_none=True)
    return data


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
