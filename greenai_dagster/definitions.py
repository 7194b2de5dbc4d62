"""Everything Dagster loads: assets, checks, resources (by deployment), jobs."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from greenai_dagster.assets import candidates, experiment, frontier
from greenai_dagster.resources import resources_for

ALL_ASSETS = load_assets_from_modules([experiment, candidates, frontier])
ALL_CHECKS = load_asset_checks_from_modules([candidates])

defs = Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, resources=resources_for())
