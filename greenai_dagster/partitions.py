"""Dynamic partitions: one per experiment, one per candidate strategy (`<experiment>/<strategy_id>`)."""

from dagster import DynamicPartitionsDefinition

experiments_partitions = DynamicPartitionsDefinition(name="experiments")
candidates_partitions = DynamicPartitionsDefinition(name="candidates")
