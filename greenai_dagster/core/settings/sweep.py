"""Sweeps: one YAML file names models x benchmarks and the settings every combination shares.

    name: nightly-small            # [a-z0-9_-]; the experiments are <name>-<model slug>-<benchmark>
    cron: "0 2 * * *"              # optional: a Dagster schedule (schedules.py); without it, `--now` only
    models: [smollm2-135m-instruct]
    benchmarks: [generated_mc]
    methods: [gptq, int8]          # optional: allowed compression methods (default: all that suit the model)
    constraints: {max_kl: 0.3}     # optional, as in `greenai run --config`
    episodes: 4                    # optional; also seed, coordinator, budget, objectives, benchmark_source, eval

Each model x benchmark pair is one ordinary experiment: this module only turns the file into
validated `ExperimentConfig`s with deterministic names. Creating and running them is left to the
paths that already exist (`greenai run`'s runner for `greenai sweep FILE --now`, the
`launch_experiment` job for a schedule tick), so a sweep's experiment is indistinguishable from
one started by hand. Without a stamp a name is stable, so `--now` again resumes; a schedule tick
adds its scheduled time (`-YYYYMMDD-HHMM`) so each night is a new experiment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from greenai_dagster.core.errors import EvaluationError, GreenAIError
from greenai_dagster.core.evaluation.eval_settings import EvalSettings
from greenai_dagster.core.search.coordinator.space import check_method_names
from greenai_dagster.core.settings.config import ExperimentConfig
from greenai_dagster.core.settings.user_files import read_user_text

SWEEPS_DIR_ENV = "GREENAI_SWEEPS_DIR"
REPO_SWEEPS_DIR = Path(__file__).resolve().parents[3] / "sweeps"
STAMP_FORMAT = "%Y%m%d-%H%M"
STAMP_PATTERN = r"\d{8}-\d{4}"
# the launchpad's EvalOverrides (jobs.py) carries these; fidelity_text is a local file path, not a sweep setting
EVAL_KEYS = sorted(set(EvalSettings.model_fields) - {"fidelity_text"})
# sweep field -> ExperimentConfig field, to name an error by the key the user wrote
_SWEEP_FIELD = {"model": "models", "dataset": "benchmarks", "compression_methods": "methods"}

_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_CRON_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(), 4: "sun mon tue wed thu fri sat".split()}
_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _cron_error(cron: str) -> str | None:
    """Why `cron` is not a five-field cron string (None when it is): checked here so a bad file fails at
    load with the field named, not at the first tick."""
    if cron.strip() in _CRON_ALIASES:
        return None
    fields = cron.split()
    if len(fields) != 5:
        return f"'{cron}' has {len(fields)} fields; a cron string has 5 (minute hour day month weekday)"
    for position, (text, (low, high)) in enumerate(zip(fields, _CRON_RANGES)):
        names = _CRON_NAMES.get(position, [])
        for part in text.split(","):
            match = re.fullmatch(r"(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?", part.lower())
            if not match or (match.group(2) is not None and int(match.group(2)) == 0):
                return f"'{text}' is not a cron field"
            if match.group(1) == "*":
                continue
            for value in match.group(1).split("-"):
                number = names.index(value) + (1 if position == 3 else 0) if value in names else (
                    int(value) if value.isdigit() else None)
                if number is None or not low <= number <= high:
                    return f"'{value}' is outside {low}-{high} in field {position + 1} of '{cron}'"
    return None


class SweepFile(BaseModel):
    """The sweep file as written; the shared settings are checked again per combination by ExperimentConfig."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
                      description="lower case letters, digits, '-' and '_' (at most 40); prefixes every experiment")
    cron: str | None = Field(None, description="when the schedule fires (UTC); unset: no schedule, `--now` only")
    models: list[str] = Field(min_length=1)
    benchmarks: list[str] = Field(min_length=1)
    methods: list[str] | None = None
    constraints: dict[str, float] = Field(default_factory=dict)
    objectives: list[str] | None = None
    episodes: int = 3
    budget: float = 2.0
    seed: int = 0
    coordinator: str = "planner"
    benchmark_source: str = "auto"
    eval: dict = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value):
        if value is not None and (problem := _cron_error(value)):
            raise ValueError(problem)
        return value

    @field_validator("models", "benchmarks")
    @classmethod
    def _unique(cls, value):
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"{repeated} listed more than once")
        return value

    @field_validator("eval")
    @classmethod
    def _eval_keys(cls, value):
        unknown = sorted(set(value) - set(EVAL_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; allowed: {', '.join(EVAL_KEYS)}")
        return value


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file: its settings, where it came from, and every combination's config."""

    spec: SweepFile
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cron(self) -> str | None:
        return self.spec.cron

    @property
    def schedule_name(self) -> str:
        """The Dagster schedule's name ([A-Za-z0-9_]): `nightly-smollm2` -> `sweep_nightly_smollm2`."""
        return "sweep_" + self.name.replace("-", "_")

    def combinations(self) -> list[tuple[str, str]]:
        return [(model, benchmark) for model in self.spec.models for benchmark in self.spec.benchmarks]

    def experiments(self, stamp: str | None = None, driver: str = "cli", episodes: int | None = None,
                    output_dir: str | None = None) -> list[ExperimentConfig]:
        """One ExperimentConfig per model x benchmark, named `experiment_name(...)`; `stamp` (a schedule
        tick's time) makes a new set of names, `episodes` overrides the file's (tests, quick looks)."""
        configs = []
        for model, benchmark in self.combinations():
            data = {"model": model, "dataset": benchmark, "name": experiment_name(self.name, model, benchmark, stamp),
                    "episodes": episodes if episodes is not None else self.spec.episodes, "budget": self.spec.budget,
                    "seed": self.spec.seed, "coordinator": self.spec.coordinator,
                    "benchmark_source": self.spec.benchmark_source, "compression_methods": self.spec.methods,
                    "constraints": self.spec.constraints, "objectives": self.spec.objectives, "eval": self.spec.eval,
                    "driver": driver}
            if output_dir:
                data["output_dir"] = output_dir
            configs.append(_validated(self.path, data))
        return configs


def slug(text: str) -> str:
    """`HuggingFaceTB/SmolLM2-135M` -> `smollm2-135m`, `/x/tinymc.jsonl` -> `tinymc`: the last path part, lower case."""
    stem = Path(text).name
    stem = Path(stem).stem if stem.endswith((".jsonl", ".json")) else stem
    return re.sub(r"[^a-z0-9.]+", "-", stem.lower()).strip("-.") or "x"


def experiment_name(sweep: str, model: str, benchmark: str, stamp: str | None = None) -> str:
    """`<sweep>-<model slug>-<benchmark slug>[-<YYYYMMDD-HHMM>]`: the same inputs always give the same name."""
    base = f"{sweep}-{slug(model)}-{slug(benchmark)}"
    return f"{base}-{stamp}" if stamp else base


def is_member(sweep: str, experiment: str, model: str, benchmark: str) -> bool:
    """Whether an experiment (by its name, model and benchmark) is one of `sweep`'s, from any tick."""
    base = experiment_name(sweep, model, benchmark)
    return experiment == base or re.fullmatch(re.escape(base) + "-" + STAMP_PATTERN, experiment) is not None


def _validated(path: Path, data: dict) -> ExperimentConfig:
    """ExperimentConfig's own rules (and E005 for unknown methods), errors naming the sweep file's field."""
    try:
        check_method_names(data.get("compression_methods"))
    except GreenAIError as exc:
        raise type(exc)(f"sweep file '{path}': methods: {exc.message.replace('compression_methods ', '')}",
                        exc.remedy) from None
    try:
        return ExperimentConfig(**data)
    except ValidationError as exc:
        raise _field_error(path, exc) from None


def _field_error(path: Path, exc: ValidationError) -> EvaluationError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    where = ".".join([_SWEEP_FIELD.get(loc[0], loc[0]), *loc[1:]]) if loc else "sweep"
    return EvaluationError(f"sweep file '{path}': {where}: {first['msg']}.", "Fix that field in the sweep file.")


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate one sweep file; every problem is E004 (E005 for a method) naming the file and field."""
    path = Path(path)
    text = read_user_text(path, "sweep file", "a YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EvaluationError(f"sweep file '{path}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}.",
                              "Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"sweep file '{path}' holds a YAML {type(data).__name__}, not a mapping.",
                              "The file must be a mapping: name, models, benchmarks, ... (README 'Sweeps').")
    try:
        spec = SweepFile(**data)
    except ValidationError as exc:
        raise _field_error(path, exc) from None
    sweep = Sweep(spec, path)
    configs = sweep.experiments()                        # every combination valid, or the field is named now
    names = [c.name for c in configs]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise EvaluationError(f"sweep file '{path}': models/benchmarks: two combinations share the experiment "
                              f"name(s) {clash} (the last path parts are the same).",
                              "Give the models or benchmarks distinct folder or file names.")
    return sweep


def sweeps_dir() -> Path:
    """Where the schedules' sweep files live: GREENAI_SWEEPS_DIR, else the repository's `sweeps/` (version
    controlled with the code, like benchmark definitions; its schedules start stopped)."""
    configured = os.environ.get(SWEEPS_DIR_ENV, "").strip()
    return Path(configured).resolve() if configured else REPO_SWEEPS_DIR


def load_sweeps(folder: Path | None = None) -> list[Sweep]:
    """Every `*.yaml` / `*.yml` in the folder (none if the default folder does not exist; E004 if the one
    GREENAI_SWEEPS_DIR names does not), sorted by file name; two files
    with one sweep name are refused, since their experiments and schedules would collide."""
    folder = Path(folder) if folder is not None else sweeps_dir()
    if not folder.is_dir():
        if folder != REPO_SWEEPS_DIR and os.environ.get(SWEEPS_DIR_ENV, "").strip():   # set, and wrong: say so
            raise EvaluationError(f"{SWEEPS_DIR_ENV} is '{os.environ[SWEEPS_DIR_ENV]}', which is not a folder.",
                                  f"Point {SWEEPS_DIR_ENV} at the folder of sweep files, or unset it for sweeps/.")
        return []
    sweeps = [load_sweep(p) for p in sorted(folder.iterdir()) if p.suffix in (".yaml", ".yml") and p.is_file()]
    seen: dict[str, Path] = {}
    for sweep in sweeps:
        key = sweep.name.replace("-", "_")
        if key in seen:
            raise EvaluationError(f"sweep files '{seen[key]}' and '{sweep.path}' both name the sweep "
                                  f"'{sweep.name}' (or the same name with '-' for '_').",
                                  "Give each sweep file its own name.")
        seen[key] = sweep.path
    return sweeps
