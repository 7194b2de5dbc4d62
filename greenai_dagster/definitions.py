"""Everything Dagster loads: assets, checks, the launch job, the stage jobs, the Celery candidate sweep
(several workers or machines: celery_sweep.py), the coordinator sensor, the sweeps' schedules, resources
(by deployment)."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from greenai_dagster.assets import candidates, experiment, frontier
from greenai_dagster.celery_sweep import candidate_sweep
from greenai_dagster.jobs import STAGE_JOBS, launch_experiment
from greenai_dagster.resources import resources_for
from greenai_dagster.schedules import sweep_schedules
from greenai_dagster.sensors import coordinator_sensor

ALL_ASSETS = load_assets_from_modules([experiment, candidates, frontier])
ALL_CHECKS = load_asset_checks_from_modules([candidates])

defs = Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[launch_experiment, *STAGE_JOBS.values(), candidate_sweep], sensors=[coordinator_sensor],
                   schedules=sweep_schedules(),
                   resources=resources_for())
