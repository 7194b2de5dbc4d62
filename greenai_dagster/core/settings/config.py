"""The one schema of an experiment's settings, validated at every edge: the CLI's flags and --config JSON,
the Launchpad's run config (jobs.py) and the REST API's POST /compress body (api/models.py).

`ExperimentConfig` is the only place a setting's type, default, bounds, description and validation are
written. The three entry points are generated from it (each in its own layer: core never imports Dagster
or FastAPI): `LAUNCHPAD_FIELDS`, `REST_FIELDS` and `CLI_FLAGS` below say which settings each one exposes
and under which name, and `entry_field` hands each generator the same facts. So a default or a bound
changed here changes everywhere, and a bad value gets the same E004 message whoever sent it
(tests/core/settings/test_config_schema.py proves it field by field).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import parse_qsl, urlsplit

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from greenai_dagster.core.search import objectives as objective_registry

from greenai_dagster.core.errors import EvaluationError
from greenai_dagster.core.evaluation.eval_settings import EvalSettings
from greenai_dagster.core.models.loading import DEFAULT_MODEL
from greenai_dagster.core.search.coordinator import LlmSettings, make_coordinator
from greenai_dagster.core.search.coordinator.space import check_method_names
from greenai_dagster.core.search.gate import check_constraint_names
from greenai_dagster.core.settings.user_files import read_user_text
from greenai_dagster.core.storage.paths import experiments_dir


def check_constraints(value: dict) -> dict:
    """The one check of a `constraints` mapping (every entry point calls it through ExperimentConfig's or the
    REST model's validator): a known name (core/search/gate.py `check_constraint_names`: a typo such as
    `max_latency` would be stored and silently bound nothing) and a finite bound (NaN compares false with
    everything, so it would bound nothing either)."""
    check_constraint_names(value)
    for key, bound in value.items():
        if not math.isfinite(bound):
            raise ValueError(f"constraint '{key}' must be a finite number")
    return value


def check_objectives(value: list[str] | None) -> list[str] | None:
    """Frontier objectives must be registered ones (core/search/objectives.py); unset is the default set, an empty
    list is refused (a frontier over nothing)."""
    if value is not None:
        unknown = [v for v in value if v not in objective_registry.OBJECTIVES]
        if unknown or not value:
            raise ValueError(f"unknown objective(s) {unknown}; known: {', '.join(objective_registry.OBJECTIVES)}")
    return value


def check_name(value: str | None) -> str | None:
    """The name is a Dagster partition key (alone, and as the experiment dimension of the candidates'
    `<experiment>|<strategy>` key) and the first part of every candidate key `<experiment>/<strategy_id>`."""
    if not value:      # unset: a generated name (`experiment_name`)
        return value
    reserved = set(value) & set("/|,[]\\")
    if reserved or "..." in value or any(ord(c) < 32 for c in value):
        raise ValueError(f"experiment name {value!r} must not hold control characters, '...' or any "
                         "of / \\ | , [ ] (it is a Dagster partition key and a folder name)")
    return value


class ExperimentConfig(BaseModel):
    """Everything one experiment needs; stored as JSON in DuckDB's `experiments` table. The Launchpad's
    config, the REST request and the CLI's flags are generated from these fields (see the module's note)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(DEFAULT_MODEL, description=(
        "the model to compress: the embedded default (" + DEFAULT_MODEL + ", also named 'default'), a Hugging Face "
        "id, or a local folder"))
    dataset: str = Field("generated_mc", description=(
        "the benchmark: a name from `greenai benchmarks` (e.g. generated_mc, bigbench_hard, humaneval) or "
        "a local .jsonl file of multiple-choice items"))
    benchmark_source: Literal["auto", "offline", "hub"] = Field("auto", description=(
        "where a named benchmark's items come from: auto: lm-eval's standard task from the hub where reachable, "
        "else the packaged offline copy; offline: the packaged copy; hub: lm-eval's standard task. Fixed when the "
        "experiment is created"))
    episodes: int = Field(3, ge=1, le=1000, description="candidates to compress and evaluate")
    budget: float = Field(2.0, gt=0, description="wall-clock budget in hours; the experiment stops when it is spent")
    output_dir: str = Field(default_factory=lambda: str(experiments_dir()),
                            description="the experiments folder: one subfolder of files per experiment")
    name: str | None = Field(None, description=(
        "experiment name (the Dagster partition key; an existing unfinished one resumes); unset: "
        "<model>_<benchmark>_<time>"))
    compression_methods: list[str] | None = Field(None, description=(
        "methods the coordinator may use (`greenai methods`, GET /methods); unset: all that suit the model"))
    trust_remote_code: bool = Field(False, description=(
        "let transformers run Python code shipped with the model (auto_map); off by default: such a model is "
        "refused with E002 naming --trust-remote-code"))
    allow_code_execution: bool = Field(False, description=(
        "run model-written code (HumanEval) in the sandbox (core/machine/sandbox.py); off by default: a benchmark that "
        "executes code is refused with E004 without it (CLI --allow-code-execution)"))
    constraints: dict[str, float] = Field(default_factory=dict, description=(
        "bounds on result columns, as min_<metric>/max_<metric>: "
        + ", ".join(f"min_{n}/max_{n}" for n in objective_registry.OBJECTIVES) + "; also max_kl (quality gate, "
        "default 0.5 nats/token), max_ppl_ratio (default 2.0) and max_accuracy_drop (default 0.05, where the "
        "paired McNemar test says worse): candidates beyond the gate are marked degraded (core/search/gate.py). "
        "Example: {max_latency_ms: 20, min_accuracy: 0.3}"))
    objectives: list[str] | None = Field(None, description=(
        "frontier objectives, any of: " + ", ".join(objective_registry.OBJECTIVES) + "; unset: "
        + ", ".join(objective_registry.DEFAULT_FRONTIER)))
    coordinator: Literal["planner", "llm", "random"] = Field("planner", description=(
        "who proposes each episode: planner (deterministic, spec priors then a surrogate), llm (an "
        "OpenAI-compatible model; needs OPENAI_API_KEY) or random"))
    coordinator_fallback: Literal["planner"] | None = Field(None, description=(
        "when the coordinator fails after its own retries (endpoint errors, rate limits, no valid answer): "
        "\"planner\" lets the offline planner decide that episode; unset ends the experiment with termination "
        "'error', the failure recorded"))
    llm_model: str = Field("gpt-4o-mini", description="the llm coordinator's model name")
    llm_base_url: str | None = Field(None, description="the llm coordinator's OpenAI-compatible endpoint "
                                                       "(default: OPENAI_BASE_URL or OpenAI's)")
    llm_temperature: float = Field(0.2, ge=0.0, le=2.0, description="the llm coordinator's sampling temperature")
    llm_timeout_s: float = Field(LlmSettings.timeout_s, gt=0, le=3600, description=(
        "the llm coordinator's time limit per request, seconds (then E006): a local `greenai llm-server` on a "
        "busy CPU read its ~4k-token prompt in 47-57 s on the lent H100's host, past the 60 s of old"))
    family_priors: bool = Field(False, description="the planner starts from earlier experiments in the store on "
                                "the same model family (core/search/coordinator/priors.py)")
    seed: int = Field(0, description="seed of the coordinator's choices (planner tie-breaks, random)")
    convergence_patience: int = Field(4, ge=1, description="stop after this many episodes with no frontier change")
    stop_when_constraints_met: bool = Field(False, description="stop as soon as a candidate meets every constraint")
    driver: Literal["cli", "sensor"] = Field("cli", description=(
        "who runs the episodes: the CLI in-process, or the Dagster sensor"))
    country_iso_code: str = Field("TWN", description="the grid whose carbon intensity CodeCarbon uses")
    eval: EvalSettings = Field(default_factory=EvalSettings, description=(
        "evaluation settings (core/evaluation/eval_settings.py): proxy items per task (limit_per_task), full-set scoring of "
        "the final frontier (full_set_for_frontier), fidelity tokens, latency probe; unset = defaults"))

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data):
        """Configs stored before `device` was dropped carry it (it was never read: the device comes from the
        deployment's GPU resource); the stored row must still load."""
        if isinstance(data, dict) and "device" in data:
            data = {k: v for k, v in data.items() if k != "device"}
        return data

    @field_validator("constraints")
    @classmethod
    def _constraint_names(cls, value: dict) -> dict:
        return check_constraints(value)

    @field_validator("name")
    @classmethod
    def _name_is_a_partition_key(cls, value):
        return check_name(value)

    @field_validator("llm_base_url")
    @classmethod
    def _no_credentials_in_url(cls, value):
        """A key belongs in OPENAI_API_KEY, never in the config (which is stored in DuckDB and the reports)."""
        if value is None:
            return value

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("llm_base_url must be an http(s) URL such as http://127.0.0.1:8765/v1")
        secret_query = [k for k, _ in parse_qsl(parts.query) if re.search(r"key|token|secret|password", k, re.I)]
        if parts.username or parts.password or secret_query:
            raise ValueError("llm_base_url must not carry credentials (user:password@ or a key/token parameter); "
                             "put the key in OPENAI_API_KEY")
        return value

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value):
        return check_objectives(value)

    def make_coordinator(self, priors: list[dict] | None = None):
        settings = LlmSettings(model=self.llm_model, base_url=self.llm_base_url, temperature=self.llm_temperature,
                               timeout_s=self.llm_timeout_s)
        return make_coordinator(self.coordinator, seed=self.seed, llm=settings, priors=priors)

    def experiment_name(self) -> str:
        if self.name:
            return self.name
        short = Path(self.model).name if self.model != DEFAULT_MODEL else "smollm2-135m"
        short = re.sub(r"[^A-Za-z0-9.-]+", "-", short).strip("-").lower()
        bench = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(self.dataset).stem).lower()
        return f"{short}_{bench}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"


# --- the entry points, generated from ExperimentConfig -------------------------------------------------------
# Which settings each entry point lets a user set, and under which name. Everything else about a field (type,
# default, bounds, description, validation) is read from ExperimentConfig by `entry_field`.

# The Launchpad (jobs.py `NewExperimentConfig`): the driver is always the sensor; the LLM endpoint, the
# output folder and the stopping rules stay with config files and the CLI.
LAUNCHPAD_FIELDS = ("model", "dataset", "benchmark_source", "episodes", "budget", "name", "seed", "coordinator",
                    "compression_methods", "constraints", "objectives", "eval", "allow_code_execution",
                    "trust_remote_code")
# POST /compress (api/models.py `CompressRequest`): ExperimentConfig field -> body key (the seed's names
# model_name, max_episodes, experiment_name where it had them). A web request may not opt in to running
# model-shipped or model-written code, nor pick server folders: those stay with whoever runs the server.
REST_FIELDS = {"model": "model_name", "dataset": "dataset", "episodes": "max_episodes", "budget": "budget",
               "name": "experiment_name", "coordinator": "coordinator", "compression_methods": "compression_methods",
               "constraints": "constraints", "objectives": "objectives", "eval": "eval"}
# `greenai run` (cli.py): field -> flags; the rest comes from a --config JSON file.
CLI_FLAGS = {"model": ("-m", "--model"), "dataset": ("-d", "--dataset"), "episodes": ("-e", "--episodes"),
             "budget": ("-b", "--budget"), "output_dir": ("-o", "--output-dir"), "name": ("-n", "--name"),
             "coordinator": ("--coordinator",), "benchmark_source": ("--benchmark-source",),
             "trust_remote_code": ("--trust-remote-code",), "allow_code_execution": ("--allow-code-execution",),
             "objectives": ("--objectives",)}
# `greenai run`'s flags for the eval block (EvalSettings field -> flags)
CLI_EVAL_FLAGS = {"full_set_for_frontier": ("--full-eval",), "limit_per_task": ("--proxy-items",),
                  "fidelity_tokens": ("--fidelity-tokens",), "fidelity_text": ("--fidelity-text",)}

_BOUND_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def field_bounds(model: type[BaseModel], name: str) -> dict[str, float]:
    """The numeric bounds of a field as Field keywords ({"ge": 1, "le": 1000}), read from its metadata."""
    info = model.model_fields[name]
    return {key: getattr(m, key) for m in info.metadata for key in _BOUND_WORDS
            if isinstance(m, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt))
            and hasattr(m, key)}


def field_choices(model: type[BaseModel], name: str) -> tuple[str, ...] | None:
    """The allowed values of a Literal field (None left out: whether it is optional is the annotation's)."""
    annotation = model.model_fields[name].annotation
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    for arg in get_args(annotation):                # Optional[Literal[...]]
        if get_origin(arg) is Literal:
            return get_args(arg)
    return None


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default a field takes when the user leaves it out (a factory called: output_dir, constraints)."""
    info = model.model_fields[name]
    return info.default_factory() if info.default_factory is not None else info.default


def describe(model: type[BaseModel], name: str) -> str:
    """A field's description as every entry point shows it: ExperimentConfig's text plus its bounds, which
    the Launchpad and the CLI cannot carry as schema (the REST schema carries them too, as minimum/maximum)."""
    text = model.model_fields[name].description or name.replace("_", " ")
    bounds = field_bounds(model, name)
    if bounds:
        text += " (" + ", ".join(f"{_BOUND_WORDS[k]} {v:g}" for k, v in bounds.items()) + ")"
    return text


def entry_field(name: str, *, bounds: bool = True, **extra) -> tuple[Any, Any]:
    """`create_model` field definition of ExperimentConfig's `name` for a generated entry-point model: the
    same annotation, default (or default factory), description and, with `bounds`, the same numeric bounds;
    `extra` adds an entry point's own Field keywords (the REST API's upper bounds on a web request). The
    Launchpad passes bounds=False: Dagster would check them only when the op builds its config, with a raw
    pydantic traceback, so the op checks them through `validated_config` (E004) instead."""
    info = ExperimentConfig.model_fields[name]
    keywords = {"description": describe(ExperimentConfig, name), **(field_bounds(ExperimentConfig, name) if bounds
                                                                     else {}), **extra}
    if info.default_factory is not None:
        keywords["default_factory"] = info.default_factory
    elif "default" not in keywords:
        keywords["default"] = info.default
    return info.annotation, Field(**keywords)


def config_error(loc, message: str, remedy: str) -> EvaluationError:
    """The E004 of an invalid setting, named by where it is (`constraints`, `eval.batch_size`): one wording
    for the CLI, config files, the Launchpad and the REST API (api/app.py adds it to its 422 answer)."""
    where = ".".join(str(p) for p in loc) or "config"
    return EvaluationError(f"invalid configuration: {where}: {message}.", remedy)


def load_config(overrides: dict, config_file: str | None = None, eval_overrides: dict | None = None) -> ExperimentConfig:
    """Merge a --config JSON file with CLI overrides (CLI wins, also inside `eval`) and validate."""
    data: dict = {}
    if config_file:
        text = read_user_text(Path(config_file), "config file", "a JSON file to --config")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"config file '{config_file}' is not valid JSON: {exc}.", "Fix the JSON syntax.") from None
        if not isinstance(data, dict):
            raise EvaluationError(f"config file '{config_file}' holds a JSON {type(data).__name__}, not an object.",
                                  'The file must be one JSON object, e.g. {"model": "...", "episodes": 5}.')
        if not isinstance(data.get("eval", {}), dict):
            raise EvaluationError("invalid configuration: eval: must be an object.", "Fix that field in the config.")
    data.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(data.get("compression_methods"), list):   # E005 before anything runs (types: pydantic below)

        check_method_names([m for m in data["compression_methods"] if isinstance(m, str)])
    if eval_overrides:
        data["eval"] = {**data.get("eval", {}), **eval_overrides}
    return validated_config(data, "Fix that field in the config or flags.")


def validated_config(data: dict, remedy: str) -> "ExperimentConfig":
    """`ExperimentConfig(**data)`, or the seed's E004 naming the first invalid field (never a raw pydantic
    traceback: the CLI, a config file and the Launchpad all end here)."""
    try:
        return ExperimentConfig(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise config_error(first["loc"], first["msg"], remedy) from None
