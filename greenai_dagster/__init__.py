"""greenai-dagster: agentic, multi-objective LLM compression as a Dagster project."""

__version__ = "0.1.0"
