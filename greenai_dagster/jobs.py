"""Jobs: create an experiment from the Dagster UI (the coordinator sensor then drives it), and one named
asset job per stage of an experiment, so every run says what it is (setup, candidate, frontier,
frontier_full_set) instead of `__ASSET_JOB`. Each runs its steps in the run's own process (the
steps of a stage are sequential; a process per step only re-imports torch)."""

from enum import Enum

from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, in_process_executor, job, op
from pydantic import Field, create_model

from greenai_dagster.assets._errors import core_step
from greenai_dagster.core import engine
from greenai_dagster.core.evaluation.eval_settings import OVERRIDABLE, override_fields
from greenai_dagster.core.settings.config import (LAUNCHPAD_FIELDS, ExperimentConfig, entry_field, field_choices,
                                                  validated_config)
from greenai_dagster.instance import EXPERIMENT_TAG, SOURCE_TAG
from greenai_dagster.partitions import candidates_partitions, experiments_partitions
from greenai_dagster.resources import ResultsStoreResource


class _EvalOverridesBase(Config):
    def settings(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None}


# The Launchpad's `eval` block is generated from the one evaluation settings class (core/evaluation/eval_settings.py):
# the same names and descriptions, each optional (unset keeps the class's default, named in the description).
LAUNCHPAD_EVAL_FIELDS = OVERRIDABLE
EvalOverrides = create_model(
    "EvalOverrides", __base__=_EvalOverridesBase,
    __doc__="Evaluation settings (core/evaluation/eval_settings.py `EvalSettings`); a field left unset keeps its default.",
    **override_fields())


def _choices(name: str) -> type[Enum]:
    """A Launchpad enum for one of ExperimentConfig's Literal fields: the Launchpad then offers its values and
    refuses any other before the run starts (Dagster's config schema knows enums, not Literals)."""
    values = field_choices(ExperimentConfig, name)
    kind = Enum("".join(part.title() for part in name.split("_")), {v: v for v in values}, type=str)
    kind.__doc__ = ExperimentConfig.model_fields[name].description
    return kind


Coordinator = _choices("coordinator")
BenchmarkSource = _choices("benchmark_source")
_LAUNCHPAD_TYPES = {"coordinator": Coordinator, "benchmark_source": BenchmarkSource, "eval": EvalOverrides}


def _launchpad_field(name: str):
    """ExperimentConfig's field as a Launchpad field: the same name, default and description (bounds named in
    it, not checked by Dagster: `create_experiment` checks them with E004), an enum for a Literal, and the
    Launchpad's generated `eval` overrides block."""
    annotation, info = entry_field(name, bounds=False)
    if name in _LAUNCHPAD_TYPES:
        kind = _LAUNCHPAD_TYPES[name]
        if info.default_factory is None:
            info = Field(kind(info.default), description=info.description)
        else:
            info = Field(default_factory=kind, description=info.description)
        annotation = kind
    return annotation, info


class _LaunchpadBase(Config):
    def settings(self) -> dict:
        """The ExperimentConfig keyword arguments of this run config: enums as their values, the eval overrides
        that were set, and an empty list or name as unset (what a Launchpad user may type for "all" or
        "generated")."""
        data = {}
        for name in LAUNCHPAD_FIELDS:
            value = getattr(self, name)
            if name == "eval":
                value = value.settings()
            elif isinstance(value, Enum):
                value = value.value
            elif value in ("", []) and name in ("name", "compression_methods", "objectives"):
                value = None
            data[name] = value
        return data


# The Launchpad's config, generated from ExperimentConfig (core/settings/config.py `LAUNCHPAD_FIELDS`): one name,
# default and description per setting whether it is typed here, sent to POST /compress or given to `greenai run`.
NewExperimentConfig = create_model(
    "NewExperimentConfig", __base__=_LaunchpadBase,
    __doc__="The `greenai run` settings, as launchpad config (generated from core/settings/config.py ExperimentConfig).",
    **{name: _launchpad_field(name) for name in LAUNCHPAD_FIELDS})


def launch_run_config(config: ExperimentConfig) -> dict:
    """The `launch_experiment` run config that creates `config`'s experiment (what a Launchpad user would type):
    POST /compress and the sweep schedules submit it, so every launch goes through the same op. The eval
    block carries only the settings that were set (the others keep their defaults at creation)."""
    settings = {name: getattr(config, name) for name in LAUNCHPAD_FIELDS if name != "eval"}
    settings.update(compression_methods=config.compression_methods or [], objectives=config.objectives or [],
                    eval=config.eval.model_dump(include=config.eval.model_fields_set))
    settings = {k: v for k, v in settings.items() if v is not None}
    return {"ops": {"create_experiment": {"config": settings}}}


def register_experiment(store, config: ExperimentConfig) -> str:
    """Record the experiment for the sensor; checks the inputs first (clear E00x errors). The same
    creation and validation as `greenai run` (core/engine.py `create_experiment`)."""
    name, _, _ = engine.create_experiment(store, config)
    return name


@op
def create_experiment(context: OpExecutionContext, config: NewExperimentConfig, store: ResultsStoreResource) -> str:
    with core_step(context):   # an E00N error leaves as a Failure carrying it as data (GET /jobs reads it)
        settings = validated_config({**config.settings(), "driver": "sensor"},
                                    "Fix that field in the Launchpad's config and launch again.")
        name = register_experiment(store.get(), settings)
    # one identity whoever launched it: a Launchpad launch carries no tags, so the run is tagged here, as
    # POST /compress tags its own before submitting (GET /jobs/<this run> and /pareto find the experiment)
    tags = {EXPERIMENT_TAG: name}
    if SOURCE_TAG not in context.run.tags:
        tags[SOURCE_TAG] = "launchpad"
    context.instance.add_run_tags(context.run_id, tags)
    if store.get().facts(name).get("cancel_requested"):     # DELETE /jobs/{id} while this run was starting
        store.get().finish_experiment(name, "cancelled")
        context.log.info(f"experiment {name} was cancelled while its launch run started; nothing will run")
        return name
    context.instance.add_dynamic_partitions(experiments_partitions.name, [name])
    context.log.info(f"experiment {name} created; coordinator_sensor will drive it")
    return name


@job(description="Create a compression experiment; the coordinator sensor runs its episodes.",
     executor_def=in_process_executor)
def launch_experiment():
    create_experiment()


setup_job = define_asset_job(
    "setup", AssetSelection.assets("model_spec", "baseline"), partitions_def=experiments_partitions,
    executor_def=in_process_executor, description="An experiment's model spec and baseline (once per experiment).")
candidate_job = define_asset_job(
    "candidate", AssetSelection.assets("compressed_variant", "benchmark_result"), partitions_def=candidates_partitions,
    executor_def=in_process_executor,
    description="One episode: compress the candidate strategy, then benchmark it (and check the figures).")
frontier_job = define_asset_job(
    "frontier", AssetSelection.assets("pareto_frontier"), partitions_def=experiments_partitions,
    executor_def=in_process_executor, description="Recompute an experiment's Pareto frontier, files and chart.")
full_set_job = define_asset_job(
    "frontier_full_set", AssetSelection.assets("frontier_full_evaluation"), partitions_def=experiments_partitions,
    executor_def=in_process_executor,
    description="Score the baseline and the final frontier members on the benchmark's full set.")
STAGE_JOBS = {"setup": setup_job, "candidate": candidate_job, "frontier": frontier_job,
              "frontier_full_set": full_set_job}
